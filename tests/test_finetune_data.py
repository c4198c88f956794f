"""Q/A derivation, training samples, data files and text metrics (no model needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from kbqa.cli import finetune as ft_cli
from kbqa.errors import BadInput
from kbqa.finetune.metrics import bleu4, rouge_l, rouge_n, text_scores
from kbqa.finetune.qa import (
    QAPair,
    dedupe,
    derive_pairs,
    parse_llm_pairs,
    rule_questions,
    split_by_document,
)
from kbqa.finetune.samples import SampleConfig, build_samples, read_training_file, split_rows
from kbqa.prompt import load_prompts
from kbqa.types import Hit

PROSE = "公司的年假是每年十五天，入职满一年后开始享受。报销是指员工垫付费用后向公司申请返还。"


def hit(cid: int, doc: int, text: str, **meta) -> Hit:
    return Hit(cid, doc, f"doc{doc}.md", text, 0.0, meta)


CHUNKS = [
    hit(1, 1, "问：年假有几天？\n答：十五天。", question="年假有几天？", answer="十五天。"),
    hit(2, 2, PROSE, headings=["# 员工手册", "## 假期"]),
    hit(3, 3, "费用须在30天内报销，逾期不予受理。"),
    hit(4, 4, "加班需要提前申请，并由直属经理批准。"),
    hit(5, 5, "办公室早上九点开门。"),
]


def test_rules_make_questions_from_numbers_definitions_and_headings() -> None:
    found = dict(rule_questions(CHUNKS[1]))
    assert found["公司的年假是每年多少天？"] == "公司的年假是每年十五天，入职满一年后开始享受。"
    assert found["什么是报销？"].startswith("报销是指")
    assert "假期有哪些内容？" in found
    assert rule_questions(hit(9, 9, "费用须在30天内报销。")) == [
        ("费用须在多少天内报销？", "费用须在30天内报销。")
    ]


def test_qa_rows_become_pairs_and_prose_goes_through_rules_offline() -> None:
    pairs = list(derive_pairs(CHUNKS))
    qa = [p for p in pairs if p.origin == "qa"]
    assert [(p.question, p.answer, p.chunk_id) for p in qa] == [("年假有几天？", "十五天。", 1)]
    assert {p.origin for p in pairs} == {"qa", "rule"}
    for p in pairs:  # every pair keeps its source chunk
        chunk = next(c for c in CHUNKS if c.chunk_id == p.chunk_id)
        assert p.context == chunk.text and p.source == chunk.source and p.doc_id == chunk.doc_id


def test_prose_goes_through_the_llm_with_the_template_when_one_is_configured() -> None:
    seen: list[str] = []

    def generate(prompt: str) -> str:
        seen.append(prompt)
        return "问：年假几天？\n答：十五天。\n问：谁批准加班？\n答：直属经理。"

    pairs = list(derive_pairs(CHUNKS[1:2], generate, questions_per_chunk=2))
    assert PROSE in seen[0] and "{context}" not in seen[0]
    assert [(p.question, p.answer, p.origin) for p in pairs] == [
        ("年假几天？", "十五天。", "llm"),
        ("谁批准加班？", "直属经理。", "llm"),
    ]
    assert parse_llm_pairs("胡言乱语") == []


def test_duplicates_dropped_and_split_keeps_documents_whole() -> None:
    pairs = [
        QAPair(f"问题{i % 7}？", "答", f"doc{i % 5}.md", i % 5, i, "ctx", "rule") for i in range(40)
    ]
    pairs.append(QAPair(" 问题1 ? ", "别的", "doc9.md", 9, 99, "ctx", "rule"))
    unique = dedupe(pairs)
    assert len(unique) == 7
    many = [QAPair(f"q{i}", "a", f"doc{i % 10}.md", i % 10, i, "c", "rule") for i in range(50)]
    split_by_document(many, dev_ratio=0.2, seed=1)
    sides = {}
    for p in many:
        sides.setdefault(p.source, set()).add(p.split)
    assert all(len(s) == 1 for s in sides.values())
    assert sum(s == {"dev"} for s in sides.values()) == 2
    before = [p.split for p in many]
    assert [p.split for p in split_by_document(many, 0.2, seed=1)] == before


def fake_retrieve(question: str, k: int) -> list[Hit]:
    # Retrieval "returns" chunks 2..5 in a fixed order: chunk 1 is never found.
    return [c for c in CHUNKS[1:]][:k]


def test_samples_use_the_service_template_with_gold_among_distractors() -> None:
    prompts = load_prompts()
    pairs = split_by_document(dedupe(derive_pairs(CHUNKS)), 0.0)
    rows = build_samples(pairs, fake_retrieve, prompts.qa, prompts.refusal, SampleConfig(3, 0.5))
    answered = [r for r in rows if not r["refusal"]]
    refused = [r for r in rows if r["refusal"]]
    assert len(answered) == len(pairs) and len(refused) == round(len(pairs) * 0.5)
    for r in answered:
        assert r["chunk_id"] in r["context_chunk_ids"] and len(r["context_chunk_ids"]) == 3
        assert r["prompt"].startswith("已知信息:\n[1] ")
        assert r["prompt"].endswith(f"\n根据已知信息回答问题:\n{r['question']}")
        assert r["context"].strip() in r["prompt"] and r["response"] == r["answer"]
    for r in refused:
        assert r["chunk_id"] not in r["context_chunk_ids"] and r["response"] == prompts.refusal
        assert r["answer"] not in r["prompt"].split("根据已知信息回答问题")[0]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_prompt_response_and_chatglm3_conversations(tmp_path: Path) -> None:
    conv = {
        "conversations": [
            {"role": "system", "content": "你是助手"},
            {"role": "user", "content": "你好"},
            {"role": "assistant", "content": "你好！"},
            {"role": "user", "content": "年假？"},
            {"role": "assistant", "content": "十五天"},
        ]
    }
    pr = {"prompt": "年假？", "response": "十五天", "history": [["你好", "你好！"]], "split": "dev"}
    rows = read_training_file(write(tmp_path / "d.jsonl", [json.dumps(conv), "", json.dumps(pr)]))
    assert [r.response for r in rows] == ["十五天", "十五天"]
    assert rows[0].messages[0]["role"] == "system" and len(rows[1].messages) == 4
    train, dev = split_rows(rows)
    assert dev == [rows[1]] and train == [rows[0]]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "is empty"),
        (['{"prompt": "a", "response": "b"}', "{not json"], "line 2: not valid JSON"),
        (['{"question": "a", "answer": "b"}'], "line 1: neither supported format"),
        (['{"prompt": "a", "response": ""}'], "line 1: 'response' must be"),
        (['{"conversations": [{"role": "user", "content": "a"}]}'], "end with an assistant"),
        (["[1, 2]"], "line 1: a row must be a JSON object"),
    ],
)
def test_bad_data_files_name_the_line(tmp_path: Path, lines: list[str], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        read_training_file(write(tmp_path / "bad.jsonl", lines))


def test_rouge_and_bleu_values() -> None:
    assert rouge_n(["a", "b"], ["a", "c"], 1) == 0.5
    assert rouge_n(["a", "b"], ["a", "b"], 2) == 1.0
    assert rouge_l(["a", "x", "b", "c"], ["a", "b", "c"]) == pytest.approx(2 * 0.75 / 1.75)
    assert bleu4(list("年假是十五天"), list("年假是十五天")) == pytest.approx(1.0)
    assert bleu4(list("甲乙"), list("丙丁")) < 0.1
    scores = text_scores(["年假是十五天。"], ["年假是十五天。"])
    assert scores == {"rouge-1": 100.0, "rouge-2": 100.0, "rouge-l": 100.0, "bleu-4": 100.0}


def test_qa_pairs_command_writes_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ft_cli, "open_kb_source", lambda name: (iter(CHUNKS), fake_retrieve))
    app = typer.Typer()
    ft_cli.register(app)
    out = tmp_path / "pairs.jsonl"
    res = CliRunner().invoke(app, ["qa-pairs", "--kb", "demo", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert report["samples"] == len(rows) and report["by_origin"]["qa"] == 1
    assert len(read_training_file(out)) == len(rows)  # its own output trains as is


def test_qa_pairs_from_a_real_kb_with_hybrid_retrieval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kbqa.config import IngestConfig, SplitConfig
    from kbqa.kb import KnowledgeBase
    from tests.fakes import HashEmbedder

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "faq.csv").write_text(
        "问题,答案\n年假有几天？,十五天。\n几点上班？,九点。\n", encoding="utf-8"
    )
    (docs / "hr.md").write_text(f"# 员工手册\n\n## 假期\n\n{PROSE}\n", encoding="utf-8")
    (docs / "money.txt").write_text("费用须在30天内报销，逾期不予受理。\n", encoding="utf-8")
    embedder = HashEmbedder()
    kb = KnowledgeBase.open_or_create(tmp_path / "home", "demo", embedder, "test", SplitConfig())
    kb.ingest([docs], embedder, IngestConfig())
    kb.close()
    monkeypatch.setenv("KBQA_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("kbqa.embed.factory.load_embedder", lambda spec, config: embedder)
    app = typer.Typer()
    ft_cli.register(app)
    out = tmp_path / "pairs.jsonl"
    args = ["qa-pairs", "--kb", "demo", "--out", str(out), "--dev-ratio", "0.34", "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert {r["origin"] for r in rows} == {"qa", "rule"}
    assert any(r["question"] == "年假有几天？" and r["response"] == "十五天。" for r in rows)
    sides: dict[str, set[str]] = {}
    for r in rows:
        sides.setdefault(r["source"], set()).add(r["split"])
        if not r["refusal"]:
            assert r["context"].strip() in r["prompt"]
    assert all(len(s) == 1 for s in sides.values()) and {"train", "dev"} <= set().union(
        *sides.values()
    )
