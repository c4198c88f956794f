"""The Generator protocol and its typed generation parameters."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from kbqa.errors import BadInput
from kbqa.types import History

__all__ = ["GenerationConfig", "Generator", "History", "cut_at_stop"]


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 512
    temperature: float = 0.0  # 0 means greedy decoding
    top_p: float = 0.8
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()  # the answer ends before the first of these (OpenAI's ``stop``)

    def __post_init__(self) -> None:
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise BadInput("stop must list non-empty strings")
        if self.max_new_tokens <= 0:
            raise BadInput(f"max_new_tokens must be greater than 0, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise BadInput(f"temperature must be at least 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise BadInput(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise BadInput(
                f"repetition_penalty must be greater than 0, got {self.repetition_penalty}"
            )


@runtime_checkable
class Generator(Protocol):
    """Turns a rendered prompt (plus chat history) into text.

    Construction checks paths only; ``load()`` does the slow part (weights, a connection) and
    ``close()`` lets it go. Either may be called more than once.
    """

    name: str
    context_window: int  # tokens the model accepts, prompt and answer together

    def load(self) -> Generator:
        """Load now what first use would load (weights); returns self, later calls are free."""
        ...

    def close(self) -> None:
        """Release weights and connections; a later call loads again."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def generate(
        self, prompt: str, history: History = (), config: GenerationConfig = ...
    ) -> str: ...

    def stream(
        self, prompt: str, history: History = (), config: GenerationConfig = ...
    ) -> Iterator[str]: ...


def cut_at_stop(pieces: Iterable[str], stop: Sequence[str]) -> Iterator[str]:
    """The text of ``pieces`` up to (not including) the first stop string, still streamed.

    A stop string may span pieces, so the tail that could start one is held back.
    Example: ``"".join(cut_at_stop(["ab", "c|d"], ["c|"]))`` is ``"ab"``.
    """
    if not stop:
        yield from pieces
        return
    hold = max(map(len, stop)) - 1
    buffer = ""
    for piece in pieces:
        buffer += piece
        cuts = [i for i in (buffer.find(s) for s in stop) if i >= 0]
        if cuts:
            if min(cuts):
                yield buffer[: min(cuts)]
            return
        if len(buffer) > hold:
            yield buffer[: len(buffer) - hold]
            buffer = buffer[len(buffer) - hold :]
    if buffer:
        yield buffer
