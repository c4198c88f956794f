"""What a front end sees of a batch (progress, cancel), and the error a cancelled batch raises."""

from __future__ import annotations

from typing import Protocol

from kbqa.errors import KbqaError
from kbqa.types import IngestReport


class IngestProgress(Protocol):
    """What a front end shows while a batch runs (a progress bar, a job record).

    A front end that can stop a batch also has ``cancelled() -> bool``, asked between files
    and between embedding batches (kbqa.api.jobs does; the CLI is stopped with Ctrl-C).
    """

    def start(self, total_files: int) -> None: ...

    def file_done(self, path: str, status: str) -> None: ...

    def chunks_done(self, n: int) -> None: ...


class NoProgress:
    def start(self, total_files: int) -> None:
        pass

    def file_done(self, path: str, status: str) -> None:
        pass

    def chunks_done(self, n: int) -> None:
        pass


class IngestCancelled(KbqaError):
    """A batch stopped on request (progress.cancelled()); ``report`` holds what was committed."""

    http_status = 409

    def __init__(self, report: IngestReport) -> None:
        done = report.files_added + report.files_updated + report.files_unchanged
        super().__init__(
            f"ingestion into {report.kb!r} was cancelled after {done} file(s); files already "
            "committed stay, the rest were not ingested"
        )
        self.report = report


def check_cancel(progress: IngestProgress, report: IngestReport) -> None:
    # Optional in the protocol: front ends that cannot cancel (the CLI) leave it out.
    cancelled = getattr(progress, "cancelled", None)
    if cancelled is not None and cancelled():
        raise IngestCancelled(report)
