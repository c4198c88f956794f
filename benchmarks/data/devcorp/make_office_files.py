"""Writes the dev corpus's two office files (python-docx, openpyxl): run once, commit both."""

from pathlib import Path

from docx import Document
from openpyxl import Workbook

HERE = Path(__file__).resolve().parent


def bonus_docx() -> None:
    doc = Document()
    doc.add_heading("年度绩效与年终奖办法", level=1)
    doc.add_paragraph(
        "公司每年12月进行年度绩效考核，考核结果分为S、A、B、C、D五个等级。"
        "年终奖于次年1月随工资发放，年终奖金额等于月基本工资乘以年终奖系数。"
    )
    rows = [
        ("等级", "人数比例", "年终奖系数"),
        ("S", "不超过10%", "3个月"),
        ("A", "不超过20%", "2个月"),
        ("B", "约50%", "1个月"),
        ("C", "约15%", "0.5个月"),
        ("D", "约5%", "无年终奖"),
    ]
    table = doc.add_table(rows=len(rows), cols=3)
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    doc.add_paragraph("连续两年考核为D的员工，公司将调整其岗位或解除劳动合同。")
    doc.save(HERE / "绩效与年终奖办法.docx")


def offices_xlsx() -> None:
    wb = Workbook()
    ws = wb.active
    ws.title = "分公司"
    ws.append(["分公司", "地址", "负责人", "联系电话"])
    ws.append(["杭州总部", "杭州市滨江区江南大道588号", "陈立", "0571-8800-1234"])
    ws.append(["深圳分公司", "深圳市南山区科技园南区高新南七道18号", "周敏", "0755-2666-5678"])
    ws.append(["成都分公司", "成都市高新区天府大道中段666号", "刘洋", "028-8555-4321"])
    ws.append(["武汉分公司", "武汉市东西湖区临空港大道99号", "黄海", "027-8333-2468"])
    wb.save(HERE / "各地分公司.xlsx")


if __name__ == "__main__":
    bonus_docx()
    offices_xlsx()
