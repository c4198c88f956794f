"""Extractive answers: table rows whole with their header, no headings or markdown, short."""

from __future__ import annotations

from kbqa.extractive import extract, units
from kbqa.types import Hit

ROWS = "分公司: 上海分公司; 地址: 上海市浦东新区世纪大道100号; 电话: 021-1234"
DOCX = "年终奖按等级发放。\n\n等级 | 比例 | 年终奖系数\nS | 10% | 3个月\nA | 20% | 2个月"
RULES = (
    "# 考勤\n\n## 第三条 迟到\n\n1. 晚到10分钟以内不计迟到。\n"
    "2. 一个月内迟到超过3次的，扣发全勤奖200元。\n- **旷工**按日扣薪。"
)


def hit(text: str, n: int = 1, **meta) -> Hit:
    return Hit(n, n, f"doc{n}.md", text, 0.9, meta)


def test_a_spreadsheet_row_is_one_answer_with_every_column():
    assert units(ROWS) == ["分公司：上海分公司；地址：上海市浦东新区世纪大道100号；电话：021-1234"]
    assert "世纪大道100号" in extract("上海办公室在哪里", [hit(ROWS)])


def test_a_docx_table_row_comes_with_its_header_never_the_header_alone():
    out = units(DOCX)
    assert "等级：A；比例：20%；年终奖系数：2个月" in out
    assert not any(u.startswith("等级 |") for u in out)
    assert "2个月" in extract("考核A年终奖系数是多少", [hit(DOCX)])


def test_headings_and_markdown_never_answer_and_list_items_stay_apart():
    out = units(RULES)
    assert not any("第三条" in u or u.startswith("#") for u in out)
    assert "旷工按日扣薪。" in out and not any("**" in u or u.startswith("-") for u in out)
    assert out[0] == "晚到10分钟以内不计迟到。"
    answer = extract("迟到超过3次怎么处理", [hit(RULES)])
    assert "扣发全勤奖200元" in answer and answer.endswith("[1]") and len(answer) <= 80


def test_the_answer_is_short_and_cited():
    text = "员工每年享有5天带薪年假。" + "其他规定见附件，请咨询人力资源部门了解详情。" * 5
    answer = extract("年假有几天", [hit(text)])
    assert answer.startswith("员工每年享有5天带薪年假。[1]") and len(answer) <= 80


def test_a_follow_ups_own_words_pick_the_row():
    table = "| 级别 | 一线城市 |\n| --- | --- |\n| 普通员工 | 450 |\n| 经理 | 650 |"
    answer = extract("经理，普通员工一线城市住宿标准是多少", [hit(table)], focus="那经理呢？")
    assert answer.startswith("级别：经理")


FISH = (
    "蓝线裸顶鲷，又称蓝线白鱼，为鲈形目龙占鱼科的其中一个种。本鱼分布于印度太平洋区。"
    "本鱼体呈银灰色。体长可达80公分。属肉食性，以甲壳类、头足类和小鱼为食。"
)


def test_the_passages_subject_does_not_pick_the_sentence():
    # The name is in the question and in the first sentence only (then 本鱼): it picked the
    # passage; 为食 / 体长 pick the sentence.
    idf = {"蓝线": 5.7, "裸顶": 5.7, "鲷": 5.2, "为食": 4.4, "体长": 4.0}.get
    food = extract("蓝线裸顶鲷以什么为食？", [hit(FISH)], idf=lambda t: idf(t, 1.0))
    assert food.startswith("属肉食性，以甲壳类")
    size = extract("蓝线裸顶鲷的体长约是多少公分？", [hit(FISH)], idf=lambda t: idf(t, 1.0))
    assert size.startswith("体长可达80公分。")


def test_prose_with_colons_and_semicolons_is_split_into_sentences_not_a_row():
    prose = (
        "温泉关（古希腊语：Thermopylae；现代希腊语：Thermopyles），意为热的入口。它的名字源自温泉。"
    )
    out = units(prose)
    assert "它的名字源自温泉。" in out
    assert not any("温泉关" in u and "名字源自" in u for u in out)


def test_a_second_sentence_nearly_as_good_is_kept_within_the_short_limit():
    text = "年假按司龄计算。满1年不满5年的，年假7天；满5年的，年假10天。"
    answer = extract("司龄满5年年假几天", [hit(text)])
    assert "年假10天" in answer and len(answer) <= 130


def test_answer_labels_are_the_faq_matchers_own():
    """One Q/A-label rule (kbqa.text): 答案： is an answer label for extraction as for FAQ."""
    from kbqa.extractive import answer_text
    from kbqa.retrieval.faq import qa_pairs

    hit = Hit(1, 1, "faq.txt", "问题：年假几天？\n答案：5天。", 0.0)
    assert qa_pairs(hit) == [("年假几天？", "5天。")]
    assert answer_text(hit).strip() == "5天。"


def test_a_qa_rows_answer_is_about_its_stored_question():
    # 忘了打卡 shares 打卡 with the row's question, not with its answer (补卡)
    answer = "每月可在“鲸办”APP提交3次补卡申请，由直属主管审批。"
    faq = hit("问：忘记打卡怎么办？\n答：" + answer, 1, question="忘记打卡怎么办？", answer=answer)
    other = hit(
        "问：报销款多久到账？\n答：7个工作日内。",
        2,
        question="报销款多久到账？",
        answer="7个工作日内。",
    )
    rules = hit(
        "总部实行标准工时制，工作时间为周一至周五 8:30 至 17:30。\n"
        "仓库一线岗位实行两班倒，早班 7:00 至 15:00。\n"
        "员工每天通过“鲸办”APP 定位打卡，上下班各打卡一次。",
        3,
    )
    assert "3次补卡申请" in extract("忘了打卡一个月能补几次？", [faq, other, rules])


def test_in_a_passage_of_two_clauses_the_one_with_the_questions_words_answers():
    hit = Hit(
        1,
        1,
        "leave.md",
        "员工直系亲属去世的，给予丧假 3 天；需要到外地料理丧事的，另给路程假。",
        0.9,
    )
    got = extract("家人去世要去外地办丧事，能多请几天吗？", [hit])
    assert "路程假" in got


def test_a_grade_picks_its_own_row_not_the_list_of_grades():
    table = (
        "考核结果分为S、A、B、C、D五个等级。\n"
        "| 等级 | 年终奖系数 |\n| --- | --- |\n| S | 3个月 |\n| C | 0.5个月 |\n| D | 无年终奖 |"
    )
    hit = Hit(1, 1, "bonus.docx", table, 0.9)
    assert extract("绩效是C的话年终奖发多少？", [hit]).startswith("等级：C；年终奖系数：0.5个月")
    assert "无年终奖" in extract("考核是D的话年终奖几个月？", [hit])


def test_a_what_time_question_is_answered_with_a_time_of_day():
    # both passages name 新员工 and 入职, and 当天 would answer 什么时候; 几点 wants 9:00
    onboarding = (
        "1. 新员工须在报到当天携带身份证原件、学历证书原件、离职证明和一张一寸照片到人力资源部"
        "办理入职。\n2. 报到时间为上午 9:00，地点为总部 3 楼人力资源部。\n3. 入职当天领取工牌和"
        "笔记本电脑。"
    )
    accounts = "新员工的邮箱和“鲸办”账号由 IT 部在入职当天开通，初始密码通过短信发送到员工手机。"
    answer = extract("新员工入职要几点到？", [hit(onboarding), hit(accounts, 2)])
    assert answer.startswith("报到时间为上午 9:00，地点为总部 3 楼人力资源部。[1]")
