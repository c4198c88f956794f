"""Templates load checked; packing drops history first, then the lowest-ranked chunks."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbqa.errors import BadInput
from kbqa.prompt import (
    DEFAULT_QA_TEMPLATE,
    DEFAULT_REFUSAL,
    format_context,
    load_prompts,
    load_template,
    pack_prompt,
)
from kbqa.types import Hit

REPO = Path(__file__).resolve().parent.parent


def hit(i: int, text: str) -> Hit:
    return Hit(chunk_id=i, doc_id=1, source="faq.md", text=text, score=1.0 - i / 10)


def chars(text: str) -> int:  # one token per character keeps the arithmetic readable
    return len(text)


def test_shipped_templates_equal_builtin_copies():
    assert (REPO / "prompts/knowledge_qa.txt").read_text(encoding="utf-8") == DEFAULT_QA_TEMPLATE
    assert DEFAULT_QA_TEMPLATE == "已知信息:\n{context}\n根据已知信息回答问题:\n{question}"
    prompts = load_prompts()
    assert prompts.qa == DEFAULT_QA_TEMPLATE
    assert prompts.refusal == DEFAULT_REFUSAL


def test_missing_placeholder_names_the_file(tmp_path):
    (tmp_path / "knowledge_qa.txt").write_text("已知信息:\n{context}\n", encoding="utf-8")
    (tmp_path / "refusal.txt").write_text("无法回答。", encoding="utf-8")
    with pytest.raises(BadInput, match=r"knowledge_qa\.txt.*\{question\}"):
        load_prompts(tmp_path)
    with pytest.raises(BadInput, match="does not exist"):
        load_template(tmp_path / "nope.txt", ("context",))
    (tmp_path / "x.txt").write_text("{context} {question} {other}", encoding="utf-8")
    with pytest.raises(BadInput, match="other"):
        load_template(tmp_path / "x.txt", ("context", "question"))


def test_format_context_numbers_hits_in_rank_order():
    assert format_context([hit(0, "年假十五天。"), hit(1, " 报销三十天内。\n")]) == (
        "[1] 年假十五天。\n[2] 报销三十天内。"
    )


def test_pack_fits_everything_when_it_can():
    hits = [hit(0, "年假十五天。"), hit(1, "报销三十天内。")]
    packed = pack_prompt(DEFAULT_QA_TEMPLATE, "年假几天？", hits, [("你好", "您好")], 1000, chars)
    assert (
        packed.prompt
        == "已知信息:\n[1] 年假十五天。\n[2] 报销三十天内。\n根据已知信息回答问题:\n年假几天？"
    )
    assert packed.hits_used == hits and packed.history_used == [("你好", "您好")]
    assert packed.tokens == len(packed.prompt) + 4


def test_pack_trims_oldest_history_then_lowest_hits():
    hits = [hit(i, f"第{i}条" + "字" * 40) for i in range(4)]
    history = [("旧问题" * 10, "旧回答" * 10), ("新问题", "新回答")]
    full = pack_prompt(DEFAULT_QA_TEMPLATE, "问?", hits, history, 10_000, chars)
    # Room for everything but the old turn: it goes, all hits stay.
    budget = full.tokens - 1
    packed = pack_prompt(DEFAULT_QA_TEMPLATE, "问?", hits, history, budget, chars)
    assert packed.history_used == [("新问题", "新回答")] and len(packed.hits_used) == 4
    # Less room: all history goes, then hits from the bottom of the ranking.
    budget = len(pack_prompt(DEFAULT_QA_TEMPLATE, "问?", hits[:2], [], 10_000, chars).prompt)
    packed = pack_prompt(DEFAULT_QA_TEMPLATE, "问?", hits, history, budget, chars)
    assert packed.history_used == [] and packed.hits_used == hits[:2]
    assert packed.tokens <= budget and "[3]" not in packed.prompt


def test_pack_keeps_braces_in_chunks_literal():
    packed = pack_prompt(
        DEFAULT_QA_TEMPLATE, "{question}?", [hit(0, "a {context} b")], [], 500, chars
    )
    assert "[1] a {context} b" in packed.prompt and packed.prompt.endswith("{question}?")


def test_pack_raises_when_not_one_chunk_fits():
    hits = [hit(0, "字" * 500)]
    with pytest.raises(BadInput, match=r"budget is 100 tokens.*best chunk 50\d.*smaller chunks"):
        pack_prompt(DEFAULT_QA_TEMPLATE, "问?", hits, [("a", "b")], 100, chars)
    with pytest.raises(BadInput, match="max_new_tokens"):
        pack_prompt(DEFAULT_QA_TEMPLATE, "问?", hits, [], 0, chars)
