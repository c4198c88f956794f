"""The chat page in real headless Chromium: ask, stream, cite, vote, upload; screenshots."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from kbqa.api.app import create_app
from kbqa.api.security import KeyRing
from kbqa.config import IngestConfig, Settings, SplitConfig
from kbqa.kb import KnowledgeBase
from tests.api_fixtures import ADMIN, KEYS
from tests.fakes import FakeGenerator, HashEmbedder

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
# Screenshots land in tmp_path unless KBQA_SCREENSHOTS names a folder: refreshing the ones in
# docs/ is a deliberate act (KBQA_SCREENSHOTS=docs/screenshots, on a machine with CJK fonts such
# as Debian's fonts-noto-cjk: without them every Chinese character renders as a box).
SHOTS_ENV = "KBQA_SCREENSHOTS"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class CitingLLM(FakeGenerator):
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


def wait(page, expression: str, **kw):
    """wait_for_function on an expression, passed as a function: the page's CSP forbids eval,
    which Playwright uses for a bare expression string."""
    return page.wait_for_function(f"() => ({expression})", **kw)


def build_home(tmp_path):
    embedder = HashEmbedder()
    home = tmp_path / "home"
    kb = KnowledgeBase.open_or_create(home, "demo", embedder, "test", SplitConfig())
    kb.ingest([ROOT / "ingest"], embedder, IngestConfig(include=("*.md", "*.txt", "*.csv")))
    kb.close()
    return home, embedder


@pytest.fixture
def server(tmp_path, live_server):
    """A LAN set-up: keys on, the demo KB readable without one."""
    home, embedder = build_home(tmp_path)
    app = create_app(
        Settings(home=home, refusal_threshold=-1.0, public_kbs="demo"),
        embedder=embedder,
        generator=CitingLLM(),
        keys=KeyRing.from_texts([(json.dumps(KEYS), "test")]),
    )
    return live_server(app), home


def shots_folder(tmp_path) -> Path:
    shots = Path(os.environ.get(SHOTS_ENV) or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def launch(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"
)


@needs_chromium
def test_chat_page_end_to_end(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, home = server
    shots = shots_folder(tmp_path)
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1280, "height": 800}, locale="zh-CN")
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        # Console errors other than HTTP statuses (the 401 of an upload without a key is
        # expected): a CSP violation would show here.
        page.on(
            "console",
            lambda m: (
                m.type == "error"
                and not m.text.startswith("Failed to load resource")
                and errors.append(m.text)
            ),
        )
        page.on("dialog", lambda d: d.accept())
        page.goto(url)
        # An employee without a key: the public KB is listed and its FAQ gives the suggestions.
        wait(page, "document.querySelector('#kb').value === 'demo'")
        page.wait_for_selector("#suggestions .chip")
        chips = page.locator("#suggestions .chip").all_inner_texts()
        faq = (ROOT / "ingest" / "常见问题FAQ.csv").read_text("utf-8")
        assert chips and all(c in faq for c in chips), chips

        page.fill("#question", "带薪年假的天数是怎么规定的？")  # not a stored FAQ: generated
        page.keyboard.press("Enter")
        answer = page.locator(".msg.assistant .body").last
        # Streams in: part of the answer shows before the whole of it has arrived.
        wait(
            page,
            "(() => { const b = [...document.querySelectorAll('.msg.assistant .body')].pop();"
            " return b && b.textContent.includes('每年享有') && !b.textContent.includes('10天'); })()",
        )
        page.wait_for_selector(".msg.assistant .foot .mode")
        assert "5天带薪年假" in answer.inner_text() and "10天年假" in answer.inner_text()

        # The source: relative path, the passage in its context, the original file.
        answer.locator(".cite").first.click()
        page.locator("#source").wait_for(state="visible")
        assert "员工手册-休假制度.md" in page.inner_text("#source-title")
        assert not page.inner_text("#source-path").startswith("/")
        assert str(home.parent) not in page.content()
        page.wait_for_selector("#source-text .ctx")  # neighbours around the passage
        assert "年假" in page.inner_text("#source-text mark")
        with page.expect_download() as dl:
            page.click("#source-download")
        assert dl.value.suggested_filename == "员工手册-休假制度.md"
        assert "年假" in Path(dl.value.path()).read_text("utf-8")
        page.screenshot(path=str(shots / "source.png"))
        page.keyboard.press("Escape")

        page.click(".msg.assistant .vote[data-vote='up']")
        wait(page, "document.getElementById('status').textContent.includes('谢谢')")
        rows = (home / "demo" / "feedback.jsonl").read_text("utf-8").splitlines()
        assert json.loads(rows[-1])["vote"] == "up"
        page.screenshot(path=str(shots / "chat.png"))

        # The conversation survives a reload; "new chat" starts an empty one.
        page.reload()
        page.wait_for_selector(".msg.assistant .foot .mode")
        assert "5天带薪年假" in page.locator(".msg.assistant .body").last.inner_text()
        page.click("#new-chat")
        page.wait_for_selector("#welcome:not([hidden])")
        assert page.locator(".msg").count() == 0
        page.click("#open-chats")
        assert page.locator("#chat-list li").count() == 1
        page.locator("#chat-list li .grow").first.click()
        page.wait_for_selector(".msg.assistant .foot .mode")

        # Documents: anyone reading sees the list; an upload asks for the admin's key.
        page.click("#open-docs")
        page.wait_for_selector("#doc-rows tr")
        names = page.locator("#doc-rows td.name").all_inner_texts()
        assert any("报销制度.md" in n for n in names) and not any(n.startswith("/") for n in names)
        good = tmp_path / "值班表.md"
        good.write_text("# 值班安排\n\n周末值班由行政部轮流安排，值班补贴每天200元。\n", "utf-8")
        bad = tmp_path / "空白.txt"
        bad.write_text("   \n", "utf-8")
        page.set_input_files("#files", [str(good), str(bad)])
        page.click("#upload")
        page.locator("#settings").wait_for(state="visible")
        assert "API Key" in page.inner_text("#settings-why")
        page.fill("#key", ADMIN)
        page.click("#save-key")
        page.locator("#settings").wait_for(state="hidden")
        page.set_input_files("#files", [str(good), str(bad)])
        page.click("#upload")
        wait(
            page,
            "document.getElementById('job-text').textContent.startsWith('完成')",
            timeout=30000,
        )
        assert "新增 1" in page.inner_text("#job-text") and "失败 1" in page.inner_text("#job-text")
        assert "空白.txt" in page.inner_text("#job-errors")
        assert str(home.parent) not in page.content()  # no server folder, errors included
        wait(
            page,
            "[...document.querySelectorAll('#doc-rows td.name')].some(t => t.textContent.includes('值班表'))",
        )
        page.click("#load-feedback")
        page.wait_for_selector("#feedback-list li")
        assert "👍" in page.inner_text("#feedback-summary")
        page.evaluate("document.getElementById('docs').scrollTop = 0")
        page.screenshot(path=str(shots / "documents.png"))
        row = page.locator("#doc-rows tr", has_text="值班表")
        row.locator("button").click()  # confirm() is accepted
        wait(
            page,
            "![...document.querySelectorAll('#doc-rows td.name')].some(t => t.textContent.includes('值班表'))",
        )
        browser.close()
    assert not errors, errors


@needs_chromium
def test_phone_keeps_the_newest_answer_visible_after_a_refusal(tmp_path, live_server):
    sync_api = pytest.importorskip("playwright.sync_api")
    home, embedder = build_home(tmp_path)
    app = create_app(Settings(home=home, refusal_threshold=1.1), embedder=embedder, generator=None)
    url = live_server(app)
    shots = shots_folder(tmp_path)
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
        phone.goto(url)
        wait(phone, "document.querySelector('#kb').value === 'demo'")
        for n, question in enumerate(
            ("年假有几天？", "出差住宿标准是多少？", "公司食堂几点开门？"), 1
        ):
            phone.fill("#question", question)
            phone.keyboard.press("Enter")
            wait(phone, f"document.querySelectorAll('.msg.assistant .foot .mode').length === {n}")
        time.sleep(0.3)
        overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, "the page scrolls sideways on a phone"
        last = phone.locator(".msg.assistant").last
        assert "未找到答案" in last.inner_text()
        # The whole of the newest answer, footer included, sits above the composer.
        bottom = last.evaluate("e => e.getBoundingClientRect().bottom")
        composer_top = phone.evaluate(
            "document.querySelector('#question').getBoundingClientRect().top"
        )
        assert bottom <= composer_top, (bottom, composer_top)
        phone.screenshot(path=str(shots / "chat-phone.png"))
        browser.close()


@needs_chromium
def test_docs_render_with_the_network_blocked(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, _ = server
    shots = shots_folder(tmp_path)
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        outside: list[str] = []

        def only_local(route):
            if route.request.url.startswith(url):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", only_local)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/docs")
        page.wait_for_selector(".opblock", timeout=30000)
        ops = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/v1/chat/completions" in ops and "/v1/kbs/{kb}/ask" in ops, ops
        page.screenshot(path=str(shots / "docs-offline.png"))
        page.goto(f"{url}/redoc")
        page.wait_for_selector("h1", timeout=30000)  # ReDoc renders the whole spec at once
        assert page.locator("h1").first.inner_text().startswith("kbqa")
        assert (
            page.get_by_text("OpenAI-compatible chat completions").count()
            or page.get_by_text("Chat Completions").count()
        )
        browser.close()
    assert not outside, outside
    assert not errors, errors
