"""Bounded work per file (issue 16): paragraph, cell, row and decompressed-size limits; linear docx."""

from __future__ import annotations

import csv
import io
import time
import zipfile
from pathlib import Path

import pytest

from kbqa.config import LoadConfig
from kbqa.errors import BadInput
from kbqa.ingest.loaders import load

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def make_docx(path: Path, body: str, extra_styles: str = "") -> Path:
    """A .docx from python-docx's template with ``body`` as its document body XML."""
    import docx

    buf = io.BytesIO()
    docx.Document().save(buf)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "word/document.xml":
                data = (
                    f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                    f'<w:document xmlns:w="{W_NS}"><w:body>{body}</w:body></w:document>'
                ).encode()
            elif item.filename == "word/styles.xml" and extra_styles:
                # Decoys first: a lookup by id scans past every one of them.
                text = data.decode()
                at = text.index("<w:style ")
                data = (text[:at] + extra_styles + text[at:]).encode()
            out.writestr(item.filename, data)
    return path


def heading_paragraphs(n: int) -> str:
    return "".join(
        f'<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>第{i}节</w:t></w:r></w:p>'
        f"<w:p><w:r><w:t>内容{i}。</w:t></w:r></w:p>"
        for i in range(n)
    )


def read(path: Path, config: LoadConfig | None = None) -> list:
    return list(load(path, config or LoadConfig()))


def refused(path: Path, config: LoadConfig) -> str:
    with pytest.raises(BadInput) as info:
        read(path, config)
    return str(info.value)


def test_docx_paragraph_limit_names_the_file_and_setting(tmp_path):
    path = make_docx(tmp_path / "many.docx", "<w:p/>" * 5000)
    message = refused(path, LoadConfig(max_paragraphs=1000))
    assert "many.docx" in message and "1000 paragraphs" in message
    assert "KBQA_MAX_PARAGRAPHS" in message


def test_five_million_empty_paragraphs_are_refused_in_seconds(tmp_path):
    path = make_docx(tmp_path / "bomb.docx", "<w:p/>" * 5_000_000)
    assert path.stat().st_size < 200_000  # the red-team file: tiny on disk
    started = time.monotonic()
    assert "KBQA_MAX_PARAGRAPHS" in refused(path, LoadConfig())
    assert time.monotonic() - started < 10  # was ~3.5 hours


def test_docx_table_cell_limit(tmp_path):
    row = "<w:tr>" + "<w:tc><w:p><w:r><w:t>x</w:t></w:r></w:p></w:tc>" * 10 + "</w:tr>"
    path = make_docx(tmp_path / "cells.docx", f"<w:tbl>{row * 50}</w:tbl>")
    assert "KBQA_MAX_CELLS" in refused(path, LoadConfig(max_cells=100))
    assert read(path, LoadConfig(max_cells=500))


def test_decompressed_size_limit(tmp_path):
    path = make_docx(
        tmp_path / "big.docx", "<w:p><w:r><w:t>" + "重" * 600_000 + "</w:t></w:r></w:p>"
    )
    message = refused(path, LoadConfig(max_unzipped_mb=1))
    assert "big.docx" in message and "KBQA_MAX_UNZIPPED_MB" in message


def test_xlsx_row_and_cell_limits(tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["问题", "答案"])
    for i in range(300):
        sheet.append([f"问题{i}", f"答案{i}"])
    path = tmp_path / "faq.xlsx"
    book.save(path)
    assert "KBQA_MAX_ROWS" in refused(path, LoadConfig(max_rows=100))
    assert "KBQA_MAX_CELLS" in refused(path, LoadConfig(max_cells=100))
    assert "KBQA_MAX_UNZIPPED_MB" in refused(path, LoadConfig(max_unzipped_mb=0.001))
    assert len(read(path)) == 300


def test_csv_row_limit(tmp_path):
    path = tmp_path / "faq.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["问题", "答案"])
        writer.writerows([f"问{i}", f"答{i}"] for i in range(300))
    assert "KBQA_MAX_ROWS" in refused(path, LoadConfig(max_rows=100))


def test_docx_reading_does_not_scale_with_the_number_of_styles(tmp_path):
    """paragraph.style scanned styles.xml per paragraph: time grew with paragraphs x styles."""
    decoys = "".join(
        f'<w:style w:type="paragraph" w:styleId="Decoy{i}"><w:name w:val="Decoy {i}"/></w:style>'
        for i in range(3000)
    )
    body = heading_paragraphs(1500)
    few = make_docx(tmp_path / "few.docx", body)
    many = make_docx(tmp_path / "many.docx", body, extra_styles=decoys)

    def seconds(path: Path) -> float:
        started = time.monotonic()
        docs = read(path)
        assert "# 第1499节" in docs[0].text  # headings still found by style
        return time.monotonic() - started

    seconds(few)  # warm-up: imports, caches
    baseline, styled = seconds(few), seconds(many)
    # Parsing 3,000 more styles once is cheap; 3,000 paragraphs x 3,000 styles is not.
    assert styled < 3 * baseline + 0.5, (baseline, styled)


@pytest.mark.parametrize("field", ["max_paragraphs", "max_cells", "max_rows", "max_unzipped_mb"])
def test_limits_must_be_positive(field):
    with pytest.raises(BadInput, match=field):
        LoadConfig(**{field: 0})


def test_the_limits_come_from_kbqa_settings(monkeypatch):
    from kbqa.config import load_settings

    monkeypatch.setenv("KBQA_MAX_PARAGRAPHS", "7")
    monkeypatch.setenv("KBQA_MAX_UNZIPPED_MB", "2.5")
    config = load_settings().load_config()
    assert (config.max_paragraphs, config.max_unzipped_mb) == (7, 2.5)
    monkeypatch.setenv("KBQA_MAX_ROWS", "0")
    with pytest.raises(BadInput, match="max_rows"):
        load_settings()


def test_an_undeclared_html_page_gbk_after_a_long_ascii_head(tmp_path):
    # Read as a stream, the encoding is still judged on the first non-ASCII block.
    head = "<html><body>" + "<p>ascii only</p>" * 20_000  # ~340 KB
    path = tmp_path / "late.html"
    path.write_bytes((head + "<p>春节放假七天。</p></body></html>").encode("gbk"))
    [doc] = read(path)
    assert "春节放假七天" in doc.text
