"""HTML: visible text with headings as markdown ``#`` lines, in the page's declared encoding."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kbqa.config import LoadConfig
from kbqa.loaders.text import _markdown_meta, _pick_encoding, _refuse_binary, _tidy
from kbqa.types import Document

_HTML_DROP = {"script", "style", "noscript", "template", "svg", "nav", "footer", "iframe", "head"}
_HTML_BLOCKS = {
    "p", "div", "section", "article", "main", "header", "aside", "ul", "ol", "table",
    "blockquote", "dl", "dt", "dd", "figure", "figcaption", "form", "address", "hr", "body",
}  # fmt: skip
_HEADINGS = {f"h{n}": n for n in range(1, 7)}


def _load_html(path: Path, config: LoadConfig) -> Iterator[Document]:
    from bs4 import BeautifulSoup
    from bs4.dammit import EncodingDetector

    data = path.read_bytes()
    declared = EncodingDetector.find_declared_encoding(data, is_html=True)
    if declared:
        # Pages declaring gb2312 are routinely GBK: GB18030 decodes both.
        gb = declared.lower() in {"gb2312", "gbk", "gb18030"}
        soup = BeautifulSoup(data, "lxml", from_encoding="gb18030" if gb else declared)
    else:
        _refuse_binary(path, data)
        soup = BeautifulSoup(data.decode(_pick_encoding(path, data)), "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    root = soup.body or soup
    text = _tidy(_html_text(root))
    if not title:
        h1 = soup.find("h1")
        title = h1.get_text(" ", strip=True) if h1 else ""
    if text:
        yield Document(text=text, source=str(path), metadata=_markdown_meta(title))


def _html_text(root: Any) -> str:
    """Visible text: blocks as blank-line separated paragraphs, headings as ``#`` lines."""
    from bs4 import NavigableString, Tag
    from bs4.element import PreformattedString

    out: list[str] = []
    # An explicit stack instead of recursion: real pages nest deeper than Python's limit.
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, tuple):  # a closing marker
            out.append(node[0])
        elif isinstance(node, NavigableString):
            # Comments, doctypes and CDATA are PreformattedStrings: not visible text.
            if not isinstance(node, PreformattedString):
                out.append(re.sub(r"\s+", " ", str(node)))
        elif isinstance(node, Tag):
            name = node.name
            if name in _HTML_DROP or node.has_attr("hidden"):
                continue
            if name == "br":
                out.append("\n")
            elif name in _HEADINGS:
                out.append(f"\n\n{'#' * _HEADINGS[name]} {node.get_text(' ', strip=True)}\n\n")
            elif name == "pre":
                out.append(f"\n\n{node.get_text()}\n\n")
            elif name == "tr":
                cells = [c.get_text(" ", strip=True) for c in node.find_all(["td", "th"])]
                out.append(" | ".join(c for c in cells if c) + "\n")
            else:
                # List items stay on consecutive lines; other blocks are paragraphs.
                opening, closing = ("", "")
                if name == "li":
                    opening = "\n- "
                elif name in _HTML_BLOCKS:
                    opening = closing = "\n\n"
                out.append(opening)
                stack.append((closing,))
                stack.extend(reversed(list(node.children)))
    return "".join(out)
