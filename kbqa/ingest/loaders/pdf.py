"""PDF: one Document per page with a text layer, lines wrapped mid-sentence joined again."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kbqa.config import LoadConfig
from kbqa.errors import BadInput, KbqaError
from kbqa.ingest.loaders.text import _tidy
from kbqa.types import Document


def _load_pdf(path: Path, config: LoadConfig) -> Iterator[Document]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    # pypdf logs repairs of damaged files on its own; the one BadInput below says it better.
    logging.getLogger("pypdf").setLevel(logging.ERROR)

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise BadInput(
                f"{path}: the PDF is encrypted with a password; decrypt it first "
                "(e.g. qpdf --decrypt --password=... in.pdf out.pdf) and ingest the copy"
            )
        pages = reader.pages
        count = len(pages)
    except KbqaError:
        raise
    except DependencyError as exc:  # AES without the 'cryptography' package
        raise BadInput(
            f"{path}: the PDF is encrypted ({exc}); decrypt it first or pip install cryptography"
        ) from exc
    except Exception as exc:  # pypdf raises PdfReadError, but also bare ValueError/KeyError
        raise BadInput(
            f"{path}: not a readable PDF ({exc}); check that the file is complete and not damaged"
        ) from exc
    title = _pdf_title(reader)
    found = 0
    for number in range(1, count + 1):
        try:
            text = _unwrap(_tidy(pages[number - 1].extract_text() or ""))
        except Exception as exc:
            raise BadInput(
                f"{path}: page {number} is not a readable PDF page ({exc}); repair or re-export the PDF"
            ) from exc
        ocr = not text  # a scanned page has no text layer: its images may be read by OCR
        if ocr:
            last = not found and number == count  # no text anywhere: say OCR is missing
            text = _ocr_page(path, pages[number - 1], number, last)
        if text:
            found += 1
            meta: dict[str, Any] = {"page": number, **({"ocr": True} if ocr else {})}
            if title:
                meta["title"] = title
            yield Document(text=text, source=str(path), metadata=meta)


def _width(line: str) -> int:
    # A CJK character is about twice as wide as a Latin letter on the page.
    return sum(1 if ord(ch) < 0x2E80 else 2 for ch in line)


def _unwrap(text: str) -> str:
    """Join the lines a PDF wrapped mid-sentence, which would split Chinese words apart.

    A line is wrapped when it is nearly as wide as the widest line of the page and does not end
    a sentence; headings and a paragraph's last line are short, so they keep their break.
    Example: ``"住房公\n积金比例为12%。"`` -> ``"住房公积金比例为12%。"`` on a full-width line.
    """
    lines = text.split("\n")
    widest = max(map(_width, lines), default=0)
    if widest < 40:  # too little text on the page to tell a full line from a short one
        return text
    out = [lines[0]]
    for line in lines[1:]:
        last = out[-1]
        if last and line and _width(last) >= 0.85 * widest and last[-1] not in "。！？!?：:；;":
            space = " " if last[-1].isascii() and line[0].isascii() else ""
            out[-1] = last + space + line
        else:
            out.append(line)
    return "\n".join(out)


def _pdf_title(reader: Any) -> str:
    try:
        return str((reader.metadata or {}).get("/Title") or "").strip()
    except Exception:  # broken info dictionaries are common and harmless
        return ""


def _ocr_page(path: Path, page: Any, number: int, last: bool) -> str:
    """OCR of a page's images; without the extra, a PDF with no text at all says to install it.

    A PDF with text on other pages keeps them and loses only its scanned pages (logged).
    """
    from kbqa.ingest.loaders.ocr import missing_ocr, ocr_available, ocr_text

    try:
        images = list(page.images)
    except Exception:  # an undecodable image: the page stays without text
        return ""
    if not images:
        return ""
    if not ocr_available():
        if last:
            raise missing_ocr(path, "this PDF has no text layer (scanned?) and")
        logging.getLogger(__name__).warning(
            "%s page %d is scanned; OCR not installed", path, number
        )
        return ""
    return "\n".join(ocr_text(image.data, path) for image in images).strip()
