"""The Generator protocol and its typed generation parameters."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from kbqa.errors import BadInput

History = Sequence[tuple[str, str]]  # (user turn, assistant turn) pairs, oldest first


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 512
    temperature: float = 0.0  # 0 means greedy decoding
    top_p: float = 0.8
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
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


class Generator(Protocol):
    """Turns a rendered prompt (plus chat history) into text."""

    name: str
    context_window: int  # tokens the model accepts, prompt and answer together

    def count_tokens(self, text: str) -> int: ...

    def generate(
        self, prompt: str, history: History = (), config: GenerationConfig = ...
    ) -> str: ...

    def stream(
        self, prompt: str, history: History = (), config: GenerationConfig = ...
    ) -> Iterator[str]: ...
