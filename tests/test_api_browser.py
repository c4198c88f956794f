"""The chat page in real headless Chromium: ask, stream, cite, vote, upload; screenshots."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from kbqa.api.app import create_app
from kbqa.api.security import KeyRing
from kbqa.config import IngestConfig, Settings, SplitConfig
from kbqa.kb import KnowledgeBase
from tests.api_fixtures import ADMIN, KEYS
from tests.fakes import HashEmbedder

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
# Screenshots land in tmp_path unless KBQA_SCREENSHOTS names a folder: refreshing the ones in
# docs/ is a deliberate act (KBQA_SCREENSHOTS=docs/screenshots, on a machine with CJK fonts such
# as Debian's fonts-noto-cjk: without them every Chinese character renders as a box).
SHOTS_ENV = "KBQA_SCREENSHOTS"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class CitingLLM:
    """Streams a short answer citing source [1], slowly enough to watch it arrive."""

    name = "citing-test-llm"
    context_window = 4096
    PIECES = [
        "员工入职满一年后，",
        "每年享有",
        "5天带薪年假[1]。",
        "满十年的员工",
        "每年享有10天年假[1]。",
    ]

    def count_tokens(self, text: str) -> int:
        return len(text)

    def stream(self, prompt, history=(), config=None):
        for piece in self.PIECES:
            time.sleep(0.15)
            yield piece

    def generate(self, prompt, history=(), config=None) -> str:
        return "".join(self.PIECES)


@pytest.fixture
def server(tmp_path):
    embedder = HashEmbedder()
    home = tmp_path / "home"
    kb = KnowledgeBase.open_or_create(home, "demo", embedder, "test", SplitConfig())
    kb.ingest([ROOT / "ingest"], embedder, IngestConfig(include=("*.md", "*.txt", "*.csv")))
    kb.close()
    app = create_app(
        Settings(home=home, refusal_threshold=-1.0),
        embedder=embedder,
        generator=CitingLLM(),
        keys=KeyRing.from_texts([(json.dumps(KEYS), "test")]),
    )
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", home
    srv.should_exit = True
    thread.join(10)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_chat_page_end_to_end(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, home = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800}, locale="zh-CN")
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        # A keyed server: the page asks for a key, then lists the KBs it may read.
        page.wait_for_function("document.getElementById('status').textContent.includes('API Key')")
        page.click("#open-settings")
        page.fill("#key", ADMIN)
        page.click("#save-key")
        page.wait_for_function("document.querySelector('#kb').value === 'demo'")

        page.fill("#question", "带薪年假的天数是怎么规定的？")  # not a stored FAQ: generated
        page.keyboard.press("Enter")
        answer = page.locator(".msg.assistant .body").last
        # Streams in: part of the answer shows before the whole of it has arrived.
        page.wait_for_function(
            "(() => { const b = [...document.querySelectorAll('.msg.assistant .body')].pop();"
            " return b && b.textContent.includes('每年享有') && !b.textContent.includes('10天'); })()"
        )
        page.wait_for_selector(".msg.assistant .foot .mode")
        assert "5天带薪年假" in answer.inner_text() and "10天年假" in answer.inner_text()

        answer.locator(".cite").first.click()
        dialog = page.locator("#source")
        dialog.wait_for(state="visible")
        assert "员工手册-休假制度.md" in page.inner_text("#source-title")
        assert "年假" in page.inner_text("#source-text")
        page.screenshot(path=str(tmp_path / "citation.png"))
        page.keyboard.press("Escape")

        page.click(".msg.assistant .vote[data-vote='up']")
        page.wait_for_function("document.getElementById('status').textContent.includes('谢谢')")
        rows = (home / "demo" / "feedback.jsonl").read_text("utf-8").splitlines()
        assert json.loads(rows[-1])["vote"] == "up"
        shots = Path(os.environ.get(SHOTS_ENV) or tmp_path)
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "chat.png"))

        doc = tmp_path / "值班表.md"
        doc.write_text("# 值班安排\n\n周末值班由行政部轮流安排，值班补贴每天200元。\n", "utf-8")
        page.click("#open-settings")
        page.set_input_files("#files", str(doc))
        page.click("#upload")
        page.wait_for_function(
            "document.getElementById('job-text').textContent.startsWith('完成')", timeout=30000
        )
        assert "新增 1" in page.inner_text("#job-text")
        page.keyboard.press("Escape")

        phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
        phone.add_init_script(f"localStorage.setItem('kbqa.key', '{ADMIN}')")
        phone.goto(url)
        phone.wait_for_function("document.querySelector('#kb').value === 'demo'")
        phone.fill("#question", "年假有几天？")  # a stored FAQ answer
        phone.keyboard.press("Enter")
        phone.wait_for_selector(".msg.assistant .foot .mode")
        overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, "the page scrolls sideways on a phone"
        phone.screenshot(path=str(shots / "chat-phone.png"))
        browser.close()
    assert not errors, errors
