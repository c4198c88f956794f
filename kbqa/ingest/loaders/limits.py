"""Bounded work per file: decompressed size of zip containers, and counts of parts read."""

from __future__ import annotations

import zipfile
from pathlib import Path

from kbqa.errors import BadInput


def check_unzipped(path: Path, max_mb: float) -> None:
    """Refuse a .docx/.xlsx whose parts decompress past ``max_mb`` (a zip bomb), before parsing.

    The sizes come from the zip's directory; a lying directory is caught by zipfile itself,
    which stops a member at its declared size.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadInput(
            f"{path}: not a readable {path.suffix.lower()} file (not a zip container: {exc}); "
            "re-save it from Word or Excel"
        ) from exc
    if total > max_mb * 2**20:
        raise BadInput(
            f"{path}: decompresses to {total / 2**20:.0f} MB, over the limit of {max_mb:g} MB "
            "(KBQA_MAX_UNZIPPED_MB); split the document or raise the limit"
        )


class Budget:
    """Counts one kind of part (paragraphs, cells, rows) and stops at its limit.

    >>> b = Budget("a.docx", "paragraphs", 2, "KBQA_MAX_PARAGRAPHS")
    >>> b.take(); b.take()
    >>> b.take()
    Traceback (most recent call last):
    kbqa.errors.BadInput: a.docx: more than 2 paragraphs (KBQA_MAX_PARAGRAPHS); split the file or raise the limit
    """

    def __init__(self, path: Path | str, what: str, limit: int, setting: str) -> None:
        self.path, self.what, self.limit, self.setting = path, what, limit, setting
        self.used = 0

    def take(self, n: int = 1) -> None:
        self.used += n
        if self.used > self.limit:
            raise BadInput(
                f"{self.path}: more than {self.limit} {self.what} ({self.setting}); split the "
                "file or raise the limit"
            )
