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
    focus_of,
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


def test_an_anaphoric_follow_up_carries_the_entity_not_the_attribute_asked_before():
    # 它 is IT服务台; its 分机 was the earlier question's ask, not part of the subject
    q = condense_rules("它几点下班？", [("IT服务台的分机是多少？", "8000")])
    assert q.startswith("IT服务台") and "分机" not in q and "多少" not in q and "下班" in q
    q = condense_rules("它的地址在哪？", [("深圳分公司负责人是谁？", "周敏")])
    assert "深圳分公司" in q and "负责人" not in q and "谁" not in q
    # 其他 holds a pronoun's character but is not one
    q = condense_rules("那去其他城市呢？", [("经理去一线城市出差住宿标准多少？", "650")])
    assert q == "经理去其他城市出差住宿标准多少？"


def test_an_elliptical_follow_up_replaces_the_slot_of_its_kind():
    def swap(previous: str, follow_up: str) -> str:
        return condense_rules(follow_up, [(previous, "")])

    # a number with its unit, and the word it counts
    assert swap("工作三年有几天年假？", "那干满十年呢？") == "干满十年有几天年假？"
    assert swap("司龄五年年假有几天？", "那工作两年呢？") == "工作两年年假有几天？"
    # a role
    assert swap("试用期员工离职要提前几天通知？", "正式员工呢？") == "正式员工离职要提前几天通知？"
    q = swap("普通员工去一线城市出差每晚住宿标准是多少？", "那经理呢？")
    assert q.startswith("经理去一线城市") and "普通员工" not in q
    # a place: a name alone changes only the name part of the earlier place
    assert swap("深圳分公司在哪里？", "成都的呢？") == "成都分公司在哪里？"
    assert swap("总部几点下班？", "台北辦公室呢？") == "台北办公室几点下班？"
    # a period, with the follow-up's own modifier
    assert swap("工作日加班费怎么算？", "那法定节假日呢？") == "法定节假日加班费怎么算？"
    # a noun of the same head (假), even where jieba cuts the earlier one in two
    assert swap("结婚能休几天婚假？", "产假呢？") == "结婚能休几天产假？"
    assert swap("年假有几天？", "那病假呢？") == "病假有几天？"
    # nothing of its kind in the earlier question: both are searched
    assert swap("出差住酒店每晚能报多少钱？", "那经理呢？") == "经理，出差住酒店每晚能报多少钱？"


def test_a_subjectless_follow_up_asks_about_the_earlier_subject():
    row = "分公司：成都分公司；负责人：刘洋；联系电话：028-8555-4321"
    # no pronoun, 那 or 呢: its one noun is an attribute the earlier turn's answer holds
    q = condense_rules("电话多少？", [("成都分公司负责人是谁？", row)])
    assert q.startswith("成都分公司") and q.endswith("电话多少？")
    # no noun at all: a time asked of a verb; the earlier question's verb and time stay out
    assert condense_rules("几点下班？", [("总部早上几点上班？", "8:30")]) == "总部几点下班？"
    assert condense("要发票吗？", [("出差每天的餐饮补贴多少？", "100元，无需发票")]).startswith(
        "餐饮补贴"
    )
    assert focus_of("电话多少？") == ""
    # the ask's own nouns (什么时候) and a verb frame's (多久内) are no subject; with no noun at
    # all a longer follow-up is subjectless too
    q = condense_rules("什么时候能开好？", [("新员工的邮箱是哪个部门给开的？", "IT部")])
    assert "邮箱" in q and q.endswith("什么时候能开好？")
    q = condense_rules("推不掉的话要多久内交上去？", [("供应商送的东西能收吗？", "不能")])
    assert q.startswith("供应商") and q.endswith("推不掉的话要多久内交上去？")


def test_a_follow_up_that_points_back_keeps_its_words_and_gains_the_earlier_question():
    # 那天 / 那边 / that office point at the earlier turn: nothing to substitute, all to add
    q = condense_rules("停班那天還有薪水嗎？", [("颱風來了台北那邊停不停班？", "")])
    assert q.startswith("停班那天") and "颱風" in q
    q = condense_rules("Where exactly is that office?", [("刘洋管的是哪边的分公司？", "")])
    assert "that office" in q and "刘洋" in q
    # English is measured in words: a short English follow-up with "And" is one
    q = condense_rules("And what's the monthly amount?", [("台北同事有沒有捷運交通補助？", "")])
    assert "monthly amount" in q and "交通" in q
    # after a place, 那边 is that place: the question stands alone
    q = "台北那边的员工每个月交通补贴有多少？"
    assert condense_rules(q, [("总部中午几点到几点休息？", "")]) == q
    # 那天 is no lead 那 to strip, and a long question that says "there" stands alone
    assert not condense_rules("那天", [("年假几天？", "")]).startswith("天")
    long = "How many days of annual leave does an employee who has worked there ten years get?"
    assert condense_rules(long, [("年假几天？", "")]) == long


def test_a_short_question_with_a_subject_of_its_own_stands_alone():
    row = [("成都分公司负责人是谁？", "负责人：刘洋；联系电话：028-8555-4321")]
    # a new topic (年假, 食堂), a name or role, or a how-question are not about the earlier one
    for q in ("年假有几天？", "食堂几点开饭？", "深圳在哪？", "经理几点下班？", "怎么请假？"):
        assert condense_rules(q, row) == q


def test_only_an_elliptical_follow_up_names_a_row_to_pick():
    assert focus_of("那经理呢？") == "经理"
    # 它几点下班: 下班 is what is asked, not a row's name (a bus's 下班 17:45 is not the desk's)
    assert focus_of("它几点下班？") == ""


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


def test_a_follow_up_the_rules_miss_is_searched_again_with_the_earlier_question(tmp_path):
    """Refused alone, a short question after a turn is searched with the earlier question; it
    keeps that answer only if it clears the threshold and holds the question's own topic words,
    so an unrelated question (股票代码) after the same turn stays refused."""
    from kbqa.retrieval.retriever import Retriever

    e = HashEmbedder()
    kb = build_kb(tmp_path / "home", "demo", e, {"leave.md": LEAVE, "vpn.txt": VPN})
    earlier = "员工入职满一年后每年享有几天带薪年假？"
    history = [(earlier, "5天")]
    follow_up, unrelated = "满十年呢要怎么算？", "公司股票代码是多少？"
    assert condense(follow_up, history) == follow_up  # the rules do not see a follow-up here
    retriever = Retriever(kb, e, AskConfig().retrieve)

    def between(question: str) -> float:
        """A threshold that refuses ``question`` alone and passes it with the earlier one."""
        core = question.rstrip("？")
        alone = retriever.retrieve(question, 8).relevance
        together = retriever.retrieve(f"{core}，{earlier}", 8).relevance
        assert together > alone
        return (alone + together) / 2

    asker = Asker(kb, e, None, load_prompts(), AskConfig(refusal_threshold=between(follow_up)))
    assert asker.ask(follow_up).refused  # without the turn there is nothing to lean on
    a = asker.ask(follow_up, history=history, debug=True)
    assert not a.refused and a.sources[0].source.endswith("leave.md")
    assert a.debug["standalone_question"] == f"满十年呢要怎么算，{earlier}"
    guarded = Asker(kb, e, None, load_prompts(), AskConfig(refusal_threshold=between(unrelated)))
    assert guarded.ask(unrelated, history=history).refused  # no passage holds 股票代码
