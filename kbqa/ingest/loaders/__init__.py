"""File -> Documents: txt, md, html, pdf, docx, pptx, csv/xlsx (Q/A tables), jsonl, images (OCR)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from kbqa.config import LoadConfig
from kbqa.errors import BadInput, KbqaError, NotFound
from kbqa.ingest.loaders.html import _load_html
from kbqa.ingest.loaders.jsonl import _load_jsonl
from kbqa.ingest.loaders.ocr import IMAGE_SUFFIXES, _load_image
from kbqa.ingest.loaders.office import _load_docx
from kbqa.ingest.loaders.pdf import _load_pdf
from kbqa.ingest.loaders.pptx import _load_pptx
from kbqa.ingest.loaders.tables import _load_csv, _load_xlsx
from kbqa.ingest.loaders.text import MARKDOWN_WHOLE_CHARS, SEGMENT_CHARS, _load_text, sniff_encoding
from kbqa.types import Document

__all__ = ["MARKDOWN_WHOLE_CHARS", "SEGMENT_CHARS", "SUPPORTED", "load", "sniff_encoding"]


def load(path: Path, config: LoadConfig) -> Iterator[Document]:
    """Documents of one file, read lazily; checks the path now and raises ``BadInput`` early.

    Every problem with the file's content, found now or while iterating, is a ``BadInput``
    whose message names the file and says what to do.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise BadInput(
            f"{path}: unsupported file type {suffix or '(no suffix)'!r}; "
            f"convert it to one of {', '.join(sorted(SUPPORTED))}"
        )
    if not path.exists():
        raise NotFound(f"{path}: no such file; check the path")
    if not path.is_file():
        raise BadInput(f"{path}: not a regular file; give a file path")
    size = path.stat().st_size
    if size == 0:
        raise BadInput(f"{path}: the file is empty (0 bytes); nothing to index, remove it")
    if size > config.max_file_mb * 1024 * 1024:
        raise BadInput(
            f"{path}: the file is {size / 2**20:.1f} MB, over the limit of {config.max_file_mb:g} MB; "
            "split it into smaller files or raise max_file_mb"
        )
    return _guarded(path, _LOADERS[suffix](path, config))


def _guarded(path: Path, docs: Iterator[Document]) -> Iterator[Document]:
    """Wrap library exceptions into ``BadInput`` and refuse a file that yields no text."""
    count = 0
    try:
        for doc in docs:
            count += 1
            yield doc
    except (KbqaError, MemoryError):
        raise
    except UnicodeDecodeError as exc:
        raise BadInput(
            f"{path}: the text is not valid {exc.encoding} throughout (mixed encodings or "
            "binary data?); re-save the file as UTF-8"
        ) from exc
    except OSError as exc:
        raise BadInput(f"{path}: cannot be read ({exc.strerror or exc}); check the file") from exc
    except Exception as exc:  # a parser's own exception must not escape as a traceback
        raise BadInput(
            f"{path}: could not be read as {path.suffix.lower()} ({type(exc).__name__}: {exc}); "
            "check that the file is not damaged and matches its extension"
        ) from exc
    if count == 0:
        raise BadInput(
            f"{path}: no text found (empty, only whitespace, or no data rows); "
            "add content or remove the file"
        )


_LOADERS: dict[str, Callable[[Path, LoadConfig], Iterator[Document]]] = {
    ".txt": _load_text,
    ".md": _load_text,
    ".markdown": _load_text,
    ".html": _load_html,
    ".htm": _load_html,
    ".pdf": _load_pdf,
    ".docx": _load_docx,
    ".csv": _load_csv,
    ".tsv": _load_csv,
    ".xlsx": _load_xlsx,
    ".jsonl": _load_jsonl,
    ".pptx": _load_pptx,
    **dict.fromkeys(IMAGE_SUFFIXES, _load_image),  # OCR: the optional extra "ocr"
}

SUPPORTED: frozenset[str] = frozenset(_LOADERS)
