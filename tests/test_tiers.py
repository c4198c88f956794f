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


def test_a_tier_holding_the_number_counts_for_its_rule_but_one_of_a_unit_is_a_period():
    from kbqa.tiers import tier_fit

    assert tier_fit("工作两年年假有几天", "司龄 1 年以上不满 5 年的，每年年假 7 天") == 1
    assert tier_fit("干满十年有几天年假", "司龄 5 年以上不满 10 年的，每年 12 天") == -1
    assert tier_fit("年假有几天", "司龄 1 年以上不满 5 年的") == 0
    # 一年 asks "per year": no tier bonus for the seniority rule
    assert tier_fit("一年有几天带薪病假", "司龄 1 年以上不满 5 年的，每年年假 7 天") == 0


def test_a_follow_ups_quantity_picks_its_tier_over_a_sentence_sharing_a_common_word():
    hours = Hit(2, 2, "attendance.md", "总部实行标准工时制，工作时间为 8:30 至 17:30。", 0.9)
    hit = Hit(1, 1, "leave.md", LEAVE, 0.92)
    # 那工作两年呢 after 司龄五年年假有几天: its own words (工作) are in the hours sentence too
    got = extract("工作两年年假有几天？", [hit, hours], focus="工作两年")
    assert "每年年假 7 天" in got.split("[2]")[0].split("8:30")[0]
