"""Thumbs up/down on answers: read back the KB's append-only feedback.jsonl for review."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)
FEEDBACK_FILE = "feedback.jsonl"  # in the KB folder, written by POST /v1/kbs/{kb}/feedback


def read_feedback(folder: Path, vote: str | None = None) -> Iterator[dict]:
    """The feedback records of a KB folder, oldest first; a damaged line is skipped (logged).

    Example: ``[r["question"] for r in read_feedback(kb.folder, "down")]``.
    """
    path = Path(folder) / FEEDBACK_FILE
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                # A crash mid-append leaves at most the last line torn; the rest still count.
                log.warning("%s line %d is not JSON; skipped", path, n)
                continue
            if isinstance(record, dict) and (vote is None or record.get("vote") == vote):
                yield record


def summary(records: list[dict]) -> dict:
    """Counts by vote: ``{"total": 3, "up": 2, "down": 1}``."""
    up = sum(1 for r in records if r.get("vote") == "up")
    return {"total": len(records), "up": up, "down": len(records) - up}
