"""Slots of a question a follow-up can swap or keep: a quantity, a role, a place, a period, an entity."""

from __future__ import annotations

import re
from dataclasses import dataclass

from kbqa.retrieval.signals import NUMBER
from kbqa.script import to_simplified

# A number with its unit: 工作三年, 10天, 1.5倍 (not 几天: that is the ask, not a slot).
_QUANTITY = re.compile(
    NUMBER + r"\s*"
    r"(?:个工作日|个月|个|工作日|年|天|月|周|小时|分钟|公里|元|块|万|次|倍|人|名|%|级)"
)
# Head words by kind: a phrase ending in one (普通员工, 一线城市, 法定节假日) fills that slot.
_HEADS = {
    "role": (
        "员工", "经理", "总监", "主管", "专员", "司机", "讲师", "实习生", "职员", "人员",
        "领导", "高管", "总裁", "董事",
    ),
    "place": ("城市", "分公司", "总部", "办公室", "仓库", "园区", "门店", "地区", "国外", "境外"),
    "period": (
        "工作日", "休息日", "节假日", "周末", "早上", "上午", "中午", "下午", "晚上", "早班",
        "晚班", "夜班", "上班", "下班", "白天",
    ),
}  # fmt: skip
# jieba tags that may modify a slot's head, by kind (试用期员工, 一线城市, 其他城市, 深圳分公司);
# a period takes none (班车早上 is a bus and a time): a follow-up's own words before its slot
# (法定节假日) still come with it, see ``swap_slot``.
_MODIFIER = {
    "role": ("a", "b", "ad", "n", "nt", "vn", "j"),
    "place": ("m", "r", "ns"),
}
_NOUNISH = ("n", "nz", "ns", "nt", "nr", "vn", "eng", "j")
_ASK = re.compile(r"[几哪谁啥吗么]|多少|什么|怎么|怎样|如何|多久|多长|多大")
_PREDICATE = ("是", "为")  # X的Y是多少: the copula between the attribute and the ask


@dataclass(frozen=True)
class Slot:
    kind: str  # quantity, role, place, name (a place name alone: 成都), period, grade, head
    start: int
    end: int
    text: str


def _cut(text: str) -> list[tuple[str, str, int]]:
    """(word, jieba tag, start offset) of ``text``."""
    from kbqa.text import tagged

    out, at = [], 0
    for word, flag in tagged(text):
        out.append((word, flag, at))
        at += len(word)
    return out


def _kind(word: str, flag: str) -> str | None:
    for kind, heads in _HEADS.items():
        if word.endswith(heads):
            return kind
    if flag == "ns":
        return "name"
    if re.fullmatch(r"[A-Z]", word):
        return "grade"  # 考核得A: a level named by one capital letter
    return None


def slots(text: str) -> list[Slot]:
    """The swappable slots of ``text`` (Simplified), in order.

    >>> [(s.kind, s.text) for s in slots("普通员工去一线城市出差")]
    [('role', '普通员工'), ('place', '一线城市')]
    >>> [(s.kind, s.text) for s in slots("工作三年有几天年假")]
    [('quantity', '工作三年')]
    """
    found: list[Slot] = []
    for m in _QUANTITY.finditer(text):
        found.append(Slot("quantity", m.start(), m.end(), m.group()))
    tokens = _cut(text)
    for i, (word, flag, at) in enumerate(tokens):
        kind = _kind(word, flag)
        if kind is None or any(s.start <= at < s.end for s in found):
            continue
        start = at
        j = i - 1
        # The modifiers before the head belong to the slot; a place name before a place head
        # too (深圳分公司), but a name keeps its own slot when it stands alone (成都).
        modifiers = _MODIFIER.get(kind, ())
        while modifiers and j >= 0 and tokens[j][1].startswith(modifiers):
            if _ASK.search(tokens[j][0]) or _kind(*tokens[j][:2]) not in (None, "name"):
                break
            start = tokens[j][2]
            j -= 1
        found.append(Slot(kind, start, at + len(word), text[start : at + len(word)]))
    # A quantity takes the word before it (工作三年, 司龄五年): what was counted.
    out = []
    for s in sorted(found, key=lambda s: s.start):
        if s.kind == "quantity":
            before = [t for t in tokens if t[2] + len(t[0]) == s.start]
            if (
                before
                and before[0][1].startswith(("v", "a", "n"))
                and not _ASK.search(before[0][0])
            ):
                b = before[0]
                s = Slot("quantity", b[2], s.end, text[b[2] : s.end])
        out.append(s)
    # A name inside a longer slot (台北 in 台北办公室) is part of it, not a slot of its own.
    return [
        s for s in out if not any(o is not s and o.start <= s.start and s.end <= o.end for o in out)
    ]


def swap_slot(previous: str, core: str) -> str | None:
    """``previous`` with its slot of the kind ``core`` fills replaced by ``core``, or None.

    An elliptical follow-up names the one thing that changes: 那干满十年呢 after 工作三年有几天年假
    asks 干满十年有几天年假, not both durations at once.

    >>> swap_slot("工作三年有几天年假？", "干满十年")
    '干满十年有几天年假？'
    >>> swap_slot("深圳分公司在哪里？", "成都")
    '成都分公司在哪里？'
    >>> swap_slot("结婚能休几天婚假？", "产假")
    '结婚能休几天产假？'
    """
    prev, core = to_simplified(previous), to_simplified(core).strip()
    mine = slots(core)
    if len(mine) != 1:
        return _same_head(prev, core)
    new = mine[0]
    for old in slots(prev):
        if not (old.kind == new.kind or {old.kind, new.kind} <= {"place", "name"}):
            continue
        start, end = old.start, old.end
        if new.kind == "name" and old.kind == "place":
            # 成都 for 深圳分公司: only the name part of the place changes
            name = next(iter(_name_parts(old)), None)
            if name is not None:
                start, end = old.start + name[0], old.start + name[1]
        # The follow-up's words before its slot come along (法定 of 法定节假日) unless the
        # earlier question already has them there (去 of 去其他城市 for 去一线城市).
        lead = core[: new.start]
        value = new.text if prev[:start].endswith(lead) else lead + new.text
        swapped = prev[:start] + value + prev[end:]
        rest = core[new.end :]
        return f"{core}，{swapped}" if rest else swapped  # 那总监坐飞机呢: its own words too
    return _same_head(prev, core)


def _name_parts(place: Slot) -> list[tuple[int, int]]:
    """Offsets (within the slot) of its place names: 深圳 in 深圳分公司."""
    return [(at, at + len(w)) for w, flag, at in _cut(place.text) if flag == "ns"]


def _same_head(previous: str, core: str) -> str | None:
    """A noun of the same head character swapped: 婚假 -> 产假, 病假 -> 陪产假."""
    core = to_simplified(core).strip()
    if not (2 <= len(core) <= 5) or not re.fullmatch(r"[\u4e00-\u9fff]+", core):
        return None
    for word, flag, at in _cut(previous):
        if len(word) >= 2 and word != core and word[-1] == core[-1] and flag.startswith("n"):
            return previous[:at] + core + previous[at + len(word) :]
    # jieba cuts some such nouns in two (年假: 年 + 假): the head and the character before it
    at = previous.find(core[-1], 1)
    han = at > 0 and re.fullmatch(r"[\u4e00-\u9fff]", previous[at - 1])
    if han and core not in previous and not _ASK.search(previous[at - 1]):
        return previous[: at - 1] + core + previous[at + 1 :]
    return None


def subject_of(question: str) -> str | None:
    """The entity an earlier question is about, without its asked attribute and question words.

    ``它几点下班`` after ``IT服务台的分机是多少`` asks about IT服务台, not its 分机.

    >>> subject_of("IT服务台的分机是多少？"), subject_of("深圳分公司负责人是谁")
    ('IT服务台', '深圳分公司')
    """
    tokens = _cut(to_simplified(question))
    ask = next((i for i, t in enumerate(tokens) if _ASK.search(t[0])), len(tokens))
    before = tokens[:ask]
    while before and (before[-1][0] in _PREDICATE or before[-1][1] == "p"):  # 是, 在
        before = before[:-1]
    # X的Y: the noun phrase before the last 的 is the entity, Y its attribute.
    of = [i for i, t in enumerate(before) if t[0] == "的"]
    if of:
        run = _noun_run(before[: of[-1]])
        if run:
            return "".join(w for w, _, _ in run)
    run = _noun_run(before)
    if len(run) >= 2:  # 深圳分公司负责人: the last noun is the attribute asked for
        return "".join(w for w, _, _ in run[:-1])
    return None


def _noun_run(tokens: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """The run of noun-like tokens that ends ``tokens``."""
    run: list[tuple[str, str, int]] = []
    for t in reversed(tokens):
        if not t[1].startswith(_NOUNISH) or _ASK.search(t[0]):
            break
        run.insert(0, t)
    return run
