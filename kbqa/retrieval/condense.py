"""Follow-ups made standalone before retrieval: rules without an LLM, a rewrite prompt with one."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kbqa.retrieval.signals import answer_type, topic_words
from kbqa.retrieval.slots import subject_of, swap_slot

if TYPE_CHECKING:
    from kbqa.llm.base import Generator

log = logging.getLogger(__name__)
MAX_TURNS = 20  # the turns a follow-up may refer to; older ones are dropped with a notice
MAX_TURN_CHARS = 1000  # per side of a turn: a pasted document is cut, not searched whole

_LEAD = re.compile(r"^\s*(?:那么|那|还有|另外|然后|而|and|what about|how about)\s*[,，]?\s*", re.I)
_TAIL = re.compile(r"\s*(?:呢|的呢|怎么样|如何|又如何)?\s*[?？。!！]*\s*$")
# 其他/其它 (other), 其中, 应该 hold a pronoun's character without being one.
_PRONOUN = re.compile(
    r"(?<!其)(?:它们的|他们的|她们的|它的|他的|她的|它们|他们|她们|它)|其(?![他它余中实次])|"
    r"(?<!应)该|这个|那个|\b(?:its?|they|their)\b",
    re.I,
)
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


def is_follow_up(question: str) -> bool:
    """A question that leans on an earlier one: 那经理呢？, 它的电话是多少？, What about managers?

    >>> is_follow_up("那经理呢？"), is_follow_up("年假有几天？")
    (True, False)
    """
    q = question.strip()
    if _PRONOUN.search(q) and len(q) <= 30:
        return True
    return bool(_LEAD.match(q) and len(q) <= 20) or bool(re.search(r"呢\s*[?？]?\s*$", q))


def focus_of(question: str) -> str:
    """What an elliptical follow-up names (那经理呢？ -> 经理), to pick the row; "" for an
    anaphoric one, whose own words (它几点下班？) are the ask, not a row's name.

    >>> focus_of("那经理呢？"), focus_of("它几点下班？")
    ('经理', '')
    """
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
    previous = next((q for q, _ in reversed(history) if q.strip()), "")
    if not previous or not is_follow_up(question):
        return question
    core = _TAIL.sub("", _LEAD.sub("", question.strip()))
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


def condense(
    question: str,
    history: Sequence[tuple[str, str]],
    generator: Generator | None = None,
    template: str | None = None,
) -> str:
    """The question to search: rules, or the LLM's rewrite with ``template`` (rules on failure)."""
    if not history or not is_follow_up(question):
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
