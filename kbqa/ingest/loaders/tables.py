"""Tables (csv, tsv, xlsx): one Document per Q/A row, or per plain row as 'header: value' pairs."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kbqa.config import LoadConfig
from kbqa.errors import BadInput
from kbqa.ingest.loaders.limits import Budget, check_unzipped
from kbqa.ingest.loaders.text import sniff_encoding
from kbqa.types import Document


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
            rows = _bounded(csv.reader(fh, delimiter=delimiter), path, config, "rows")
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

    check_unzipped(path, config.max_unzipped_mb)
    try:
        # read_only streams rows instead of building the whole sheet in memory.
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise BadInput(
            f"{path}: not a readable .xlsx (Excel 2007+) file ({exc}); re-save it as .xlsx"
        ) from exc
    try:
        cells = Budget(path, "cells", config.max_cells, "KBQA_MAX_CELLS")
        for sheet in book.worksheets:
            rows = ([_cell_text(v) for v in row] for row in sheet.iter_rows(values_only=True))
            rows = _bounded(rows, path, config, f"rows in sheet {sheet.title!r}", cells)
            yield from _table_documents(path, rows, config, {"sheet": sheet.title})
    finally:
        book.close()


def _bounded(
    rows: Iterable[list[str]],
    path: Path,
    config: LoadConfig,
    what: str,
    cells: Budget | None = None,
) -> Iterator[list[str]]:
    """``rows``, stopping with a BadInput past the row (and cell) limits of ``config``.

    Empty rows count too: a sheet claiming a million blank rows costs their reading all the same.
    """
    budget = Budget(path, what, config.max_rows, "KBQA_MAX_ROWS")
    for row in rows:
        budget.take()
        if cells is not None:
            cells.take(len(row))
        yield row


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel stores 5 as 5.0
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
