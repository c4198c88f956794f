"""Chinese-aware splitter: paragraphs, sentence ends, markdown heading paths, Q/A rows kept whole.

Own code rather than langchain's RecursiveCharacterTextSplitter, which glues a sentence's 。 to the
start of the next piece, measures overlap over whatever fragments it last split into, and cuts
sentences mid-way when a paragraph is long, where we need whole-sentence pieces and overlap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from kbqa.config import SplitConfig
from kbqa.text import SENTENCE_END
from kbqa.types import Chunk, Document

# Clause breaks, used only inside a sentence longer than chunk_size; ",(?!\d)" spares 1,000.
_CLAUSE_END = re.compile(r"[，、：]+|,(?!\d)")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\u3000]*\n\s*")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_MARKDOWN_SUFFIXES = (".md", ".markdown", ".docx")


@dataclass(frozen=True)
class _Piece:
    """An atom of packing: a sentence, or a clause/cut of an over-long one (``whole`` False)."""

    text: str
    sep: str  # what joins it to the previous piece: "\n\n", "\n", " " or ""
    whole: bool = True


def _split_at(text: str, pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    """(separator, piece) pairs cut after each match; the separator is " " where space was."""
    out: list[tuple[str, str]] = []
    start = 0
    ends = [m.end() for m in pattern.finditer(text)] + [len(text)]
    for end in ends:
        raw = text[start:end]
        start = end
        piece = raw.strip()
        if piece:
            out.append((" " if raw[:1].isspace() else "", piece))
    return out


def _hard_cut(text: str, size: int) -> list[tuple[str, str]]:
    """Cuts text into parts of at most size, at the last space in the window when there is one."""
    out: list[tuple[str, str]] = []
    sep = ""
    while len(text) > size:
        cut = text.rfind(" ", size // 2, size + 1)  # a space keeps English words whole
        cut = cut if cut > 0 else size
        out.append((sep, text[:cut].rstrip()))
        sep = " " if text[cut : cut + 1].isspace() else ""
        text = text[cut:].lstrip()
    if text:
        out.append((sep, text))
    return out


def _sentence_pieces(sentence: str, sep: str, size: int) -> list[_Piece]:
    """The sentence as one piece, or, when longer than size, its clauses, cut further if need be."""
    if len(sentence) <= size:
        return [_Piece(sentence, sep)]
    pieces: list[_Piece] = []
    for c, (clause_sep, clause) in enumerate(_split_at(sentence, _CLAUSE_END)):
        for k, (part_sep, part) in enumerate(_hard_cut(clause, size)):
            joined = part_sep if k else (clause_sep if c else sep)
            pieces.append(_Piece(part, joined, whole=False))
    return pieces


def _pieces(text: str, size: int) -> Iterator[_Piece]:
    """Every sentence of text in order, tagged with the break that precedes it."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for p, paragraph in enumerate(_PARAGRAPH_BREAK.split(text.strip())):
        for n, line in enumerate(paragraph.split("\n")):
            line_sep = "\n\n" if p and not n else "\n"
            for s, (space, sentence) in enumerate(_split_at(line, SENTENCE_END)):
                yield from _sentence_pieces(sentence, space if s else line_sep, size)


def _joined_len(pieces: list[_Piece]) -> int:
    return sum(len(p.text) for p in pieces) + sum(len(p.sep) for p in pieces[1:])


def _render(pieces: list[_Piece]) -> str:
    return pieces[0].text + "".join(p.sep + p.text for p in pieces[1:])


def _overlap(chunk: list[_Piece], after: _Piece, config: SplitConfig) -> list[_Piece]:
    """The longest run of trailing whole sentences within chunk_overlap that leaves room for after."""
    tail: list[_Piece] = []
    for piece in reversed(chunk):
        candidate = [piece, *tail]
        if not piece.whole or _joined_len(candidate) > config.chunk_overlap:
            break
        if _joined_len(candidate) + len(after.sep) + len(after.text) > config.chunk_size:
            break
        tail = candidate
    return tail


def _pack(pieces: Iterable[_Piece], config: SplitConfig) -> Iterator[str]:
    """Greedily fills chunks with consecutive pieces; each starts with the last one's overlap."""
    current: list[_Piece] = []
    length = 0
    for piece in pieces:
        if current and length + len(piece.sep) + len(piece.text) > config.chunk_size:
            yield _render(current)
            current = _overlap(current, piece, config)
            length = _joined_len(current)
        length += (len(piece.sep) if current else 0) + len(piece.text)
        current.append(piece)
    if current:
        yield _render(current)


def split_text(text: str, config: SplitConfig) -> list[str]:
    """Splits plain text into chunks of whole sentences, at most chunk_size characters each.

    >>> split_text("第一句话。第二句话！\\n\\n新段落？", SplitConfig(chunk_size=12, chunk_overlap=5))
    ['第一句话。第二句话！', '第二句话！\\n\\n新段落？']
    """
    return list(_pack(_pieces(text, config.chunk_size), config))


def is_markdown(doc: Document) -> bool:
    """Whether '#' lines of the document are headings (markdown files, docx via its loader)."""
    return doc.source.lower().endswith(_MARKDOWN_SUFFIXES) or doc.metadata.get("markdown") is True


@dataclass
class _MarkdownState:
    """What a markdown file's next segment inherits from the previous one (same source)."""

    headings: tuple[tuple[int, str], ...] = ()
    in_fence: bool = False


def _sections(text: str, state: _MarkdownState) -> Iterator[tuple[list[str], str]]:
    """(heading path, body) per section; updates state so a later segment continues the path."""
    body: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        heading = None if state.in_fence else _HEADING.match(line)
        if _FENCE.match(line):
            state.in_fence = (
                not state.in_fence
            )  # '#' inside a code block is a comment, not a heading
        if heading is None:
            body.append(line)
            continue
        yield [title for _, title in state.headings], "\n".join(body)
        body = []
        level, title = len(heading.group(1)), (heading.group(2) or "").strip()
        kept = tuple(h for h in state.headings if h[0] < level)
        state.headings = (*kept, (level, title)) if title else kept
    yield [title for _, title in state.headings], "\n".join(body)


def _chunk(text: str, metadata: dict[str, Any], headings: list[str]) -> Chunk:
    meta = dict(metadata)
    if headings:
        meta["headings"] = list(headings)
        return Chunk(text=text, metadata=meta, embed_text=" > ".join(headings) + "\n" + text)
    return Chunk(text=text, metadata=meta, embed_text=text)


def split_documents(docs: Iterable[Document], config: SplitConfig) -> Iterator[Chunk]:
    """Lazily turns documents into chunks, one document at a time, in order."""
    state = _MarkdownState()
    previous_source: str | None = None
    for doc in docs:
        if "question" in doc.metadata and "answer" in doc.metadata:
            # A Q/A row answers one question; a split answer would be half an answer.
            if doc.text.strip():
                yield _chunk(doc.text.strip(), doc.metadata, [])
            continue
        if not is_markdown(doc):
            for text in split_text(doc.text, config):
                yield _chunk(text, doc.metadata, [])
            continue
        if doc.source != previous_source:
            # A big file arrives as consecutive segments of one source: only a new one starts over.
            state = _MarkdownState()
            previous_source = doc.source
        for headings, body in _sections(doc.text, state):
            for text in split_text(body, config):
                yield _chunk(text, doc.metadata, headings)
