"""Refusal signals: answer type, unknown topic words, cross-lingual questions, script folding."""

from __future__ import annotations

from kbqa.config import AskConfig
from kbqa.retrieval.lexical import LexicalIndex
from kbqa.retrieval.signals import (
    answer_type,
    foreign,
    has_type,
    topic_words,
    unknown_degree,
    unknown_kind,
    unknown_share,
)
from kbqa.script import to_simplified
from kbqa.text import tokenize

DOCS = ["员工每年享有5天带薪年假。", "出差住宿标准为每晚600元。", "远程办公需要连接公司VPN。"]


def index() -> LexicalIndex:
    lex = LexicalIndex()
    lex.add([1, 2, 3], DOCS)
    return lex


def test_answer_types():
    assert answer_type("食堂几点开饭") == "time"
    assert answer_type("上海办公室在哪里") == "place"
    assert answer_type("公司股票代码是多少") == "number"
    assert answer_type("为什么要打卡") is None
    assert has_type("number", "每晚600元") and not has_type("number", "按规定执行")
    assert has_type("time", "9:00至18:00") and not has_type("time", "在三楼")


def test_a_topic_word_the_kb_never_mentions_counts_as_unknown():
    lex = index()
    assert "健身房" in topic_words("公司有健身房吗？")
    assert unknown_share("公司有健身房吗？", lex.known, lex.idf, DOCS[:1]) > 0.5
    assert unknown_share("年假有几天？", lex.known, lex.idf, DOCS[:1]) == 0.0


def test_a_compound_whose_telling_part_the_kb_lacks_is_not_known_by_its_other_part():
    lex = LexicalIndex()
    lex.add([1, 2], ["客户数据和源代码属于机密级。", "住房公积金比例12%，通讯补贴200元。"])
    # 股票代码: 代码 is known (源代码), 股票 is not: the question is about 股票
    assert unknown_degree("股票代码", lex.known) > 0.5
    assert unknown_share("公司股票代码是多少", lex.known, lex.idf, ["源代码属于机密级。"]) > 0.5
    # 住房补贴: both parts are known, the benefit itself never occurs
    assert unknown_degree("住房补贴", lex.known) == 0.5
    assert unknown_degree("公积金", lex.known) == 0.0
    # 股票代码: a compound whose specifier the KB lacks and whose head it has
    assert unknown_kind("公司股票代码是多少", lex.known, ["源代码属于机密级。"])
    # 高温补贴: an unknown specifier of a known head
    assert unknown_kind("高温补贴每月发多少", lex.known, ["通讯补贴200元。"])
    assert not unknown_kind("通讯补贴每月多少", lex.known, ["通讯补贴200元。"])


def test_grammar_jieba_glues_into_words_is_no_topic():
    # 能到 (modal + complement) and HMM guesses such as 次会 are not terms the KB could lack
    assert topic_words("报销的钱几天能到账？") == ["报销"]
    assert "次会" not in topic_words("一个月迟到4次会怎么样？")


def test_english_on_a_chinese_kb_is_cross_lingual_but_a_chinese_off_topic_question_is_not():
    lex = index()
    q = "How many days of annual leave do I get?"
    assert foreign(q, tokenize(q), lex.known, lex.mostly_han())
    q = "红烧肉怎么做"
    assert not foreign(q, tokenize(q), lex.known, lex.mostly_han())
    # one Latin acronym the Chinese KB uses (VPN) does not make an English question Chinese
    q = "How do I connect to the VPN from home?"
    assert foreign(q, tokenize(q), lex.known, lex.mostly_han())


def test_traditional_script_is_folded_for_the_lexical_index():
    assert to_simplified("臺北辦公室") == "台北办公室"
    assert to_simplified("VPN 9:00") == "VPN 9:00"
    lex = LexicalIndex()
    lex.add([1, 2], ["台北办公室位于信义区松仁路。", "年假5天。"])
    assert lex.search("臺北辦公室在哪裡", 1)[0].tolist() == [1]
    lex = LexicalIndex()
    lex.add([1, 2], ["台北辦公室位於信義區松仁路。", "年假5天。"])
    assert lex.search("台北办公室在哪里", 1)[0].tolist() == [1]


def test_the_refusal_override_is_kept():
    assert AskConfig(refusal_threshold=0.95).refusal_threshold == 0.95


def test_a_question_in_a_language_the_kb_lacks_is_judged_by_the_embedding_alone(tmp_path):
    import numpy as np

    from kbqa.ask import Asker
    from kbqa.prompt import load_prompts
    from kbqa.retrieval.retriever import FOREIGN_SHIFT, FOREIGN_UNKNOWN_WEIGHT, Retrieval
    from kbqa.types import Hit
    from tests.api_fixtures import build_kb
    from tests.corpus import LEAVE, TRAVEL
    from tests.fakes import HashEmbedder

    hit = Hit(1, 1, "a.md", "年假5天。", 0.8)
    r = Retrieval([hit], np.zeros(3, np.float32), coverage=0.5, unknown=1.0, foreign=True)
    # no coverage lift (the dictionary's words are the KB's by choice), a lighter penalty for
    # words with no translation in the KB (kbqa.retrieval.bridge)
    assert r.relevance == 0.8 + FOREIGN_SHIFT - FOREIGN_UNKNOWN_WEIGHT
    e = HashEmbedder()
    kb = build_kb(tmp_path / "home", "demo", e, {"leave.md": LEAVE, "travel.md": TRAVEL})
    asker = Asker(kb, e, None, load_prompts(), AskConfig(refusal_threshold=-1.0))
    for q in ("연차 휴가는 며칠입니까?", "How many days of annual leave?"):
        a = asker.ask(q, debug=True)
        assert a.debug["cross_lingual"] and not a.refused and a.answer.endswith("]")


POLICIES = [
    "员工每年享有5天带薪年假，满十年享有10天。",
    "出差住宿标准为每晚600元，经理每晚650元。",
    "远程办公需要连接公司VPN，账号由IT部开通。",
    "报销单据须在费用发生后30天内提交财务部。",
    "新员工试用期为三个月，转正由直属主管评估。",
    "加班满4小时可申请调休半天，调休须在三个月内用完。",
    "公务车使用须提前一天在行政系统预约。",
    "员工体检每年一次，由人力资源部统一安排。",
    "绩效考核每年12月进行，结果分为五个等级。",
    "婚假为13天，须在登记结婚后一年内休完。",
    "仓库晚班为15:00至23:00，夜班补贴每晚50元。",
    "办公用品每月领取一次，由行政部发放。",
]


def _policy_kb(tmp_path):
    """A KB of POLICIES, one file each, with the hash embedder."""
    from kbqa.config import IngestConfig, SplitConfig
    from kbqa.kb import KnowledgeBase
    from tests.fakes import HashEmbedder

    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(POLICIES):
        (docs / f"p{i}.txt").write_text(text, encoding="utf-8")
    e = HashEmbedder()
    kb = KnowledgeBase.open_or_create(tmp_path / "home", "demo", e, "test", SplitConfig())
    kb.ingest([docs], e, IngestConfig())
    return kb, e


def test_calibration_places_the_threshold_with_keyword_probes_and_their_swapped_twins(tmp_path):
    from kbqa.retrieval.refusal import METHOD, calibrate, keyword_probe, swap_keyword
    from kbqa.retrieval.retriever import Retriever

    kb, e = _policy_kb(tmp_path)
    lexical = kb.indexes.lexical
    probe, words = keyword_probe(POLICIES[5], lexical)
    assert probe.endswith("是什么？") and 1 <= len(words) <= 3 and words[0] in POLICIES[5]
    # the rarest word goes first, so it is the one swapped out
    assert lexical.idf(words[0]) >= max(lexical.idf(w) for w in words)
    assert swap_keyword(words, "游泳馆").startswith("游泳馆") and words[0] not in swap_keyword(
        words, "游泳馆"
    )
    cal = calibrate(Retriever(kb, e))
    assert cal.method == METHOD and cal.keyword_p05 != 0.0 and cal.swapped_p50 != 0.0
    # at most the keyword probes' 5th percentile, at least the off-topic median
    assert cal.offtopic_p50 <= cal.threshold <= max(cal.keyword_p05, cal.offtopic_p50)
    assert 0.0 <= cal.swapped_refused <= 1.0


def test_a_kb_too_small_for_swapped_probes_keeps_the_probe_vs_off_topic_placement(tmp_path):
    from kbqa.config import IngestConfig, SplitConfig
    from kbqa.kb import KnowledgeBase
    from kbqa.retrieval.refusal import calibrate
    from kbqa.retrieval.retriever import Retriever
    from tests.fakes import HashEmbedder

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(POLICIES[0], encoding="utf-8")
    e = HashEmbedder()
    kb = KnowledgeBase.open_or_create(tmp_path / "home", "demo", e, "test", SplitConfig())
    kb.ingest([docs], e, IngestConfig())
    cal = calibrate(Retriever(kb, e))
    assert cal.keyword_p05 == 0.0 and cal.swapped_p50 == 0.0
    lo, hi = sorted((cal.offtopic_p90, cal.probe_p10))
    assert lo <= cal.threshold <= hi


def test_a_question_naming_its_unit_wants_a_number_in_that_unit():
    import numpy as np

    from kbqa.retrieval.retriever import UNIT_PENALTY, Retrieval
    from kbqa.retrieval.signals import has_unit, wanted_unit

    assert wanted_unit("成都分公司的员工人数是多少？") == "人|名"
    assert wanted_unit("婚假有幾天") == "天"  # Traditional folded first
    assert wanted_unit("多少钱以上不能收") == "元|块|万"
    assert wanted_unit("总部几点上班") is None and wanted_unit("为什么要打卡") is None
    assert has_unit("人|名", "在职员工约 120 名") and has_unit("天", "婚假十三天")
    assert not has_unit("人|名", "联系电话：028-8555-4321") and has_unit(None, "任何文字")
    found = Retrieval([], np.zeros(2, np.float32), pool_cosine=0.9)
    base = found.relevance
    found.unit_ok = False
    assert abs(base - found.relevance - UNIT_PENALTY) < 1e-9
    assert found.signals()["answer_unit_found"] is False


def test_a_share_of_the_headcount_wants_a_percentage_not_a_count_of_people():
    from kbqa.retrieval.signals import has_unit, wanted_unit

    unit = wanted_unit("绩效拿B的人数比例上限是多少？")
    assert unit is None and has_unit(unit, "等级：B；人数比例：约50%")


def test_a_question_about_one_office_is_not_answered_by_another_offices_rule():
    import numpy as np

    from kbqa.retrieval.retriever import PLACE_PENALTY, Retrieval
    from kbqa.retrieval.signals import asked_places, place_named

    taipei = "颱風來襲時，依台北市政府公告停止上班，停班當日薪資照發。"
    offices = "分公司：杭州总部；地址：杭州市滨江区"
    assert asked_places("杭州总部刮台风停班的话，当天工资照发吗？") == ["杭州"]
    assert asked_places("台北那边的员工交通补贴有多少？") == ["台北"]
    # jieba tags 城市 and 台风 as places, and 我们 stands before 分公司: none is an office's place
    for q in ("去一线城市出差住宿标准是多少？", "台风天停班吗？", "我们分公司也按这个规定吗？"):
        assert asked_places(q) == []
    # the best passage is the Taipei office's rule, and only the list of offices names 杭州
    assert not place_named(["杭州"], [taipei, offices])
    # no passage names the office at all
    assert not place_named(["深圳"], ["员工餐补每月300元", "总部开通3条班车"])
    # the Taipei office's own question, a company-wide rule, and a question naming no office
    assert place_named(["台北"], [taipei]) and place_named(["杭州"], ["停班工资照发", offices])
    assert place_named([], [taipei])
    found = Retrieval([], np.zeros(2, np.float32), pool_cosine=0.9)
    base = found.relevance
    found.place_ok = False
    assert abs(base - found.relevance - PLACE_PENALTY) < 1e-9
    assert found.signals()["place_found"] is False


def test_the_writer_refits_the_threshold_only_when_a_fifth_of_the_kb_is_new(tmp_path):
    """One uploaded file must not pay a whole calibration (hundreds of searches) at checkpoint."""
    from kbqa.config import IngestConfig
    from kbqa.kb import KnowledgeBase
    from kbqa.retrieval.refusal import EXTRA_KEY

    kb, e = _policy_kb(tmp_path)
    first = kb.manifest.extra[EXTRA_KEY]
    chunks = kb.store.counts()["chunks"]
    assert first["last_chunk_id"] == kb.store.last_chunk_id() and first["chunks"] == chunks

    # One small file, then the same name replaced: the fit stays (its time and its count).
    note = tmp_path / "note.txt"
    for text in ("临时通知：周五下午停电。", "临时通知：周六上午停水。"):
        note.write_text(text, encoding="utf-8")
        kb.ingest([note], e, IngestConfig())
        assert kb.manifest.extra[EXTRA_KEY] == first
    assert KnowledgeBase.open(tmp_path / "home", "demo").manifest.extra[EXTRA_KEY] == first

    # More than a fifth of the KB added since the fit: refitted, for the KB as it is now.
    more = tmp_path / "more"
    more.mkdir()
    for i, text in enumerate(POLICIES[: len(POLICIES) // 3 + 1]):
        (more / f"q{i}.txt").write_text(text.replace("。", "，另行通知。", 1), encoding="utf-8")
    kb.ingest([more], e, IngestConfig())
    refit = kb.manifest.extra[EXTRA_KEY]
    assert refit["created_at"] > first["created_at"]
    assert refit["chunks"] == kb.store.counts()["chunks"] > chunks
