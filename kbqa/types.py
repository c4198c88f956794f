"""Records that flow between stages: plain dataclasses, no behaviour beyond (de)serialisation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# A conversation so far: (user turn, assistant turn) pairs, oldest first. The one definition the
# prompt packer, the Asker and every Generator share.
History = Sequence[tuple[str, str]]


@dataclass
class Document:
    """One loaded unit of a file: a whole text file, a PDF page, a table row, a jsonl record.

    ``metadata`` carries what the loader knows (``page``, ``row``, ``question``/``answer`` for
    Q/A rows, ``title``); the splitter copies it onto every chunk of the unit.
    """

    text: str
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chunk:
    """A piece of a document as stored and embedded.

    ``text`` is what a user sees; ``embed_text`` is what gets embedded and indexed (the heading
    path prefixed to the text, or the question of a Q/A row), defaulting to ``text``.
    """

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    embed_text: str | None = None

    @property
    def index_text(self) -> str:
        return self.embed_text if self.embed_text is not None else self.text


@dataclass
class Hit:
    """A retrieved chunk; ``score`` is cosine similarity for dense hits (higher is better)."""

    chunk_id: int
    doc_id: int
    source: str
    text: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its recursive deep copy stood out in the API's profile.
        return {
            "chunk_id": self.chunk_id, "doc_id": self.doc_id, "source": self.source,
            "text": self.text, "score": self.score, "metadata": dict(self.metadata),
        }  # fmt: skip


@dataclass
class Answer:
    """What ``ask`` returns; ``mode`` is ``faq``, ``extractive`` or ``generative``."""

    question: str
    answer: str
    refused: bool
    mode: str
    sources: list[Hit] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    debug: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "question": self.question,
            "answer": self.answer,
            "refused": self.refused,
            "mode": self.mode,
            "sources": [h.to_dict() for h in self.sources],
            "timings": self.timings,
        }
        if self.debug is not None:
            out["debug"] = self.debug
        return out


@dataclass
class FileFailure:
    path: str
    error: str


@dataclass
class FileDuplicate:
    path: str
    same_as: str  # the source already holding this content (its chunks answer for both)


@dataclass
class IngestReport:
    """The result of one ``ingest`` call; ``to_dict`` is the DESIGN.md JSON shape."""

    kb: str
    files_seen: int = 0
    files_added: int = 0
    files_updated: int = 0
    files_unchanged: int = 0
    files_failed: list[FileFailure] = field(default_factory=list)
    # Added to DESIGN.md's shape: files whose content the KB holds under another path.
    files_duplicate: list[FileDuplicate] = field(default_factory=list)
    chunks_added: int = 0
    chunks_removed: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        return out
