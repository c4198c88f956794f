"""Loaders: every format with real Chinese text, Q/A tables, and every kind of bad input."""

from __future__ import annotations

import json
import re
import tracemalloc
from pathlib import Path

import pytest

from kbqa.config import LoadConfig, SplitConfig
from kbqa.errors import BadInput, NotFound
from kbqa.ingest.loaders import SEGMENT_CHARS, SUPPORTED, load
from kbqa.ingest.split import split_documents
from kbqa.types import Document

CFG = LoadConfig()
LEAVE = "入职满1年不满10年的员工，每年享有5天带薪年假；满10年不满20年的，年假10天。"
VPN = "在家办公时请先连接公司VPN，地址为 vpn.xinghe.example，登录需要动态口令。"


def docs_of(path: Path, config: LoadConfig = CFG) -> list[Document]:
    return list(load(path, config))


def bad_input(path: Path, config: LoadConfig = CFG) -> str:
    with pytest.raises(BadInput) as info:
        docs_of(path, config)
    message = str(info.value)
    assert str(path) in message
    return message


# --- text -----------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_text_encodings_are_detected(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "休假制度.txt"
    path.write_bytes(f"休假制度\r\n\r\n{LEAVE}\r\n".encode(encoding))
    (doc,) = docs_of(path)
    assert doc.text == f"休假制度\n\n{LEAVE}"
    assert doc.source == str(path)


def test_gbk_after_a_long_ascii_prefix_is_detected(tmp_path: Path) -> None:
    # The decision waits for the first non-ASCII bytes, even past the first read block.
    path = tmp_path / "考勤.txt"
    path.write_bytes(
        b"attendance policy v2\n\n" * 5000 + "迟到超过30分钟按旷工半天处理。".encode("gbk")
    )
    text = "\n".join(d.text for d in docs_of(path))
    assert text.endswith("迟到超过30分钟按旷工半天处理。")


def test_markdown_keeps_heading_lines(tmp_path: Path) -> None:
    path = tmp_path / "手册.md"
    path.write_text(f"# 员工手册\n\n## 年假\n\n{LEAVE}\n\n## VPN\n\n{VPN}\n", encoding="utf-8")
    (doc,) = docs_of(path)
    assert doc.text.startswith("# 员工手册\n\n## 年假\n\n")
    assert "## VPN" in doc.text and VPN in doc.text


def test_large_text_is_segmented_at_paragraph_breaks(tmp_path: Path) -> None:
    paragraphs = [f"第{i}段。{LEAVE * (i % 7 + 1)}" for i in range(400)]
    path = tmp_path / "big.txt"
    path.write_text("\n\n".join(paragraphs), encoding="utf-8")
    docs = docs_of(path)
    assert len(docs) > 1
    assert all(len(d.text) <= SEGMENT_CHARS for d in docs)
    assert [d.metadata["segment"] for d in docs] == list(range(1, len(docs) + 1))
    # No paragraph is cut: rejoining the segments gives the paragraphs back exactly.
    assert "\n\n".join(d.text for d in docs).split("\n\n") == paragraphs


def test_a_paragraph_longer_than_a_segment_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "one-paragraph.txt"
    path.write_text(LEAVE * (3 * SEGMENT_CHARS // len(LEAVE)), encoding="utf-8")
    docs = docs_of(path)
    assert len(docs) >= 3 and all(len(d.text) <= SEGMENT_CHARS for d in docs)
    assert docs[0].text.endswith("。")  # cut at a sentence end, not mid-sentence


@pytest.mark.slow  # writes and reads 50 MB: seconds of CPU and disk on every run
def test_50_mb_text_streams_in_bounded_memory(tmp_path: Path) -> None:
    block = "\n\n".join(f"{LEAVE}{VPN}第{i}条。" for i in range(50)) + "\n\n"
    repeats = 50 * 2**20 // len(block.encode("utf-8")) + 1
    path = tmp_path / "huge.txt"
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(repeats // 100 + 1):
            fh.write(block * 100)
    size = path.stat().st_size
    assert size >= 50 * 2**20
    expected = len(re.sub(r"\s", "", block)) * (repeats // 100 + 1) * 100

    tracemalloc.start()
    try:
        chars = segments = 0
        for doc in load(path, CFG):
            chars += len(re.sub(r"\s", "", doc.text))
            segments += 1
            assert doc.text.startswith(LEAVE)  # every segment starts at a paragraph
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert chars == expected  # all text came back
    assert segments > 100
    assert peak < 10 * 2**20, f"peak {peak / 2**20:.1f} MB for a {size / 2**20:.0f} MB file"


# --- html -----------------------------------------------------------------------------------


def test_html_visible_text_only(tmp_path: Path) -> None:
    path = tmp_path / "vpn.html"
    path.write_text(
        "<html><head><title>VPN 使用指南</title><style>p{color:red}</style></head><body>"
        "<nav><a href='/'>首页</a> | <a href='/it'>IT 支持</a></nav>"
        "<script>var tracking = '统计代码';</script>"
        f"<h1>VPN 使用指南</h1><p>{VPN}</p><!-- 内部备注 -->"
        "<div><p>第一步：安装客户端。</p><p>第二步：输入工号和<b>动态口令</b>。</p></div>"
        "<table><tr><th>问题</th><th>处理</th></tr><tr><td>连不上</td><td>联系IT服务台</td></tr></table>"
        "<footer>版权所有 星河云科技</footer></body></html>",
        encoding="utf-8",
    )
    (doc,) = docs_of(path)
    assert doc.metadata == {"markdown": True, "title": "VPN 使用指南"}
    assert doc.text.split("\n\n")[:4] == [
        "# VPN 使用指南",
        VPN,
        "第一步：安装客户端。",
        "第二步：输入工号和动态口令。",
    ]
    assert "问题 | 处理\n连不上 | 联系IT服务台" in doc.text
    for noise in ("首页", "统计代码", "color", "内部备注", "版权所有"):
        assert noise not in doc.text


def test_html_list_items_stay_on_consecutive_lines(tmp_path: Path) -> None:
    path = tmp_path / "list.html"
    path.write_text(
        "<p>报销需要：</p>\n<ul>\n  <li>发票</li>\n  <li>行程单</li>\n</ul>\n<p>缺一不可。</p>",
        encoding="utf-8",
    )
    (doc,) = docs_of(path)
    assert doc.text == "报销需要：\n\n- 发票\n- 行程单\n\n缺一不可。"
    assert doc.metadata == {"markdown": True}


def test_html_declared_gb2312_is_read_as_gbk(tmp_path: Path) -> None:
    path = tmp_path / "old.htm"
    # 镕 is in GBK but not in GB2312: pages that declare gb2312 are routinely GBK.
    html = '<html><head><meta charset="gb2312"><title>通知</title></head><body><p>朱镕基路办公室搬迁。</p></body></html>'
    path.write_bytes(html.encode("gbk"))
    (doc,) = docs_of(path)
    assert doc.text == "朱镕基路办公室搬迁。"


# --- pdf ------------------------------------------------------------------------------------


def make_pdf(path: Path, pages: list[str]) -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    pdf = canvas.Canvas(str(path))
    for text in pages:
        if text:
            pdf.setFont("STSong-Light", 12)
            pdf.drawString(72, 720, text)
        pdf.showPage()
    pdf.save()


def test_pdf_one_document_per_page(tmp_path: Path) -> None:
    path = tmp_path / "福利.pdf"
    make_pdf(path, [LEAVE, "", VPN])  # the blank middle page has no text layer
    docs = docs_of(path)
    assert [d.metadata["page"] for d in docs] == [1, 3]
    assert docs[0].text == LEAVE
    assert docs[1].text == VPN


def test_pdf_lines_wrapped_mid_sentence_are_joined(tmp_path: Path) -> None:
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    style = ParagraphStyle("zh", fontName="STSong-Light", fontSize=11, leading=16, wordWrap="CJK")
    body = LEAVE * 4 + VPN * 2
    path = tmp_path / "wrapped.pdf"
    SimpleDocTemplate(str(path)).build(
        [Paragraph("一、年假", style), Paragraph(body, style), Paragraph("二、VPN", style)]
    )
    (doc,) = docs_of(path)
    assert doc.text == f"一、年假\n{body}\n二、VPN"


def test_encrypted_pdf_with_empty_user_password_is_read(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    plain, locked = tmp_path / "plain.pdf", tmp_path / "owner-only.pdf"
    make_pdf(plain, [LEAVE])
    writer = PdfWriter(clone_from=plain)
    writer.encrypt("", owner_password="owner", algorithm="RC4-128")
    writer.write(locked)
    assert [d.text for d in docs_of(locked)] == [LEAVE]


def test_encrypted_pdf_is_refused(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    plain, locked = tmp_path / "plain.pdf", tmp_path / "locked.pdf"
    make_pdf(plain, [LEAVE])
    writer = PdfWriter(clone_from=plain)
    writer.encrypt("secret", algorithm="RC4-128")
    writer.write(locked)
    assert "encrypted" in bad_input(locked)


@pytest.mark.parametrize(
    "content", [b"%PDF-1.4\n1 0 obj << /Type /Catalog", b"this is not a pdf at all"]
)
def test_corrupt_pdf_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(content)
    assert "not a readable PDF" in bad_input(path)


# --- docx -----------------------------------------------------------------------------------


def test_docx_headings_paragraphs_and_tables_in_order(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("出差标准", level=1)
    document.add_paragraph("员工出差应提前在星云OA提交出差申请。")
    document.add_heading("住宿标准", level=2)
    table = document.add_table(rows=3, cols=3)
    for row, cells in zip(
        table.rows,
        [["城市", "员工", "经理"], ["北京", "500元", "650元"], ["成都", "350元", "450元"]],
        strict=True,
    ):
        for cell, value in zip(row.cells, cells, strict=True):
            cell.text = value
    document.add_paragraph("超出标准的部分由个人承担。")
    path = tmp_path / "出差.docx"
    document.save(str(path))

    (doc,) = docs_of(path)
    assert doc.metadata["markdown"] is True  # the splitter reads the '#' lines as headings
    assert doc.text == (
        "# 出差标准\n\n员工出差应提前在星云OA提交出差申请。\n\n## 住宿标准\n\n"
        "城市 | 员工 | 经理\n北京 | 500元 | 650元\n成都 | 350元 | 450元\n\n超出标准的部分由个人承担。"
    )
    chunks = list(split_documents([doc], SplitConfig()))
    assert chunks[-1].metadata["headings"] == ["出差标准", "住宿标准"]


def test_docx_qa_table_becomes_qa_documents(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_paragraph("以下是常见问题。")
    table = document.add_table(rows=3, cols=2)
    rows = [
        ["问题", "答案"],
        ["年假有几天？", "满1年不满10年5天。"],
        ["VPN地址？", "vpn.xinghe.example"],
    ]
    for row, cells in zip(table.rows, rows, strict=True):
        for cell, value in zip(row.cells, cells, strict=True):
            cell.text = value
    path = tmp_path / "faq.docx"
    document.save(str(path))

    docs = docs_of(path)
    qa = [d for d in docs if "question" in d.metadata]
    assert [d.text for d in qa] == [
        "问：年假有几天？\n答：满1年不满10年5天。",
        "问：VPN地址？\n答：vpn.xinghe.example",
    ]
    assert qa[0].metadata == {
        "question": "年假有几天？",
        "answer": "满1年不满10年5天。",
        "row": 1,
        "table": 1,
    }
    assert [d.text for d in docs if "question" not in d.metadata] == ["以下是常见问题。"]


def test_not_a_docx_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old-word.docx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512)  # a .doc (OLE) header
    assert "not a readable .docx" in bad_input(path)


# --- csv / xlsx -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "encoding"),
    [("问题,答案", "utf-8"), ("Question,Answer", "utf-8-sig"), ("问题,答案", "gbk")],
)
def test_csv_qa_rows(tmp_path: Path, header: str, encoding: str) -> None:
    path = tmp_path / "faq.csv"
    rows = [
        header,
        "年假有几天？,满1年不满10年每年5天",
        ",没有问题的行被跳过",
        '"报销多久到账？","审批通过后10个工作日内，打入工资卡"',
    ]
    path.write_bytes("\r\n".join(rows).encode(encoding))
    docs = docs_of(path)
    assert [d.metadata["row"] for d in docs] == [1, 3]
    assert docs[0].text == "问：年假有几天？\n答：满1年不满10年每年5天"
    assert docs[1].metadata["answer"] == "审批通过后10个工作日内，打入工资卡"
    assert docs[1].metadata["question"] == "报销多久到账？"


@pytest.mark.parametrize("sep", ["\t", ";"])
def test_csv_other_delimiters(tmp_path: Path, sep: str) -> None:
    # Commas in the answer must not make the file look comma-separated.
    path = tmp_path / "faq.csv"
    path.write_text(f"问题{sep}答案\n报销要哪些材料？{sep}发票, 行程单, 审批单\n", encoding="utf-8")
    (doc,) = docs_of(path)
    assert doc.metadata["answer"] == "发票, 行程单, 审批单"


def test_csv_configured_qa_columns(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_text(
        "编号,咨询内容,标准回复\n1,VPN连不上怎么办？,先检查动态口令是否过期\n", encoding="utf-8"
    )
    config = LoadConfig(question_columns=("咨询内容",), answer_columns=("标准回复",))
    (doc,) = docs_of(path, config)
    assert doc.metadata == {
        "question": "VPN连不上怎么办？",
        "answer": "先检查动态口令是否过期",
        "row": 1,
    }
    # With the default config the same table is not Q/A: header: value rows instead.
    (plain,) = docs_of(path)
    assert plain.text == "编号: 1; 咨询内容: VPN连不上怎么办？; 标准回复: 先检查动态口令是否过期"
    assert plain.metadata == {"row": 1}


def test_xlsx_sheets_qa_and_plain(tmp_path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    faq = book.active
    faq.title = "FAQ"
    faq.append(["question", "ANSWER"])
    faq.append(["年假有几天？", "满1年不满10年每年5天"])
    faq.append([None, None])
    faq.append(["餐补多少？", 30])
    offices = book.create_sheet("办公室")
    offices.append(["城市", "地址", "前台电话"])
    offices.append(["杭州", "西湖区文三路 100 号", "0571-8888 0000"])
    path = tmp_path / "资料.xlsx"
    book.save(path)

    docs = docs_of(path)
    assert [(d.metadata.get("sheet"), d.metadata["row"]) for d in docs] == [
        ("FAQ", 1),
        ("FAQ", 3),
        ("办公室", 1),
    ]
    assert docs[1].metadata["answer"] == "30"
    assert docs[2].text == "城市: 杭州; 地址: 西湖区文三路 100 号; 前台电话: 0571-8888 0000"


# --- jsonl ----------------------------------------------------------------------------------


def test_jsonl_text_content_and_qa(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    lines = [
        {"text": LEAVE, "title": "休假"},
        {"content": VPN, "metadata": {"dept": "IT"}},
        {"question": "年假有几天？", "answer": "5天"},
    ]
    path.write_text(
        "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n", encoding="utf-8"
    )
    docs = docs_of(path)
    assert [d.text for d in docs] == [LEAVE, VPN, "问：年假有几天？\n答：5天"]
    assert docs[0].metadata == {"line": 1, "title": "休假"}
    assert docs[1].metadata == {"dept": "IT", "line": 2}
    assert docs[2].metadata == {"line": 3, "question": "年假有几天？", "answer": "5天"}


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ('{"text": "未闭合', "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"id": 3}', "no 'text'"),
    ],
)
def test_jsonl_bad_line_names_the_line(tmp_path: Path, line: str, why: str) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text(
        json.dumps({"text": LEAVE}, ensure_ascii=False) + "\n" + line + "\n", encoding="utf-8"
    )
    message = bad_input(path)
    assert "line 2" in message and why in message


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["empty.txt", "empty.pdf", "empty.csv", "empty.docx"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    assert "empty" in bad_input(path)


@pytest.mark.parametrize("name", ["blank.txt", "blank.md", "blank.jsonl", "header-only.csv"])
def test_whitespace_only_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("问题,答案\n" if name.endswith(".csv") else " \n\u3000\n\t\n", encoding="utf-8")
    assert "no text found" in bad_input(path)


def test_binary_content_named_txt(tmp_path: Path) -> None:
    path = tmp_path / "photo.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    assert "binary" in bad_input(path)


def test_undecodable_text(tmp_path: Path) -> None:
    path = tmp_path / "garbage.txt"
    path.write_bytes(bytes([0x81, 0xFF, 0xFE, 0x80]) * 64)
    assert "UTF-8" in bad_input(path)


def test_unsupported_suffix_lists_the_supported_ones(tmp_path: Path) -> None:
    path = tmp_path / "slides.key"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(BadInput) as info:
        load(path, CFG)  # refused at once, before iterating
    for suffix in SUPPORTED:
        assert suffix in str(info.value)


def test_file_over_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.md"
    path.write_text(LEAVE * 1000, encoding="utf-8")
    message = bad_input(path, LoadConfig(max_file_mb=0.01))
    assert "max_file_mb" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        load(tmp_path / "nope.txt", CFG)


# --- the sample corpus ----------------------------------------------------------------------

INGEST = Path(__file__).resolve().parent.parent / "ingest"


def test_sample_corpus_loads_and_answers_the_annual_leave_question() -> None:
    files = sorted(INGEST.iterdir())
    assert 10 <= len(files) <= 15
    assert {f.suffix for f in files} >= {".md", ".txt", ".csv", ".docx", ".pdf"}
    assert all(f.suffix in SUPPORTED for f in files)
    docs = [d for f in files for d in load(f, CFG)]
    faq = [d for d in docs if d.metadata.get("question") == "年假有几天？"]
    assert len(faq) == 1 and "5天" in faq[0].metadata["answer"]
    assert any("满10年不满20年的，每年带薪年假10天" in d.text for d in docs)
    attendance = next(d for d in docs if d.source.endswith("考勤管理办法.txt"))
    assert "弹性上班" in attendance.text  # saved in GBK, decoded correctly
