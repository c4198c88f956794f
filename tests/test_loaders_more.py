"""pptx slides, AES-encrypted PDFs, OCR (and its missing-extra message), duplicate content."""

from __future__ import annotations

import io
import sys

import pytest

from kbqa.config import IngestConfig, LoadConfig, SplitConfig
from kbqa.errors import BadInput
from kbqa.ingest.loaders import SUPPORTED, load
from kbqa.kb import KnowledgeBase
from tests.fakes import HashEmbedder

CFG = LoadConfig()


def _cjk_font():
    from pathlib import Path

    fonts = sorted(Path("/usr/share/fonts").rglob("*CJK*"))
    return str(fonts[0]) if fonts else None


def _png(text: str, size=(640, 120)) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", size, "white")
    font = _cjk_font()
    draw = ImageDraw.Draw(img)
    draw.text((20, 30), text, fill="black", font=ImageFont.truetype(font, 36) if font else None)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _text_pdf(path, text: str) -> None:
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path))
    c.drawString(72, 720, text)
    c.save()


def test_pptx_gives_one_document_per_slide(tmp_path):
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    s1 = deck.slides.add_slide(deck.slide_layouts[1])
    s1.shapes.title.text = "差旅报销"
    s1.placeholders[1].text_frame.text = "住宿标准每晚600元。"
    s1.notes_slide.notes_text_frame.text = "财务部负责解释。"
    s2 = deck.slides.add_slide(deck.slide_layouts[5])
    s2.shapes.title.text = "补贴"
    table = s2.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    for (r, c), v in {(0, 0): "城市", (0, 1): "补贴", (1, 0): "北京", (1, 1): "100元"}.items():
        table.cell(r, c).text = v
    deck.slides.add_slide(deck.slide_layouts[6])  # an empty slide gives no document
    path = tmp_path / "policy.pptx"
    deck.save(path)
    assert ".pptx" in SUPPORTED
    docs = list(load(path, CFG))
    assert [d.metadata["slide"] for d in docs] == [1, 2]
    assert docs[0].text.startswith("# 差旅报销") and "每晚600元" in docs[0].text
    assert "备注：财务部负责解释。" in docs[0].text and docs[0].metadata["headings"] == ["差旅报销"]
    assert "北京 | 100元" in docs[1].text
    bad = tmp_path / "bad.pptx"
    bad.write_bytes(b"not a zip")
    with pytest.raises(BadInput, match="not a readable .pptx"):
        list(load(bad, CFG))


def test_aes_pdf_with_an_empty_password_is_read(tmp_path):
    from pypdf import PdfReader, PdfWriter

    plain = tmp_path / "plain.pdf"
    _text_pdf(plain, "Travel allowance is 100 yuan a day.")
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt(user_password="", owner_password="owner-secret", algorithm="AES-256")
    aes = tmp_path / "aes.pdf"
    writer.write(aes)
    assert PdfReader(aes).is_encrypted
    (doc,) = list(load(aes, CFG))
    assert "100 yuan" in doc.text and doc.metadata["page"] == 1


def test_ocr_missing_names_the_extra(tmp_path, monkeypatch):
    import kbqa.ingest.loaders.ocr as ocr

    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # as if not installed
    monkeypatch.setattr(ocr, "_engine", None)
    image = tmp_path / "scan.png"
    image.write_bytes(_png("员工每年享有5天带薪年假。"))
    with pytest.raises(BadInput, match=r"kbqa\[ocr\]") as e:
        list(load(image, CFG))
    assert "scan.png" in str(e.value)
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    scanned = tmp_path / "scanned.pdf"
    c = canvas.Canvas(str(scanned))
    c.drawImage(ImageReader(io.BytesIO(_png("年假"))), 72, 600, 320, 60)
    c.save()
    with pytest.raises(BadInput, match=r"no text layer.*kbqa\[ocr\]"):
        list(load(scanned, CFG))


@pytest.mark.slow
def test_ocr_reads_an_image_and_a_scanned_pdf(tmp_path):
    pytest.importorskip("rapidocr_onnxruntime")
    if _cjk_font() is None:
        pytest.skip("no CJK font to draw the test image (apt-get install fonts-noto-cjk)")
    image = tmp_path / "scan.png"
    image.write_bytes(_png("员工每年享有5天带薪年假。"))
    (doc,) = list(load(image, CFG))
    assert "带薪年假" in doc.text and doc.metadata["ocr"] is True
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    scanned = tmp_path / "scanned.pdf"
    c = canvas.Canvas(str(scanned))
    c.drawImage(ImageReader(io.BytesIO(_png("出差补贴每天100元"))), 72, 600, 400, 75)
    c.save()
    (page,) = list(load(scanned, CFG))
    assert "补贴" in page.text and page.metadata["ocr"] is True


def test_the_same_content_under_another_path_is_a_duplicate(tmp_path):
    e = HashEmbedder()
    kb = KnowledgeBase.open_or_create(tmp_path / "home", "demo", e, "test", SplitConfig())
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "leave.md").write_text("员工每年享有5天带薪年假。\n", encoding="utf-8")
    (b / "copy-of-leave.md").write_text("员工每年享有5天带薪年假。\n", encoding="utf-8")
    first = kb.ingest([a], e, IngestConfig())
    report = kb.ingest([b], e, IngestConfig())
    assert first.files_added == 1 and report.files_added == 0 and report.chunks_added == 0
    (dup,) = report.files_duplicate
    assert dup.path.endswith("copy-of-leave.md") and dup.same_as.endswith("leave.md")
    assert len(kb.documents()) == 1
    assert report.to_dict()["files_duplicate"][0]["same_as"] == dup.same_as
    # Once the original is gone, the copy is indexed under its own path.
    (a / "leave.md").unlink()
    assert kb.ingest([b], e, IngestConfig()).files_added == 1
    kb.close()
