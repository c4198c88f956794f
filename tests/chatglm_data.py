"""Where the ChatGLM reference fixtures live (shared data, never copied into the repo)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

FAMILIES = ("chatglm6b", "chatglm2", "chatglm2-int4", "chatglm3", "glm4-chat")
PTUNING_FAMILIES = ("chatglm6b", "chatglm2", "chatglm3")


def chatglm_root() -> Path:
    """KBQA_SHARED_DATA/chatglm, else ../shared/data/chatglm beside the repo root; skip if absent."""
    env = os.environ.get("KBQA_SHARED_DATA")
    base = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    root = base / "chatglm"
    if not (root / "README.md").is_file():
        pytest.skip(f"ChatGLM reference fixtures not found at {root} (set KBQA_SHARED_DATA)")
    return root


def reference(family: str) -> dict:
    return json.loads((chatglm_root() / family / "reference.json").read_text(encoding="utf-8"))


def model_dir(family: str) -> Path:
    return chatglm_root() / family / "model"


def messages(case: dict) -> list[dict[str, str]]:
    out = []
    for q, r in case["history"]:
        out += [{"role": "user", "content": q}, {"role": "assistant", "content": r}]
    return out + [{"role": "user", "content": case["query"]}]
