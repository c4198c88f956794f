"""One LLM instance behind a bounded queue: requests generate one at a time, memory stays flat."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator

from kbqa.errors import ModelError
from kbqa.llm.base import Generator

log = logging.getLogger(__name__)

_END = object()


class _Request:
    def __init__(self, streaming: bool, args: tuple, kwargs: dict) -> None:
        self.streaming = streaming
        self.args, self.kwargs = args, kwargs
        self.out: queue.Queue = queue.Queue()
        self.cancelled = threading.Event()


class QueuedGenerator:
    """Wraps a Generator; one worker thread runs it, callers wait in a queue of ``max_waiting``.

    A model on one GPU (or a few CPU cores) gains nothing from running requests side by side,
    and each concurrent run would hold its own activations: queueing keeps memory at one
    request's worth. When the queue is full a caller gets ModelError (HTTP 503) at once.
    """

    def __init__(self, inner: Generator, max_waiting: int = 16) -> None:
        self.inner = inner
        self.name = inner.name
        self.context_window = inner.context_window
        self.max_waiting = max_waiting
        self._queue: queue.Queue[_Request | None] = queue.Queue(maxsize=max_waiting)
        self._worker = threading.Thread(target=self._loop, name="kbqa-llm", daemon=True)
        self._worker.start()

    def load(self) -> QueuedGenerator:
        self.inner.load()
        return self

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def _submit(self, streaming: bool, args: tuple, kwargs: dict) -> _Request:
        request = _Request(streaming, args, kwargs)
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            raise ModelError(
                f"the language model is busy ({self.max_waiting} requests are waiting); "
                "retry in a few seconds"
            ) from None
        return request

    def generate(self, *args, **kwargs) -> str:
        request = self._submit(False, args, kwargs)
        try:
            kind, value = request.out.get()
        finally:
            request.cancelled.set()
        if kind == "error":
            raise value
        return value

    def stream(self, *args, **kwargs) -> Iterator[str]:
        request = self._submit(True, args, kwargs)
        try:
            while True:
                kind, value = request.out.get()
                if kind == "error":
                    raise value
                if value is _END:
                    return
                yield value
        finally:
            # A client that went away frees the model at the next token.
            request.cancelled.set()

    def _loop(self) -> None:
        while True:
            request = self._queue.get()
            if request is None:
                # Here, not in close(): the request that was running has finished with the model.
                self.inner.close()
                return
            if request.cancelled.is_set():
                continue
            try:
                if request.streaming:
                    pieces = self.inner.stream(*request.args, **request.kwargs)
                    try:
                        for piece in pieces:
                            if request.cancelled.is_set():
                                break
                            request.out.put(("token", piece))
                    finally:
                        close = getattr(pieces, "close", None)
                        if close is not None:
                            close()
                    request.out.put(("token", _END))
                else:
                    request.out.put(("text", self.inner.generate(*request.args, **request.kwargs)))
            except Exception as e:  # noqa: BLE001 - handed to the waiting caller, who raises it
                request.out.put(("error", e))

    def close(self) -> None:
        """Stop after the running request; the worker then closes the inner generator.

        Requests still waiting get a ModelError rather than an answer nobody may read (and the
        sentinel needs a free slot in a full queue).
        """
        while True:
            self._fail_waiting()
            try:
                self._queue.put_nowait(None)
                return
            except queue.Full:  # callers slipped in since the queue was emptied: again
                continue

    def _fail_waiting(self) -> None:
        while True:
            try:
                dropped = self._queue.get_nowait()
            except queue.Empty:
                return
            if dropped is not None:
                dropped.out.put(("error", ModelError("the server is shutting down")))
