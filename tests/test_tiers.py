"""Tiers of rule text: numerals as digits, the tier a question's number falls in."""

from __future__ import annotations

from kbqa.extractive import extract
from kbqa.tiers import arabic, outside_tier
from kbqa.types import Hit

LEAVE = (
    "- 员工入职满一年后享受带薪年假。\n"
    "- 司龄 1 年以上不满 5 年的，每年年假 7 天；司龄 5 年以上不满 10 年的，每年 12 天；"
    "司龄 10 年以上的，每年 15 天。"
)


def test_chinese_numerals_before_a_unit_become_digits():
    assert arabic("干满十年") == "干满10年"
    assert arabic("二十五天") == "25天"
    assert arabic("一线城市和三五天") == "一线城市和三五天"  # no unit, or no one number


def test_a_number_is_placed_in_the_tier_that_holds_it():
    assert outside_tier("干满十年有几天年假", "司龄 5 年以上不满 10 年的，每年 12 天")
    assert not outside_tier("干满十年有几天年假", "司龄 10 年以上的，每年 15 天")
    assert not outside_tier("工作三年有几天年假", "司龄 1 年以上不满 5 年的，每年年假 7 天")
    assert not outside_tier("年假有几天", "司龄 10 年以上的，每年 15 天")  # nothing asked
    assert not outside_tier("干满十年有几天年假", "累计迟到 3 次以上的扣 1 分")  # another unit


def test_the_answer_is_the_tiers_rule_not_its_neighbours():
    hit = Hit(1, 1, "leave.md", LEAVE, 0.9)
    ten = extract("干满十年有几天年假？", [hit])
    assert "司龄 10 年以上的，每年 15 天" in ten and "不满 10 年" not in ten
    three = extract("工作三年有几天年假？", [hit])
    assert "每年年假 7 天" in three and "15 天" not in three
