"""OCR for scanned PDF pages and images, through the optional extra ``ocr`` (RapidOCR).

rapidocr-onnxruntime ships its Chinese+English detection and recognition models inside the
wheel, so OCR works offline with nothing downloaded at run time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kbqa.config import LoadConfig
from kbqa.errors import BadInput
from kbqa.ingest.loaders.text import _tidy
from kbqa.types import Document

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
INSTALL = "pip install 'kbqa[ocr]' (rapidocr-onnxruntime)"
MIN_CONFIDENCE = 0.5  # RapidOCR's per-line score; lower lines are mostly noise on photos

_engine: Any = None
_lock = threading.Lock()


def missing_ocr(path: Path, what: str) -> BadInput:
    return BadInput(f"{path}: {what} needs OCR, which is not installed: {INSTALL}")


def ocr_available() -> bool:
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _get_engine(path: Path, what: str) -> Any:
    global _engine
    with _lock:
        if _engine is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError as exc:
                raise missing_ocr(path, what) from exc
            _engine = RapidOCR()  # models load once per process (about 2 s)
    return _engine


def ocr_text(image: Any, path: Path, what: str = "a scanned page") -> str:
    """The text of an image (a path, bytes or an array), lines in reading order."""
    engine = _get_engine(path, what)
    with _lock:  # one onnxruntime session, not known to be safe across threads
        result, _ = engine(image)
    lines = [text for _, text, score in (result or []) if float(score) >= MIN_CONFIDENCE]
    return _tidy("\n".join(lines))


def _load_image(path: Path, config: LoadConfig) -> Iterator[Document]:
    text = ocr_text(path.read_bytes(), path, f"an image ({path.suffix.lower()})")
    if text:
        yield Document(text=text, source=str(path), metadata={"ocr": True})
