"""HTML: visible text with headings as markdown ``#`` lines, in the page's declared encoding.

The page is read as a stream (lxml's pull parser, elements dropped once seen), so memory stays
flat: a 50 MB page took 1.9 GB as one BeautifulSoup tree.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kbqa.config import LoadConfig
from kbqa.ingest.loaders.text import (
    MARKDOWN_WHOLE_CHARS,
    _markdown_meta,
    _refuse_binary,
    _tidy,
    sniff_encoding,
)
from kbqa.types import Document

_HTML_DROP = {"script", "style", "noscript", "template", "svg", "nav", "footer", "iframe", "head"}
_HTML_BLOCKS = {
    "p", "div", "section", "article", "main", "header", "aside", "ul", "ol", "table",
    "blockquote", "dl", "dt", "dd", "figure", "figcaption", "form", "address", "hr", "body",
}  # fmt: skip
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_READ_BYTES = 256 * 1024
_SPACE = re.compile(r"\s+")


def _load_html(path: Path, config: LoadConfig) -> Iterator[Document]:
    from bs4.dammit import EncodingDetector
    from lxml import etree

    with path.open("rb") as fh:
        head = fh.read(_READ_BYTES)
        declared = EncodingDetector.find_declared_encoding(head, is_html=True)
        decode = None
        if declared:
            # Pages declaring gb2312 are routinely GBK: GB18030 decodes both.
            gb = declared.lower() in {"gb2312", "gbk", "gb18030"}
            encoding = "gb18030" if gb else declared
        else:
            _refuse_binary(path, head)
            # Judged on the first block with a non-ASCII byte, not the head alone: a page may
            # be ASCII for its first 256 KB and GBK after.
            encoding = sniff_encoding(path)
            decode = codecs.getincrementaldecoder(encoding)().decode
        # The parser decodes a declared encoding itself; otherwise it is fed decoded text.
        events = ("start", "end", "comment", "pi")
        parser = etree.HTMLPullParser(events=events, encoding=encoding if declared else None)
        walker = _Walker()
        block = head
        while True:
            final = not block
            if decode is not None:
                text = decode(block, final=final)
                if text:
                    parser.feed(text)
            elif block:
                parser.feed(block)
            if final:
                parser.close()
            for event, element in parser.read_events():
                walker.event(event, element)
            # Very long pages come out in parts cut at a block boundary; up to this size a
            # page stays whole, so the splitter sees every heading above a section.
            if walker.size > MARKDOWN_WHOLE_CHARS or final:
                if final:
                    walker.flush()
                text = _tidy(walker.take())
                if text:
                    yield Document(
                        text=text, source=str(path), metadata=_markdown_meta(walker.title)
                    )
            if final:
                return
            block = fh.read(_READ_BYTES)


class _Walker:
    """Visible text from parse events, in document order.

    An element's text is complete only once the parser has moved on, so each event's text is
    taken at the next one: after ``start`` the element's own text, after ``end`` its tail.
    Headings, table rows and ``pre`` collect their text and are written out whole at ``end``.
    """

    def __init__(self) -> None:
        self.out: list[str] = []
        self.size = 0
        self._title = ""
        self._h1 = ""
        self._pending: tuple[str, Any] | None = None
        self._drop = 0  # depth inside dropped elements (script, nav, hidden, ...)
        self._capture: list[tuple[str, list[list[str]]]] = []  # (tag, pieces or cells)

    def event(self, kind: str, element: Any) -> None:
        self.flush()
        if kind in ("comment", "pi"):
            self._pending = ("end", element)  # no text of its own, only a tail
            return
        tag = element.tag if isinstance(element.tag, str) else ""
        tag = tag.lower()
        if kind == "start":
            self._start(tag, element)
        else:
            self._end(tag, element)
        self._pending = (kind, element)

    def flush(self) -> None:
        """Take the text that became complete since the last event."""
        if self._pending is None:
            return
        kind, element = self._pending
        self._pending = None
        if kind == "start":
            self._text(element.text)
        else:
            self._text(element.tail)
            # Seen and written: free it and the siblings before it, so the tree stays small.
            element.clear(keep_tail=False)
            parent = element.getparent()
            if parent is not None:
                while element.getprevious() is not None:
                    del parent[0]

    @property
    def title(self) -> str:
        """The page's <title>, else its first <h1>."""
        return self._title or self._h1

    def take(self) -> str:
        text, self.out, self.size = "".join(self.out), [], 0
        return text

    # -- internals ------------------------------------------------------------------------

    def _emit(self, piece: str) -> None:
        if self._capture:
            tag, parts = self._capture[-1]
            if tag == "tr" and not parts:
                return  # text of a row outside its cells is not shown
            parts[-1].append(piece)
        else:
            self.out.append(piece)
            self.size += len(piece)

    def _text(self, text: str | None) -> None:
        if not text:
            return
        top = self._capture[-1][0] if self._capture else None
        if top == "title":  # the title is kept although <head> is not shown
            self._emit(text)
        elif not self._drop:
            self._emit(text if top == "pre" else _SPACE.sub(" ", text))

    def _start(self, tag: str, element: Any) -> None:
        if tag == "title":
            self._capture.append(("title", [[]]))
        if self._drop or tag in _HTML_DROP or "hidden" in element.attrib:
            self._drop += 1  # start and end events pair up, so this unwinds exactly
            return
        if tag == "br":
            self._emit("\n")
        elif tag in _HEADINGS or tag == "pre":
            self._capture.append((tag, [[]]))
        elif tag == "tr":
            self._capture.append(("tr", []))
        elif tag in ("td", "th") and self._capture and self._capture[-1][0] == "tr":
            self._capture[-1][1].append([])
        elif tag == "li":
            self._emit("\n- ")
        elif tag in _HTML_BLOCKS:
            self._emit("\n\n")

    def _end(self, tag: str, element: Any) -> None:
        if tag == "title" and self._capture and self._capture[-1][0] == "title":
            _, parts = self._capture.pop()
            self._title = self._title or " ".join("".join(parts[0]).split())
        if self._drop:
            self._drop -= 1
            return
        if (tag in _HEADINGS or tag == "pre") and self._capture and self._capture[-1][0] == tag:
            _, parts = self._capture.pop()
            if tag == "pre":
                self._emit(f"\n\n{''.join(parts[0])}\n\n")
                return
            text = " ".join(p.strip() for p in parts[0] if p.strip())
            if tag == "h1" and not self._h1:
                self._h1 = text
            self._emit(f"\n\n{'#' * _HEADINGS[tag]} {text}\n\n")
        elif tag == "tr" and self._capture and self._capture[-1][0] == "tr":
            _, cells = self._capture.pop()
            texts = [" ".join(p.strip() for p in cell if p.strip()) for cell in cells]
            self._emit(" | ".join(t for t in texts if t) + "\n")
        elif tag in _HTML_BLOCKS:
            self._emit("\n\n")
