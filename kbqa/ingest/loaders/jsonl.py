"""JSON Lines: one Document per record, a question/answer pair or a 'text'/'content' field."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from kbqa.config import LoadConfig
from kbqa.errors import BadInput
from kbqa.ingest.loaders.tables import _header_key
from kbqa.ingest.loaders.text import sniff_encoding
from kbqa.types import Document


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
