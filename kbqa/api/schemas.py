"""Request and response models of the REST API (pydantic lives here and nowhere else)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# strict: JSON "5" or true is not a count, 1 is not a boolean (pydantic would coerce them).
TopK = Field(
    default=None, ge=1, le=100, strict=True, description="How many sources (default KBQA_TOP_K)."
)
Turn = tuple[str, str]  # (user, assistant), oldest first


class Hit(BaseModel):
    chunk_id: int
    doc_id: int
    source: str
    text: str
    score: float
    metadata: dict[str, Any] = {}


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=4000)
    top_k: int | None = TopK


class SearchResponse(BaseModel):
    query: str
    hits: list[Hit]


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=4000)
    top_k: int | None = TopK
    # Up to 200 turns accepted; kbqa.retrieval.condense keeps the last 20 and says so in debug.notices.
    history: list[Turn] = Field(default=[], max_length=200)
    stream: bool = Field(
        default=False,
        strict=True,
        description="Server-sent events: 'sources', then 'token' pieces, then 'timings' and "
        "'done' (the whole answer); 'error' if it fails midway.",
    )
    debug: bool = Field(default=False, strict=True)


class AskResponse(BaseModel):
    question: str
    answer: str
    refused: bool
    mode: Literal["faq", "extractive", "generative"]
    sources: list[Hit]
    timings: dict[str, float]
    debug: dict[str, Any] | None = None


class CreateKbRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    chunk_size: int | None = Field(default=None, ge=50, le=8000, strict=True)
    chunk_overlap: int | None = Field(default=None, ge=0, le=4000, strict=True)


class KbInfo(BaseModel):
    name: str
    embedding_model: str
    embedding_spec: str
    dim: int
    chunk_size: int
    chunk_overlap: int
    vector_store: str
    dense_index: str
    generation: int
    documents: int = 0
    documents_failed: int = 0
    chunks: int = 0
    updated_at: float


class KbList(BaseModel):
    kbs: list[KbInfo]


class Deleted(BaseModel):
    kb: str
    deleted: bool


class DocumentInfo(BaseModel):
    id: int
    source: str
    sha256: str | None
    size: int | None
    mtime: float | None
    loader: str | None
    status: str
    error: str | None
    chunks: int
    updated_at: float


class DocumentList(BaseModel):
    kb: str
    documents: list[DocumentInfo]


class DocumentRemoved(BaseModel):
    kb: str
    source: str
    chunks_removed: int


class JobInfo(BaseModel):
    id: str
    kb: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    files: list[str]
    files_total: int
    files_done: int
    chunks: int
    report: dict[str, Any] | None
    error: str | None
    created_at: float
    finished_at: float | None


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=4000)
    answer: str = Field(max_length=20000)
    vote: Literal["up", "down"]
    sources: list[Hit] = Field(default=[], max_length=100)
    comment: str | None = Field(default=None, max_length=2000)


class FeedbackStored(BaseModel):
    kb: str
    stored: bool


class Health(BaseModel):
    status: str
    version: str
    auth: bool
    embedding_model: str
    llm: str | None
    llm_waiting: int


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


_GEN_ONLY = " Generative answers only (an LLM configured); extractive and FAQ answers ignore it."


class ChatCompletionRequest(BaseModel):
    """The OpenAI chat request; fields kbqa has no use for are accepted and ignored.

    System messages are put before the prompt of a generative answer.
    """

    model_config = ConfigDict(extra="allow")
    model: str = Field(max_length=80, description="'kbqa/<kb>': the knowledge base to answer from.")
    messages: list[ChatMessage] = Field(min_length=1, max_length=100)
    stream: bool = False
    max_tokens: int | None = Field(
        default=None, ge=1, description="At most KBQA_MAX_NEW_TOKENS." + _GEN_ONLY
    )
    max_completion_tokens: int | None = Field(default=None, ge=1, description="As max_tokens.")
    temperature: float | None = Field(
        default=None, ge=0, le=2, description="0: greedy." + _GEN_ONLY
    )
    top_p: float | None = Field(
        default=None, gt=0, le=1, description="Nucleus sampling." + _GEN_ONLY
    )
    stop: str | list[str] | None = Field(
        default=None, description="The answer ends before any of these (up to 4)." + _GEN_ONLY
    )


class GlmRequest(BaseModel):
    """ChatGLM-6B api.py: ``{"prompt", "history", "max_length", "top_p", "temperature"}``."""

    model_config = ConfigDict(extra="allow")
    prompt: str = Field(min_length=1, max_length=4000)
    history: list[Turn] | None = Field(default=None, max_length=200)
    max_length: int | None = Field(
        default=None,
        ge=1,
        description="Caps the answer's new tokens (at most KBQA_MAX_NEW_TOKENS)." + _GEN_ONLY,
    )
    top_p: float | None = Field(default=None, gt=0, le=1, description=_GEN_ONLY.strip())
    temperature: float | None = Field(default=None, ge=0, le=2, description=_GEN_ONLY.strip())
    kb: str | None = Field(
        default=None, max_length=64, description="Knowledge base (default KBQA_DEFAULT_KB)."
    )


class GlmResponse(BaseModel):
    response: str
    history: list[Turn]
    status: int
    time: str
