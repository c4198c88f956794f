"""Uploaded files: safe names, type and size limits, saved atomically under <kb>/uploads/."""

from __future__ import annotations

import os
import re
import unicodedata
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from fastapi import HTTPException

if TYPE_CHECKING:
    from kbqa.kb import KnowledgeBase

UPLOADS = "uploads"
_UNSAFE = re.compile(r"[^\w.\- ()（）【】\[\]]+")
MAX_NAME = 120  # characters
MAX_NAME_BYTES = 255  # what ext4, xfs, btrfs and APFS allow for one name


def safe_name(raw: str | None) -> str:
    """A file name that stays inside the upload folder, whatever the client sent.

    Only the last path component is kept (either slash), control and odd characters become
    '_', and leading dots go (no hidden files, no '..').

    >>> safe_name("../../etc/passwd")
    'passwd'
    >>> safe_name("C:\\\\报告\\\\年假 制度.md")
    '年假 制度.md'
    """
    name = unicodedata.normalize("NFC", raw or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE.sub("_", name).strip(" ._")
    if len(name) > MAX_NAME or len(name.encode("utf-8")) > MAX_NAME_BYTES:
        stem, dot, suffix = name.rpartition(".")
        keep = suffix[:16] if dot else ""
        stem = (stem if dot else name)[: MAX_NAME - len(keep) - 1]
        # File systems cap a name at 255 bytes, not characters: 120 CJK characters are 360.
        room = MAX_NAME_BYTES - len((dot + keep).encode("utf-8"))
        stem = stem.encode("utf-8")[:room].decode("utf-8", "ignore")
        name = stem.rstrip(" ._") + dot + keep
    return name or "upload"


def check_type(name: str, supported: frozenset[str]) -> None:
    suffix = Path(name).suffix.lower()
    if suffix not in supported:
        raise HTTPException(
            415,
            f"{name}: unsupported file type {suffix or '(none)'}; "
            f"upload one of {', '.join(sorted(supported))}",
        )


def save(source: BinaryIO, folder: Path, name: str, max_bytes: int) -> Path:
    """Copy ``source`` to ``folder/name`` via a temporary file; 413 past ``max_bytes``."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    # The resolved target must stay in the folder (belt and braces after safe_name).
    if target.resolve().parent != folder.resolve():
        raise HTTPException(422, f"file name {name!r} is not allowed")
    tmp = folder / f".part-{uuid.uuid4().hex}"
    written = 0
    try:
        with open(tmp, "wb") as out:
            while block := source.read(1 << 20):
                written += len(block)
                if written > max_bytes:
                    raise HTTPException(
                        413,
                        f"{name} is larger than the upload limit of {max_bytes / 2**20:g} MB "
                        "(KBQA_MAX_UPLOAD_MB)",
                    )
                out.write(block)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def is_upload(kb_folder: Path, source: str) -> bool:
    """Whether a document's source is a copy in the KB's upload folder.

    Sources are stored resolved (kbqa.ingest.files.collect_files), so the folder is resolved too: a
    relative KBQA_HOME or a symlinked home must compare equal to the stored path.
    """
    return Path(source).parent == (kb_folder / UPLOADS).resolve()


def not_ingested(kb: KnowledgeBase, paths: list[Path] | None = None) -> list[Path]:
    """Uploads the KB does not hold as they are on disk: the server stopped before their job ran.

    An upload is acknowledged (202) once its file is saved; a restart must not lose it. A file
    counts as ingested when the store has its source with the same size and mtime (a failed
    file too: its error is recorded and retrying would fail the same way). Half-written
    ``.part-`` files were never acknowledged and are left alone (another replica may be writing).
    """
    folder = kb.folder / UPLOADS
    if not folder.is_dir():
        return []
    pending = []
    for path in sorted(folder.iterdir()) if paths is None else paths:
        if not path.is_file() or path.name.startswith(".part-"):
            continue
        row, stat = kb.store.document(str(path.resolve())), path.stat()
        if row is None or (row.size, row.mtime) != (stat.st_size, stat.st_mtime):
            pending.append(path)
    return pending
