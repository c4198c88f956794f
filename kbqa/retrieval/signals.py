"""Question signals for refusal and answer picking: answer type, salient terms, script."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from kbqa.script import to_simplified

# What a question asks for, by its question word; checked in this order (几点 is a time, not a
# number). English patterns serve English questions on any KB.
_TYPES = (
    (
        "time",
        re.compile(r"什么时候|何时|几点|哪天|几月|几号|哪一年|哪年|几时|\bwhen\b|what time", re.I),
    ),
    ("place", re.compile(r"哪里|哪儿|在哪|什么地方|地址|地点|\bwhere\b", re.I)),
    ("person", re.compile(r"谁|哪位|\bwho\b", re.I)),
    (
        "number",
        re.compile(
            r"多少|几|多久|多长|多大|多高|多远|多快|比例|\bhow (many|much|long|fast|old)\b", re.I
        ),
    ),
)
_HAS = {
    "number": re.compile(r"\d|[一二两三四五六七八九十百千万半]"),
    "time": re.compile(
        r"\d{1,2}\s*[:：]\s*\d{2}|\d+\s*(?:月|日|号|点|时|年)|[上下]午|周[一二三四五六日]|"
        r"每[年月周天日]|工作日|次年|当天|之前|以内|内"
    ),
    "place": re.compile(r"[省市区县路街道号楼层室]|大厦|园区|门户|网站|页面|模块|APP|部", re.I),
    "person": re.compile(r"[部组处]|经理|主管|负责人|总监|本人|员工"),
}
_ASKS = re.compile(r"[几哪谁啥]|多少|什么|怎么|怎样|如何|多久|多长|\d")  # question words, numbers
_QUESTION_WORD = re.compile(r"[几哪谁啥]|多少|什么|怎么|怎样|如何|多久|多长|多大")


def is_question_word(token: str) -> bool:
    """几天, 多少钱, 怎么样: what the question asks with, never found in the answer's text."""
    return bool(_QUESTION_WORD.search(token))


_HAN = re.compile(r"[\u4e00-\u9fff]")


def answer_type(question: str) -> str | None:
    """``number``, ``time``, ``place``, ``person`` or None (a why/how/yes-no question).

    >>> answer_type("食堂几点开饭"), answer_type("上海办公室在哪里"), answer_type("年假有几天")
    ('time', 'place', 'number')
    """
    for name, pattern in _TYPES:
        if pattern.search(question):
            return name
    return None


# 几点 / what time asks for a clock time: narrower than "time", where 当天 or 之前 may answer a
# 什么时候 question.
_CLOCK_ASKED = re.compile(r"几点|几时|what time", re.I)
_CLOCK = re.compile(r"\d{1,2}\s*[:：]\s*\d{2}|\d{1,2}\s*[点時时]|[上下]午\s*\d|[早晚]上\s*\d")


def wants_clock(question: str) -> bool:
    """Whether the question asks for a time of day."""
    return bool(_CLOCK_ASKED.search(question))


def has_clock(text: str) -> bool:
    """Whether ``text`` states a time of day.

    >>> has_clock("报到时间为上午 9:00"), has_clock("入职当天开通")
    (True, False)
    """
    return bool(_CLOCK.search(text))


def has_type(kind: str | None, text: str) -> bool:
    """Whether ``text`` holds something of the kind asked for (any text, for no kind).

    >>> has_type("number", "年假5天"), has_type("number", "年假按司龄计算")
    (True, False)
    """
    return kind is None or bool(_HAS[kind].search(text))


# A 几/多少 question naming its unit (几天, 多少钱, 员工人数是多少) wants a number with that unit;
# passages with only other numbers (a phone number for 员工人数) do not answer it.
_UNIT_ASKED = re.compile(
    r"(?:几|多少)\s*(个月|小时|分钟|公里|天|元|钱|块|次|人|名|年|周|倍)|(人数)(?!比例|占比)"
)  # 人数比例 (a grade's share of the headcount) wants a percentage, not N人
_UNIT_ALIASES = {"钱": "元|块|万", "块": "元|块", "人": "人|名", "名": "人|名", "人数": "人|名"}
# A number as documents and questions write it: 10, 1.5, 十五, 两, 半.
NUMBER = r"(?:\d+(?:\.\d+)?|[一二两三四五六七八九十百千万半]+)"
_COUNT = NUMBER + r"\s*(?:{})"


def wanted_unit(question: str) -> str | None:
    """The unit a 几/多少 question asks its number in, as a regex alternation, or None.

    >>> wanted_unit("年假有几天"), wanted_unit("员工人数是多少"), wanted_unit("总部在哪里")
    ('天', '人|名', None)
    >>> wanted_unit("拿B的人数比例上限是多少")
    """
    m = _UNIT_ASKED.search(to_simplified(question))
    if not m:
        return None
    unit = m.group(1) or m.group(2)
    return _UNIT_ALIASES.get(unit, unit)


def has_unit(unit: str | None, text: str) -> bool:
    """Whether ``text`` holds a number in ``unit`` (any text, for no unit).

    >>> has_unit("天", "年假 5 天"), has_unit("人|名", "电话：028-8555-4321")
    (True, False)
    """
    return unit is None or bool(re.search(_COUNT.format(unit), to_simplified(text)))


def mostly_han(words: Iterable[str]) -> bool:
    """Whether most of these words (a KB's vocabulary) are Chinese.

    >>> mostly_han(["年假", "vpn", "报销"])
    True
    """
    words = list(words)
    return sum(bool(_HAN.search(w)) for w in words) * 2 > len(words)


def content_tokens(tokens: Iterable[str]) -> list[str]:
    """The tokens that can name a topic: Han words of 2+ characters and Latin words of 2+ letters.

    jieba's search mode also emits the single characters of a word; they say little.
    """
    return [t for t in dict.fromkeys(tokens) if len(t) >= 2 and not _ASKS.search(t)]


# jieba part-of-speech tags of words that name a topic: nouns, verbs, English, idioms, times,
# places (国外: s).
_TOPICAL = ("n", "v", "eng", "l", "t", "j", "i", "s")


def topic_words(question: str) -> list[str]:
    """The question's words that can name what it is about (jieba parts of speech).

    >>> topic_words("公司有健身房吗？")
    ['公司', '健身房']
    """
    from kbqa.text import tagged

    words = [
        word.lower()
        for word, flag in tagged(to_simplified(question))
        if flag.startswith(_TOPICAL) and flag != "vd" and not _grammatical(word, flag)
    ]
    return content_tokens(words)


# A verb glued to a modal before it or a complement after it (能到, 不算, 拿到, 回来) says how,
# not what: a cut of the question's grammar, never a topic the KB could lack.
_GLUED = re.compile(r"^[能会可要不没别].|.[到完了着过得来]$")


def _grammatical(word: str, flag: str) -> bool:
    """A word jieba made of the question's grammar: a modal or complement verb, or a guess.

    jieba's HMM joins characters its dictionary has no word for (4次会怎么样 -> 次会, 时间内用掉
    -> 内用); such a guess is not a term of the question.
    """
    from kbqa.text import load_jieba

    if flag.startswith("v") and _GLUED.search(word):
        return True
    return bool(_HAN.fullmatch(word[0])) and word not in load_jieba().dt.FREQ


def unknown_share(
    question: str, known: Callable[[str], bool], idf: Callable[[str], float], texts: list[str]
) -> float:
    """Share of the topic words' IDF weight the KB never mentions (not indexed, not in ``texts``).

    ``公司有健身房吗`` on a KB without 健身房: the rarest, most telling word is the missing one.
    """
    words = topic_words(question)
    weights = {t: idf(t) for t in words}
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    joined = to_simplified(" ".join(texts)).lower()

    return sum(w * unknown_degree(t, known, joined) for t, w in weights.items()) / total


def unknown_degree(word: str, known: Callable[[str], bool], joined: str = "") -> float:
    """How far the KB is from mentioning ``word``: 0 (it does) to 1 (nothing of it).

    A compound the KB never writes whole but whose dictionary parts it holds is half unknown
    (住房补贴 on a KB with 住房公积金 and 通讯补贴: the benefit itself is not there); one with
    an unknown part more so (股票代码 on a KB with 源代码: the telling part is 股票).
    """
    if known(word) or word in joined:
        return 0.0
    from kbqa.text import load_jieba

    pieces = [p for p in load_jieba().cut_for_search(word) if len(p) >= 2 and p != word]
    if not pieces:
        # jieba cuts the KB and the question differently (年假 vs 年 + 假): a word without
        # dictionary parts is known when a two-character piece of it is
        halves = [word[i : i + 2] for i in range(len(word) - 1)]
        return 0.0 if len(word) > 2 and any(known(h) for h in halves) else 1.0
    missing = sum(not known(p) for p in pieces) / len(pieces)
    return 0.5 + 0.5 * missing


# Tags of the nouns that can name a kind of thing (高温 of 高温补贴, 国外 of 国外住宿标准).
_NOUN = ("n", "eng", "s", "l", "j", "i", "t")


def unknown_kind(question: str, known: Callable[[str], bool], texts: list[str]) -> bool:
    """Whether the question asks for a kind of something the KB has, named by a word it lacks.

    高温补贴 on a KB with 餐补 and 通讯补贴, 国外住宿标准 on one with city rates, 股票代码 on one
    with 源代码: the head (补贴, 住宿, 代码) is there, so cosine and coverage look fine, but the
    specifier is new and the whole never occurs. This is the typical near-domain question a
    KB cannot answer; a paraphrase of an answerable one swaps words, not specifiers.

    >>> unknown_kind("高温补贴每月多少", {"补贴", "每月"}.__contains__, ["通讯补贴 200 元"])
    True
    """
    from kbqa.text import load_jieba, tagged

    jieba = load_jieba()
    joined = to_simplified("".join("".join(texts).split())).lower()
    tokens = [
        (word.lower(), flag)
        for word, flag in tagged(to_simplified(question).lower())
        if word.strip()
    ]

    def noun(word: str, flag: str) -> bool:
        return flag.startswith(_NOUN) and bool(content_tokens([word]))

    for (m, fm), (h, fh) in zip(tokens, tokens[1:], strict=False):
        pair = noun(m, fm) and noun(h, fh) and m + h not in joined and not known(m + h)
        if pair and unknown_degree(h, known, joined) == 0 and unknown_degree(m, known, joined) > 0:
            return True
    for word, flag in tokens:
        if noun(word, flag) and unknown_degree(word, known, joined) > 0:
            # 股票代码 on a KB with 源代码: a dictionary compound the KB never writes, its head
            # known and its specifier not (地理位置 on a KB with 地理 and 位置 is a paraphrase)
            pieces = [p for p in jieba.cut_for_search(word) if len(p) >= 2 and p != word]
            if len(pieces) >= 2 and known(pieces[-1]) and not known(pieces[0]):
                return True
    return False


# What a place name in a question is attached to: an office (深圳分公司, 台北辦公室, 杭州总部).
_OFFICE = re.compile(r"^(?:分公司|办公室|总部|分部|办事处|那边|园区|office)", re.I)


def asked_places(question: str) -> list[str]:
    """The places a text is about: a place name (jieba's ``ns``) naming an office or a city.

    Only a place fixed to an office word (深圳分公司) or written as a city (台北市) counts:
    jieba tags 城市, 福利 and 台风 ``ns`` too, and a bare city (去一线城市出差) is a condition,
    not whose rule is asked for.

    >>> asked_places("深圳分公司有通勤班车吗？"), asked_places("去一线城市出差住宿标准是多少？")
    (['深圳'], [])
    >>> asked_places("依台北市政府公告停止上班")
    ['台北']
    """
    from kbqa.text import tagged

    words = tagged(to_simplified(question))
    places = []
    for (w, flag), (after, _) in zip(words, [*words[1:], ("", "")], strict=True):
        if flag != "ns" or len(w) < 2:
            continue
        if w.endswith("市") and len(w) >= 3:
            places.append(w[:-1])  # 依台北市政府公告: the city's own rule
        elif _OFFICE.match(after):
            places.append(w)
    return list(dict.fromkeys(places))


def place_named(places: list[str], texts: list[str]) -> bool:
    """Whether the passages answer for the places asked about (True for none): one of
    ``texts`` names them all, and the first names no other office.

    杭州总部刮台风停班的话工资照发吗 against the Taipei office's typhoon rule: the best passage
    says what another office does, which does not answer for this one, even where a later
    passage (the list of offices) names 杭州.

    >>> place_named(["杭州"], ["台北辦公室：颱風停班當日薪資照發", "杭州总部：滨江区"])
    False
    >>> place_named(["杭州"], ["台风天停班，工资照发", "杭州总部：滨江区"])
    True
    """
    if not places:
        return True
    simple = [to_simplified(t) for t in texts]
    if not any(all(p in t for p in places) for t in simple):
        return False
    return not set(asked_places(simple[0])) - set(places)


def foreign(question: str, tokens: list[str], known: Callable[[str], bool], kb_han: bool) -> bool:
    """A question the lexical index cannot judge: hardly any of its words occur in the KB.

    An English question on a Chinese KB (or the reverse): only the multilingual embedding can
    match it, so lexical coverage and unknown terms must not count against it. Chinese
    documents use a few Latin acronyms (IT, VPN, APP), so one such word known to the KB does
    not make an English question Chinese: fewer than half its words known is foreign.
    """
    # jieba cuts scripts it has no dictionary for (Hangul, kana) into single characters
    words = content_tokens(tokens) or [t for t in dict.fromkeys(tokens) if not t.isdigit()]
    if not words or 2 * sum(known(t) for t in words) >= len(words):
        return False
    # A Han question with no known word on a Han KB is off-topic, not foreign.
    return bool(_HAN.search(question)) != kb_han


def warm() -> None:
    """Load jieba's dictionary and part-of-speech tables now (0.7 + 0.8 s on first use), so the
    first question of a CLI run or a server does not pay them."""
    from kbqa.text import load_jieba

    load_jieba()
    topic_words("年假")
