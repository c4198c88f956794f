"""Plain text and markdown: encoding sniffing, streamed segments, shared text helpers."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kbqa.config import LoadConfig
from kbqa.errors import BadInput
from kbqa.text import SENTENCE_MARKS
from kbqa.types import Document

# Big text files are yielded in segments of about this many characters, cut at paragraph breaks.
SEGMENT_CHARS = 64 * 1024
# Markdown is kept whole up to this size so the splitter sees every heading above a section.
MARKDOWN_WHOLE_CHARS = 4 * 1024 * 1024
_READ_BYTES = 64 * 1024
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\u3000]*\n")
# A segment of a big file without paragraph breaks is cut after a sentence mark.
_SENTENCE_END = re.compile(rf"[{SENTENCE_MARKS}…]")


# --- encodings -----------------------------------------------------------------------------


def sniff_encoding(path: Path) -> str:
    """The text encoding of a file: BOM, else strict UTF-8, else GB18030, else charset-normalizer.

    Decided on the first 64 KB block holding a non-ASCII byte, since ASCII reads the same in all
    candidates; a file that is ASCII throughout is UTF-8.
    """
    with path.open("rb") as fh:
        head = fh.read(4)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        fh.seek(0)
        while block := fh.read(_READ_BYTES):
            _refuse_binary(path, block)
            if not block.isascii():
                return _pick_encoding(path, block)
    return "utf-8"


def _pick_encoding(path: Path, sample: bytes) -> str:
    for encoding in ("utf-8", "gb18030"):
        try:
            # final=False: the sample may end inside a multi-byte character.
            codecs.getincrementaldecoder(encoding)().decode(sample, final=False)
            return encoding
        except UnicodeDecodeError:
            pass
    import charset_normalizer

    best = charset_normalizer.from_bytes(sample).best()
    if best is None:
        raise BadInput(
            f"{path}: not readable as text (neither UTF-8 nor GB18030/GBK); re-save it as UTF-8"
        )
    return best.encoding


def _refuse_binary(path: Path, data: bytes | str) -> None:
    if (b"\x00" if isinstance(data, bytes) else "\x00") in data:
        raise BadInput(
            f"{path}: contains NUL bytes, so it looks like a binary file, not text; "
            "give the original document (UTF-16 text: re-save it as UTF-8)"
        )


# --- plain text and markdown ---------------------------------------------------------------


def _load_text(path: Path, config: LoadConfig) -> Iterator[Document]:
    limit = MARKDOWN_WHOLE_CHARS if path.suffix.lower() in {".md", ".markdown"} else SEGMENT_CHARS
    for number, segment in enumerate(_segments(path, limit), start=1):
        yield Document(text=segment, source=str(path), metadata={"segment": number})


def _segments(path: Path, size: int) -> Iterator[str]:
    """Stream a text file as pieces of at most ``size`` characters, cut at paragraph breaks."""
    encoding = sniff_encoding(path)
    buffer = ""
    # newline=None turns \r\n and \r into \n, also across read boundaries.
    with path.open(encoding=encoding, errors="strict", newline=None) as fh:
        while piece := fh.read(_READ_BYTES):
            _refuse_binary(path, piece)
            buffer += piece
            while len(buffer) > size:
                cut = _cut_point(buffer, size)
                if segment := buffer[:cut].strip():
                    yield segment
                buffer = buffer[cut:]
    if segment := buffer.strip():
        yield segment


def _cut_point(text: str, size: int) -> int:
    """Where to cut ``text`` to a piece of at most ``size`` characters.

    At the last paragraph break; a paragraph longer than ``size`` alone is cut at its last line
    break, else sentence end, else hard at ``size``.
    """
    window = text[:size]
    breaks = [m.end() for m in _PARAGRAPH_BREAK.finditer(window) if m.start() > 0]
    if breaks:
        return breaks[-1]
    newline = window.rfind("\n")
    if newline > 0:
        return newline + 1
    ends = [m.end() for m in _SENTENCE_END.finditer(window, size // 2)]
    return ends[-1] if ends else size


# --- helpers shared by the html, pdf and docx loaders --------------------------------------


def _markdown_meta(title: str) -> dict[str, Any]:
    # "markdown" tells the splitter that the '#' lines written for headings are headings.
    return {"markdown": True, "title": title} if title else {"markdown": True}


def _tidy(text: str) -> str:
    """Strip every line and keep at most one blank line between paragraphs."""
    lines = [line.strip() for line in text.splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
