"""Word .docx: paragraphs with headings as markdown, tables as text or one Document per Q/A row."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kbqa.config import LoadConfig
from kbqa.errors import BadInput
from kbqa.loaders.tables import _qa_columns, _qa_documents
from kbqa.loaders.text import _markdown_meta, _tidy
from kbqa.types import Document


def _load_docx(path: Path, config: LoadConfig) -> Iterator[Document]:
    import docx
    from docx.table import Table

    try:
        document = docx.Document(str(path))
    except Exception as exc:
        raise BadInput(
            f"{path}: not a readable .docx (Word 2007+) file ({exc}); re-save it as .docx"
        ) from exc
    parts: list[str] = []
    tables = 0
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            tables += 1
            rows = _docx_rows(block)
            qa = _qa_columns(rows[0], config) if rows else None
            if qa is None:
                parts.append("\n".join(" | ".join(c for c in row if c) for row in rows))
            else:
                # Q/A tables become one Document per row, so FAQ matching sees each pair.
                yield from _qa_documents(path, rows[1:], qa, {"table": tables})
        else:
            parts.append(_docx_paragraph(block))
    text = _tidy("\n\n".join(p for p in parts if p.strip()))
    if text:
        title = (document.core_properties.title or "").strip()
        yield Document(text=text, source=str(path), metadata=_markdown_meta(title))


def _docx_paragraph(paragraph: Any) -> str:
    """Paragraph text; Heading N / Title styles become markdown ``#`` lines for the splitter."""
    text = paragraph.text.strip()
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    match = re.fullmatch(r"(?:Heading|标题)\s*(\d)", style.strip(), flags=re.IGNORECASE)
    if text and match:
        return f"{'#' * min(int(match.group(1)), 6)} {text}"
    if text and style == "Title":
        return f"# {text}"
    return text


def _docx_rows(table: Any) -> list[list[str]]:
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) in seen:  # a merged cell is repeated for every grid column it spans
                continue
            seen.add(id(cell._tc))
            cells.append(cell.text.strip())
        if any(cells):
            rows.append(cells)
    return rows
