"""PowerPoint .pptx: one Document per slide (title as heading, text frames, tables, notes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kbqa.config import LoadConfig
from kbqa.errors import BadInput
from kbqa.ingest.loaders.text import _tidy
from kbqa.types import Document


def _load_pptx(path: Path, config: LoadConfig) -> Iterator[Document]:
    try:
        from pptx import Presentation
    except ImportError as exc:
        raise BadInput(f"{path}: reading .pptx needs python-pptx: pip install python-pptx") from exc
    try:
        deck = Presentation(str(path))
    except Exception as exc:
        raise BadInput(
            f"{path}: not a readable .pptx (PowerPoint 2007+) file ({exc}); re-save it as .pptx"
        ) from exc
    for number, slide in enumerate(deck.slides, 1):
        title = _title(slide)
        parts = [f"# {title}"] if title else []
        for shape in slide.shapes:
            if title and shape == getattr(slide.shapes, "title", None):
                continue
            parts.extend(_shape_text(shape))
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame.text if slide.notes_slide else ""
            if notes.strip():
                parts.append(f"备注：{notes.strip()}")
        text = _tidy("\n".join(p for p in parts if p.strip()))
        if text:
            meta: dict[str, Any] = {"slide": number}
            if title:
                meta["headings"] = [title]
            yield Document(text=text, source=str(path), metadata=meta)


def _title(slide: Any) -> str:
    shape = getattr(slide.shapes, "title", None)
    return shape.text_frame.text.strip() if shape is not None and shape.has_text_frame else ""


def _shape_text(shape: Any) -> list[str]:
    if getattr(shape, "shape_type", None) == 6:  # MSO_SHAPE_TYPE.GROUP: walk its members
        return [t for member in shape.shapes for t in _shape_text(member)]
    if getattr(shape, "has_table", False) and shape.has_table:
        return [
            " | ".join(c.text.strip() for c in row.cells if c.text.strip())
            for row in shape.table.rows
        ]
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        return [p_text for p in shape.text_frame.paragraphs if (p_text := _para(p))]
    return []


def _para(paragraph: Any) -> str:
    return "".join(run.text for run in paragraph.runs).strip()
