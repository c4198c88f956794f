"""Helpers of the API tests: keys, build_kb, client_for, fake LLMs (fixtures: conftest.py)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

from kbqa.api.app import create_app
from kbqa.api.security import KeyRing
from kbqa.config import IngestConfig, Settings, SplitConfig
from kbqa.kb import KnowledgeBase
from tests.fakes import FakeGenerator

ADMIN = "admin-key-0001"
READER = "reader-key-0001"  # reads demo only
EDITOR = "editor-key-0001"  # writes demo
KEYS = {ADMIN: {"admin": True}, READER: {"read": ["demo"]}, EDITOR: {"write": ["demo"]}}


def build_kb(home: Path, name: str, embedder, docs: dict[str, str]) -> KnowledgeBase:
    folder = home.parent / f"src-{name}"
    for file_name, text in docs.items():
        (folder / file_name).parent.mkdir(parents=True, exist_ok=True)
        (folder / file_name).write_text(text, encoding="utf-8")
    kb = KnowledgeBase.open_or_create(home, name, embedder, "test", SplitConfig())
    kb.ingest([folder], embedder, IngestConfig())
    return kb


def client_for(home: Path, embedder, *, keys: dict | None = None, generator=None, **settings):
    ring = KeyRing.from_texts([(json.dumps(keys), "test keys")]) if keys else KeyRing({})
    app = create_app(
        Settings(home=home, **settings), embedder=embedder, generator=generator, keys=ring
    )
    return TestClient(app)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_job(client: TestClient, job_id: str, headers=None, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


class EchoLLM(FakeGenerator):
    """A Generator double that streams the prompt's first characters and counts overlap."""

    name = "echo"
    context_window = 4096

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.active = 0
        self.max_active = 0
        self.calls = 0
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(text)

    def stream(self, prompt, history=(), config=None):
        with self._lock:
            self.active += 1
            self.calls += 1
            self.max_active = max(self.max_active, self.active)
        try:
            for piece in ["根据", "资料", "：", "5天"]:
                time.sleep(self.delay)
                yield piece
        finally:
            with self._lock:
                self.active -= 1

    def generate(self, prompt, history=(), config=None) -> str:
        return "".join(self.stream(prompt, history, config))
