"""Follow-ups condensed before retrieval; history cleaned (empty, overlong, too many turns)."""

from __future__ import annotations

from kbqa.ask import Asker
from kbqa.config import AskConfig
from kbqa.prompt import load_prompts
from kbqa.retrieval.condense import (
    MAX_TURN_CHARS,
    MAX_TURNS,
    clean_history,
    condense,
    condense_rules,
)
from tests.api_fixtures import build_kb
from tests.corpus import LEAVE, TRAVEL, VPN
from tests.fakes import HashEmbedder

TABLE = "# 住宿标准\n\n| 级别 | 一线城市 |\n| --- | --- |\n| 普通员工 | 450 |\n| 经理 | 650 |\n"


def test_elliptical_follow_up_carries_the_earlier_question():
    q = condense_rules("那经理呢？", [("普通员工出差住宿标准是多少？", "450元")])
    assert q.startswith("经理") and "住宿标准是多少" in q


def test_anaphoric_follow_up_takes_the_earlier_subject():
    q = condense_rules("它的电话是多少？", [("深圳分公司的负责人是谁？", "周敏")])
    assert "深圳" in q and "电话" in q and "它" not in q


def test_a_standalone_question_and_a_follow_up_without_history_are_unchanged():
    assert condense("年假有几天？", [("出差住宿标准是多少？", "450")]) == "年假有几天？"
    assert condense("那经理呢？", []) == "那经理呢？"


def test_history_empty_overlong_and_too_many_turns():
    turns, notices = clean_history([("", ""), ("  ", None), ("年假几天", "5天")])
    assert turns == [("年假几天", "5天")] and notices == []
    turns, notices = clean_history([("长" * (MAX_TURN_CHARS + 50), "答")])
    assert len(turns[0][0]) == MAX_TURN_CHARS and "cut" in notices[0]
    turns, notices = clean_history([(f"问题{i}", f"答{i}") for i in range(100)])
    assert len(turns) == MAX_TURNS and turns[-1] == ("问题99", "答99") and "100 turns" in notices[0]


class RewriteLLM:
    """A generator that rewrites every follow-up the same way (the rewrite template's job)."""

    def __init__(self, text: str) -> None:
        self.text, self.prompts = text, []

    def generate(self, prompt, history=(), config=None):
        self.prompts.append(prompt)
        return self.text


def test_with_an_llm_the_rewrite_template_is_used_and_a_failure_falls_back():
    llm = RewriteLLM("经理出差住宿标准是多少？")
    template = load_prompts().condense
    assert "{history}" in template
    history = [("普通员工出差住宿标准是多少？", "450元")]
    assert condense("那经理呢？", history, llm, template) == "经理出差住宿标准是多少？"
    assert "普通员工出差住宿标准是多少" in llm.prompts[0]

    class Broken:
        def generate(self, *a, **k):
            raise RuntimeError("down")

    assert condense("那经理呢？", history, Broken(), template).startswith("经理")


def test_ask_searches_the_standalone_question_and_answers_the_follow_up(tmp_path):
    e = HashEmbedder()
    docs = {"leave.md": LEAVE, "travel.md": TRAVEL, "vpn.txt": VPN, "hotel.md": TABLE}
    kb = build_kb(tmp_path / "home", "demo", e, docs)
    asker = Asker(kb, e, None, load_prompts(), AskConfig(refusal_threshold=-1.0))
    history = [("普通员工一线城市住宿标准是多少？", "级别：普通员工；一线城市：450")]
    a = asker.ask("那经理呢？", history=history, debug=True)
    assert a.debug["standalone_question"].startswith("经理")
    assert "650" in a.answer and a.question == "那经理呢？"
    many = asker.ask("那经理呢？", history=history * 100)
    assert any("turns" in n for n in a.debug.get("notices", []) + many.debug["notices"])


def test_every_edge_condenses_the_follow_up_with_its_history(tmp_path):
    from tests.api_fixtures import client_for

    e = HashEmbedder()
    home = tmp_path / "home"
    build_kb(home, "demo", e, {"travel.md": TRAVEL, "leave.md": LEAVE, "hotel.md": TABLE})
    first = "普通员工一线城市住宿标准是多少？"
    with client_for(home, e, refusal_threshold=-1.0) as c:
        body = {"question": "那经理呢？", "history": [[first, "450"]], "debug": True}
        r = c.post("/v1/kbs/demo/ask", json=body).json()
        assert r["debug"]["standalone_question"].startswith("经理") and "650" in r["answer"]
        messages = [
            {"role": "user", "content": first},
            {"role": "assistant", "content": "450"},
            {"role": "user", "content": "那经理呢？"},
        ]
        r = c.post("/v1/chat/completions", json={"model": "kbqa/demo", "messages": messages})
        assert "650" in r.json()["choices"][0]["message"]["content"]
        r = c.post("/", json={"prompt": "那经理呢？", "history": [[first, "450"]]})
        assert "650" in r.json()["response"]
        alone = c.post("/v1/kbs/demo/ask", json={"question": "那经理呢？", "debug": True}).json()
        assert alone["debug"]["standalone_question"] == "那经理呢？"  # no history: as asked


def test_rest_history_of_100_turns_is_trimmed_with_a_notice_and_bad_turns_are_cleaned(tmp_path):
    from tests.api_fixtures import client_for

    e = HashEmbedder()
    home = tmp_path / "home"
    build_kb(home, "demo", e, {"travel.md": TRAVEL, "leave.md": LEAVE})
    turns = [["", ""], ["长" * 5000, "答"]] + [[f"问题{i}", f"答{i}"] for i in range(98)]
    with client_for(home, e, refusal_threshold=-1.0) as c:
        r = c.post("/v1/kbs/demo/ask", json={"question": "年假有几天？", "history": turns})
        assert r.status_code == 200, r.text
        assert any("100 turns" in n or "99 turns" in n for n in r.json()["debug"]["notices"])
        r = c.post("/", json={"prompt": "年假有几天？", "history": turns})
        assert r.status_code == 200 and r.json()["response"]
