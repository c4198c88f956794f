"""Word .docx: paragraphs with headings as markdown, tables as text or one Document per Q/A row."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kbqa.config import LoadConfig
from kbqa.errors import BadInput
from kbqa.ingest.loaders.limits import Budget, check_unzipped
from kbqa.ingest.loaders.tables import _qa_columns, _qa_documents
from kbqa.ingest.loaders.text import _markdown_meta, _tidy
from kbqa.types import Document

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _load_docx(path: Path, config: LoadConfig) -> Iterator[Document]:
    import docx
    from docx.table import Table

    check_unzipped(path, config.max_unzipped_mb)
    _prescan(path, config)
    try:
        document = docx.Document(str(path))
    except Exception as exc:
        raise BadInput(
            f"{path}: not a readable .docx (Word 2007+) file ({exc}); re-save it as .docx"
        ) from exc
    # paragraph.style looks its style up in styles.xml every time (O(styles) per paragraph,
    # hours for a big file): style names are read once, paragraphs name theirs by id.
    names = {s.style_id: s.name or "" for s in document.styles}
    cells = Budget(path, "table cells", config.max_cells, "KBQA_MAX_CELLS")
    parts: list[str] = []
    tables = 0
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            tables += 1
            rows = _docx_rows(block, cells)
            qa = _qa_columns(rows[0], config) if rows else None
            if qa is None:
                parts.append("\n".join(" | ".join(c for c in row if c) for row in rows))
            else:
                # Q/A tables become one Document per row, so FAQ matching sees each pair.
                yield from _qa_documents(path, rows[1:], qa, {"table": tables})
        else:
            parts.append(_docx_paragraph(block, names))
    text = _tidy("\n\n".join(p for p in parts if p.strip()))
    if text:
        title = (document.core_properties.title or "").strip()
        yield Document(text=text, source=str(path), metadata=_markdown_meta(title))


def _prescan(path: Path, config: LoadConfig) -> None:
    """Count paragraphs and table cells in one streamed pass, stopping at the first limit.

    python-docx builds the whole tree first: a tiny file with millions of empty ``<w:p/>``
    would cost its full parse (and memory) before any limit could be checked.
    """
    import zipfile

    from lxml import etree

    paragraphs = Budget(path, "paragraphs", config.max_paragraphs, "KBQA_MAX_PARAGRAPHS")
    cells = Budget(path, "table cells", config.max_cells, "KBQA_MAX_CELLS")
    try:
        with zipfile.ZipFile(path) as zf, zf.open("word/document.xml") as fh:
            for _, element in etree.iterparse(fh, events=("end",), tag=(W + "p", W + "tc")):
                (paragraphs if element.tag == W + "p" else cells).take()
                if element.tag == W + "tc" or element.getparent().tag == W + "body":
                    # Drop what was counted so memory stays flat however long the file is.
                    element.clear(keep_tail=True)
                    while element.getprevious() is not None:
                        del element.getparent()[0]
    except BadInput:
        raise
    except (KeyError, zipfile.BadZipFile, etree.XMLSyntaxError) as exc:
        raise BadInput(
            f"{path}: not a readable .docx (Word 2007+) file ({exc}); re-save it as .docx"
        ) from exc


def _docx_paragraph(paragraph: Any, names: dict[str, str]) -> str:
    """Paragraph text; Heading N / Title styles become markdown ``#`` lines for the splitter."""
    text = paragraph.text.strip()
    if not text:
        return ""
    style_id = paragraph._p.style  # the pStyle id, or None for the default style
    style = (names.get(style_id, style_id) if style_id else "") or ""
    match = re.fullmatch(r"(?:Heading|标题)\s*(\d)", style.strip(), flags=re.IGNORECASE)
    if match:
        return f"{'#' * min(int(match.group(1)), 6)} {text}"
    if style == "Title":
        return f"# {text}"
    return text


def _docx_rows(table: Any, budget: Budget) -> list[list[str]]:
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        row_cells = row.cells
        budget.take(len(row_cells))
        for cell in row_cells:
            if id(cell._tc) in seen:  # a merged cell is repeated for every grid column it spans
                continue
            seen.add(id(cell._tc))
            cells.append(cell.text.strip())
        if any(cells):
            rows.append(cells)
    return rows
