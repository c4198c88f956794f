"""Asker and `kbqa ask`: FAQ first, refusal before generation, extractive citations, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kbqa.ask import Asker
from kbqa.config import AskConfig, IngestConfig, SplitConfig
from kbqa.errors import BadInput, Conflict
from kbqa.kb import KnowledgeBase
from kbqa.prompt import DEFAULT_REFUSAL, load_prompts
from kbqa.retrieval.refusal import calibrate, stored
from kbqa.retrieval.retriever import Retriever
from tests.corpus import LEAVE, TRAVEL
from tests.fakes import FakeGenerator, HashEmbedder

FAQ = "问题,答案\n婚假有多少天？,依法登记结婚的员工享受婚假13天。\n"
NOTES = "问：打印机卡纸怎么办？\n答：打开前盖取出纸张，仍不行请找行政部。\n"


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    docs = tmp_path / "docs"
    docs.mkdir()
    files = [("leave.md", LEAVE), ("travel.md", TRAVEL), ("faq.csv", FAQ), ("notes.txt", NOTES)]
    for name, text in files:
        (docs / name).write_text(text, encoding="utf-8")
    e = HashEmbedder()
    kb = KnowledgeBase.open_or_create(tmp_path / "home", "demo", e, "test", SplitConfig())
    kb.ingest([docs], e, IngestConfig())
    return kb


def asker(kb, threshold: float | None = 0.2, generator=None) -> Asker:
    config = AskConfig(refusal_threshold=threshold)
    return Asker(kb, HashEmbedder(), generator, load_prompts(), config)


def test_faq_rows_and_text_pairs_are_answered_as_stored(kb):
    a = asker(kb).ask("婚假有多少天")
    assert (a.mode, a.refused) == ("faq", False)
    assert a.answer == "依法登记结婚的员工享受婚假13天。"
    assert a.sources[0].source.endswith("faq.csv")
    b = asker(kb).ask("打印机卡纸怎么办？")
    assert b.mode == "faq" and b.answer.startswith("打开前盖取出纸张")


def test_extractive_answer_cites_its_sources(kb):
    a = asker(kb).ask("出差住宿标准是多少", top_k=3)
    assert (a.mode, a.refused) == ("extractive", False)
    assert "600元" in a.answer and "[1]" in a.answer
    assert a.sources[0].source.endswith("travel.md")
    assert {"retrieve_ms", "generate_ms", "embed_ms"} <= set(a.timings)


def test_nothing_relevant_is_refused_without_calling_the_generator(kb):
    class Boom(FakeGenerator):
        name, context_window = "boom", 4096

        def stream(self, *a, **k):
            raise AssertionError("the generator must not run for a refusal")

    a = asker(kb, threshold=0.99, generator=Boom()).ask("量子色动力学的渐近自由")
    assert a.refused and a.answer == DEFAULT_REFUSAL and a.sources == []


def test_calibration_separates_own_chunks_from_off_topic_and_is_stored(kb):
    cal = calibrate(Retriever(kb, HashEmbedder()))
    assert cal.probe_p10 > cal.offtopic_p90 > -1
    assert cal.offtopic_p90 < cal.threshold < cal.probe_p10
    a = asker(kb, threshold=None)
    assert a.threshold()[1] == "calibrated"
    assert stored(KnowledgeBase.open(kb.folder.parent, kb.name)) is not None
    assert a.ask("今天北京的天气怎么样？").refused


def test_stream_yields_sources_then_tokens_then_done(kb):
    kinds = [k for k, _ in asker(kb).stream("出差补贴每天多少钱")]
    assert kinds[0] == "sources" and kinds[-1] == "done" and "token" in kinds


def test_bad_questions(kb):
    with pytest.raises(BadInput):
        asker(kb).ask("  \n ")
    a = asker(kb).ask("年假" + "很" * 10_000)
    assert len(a.question) == 512 and "10002" in a.debug["notices"][0]
    with pytest.raises(Conflict):
        Asker(kb, HashEmbedder(model_id="other"), None, load_prompts())


def test_empty_kb_refuses(tmp_path):
    e = HashEmbedder()
    kb = KnowledgeBase.open_or_create(tmp_path / "home", "empty", e, "test", SplitConfig())
    a = Asker(kb, e, None, load_prompts()).ask("年假有几天")
    assert a.refused and a.sources == []


def test_generative_answer_with_a_tiny_glm(kb, tmp_path):
    from kbqa.llm import load_generator
    from tests.tiny_models import build_tiny_glm

    gen = load_generator(f"transformers:{build_tiny_glm(tmp_path / 'glm')}")
    config = AskConfig(refusal_threshold=0.2, max_new_tokens=8)
    a = Asker(kb, HashEmbedder(), gen, load_prompts(), config).ask("出差补贴", debug=True)
    assert a.mode == "generative" and not a.refused
    assert a.debug["prompt"].startswith("已知信息:\n[1] ")


def run_cli(tmp_path, monkeypatch, *args):
    from kbqa.cli.app import app

    monkeypatch.setenv("KBQA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KBQA_EMBEDDING_MODEL", "")
    return CliRunner().invoke(app, list(args))


def test_cli_ask_json_and_errors(kb, tmp_path, monkeypatch):
    monkeypatch.setattr("kbqa.cli.common.embedder_for", lambda spec: HashEmbedder())
    r = run_cli(tmp_path, monkeypatch, "ask", "婚假有多少天", "--kb", "demo", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["mode"] == "faq" and {"retrieve_ms", "generate_ms"} <= set(out["timings"])
    r = run_cli(tmp_path, monkeypatch, "ask", "年假", "--kb", "nope", "--json")
    assert r.exit_code == 2 and "does not exist" in r.stdout
    r = run_cli(tmp_path, monkeypatch, "ask", " ", "--kb", "demo")
    assert r.exit_code == 2


def test_template_without_question_is_a_clear_error(tmp_path):
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "knowledge_qa.txt").write_text("已知信息:\n{context}\n", encoding="utf-8")
    (folder / "refusal.txt").write_text("无法回答。", encoding="utf-8")
    with pytest.raises(BadInput, match=r"knowledge_qa.txt.*\{question\}"):
        load_prompts(folder)


def test_refusal_thresholds_relevance_not_the_bare_cosine():
    """Lexical coverage lifts a question that shares the passage's rare words."""
    from kbqa.retrieval.retriever import COVERAGE_WEIGHT, Retrieval
    from kbqa.types import Hit

    hit = Hit(1, 1, "a.md", "年假为五天", 0.85, {})
    on_topic = Retrieval([hit], np.zeros(3, np.float32), coverage=1.0)
    off_topic = Retrieval([hit], np.zeros(3, np.float32), coverage=0.0)
    assert on_topic.relevance == pytest.approx(0.85 + COVERAGE_WEIGHT)
    assert off_topic.relevance == pytest.approx(0.85)


def test_stream_decides_its_route_with_a_typed_plan(kb):
    """Refusal is a Route, not a missing text: the plan says why no sources are shown."""
    from kbqa.ask import Route

    never = asker(kb, threshold=1.1)  # the top of the scale: this question is refused
    found = never.retriever.retrieve("出差住宿标准是多少", 8)
    plan = never._plan("出差住宿标准是多少", found, 3, 1.1, {})
    assert (plan.route, plan.sources) == (Route.REFUSE, [])
    events = list(never.stream("出差住宿标准是多少", 3))
    assert [kind for kind, _ in events] == ["sources", "token", "done"]
    assert events[1][1] == DEFAULT_REFUSAL and events[2][1].refused
    answered = asker(kb)._plan("出差住宿标准是多少", found, 3, 0.2, {})
    assert answered.route is Route.EXTRACT and len(answered.sources) == 3
