"""File -> Documents: txt, md, html, pdf, docx, csv/xlsx (Q/A tables), jsonl; lazily."""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kbqa.config import LoadConfig
from kbqa.errors import BadInput, KbqaError, NotFound
from kbqa.types import Document

# Big text files are yielded in segments of about this many characters, cut at paragraph breaks.
SEGMENT_CHARS = 64 * 1024
# Markdown is kept whole up to this size so the splitter sees every heading above a section.
MARKDOWN_WHOLE_CHARS = 4 * 1024 * 1024
_READ_BYTES = 64 * 1024
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\u3000]*\n")
_SENTENCE_END = re.compile(r"[。！？；!?;…]")


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


# --- html ----------------------------------------------------------------------------------

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


def _markdown_meta(title: str) -> dict[str, Any]:
    # "markdown" tells the splitter that the '#' lines written for headings are headings.
    return {"markdown": True, "title": title} if title else {"markdown": True}


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


def _tidy(text: str) -> str:
    """Strip every line and keep at most one blank line between paragraphs."""
    lines = [line.strip() for line in text.splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# --- pdf -----------------------------------------------------------------------------------


def _load_pdf(path: Path, config: LoadConfig) -> Iterator[Document]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

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
    for number in range(1, count + 1):
        try:
            text = _unwrap(_tidy(pages[number - 1].extract_text() or ""))
        except Exception as exc:
            raise BadInput(
                f"{path}: page {number} is not a readable PDF page ({exc}); repair or re-export the PDF"
            ) from exc
        if text:  # a scanned page has no text layer; the others are still worth indexing
            meta: dict[str, Any] = {"page": number}
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


# --- docx ----------------------------------------------------------------------------------


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


# --- tables: csv, xlsx ---------------------------------------------------------------------


def _header_key(name: str) -> str:
    return name.strip().strip(":：").strip().casefold()


def _qa_columns(header: Sequence[str], config: LoadConfig) -> tuple[int, int] | None:
    """Indexes of the question and answer columns when ``header`` names both, else None."""
    keys = [_header_key(h) for h in header]

    def find(names: Iterable[str]) -> int | None:
        wanted = [_header_key(n) for n in names]
        return next((keys.index(w) for w in wanted if w in keys), None)

    q, a = find(config.question_columns), find(config.answer_columns)
    return (q, a) if q is not None and a is not None and q != a else None


def _qa_documents(
    path: Path, rows: Iterable[Sequence[str]], qa: tuple[int, int], extra: dict[str, Any]
) -> Iterator[Document]:
    for number, row in enumerate(rows, start=1):
        q = row[qa[0]].strip() if qa[0] < len(row) else ""
        a = row[qa[1]].strip() if qa[1] < len(row) else ""
        if q and a:
            meta = {"question": q, "answer": a, "row": number, **extra}
            yield Document(text=f"问：{q}\n答：{a}", source=str(path), metadata=meta)


def _table_documents(
    path: Path, rows: Iterator[list[str]], config: LoadConfig, extra: dict[str, Any]
) -> Iterator[Document]:
    """Q/A rows when the header names a question and an answer column, else 'h: v; h: v' rows."""
    # The header is the first non-blank row; data rows are numbered from the one after it.
    header = next((row for row in rows if any(c.strip() for c in row)), None)
    if header is None:
        return
    qa = _qa_columns(header, config)
    if qa is not None:
        yield from _qa_documents(path, rows, qa, extra)
        return
    names = [h.strip() for h in header]
    for number, row in enumerate(rows, start=1):
        # A cell beyond the header, or under a blank header cell, is named by its column number.
        pairs = [
            f"{names[i] if i < len(names) and names[i] else f'列{i + 1}'}: {v.strip()}"
            for i, v in enumerate(row)
            if v.strip()
        ]
        if pairs:
            meta = {"row": number, **extra}
            yield Document(text="; ".join(pairs), source=str(path), metadata=meta)


def _load_csv(path: Path, config: LoadConfig) -> Iterator[Document]:
    encoding = sniff_encoding(path)
    with path.open(encoding=encoding, errors="strict", newline="") as fh:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else _delimiter(fh.readline())
        fh.seek(0)
        try:
            rows = csv.reader(fh, delimiter=delimiter)
            yield from _table_documents(path, rows, config, {})
        except csv.Error as exc:
            raise BadInput(f"{path}: not a well-formed CSV file ({exc}); fix the file") from exc


def _delimiter(header: str) -> str:
    r"""The separator the header line uses most: comma, tab, semicolon or bar (comma on a tie).

    The header is judged alone because answers below it are full of stray ';' and '|'.

    >>> _delimiter("问题\t答案\n")
    '\t'
    """
    counts = {d: header.count(d) for d in ",\t;|"}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def _load_xlsx(path: Path, config: LoadConfig) -> Iterator[Document]:
    import openpyxl

    try:
        # read_only streams rows instead of building the whole sheet in memory.
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise BadInput(
            f"{path}: not a readable .xlsx (Excel 2007+) file ({exc}); re-save it as .xlsx"
        ) from exc
    try:
        for sheet in book.worksheets:
            rows = ([_cell_text(v) for v in row] for row in sheet.iter_rows(values_only=True))
            yield from _table_documents(path, rows, config, {"sheet": sheet.title})
    finally:
        book.close()


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel stores 5 as 5.0
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


# --- jsonl ---------------------------------------------------------------------------------


def _load_jsonl(path: Path, config: LoadConfig) -> Iterator[Document]:
    encoding = sniff_encoding(path)
    with path.open(encoding=encoding, errors="strict") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                doc = _jsonl_document(path, number, line, config)
                if doc is not None:
                    yield doc


def _jsonl_document(path: Path, number: int, line: str, config: LoadConfig) -> Document | None:
    def bad(what: str) -> BadInput:
        return BadInput(f"{path}: line {number} {what}; fix or remove that line")

    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise bad(f"is not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(record, dict):
        raise bad("is not a JSON object")
    fields = {_header_key(k): v for k, v in record.items() if isinstance(k, str)}
    meta: dict[str, Any] = {"line": number}
    if isinstance(record.get("metadata"), dict):
        meta = {**record["metadata"], **meta}
    qa = [_first_field(fields, names) for names in (config.question_columns, config.answer_columns)]
    if all(isinstance(v, str) and v.strip() for v in qa):
        q, a = (str(v).strip() for v in qa)
        meta.update(question=q, answer=a)
        return Document(text=f"问：{q}\n答：{a}", source=str(path), metadata=meta)
    text = fields.get("text", fields.get("content"))
    if text is None:
        raise bad("has no 'text' or 'content' field (nor a question and an answer)")
    if not isinstance(text, str):
        raise bad(f"has a 'text'/'content' that is {type(text).__name__}, not a string")
    if isinstance(fields.get("title"), str):
        meta["title"] = fields["title"]
    return Document(text=text.strip(), source=str(path), metadata=meta) if text.strip() else None


def _first_field(fields: dict[str, Any], names: Iterable[str]) -> Any:
    return next((fields[k] for k in map(_header_key, names) if k in fields), None)


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
}

SUPPORTED: frozenset[str] = frozenset(_LOADERS)
