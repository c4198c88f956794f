"""Numbers in rule text: Chinese numerals as digits, and the tier a sentence states (5年以上不满10年)."""

from __future__ import annotations

import re

_DIGIT = {
    "零": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_UNITS = r"个月|年|天|月|周|次|元|小时|分钟|岁|公里|人"
_NUMERAL = re.compile(rf"([零一二两三四五六七八九十百]+)\s*(?={_UNITS})")


def _value(numeral: str) -> int | None:
    """十五 -> 15, 二十 -> 20, 一百 -> 100, 三 -> 3 (below 1000; None if not a plain number)."""
    total, digit = 0, None
    for ch in numeral:
        if ch in _DIGIT:
            if digit is not None:
                return None  # 三五 (three or five) is no one number
            digit = _DIGIT[ch]
        elif ch == "十":
            total += (1 if digit is None else digit) * 10
            digit = None
        elif ch == "百":
            total += (1 if digit is None else digit) * 100
            digit = None
    return total + (digit or 0)


def arabic(text: str) -> str:
    """Chinese numerals before a unit written as digits, as rules write them.

    >>> arabic("干满十年有几天年假"), arabic("工作两年"), arabic("一线城市")
    ('干满10年有几天年假', '工作2年', '一线城市')
    """

    def digits(m: re.Match) -> str:
        value = _value(m.group(1))
        return m.group(0) if value is None else str(value)

    return _NUMERAL.sub(digits, text)


_NUM = r"(\d+(?:\.\d+)?)\s*"
# A tier as rules state it, low bound included, high bound excluded (以上 and 满 include).
_BETWEEN = re.compile(
    rf"{_NUM}({_UNITS})\s*(?:以上|及以上)?\s*(?:不满|未满|不到|以下|以内)\s*{_NUM}({_UNITS})"
)
_FROM = re.compile(rf"(?:满\s*)?{_NUM}({_UNITS})\s*(?:以上|及以上)(?!\s*(?:不满|未满|不到))")
_FROM_FULL = re.compile(
    rf"(?<!不)(?<!未)满\s*{_NUM}({_UNITS})(?!\s*(?:以上|及以上)?\s*(?:不满|未满|不到))"
)
_TO = re.compile(rf"(?<![\d.])(?:不满|未满|不到)\s*{_NUM}({_UNITS})")
_ASKED = re.compile(rf"(?<![\d.]){_NUM}({_UNITS})")


def outside_tier(question: str, sentence: str) -> bool:
    """The sentence states tiers of the question's unit and the question's number is in none.

    ``干满十年有几天年假`` against ``司龄 5 年以上不满 10 年的，每年 12 天``: a rule for others.

    >>> outside_tier("干满十年有几天年假", "司龄 5 年以上不满 10 年的，每年 12 天；")
    True
    >>> outside_tier("干满十年有几天年假", "司龄 10 年以上的，每年 15 天。")
    False
    """
    return tier_fit(question, sentence) < 0


def tier_fit(question: str, sentence: str) -> int:
    """-1: the sentence's tiers of the question's unit all miss its number (``outside_tier``);
    1: one of them holds it (工作两年 in 1 年以上不满 5 年), for a number other than one (一年
    is mostly "a year"); 0: no tier of that unit, or no number.

    >>> tier_fit("工作两年有几天年假", "司龄 1 年以上不满 5 年的，每年年假 7 天"), tier_fit("年假", "7 天")
    (1, 0)
    """
    q = arabic(question)
    asked = [(float(m.group(1)), m.group(2)) for m in _ASKED.finditer(q)]
    if not asked:
        return 0
    s = arabic(sentence)
    tiers: list[tuple[float, float, str]] = []
    for m in _BETWEEN.finditer(s):
        if m.group(2) == m.group(4):
            tiers.append((float(m.group(1)), float(m.group(3)), m.group(2)))
    rest = _BETWEEN.sub(" ", s)
    tiers += [(float(m.group(1)), float("inf"), m.group(2)) for m in _FROM.finditer(rest)]
    tiers += [(float(m.group(1)), float("inf"), m.group(2)) for m in _FROM_FULL.finditer(rest)]
    tiers += [(0.0, float(m.group(1)), m.group(2)) for m in _TO.finditer(rest)]
    fit = 0
    for value, unit in asked:
        mine = [(lo, hi) for lo, hi, u in tiers if u == unit]
        if mine and not any(lo <= value < hi for lo, hi in mine):
            return -1
        # 一年有几天病假: one of a unit is a period ("a year"), not a tier value
        fit = fit or int(bool(mine) and value != 1)
    return fit
