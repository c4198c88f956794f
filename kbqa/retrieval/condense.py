"""Follow-ups made standalone before retrieval: rules without an LLM, a rewrite prompt with one."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kbqa.retrieval.signals import answer_type, topic_words
from kbqa.retrieval.slots import slots, subject_of, swap_slot
from kbqa.script import to_simplified

if TYPE_CHECKING:
    from kbqa.llm.base import Generator

log = logging.getLogger(__name__)
MAX_TURNS = 20  # the turns a follow-up may refer to; older ones are dropped with a notice
MAX_TURN_CHARS = 1000  # per side of a turn: a pasted document is cut, not searched whole

_LEAD = re.compile(
    r"^\s*(?:那么|那(?![天边里儿时])|还有|另外|然后|而|and|what about|how about)\s*[,，]?\s*", re.I
)
_TAIL = re.compile(r"\s*(?:呢|的呢|怎么样|如何|又如何)?\s*[?？。!！]*\s*$")
# 其他/其它 (other), 其中, 应该 hold a pronoun's character without being one.
_PRONOUN = re.compile(
    r"(?<!其)(?:它们的|他们的|她们的|它的|他的|她的|它们|他们|她们|它)|其(?![他它余中实次])|"
    r"(?<!应)该|这个|那个|\b(?:its?|they|their)\b",
    re.I,
)
# Words that point back at the conversation without naming what they point at (停班那天…,
# Where exactly is that office?): the follow-up keeps them and gains the earlier question whole.
_DEICTIC = re.compile(
    r"那(?:天|边|里|儿|时候|时)|这(?:边|里|儿)|\b(?:that|this|these|those|there|then)\b", re.I
)
_HERE_THERE = re.compile(r"[那这][边里儿]")  # after a place it is that place: 台北那边的员工


def points_back(question: str) -> bool:
    """Whether a word of ``question`` points at the conversation (see _DEICTIC).

    >>> points_back("停班那天还有薪水吗？"), points_back("台北那边的员工交通补贴有多少？")
    (True, False)
    """
    from kbqa.text import tagged

    q = to_simplified(question)
    found = [m.group() for m in _DEICTIC.finditer(q)]
    if not found:
        return False
    if all(_HERE_THERE.fullmatch(w) for w in found):
        return not any(flag.startswith("ns") for _, flag in tagged(q))
    return True


_ASKS = re.compile(
    r"[几哪谁啥吗么]|多少|什么|怎么|怎样|如何|多久|多长|\b(?:what|how|when|where|who)\b", re.I
)


def clean_history(history: Sequence[Sequence[str]]) -> tuple[list[tuple[str, str]], list[str]]:
    """(question, answer) turns fit to condense and prompt: empty ones out, long ones cut.

    >>> clean_history([("", ""), ("年假几天？", "5天")])
    ([('年假几天？', '5天')], [])
    """
    notices: list[str] = []
    turns = []
    for turn in history:
        q, a = (list(turn) + ["", ""])[:2]
        q, a = (q or "").strip(), (a or "").strip()
        if not q and not a:
            continue
        if len(q) > MAX_TURN_CHARS or len(a) > MAX_TURN_CHARS:
            q, a = q[:MAX_TURN_CHARS], a[:MAX_TURN_CHARS]
            if not any("characters" in n for n in notices):
                notices.append(f"history turns over {MAX_TURN_CHARS} characters were cut")
        turns.append((q, a))
    if len(turns) > MAX_TURNS:
        notices.append(f"the history had {len(turns)} turns; only the last {MAX_TURNS} were used")
        turns = turns[-MAX_TURNS:]
    return turns, notices


# A question with a pronoun is a follow-up up to this length; longer ones say what they mean.
FOLLOW_UP_CHARS = 30
_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")


def size(text: str) -> int:
    """A question's length as the limits above count it: an English word says about what two
    Chinese characters say (And what's the monthly amount? is 5 words, 30 characters).

    >>> size("那经理呢？"), size("And what's the monthly amount?")
    (5, 11)
    """
    words = _LATIN_WORD.findall(text)
    return len("".join(_LATIN_WORD.sub("", text).split())) + 2 * len(words)


def is_follow_up(question: str) -> bool:
    """A question that leans on an earlier one: 那经理呢？, 它的电话是多少？, What about managers?,
    停班那天还有薪水吗？, Where exactly is that office?

    >>> is_follow_up("那经理呢？"), is_follow_up("年假有几天？"), is_follow_up("Where is that office?")
    (True, False, True)
    """
    q = to_simplified(question.strip())
    if size(q) <= FOLLOW_UP_CHARS and (_PRONOUN.search(q) or points_back(q)):
        return True
    return bool(_LEAD.match(q) and size(q) <= 20) or bool(re.search(r"呢\s*[?？]?\s*$", q))


# A subjectless follow-up is this short (characters without its marks): an ask and an attribute;
# one with no noun at all may be longer (推不掉的话要多久内交上去: verbs and the ask only).
SUBJECTLESS_CHARS = 8
NOUNLESS_CHARS = 16
# Nouns that belong to the ask or to a verb's frame, not to a subject: 什么时候, 多久内.
_ASK_NOUNS = frozenset(
    {"时候", "时间", "地方", "内", "以内", "之内", "以前", "之前", "以后", "之后"}
)
# jieba tags that say nothing of a subject: particles, prepositions, adverbs, pronouns, numbers,
# measure words, conjunctions, punctuation (要发票吗: 吗; 最少要几位: 最少).
_FUNCTION_TAGS = ("x", "y", "u", "p", "d", "r", "m", "q", "c", "e")
_ENTITY_TAGS = ("nr", "ns", "nt", "nz")  # a name: the question brings its own subject


def lacks_subject(question: str, previous: str, answer: str = "") -> bool:
    """A short question with no subject of its own, only what to ask of the earlier turn's.

    ``电话多少？`` after ``成都分公司负责人是谁？`` asks the branch's number: it has no pronoun,
    那 or 呢, but its only noun is an attribute the conversation already holds (the earlier
    question or answer says 电话), or it has no noun at all, just a time or number asked of a
    verb (``几点下班？``). A question naming anything new (年假有几天？, 食堂几点开饭？) or a
    name, role or place stands alone.

    >>> lacks_subject("电话多少？", "成都分公司负责人是谁？", "负责人：刘洋；联系电话：028-8555-4321")
    True
    >>> lacks_subject("几点下班？", "总部早上几点上班？"), lacks_subject("年假有几天？", "婚假几天？")
    (True, False)
    >>> lacks_subject("什么时候能开好？", "新员工的邮箱是哪个部门给开的？")
    True
    """
    from kbqa.text import load_jieba, tagged

    core = to_simplified(_TAIL.sub("", question.strip()))
    if not core or len(core) > NOUNLESS_CHARS or not _ASKS.search(core):
        return False
    if _PRONOUN.search(core) or any(s.kind != "period" for s in slots(core)):
        return False
    said = to_simplified(previous + answer)
    nouns, verbs = [], []
    for word, flag in tagged(core):
        if _ASKS.search(word) or flag.startswith(_FUNCTION_TAGS) or word in _ASK_NOUNS:
            continue
        if not word.strip():
            continue
        if flag.startswith(_ENTITY_TAGS):
            return False
        if flag.startswith("n") or flag == "vn":
            nouns.append(word)
        elif flag.startswith("v"):
            verbs.append(word)
        else:
            return False  # 年假有几天: 假 (an adjective to jieba) is a topic, not an ask
    if not nouns:
        return bool(verbs) and answer_type(core) in ("time", "number")
    if len(core) > SUBJECTLESS_CHARS:
        return False
    # 电话号码 after a row's 联系电话: a dictionary part of it is enough
    jieba = load_jieba()
    return all(
        w in said or any(len(p) >= 2 and p in said for p in jieba.cut_for_search(w)) for w in nouns
    )


def _last_turn(history: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """The last turn with a question: (question, answer), or two empty strings."""
    return next(((q, a) for q, a in reversed(history) if q.strip()), ("", ""))


def leans_on(question: str, history: Sequence[tuple[str, str]]) -> bool:
    """Whether ``question`` needs the earlier turns: a follow-up, or subjectless after one.

    >>> leans_on("电话多少？", [("成都分公司负责人是谁？", "联系电话：028-8555-4321")])
    True
    """
    previous, answer = _last_turn(history)
    if not previous:
        return False
    return is_follow_up(question) or lacks_subject(question, previous, answer)


def _subject_words(previous: str, core: str) -> str:
    """The earlier question's nouns the follow-up lacks: what a subjectless one asks about.

    >>> _subject_words("总部早上几点上班？", "几点下班")
    '总部'
    """
    from kbqa.text import tagged

    words = [
        w
        for w, flag in tagged(to_simplified(previous))
        if (flag.startswith("n") or flag == "vn") and len(w) >= 2 and w not in core
    ]
    return "".join(dict.fromkeys(words))


def focus_of(question: str) -> str:
    """What an elliptical follow-up names (那经理呢？ -> 经理), to pick the row; "" for an
    anaphoric or subjectless one, whose own words (它几点下班？, 电话多少？) are the ask, not a
    row's name.

    >>> focus_of("那经理呢？"), focus_of("它几点下班？"), focus_of("电话多少？")
    ('经理', '', '')
    """
    if not is_follow_up(question):
        return ""
    core = _TAIL.sub("", _LEAD.sub("", question.strip()))
    return "" if _PRONOUN.search(core) else core


def condense_rules(question: str, history: Sequence[tuple[str, str]]) -> str:
    """The standalone question: an elliptical follow-up takes the earlier question's ask, an
    anaphoric one its subject.

    >>> condense_rules("那经理呢？", [("普通员工出差住宿标准是多少？", "450元")])
    '经理出差住宿标准是多少？'
    >>> condense_rules("它几点下班？", [("IT服务台的分机是多少？", "8000")])
    'IT服务台几点下班？'
    >>> condense_rules("那干满十年呢？", [("工作三年有几天年假？", "7天")])
    '干满十年有几天年假？'
    """
    previous, answer = _last_turn(history)
    if not leans_on(question, history):
        return question
    if not is_follow_up(question):
        core = to_simplified(_TAIL.sub("", question.strip()))
        return _subject_words(previous, core) + core + "？"  # 电话多少 -> 成都分公司负责人电话多少
    core = _TAIL.sub("", _LEAD.sub("", question.strip()))
    if points_back(core):
        return f"{core}，{previous}"  # 停班那天还有薪水吗: "that day" is the earlier question's
    if _PRONOUN.search(core):
        # The entity the earlier question was about, not the attribute it asked for.
        subject = subject_of(previous) or "".join(w for w in topic_words(previous) if w not in core)
        return _PRONOUN.sub(
            lambda m: subject + ("的" if m.group().endswith("的") else ""), core, 1
        ) + ("？" if not core.endswith(("?", "？")) else "")
    if _ASKS.search(core) and answer_type(core):
        return f"{core}，{previous}"  # 那法定节假日几倍？ keeps its own ask, gains the topic
    if not core:
        return previous
    # 那X呢: X takes the place of the earlier question's slot of its kind (a duration, a role,
    # a place), so the search is not about both at once.
    swapped = swap_slot(previous, core.removesuffix("的"))
    return swapped if swapped is not None else f"{core}，{previous}"


def with_earlier_question(question: str, history: Sequence[tuple[str, str]]) -> str | None:
    """The question and the earlier one, to search again when a short question after a turn
    finds nothing on its own: the rules know only some of the ways a follow-up is asked
    (得谁批了才算？ after 加班之前需要先走什么流程？, 员工一定得参加吗？ after 仓库有消防演练吗？).
    None without an earlier question, or for a question long enough to stand alone.

    >>> with_earlier_question("得谁批了才算？", [("加班之前需要先走什么流程？", "")])
    '得谁批了才算，加班之前需要先走什么流程？'
    """
    previous, _ = _last_turn(history)
    core = _TAIL.sub("", question.strip())
    if not previous or not core or len(core) > FOLLOW_UP_CHARS:
        return None
    return f"{core}，{previous}"


def names_its_words(question: str, texts: Sequence[str]) -> bool:
    """Whether every word of ``question`` that names a topic is in ``texts``: a question searched
    again with the earlier one (with_earlier_question) may borrow that one's subject, never
    its own topic. 公司股票代码是多少？ after 年假有几天？ finds leave rules, which hold no
    股票代码, so it stays refused.

    >>> names_its_words("员工一定得参加吗？", ["全体员工必须参加消防演练。"])
    True
    >>> names_its_words("公司股票代码是多少？", ["公司员工年假5天。"]), names_its_words("超过了怎么办？", [])
    (False, True)
    """
    said = to_simplified("".join(texts)).lower()
    return all(word in said for word in topic_words(question))


def condense(
    question: str,
    history: Sequence[tuple[str, str]],
    generator: Generator | None = None,
    template: str | None = None,
) -> str:
    """The question to search: rules, or the LLM's rewrite with ``template`` (rules on failure)."""
    if not leans_on(question, history):
        return question
    if generator is None or not template:
        return condense_rules(question, history)
    from kbqa.llm.base import GenerationConfig

    lines = "\n".join(f"问：{q}\n答：{a}" for q, a in history[-3:])
    prompt = template.replace("{history}", lines).replace("{question}", question)
    try:
        text = generator.generate(prompt, (), GenerationConfig(max_new_tokens=64)).strip()
    except Exception as e:  # noqa: BLE001 - a failed rewrite falls back to the rules
        log.warning("follow-up rewrite failed (%s); using the rules", e)
        text = ""
    text = text.splitlines()[0].strip() if text else ""
    return text if 0 < len(text) <= 200 else condense_rules(question, history)
