"""Shared pieces of the API tests: a tmp KB home, an app client, a fake queued LLM."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kbqa.api.app import create_app
from kbqa.api.security import KeyRing
from kbqa.config import IngestConfig, Settings, SplitConfig
from kbqa.kb import KnowledgeBase
from tests.fakes import FakeGenerator, HashEmbedder

LEAVE = "# 休假制度\n\n## 年假\n\n员工入职满一年后，每年享有5天带薪年假。满十年的员工每年享有10天年假。\n"
TRAVEL = "# 出差标准\n\n一线城市住宿标准为每晚600元，其他城市每晚400元。出差补贴每天100元。\n"
VPN = "远程办公需要先连接公司VPN。VPN客户端可在IT门户下载，账号与邮箱相同。\n"

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


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture
def home(tmp_path: Path, embedder) -> Path:
    home = tmp_path / "home"
    build_kb(home, "demo", embedder, {"leave.md": LEAVE, "travel.md": TRAVEL, "vpn.txt": VPN})
    build_kb(home, "secret", embedder, {"salary.md": "# 薪资\n\n薪资每月10日发放。\n"})
    return home


def client_for(home: Path, embedder, *, keys: dict | None = None, generator=None, **settings):
    ring = KeyRing.from_texts([(json.dumps(keys), "test keys")]) if keys else KeyRing({})
    app = create_app(
        Settings(home=home, **settings), embedder=embedder, generator=generator, keys=ring
    )
    return TestClient(app)


@pytest.fixture
def client(home, embedder):
    with client_for(home, embedder) as c:
        yield c


@pytest.fixture
def keyed(home, embedder):
    with client_for(home, embedder, keys=KEYS) as c:
        yield c


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
