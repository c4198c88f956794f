"""Settings (environment, prefix KBQA_) and one typed, validated config per stage.

Settings are read at the edges (CLI, API); stages get only their own dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from kbqa.errors import BadInput


def _positive(name: str, value: int | float) -> None:
    if value <= 0:
        raise BadInput(f"{name} must be greater than 0, got {value}")


@dataclass(frozen=True)
class SplitConfig:
    """Chunking: sizes are in characters (a Chinese character is about one token)."""

    chunk_size: int = 400
    chunk_overlap: int = 60

    def __post_init__(self) -> None:
        _positive("chunk_size", self.chunk_size)
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise BadInput(
                f"chunk_overlap must be at least 0 and below chunk_size ({self.chunk_size}), "
                f"got {self.chunk_overlap}"
            )

    def override(self, chunk_size: int | None, chunk_overlap: int | None) -> SplitConfig:
        """These values with a caller's in their place (a size of None or 0, an overlap of None:
        keep this one), e.g. a KB's own chunking with the --chunk-size a command was given."""
        return SplitConfig(
            chunk_size=chunk_size or self.chunk_size,
            chunk_overlap=self.chunk_overlap if chunk_overlap is None else chunk_overlap,
        )


@dataclass(frozen=True)
class LoadConfig:
    """Loaders: which table columns hold questions and answers, and the size limit per file."""

    question_columns: tuple[str, ...] = ("问题", "question", "q", "问")
    answer_columns: tuple[str, ...] = ("答案", "answer", "a", "答", "回答")
    max_file_mb: float = 512.0
    # Bounded work per file: a small zip can hold millions of empty paragraphs or rows. Each
    # limit is a BadInput naming the file and the setting (KBQA_MAX_PARAGRAPHS, ...).
    max_paragraphs: int = 200_000  # .docx paragraphs
    max_cells: int = 1_000_000  # table cells (.docx tables, .xlsx sheets)
    max_rows: int = 1_000_000  # rows per .xlsx sheet or .csv file
    max_unzipped_mb: float = 1024.0  # decompressed size of a .docx / .xlsx

    def __post_init__(self) -> None:
        _positive("max_file_mb", self.max_file_mb)
        for name in ("max_paragraphs", "max_cells", "max_rows", "max_unzipped_mb"):
            _positive(name, getattr(self, name))
        if not self.question_columns or not self.answer_columns:
            raise BadInput("question_columns and answer_columns need at least one name each")


@dataclass(frozen=True)
class EmbedConfig:
    """Which embedding model (None: the KB's own, else the default e5) and the batch size."""

    model: str | None = None
    batch_size: int = 32
    device: str | None = None
    # auto: bf16 / int8 / fp16 where the hardware has it and it matches fp32 (kbqa.embed.precision)
    precision: str = "auto"

    def __post_init__(self) -> None:
        _positive("embedding batch_size", self.batch_size)
        from kbqa.embed.precision import check_precision

        object.__setattr__(self, "precision", check_precision(self.precision))


@dataclass(frozen=True)
class IngestConfig:
    """Batch ingestion: file selection and how often the indexes are checkpointed."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    checkpoint_seconds: float = 30.0
    split: SplitConfig = field(default_factory=SplitConfig)
    load: LoadConfig = field(default_factory=LoadConfig)

    def __post_init__(self) -> None:
        _positive("checkpoint_seconds", self.checkpoint_seconds)


@dataclass(frozen=True)
class RetrieveConfig:
    """Hybrid retrieval: candidates per ranker, reciprocal-rank fusion, HNSW search effort.

    ``hnsw_ef_search`` only matters for an HNSW index (a FAISS KB saved past 200k chunks before
    large KBs became IVF, kbqa.store.faiss_store.LARGE_THRESHOLD, until its next checkpoint; or
    Milvus); 256 gave the right first hit for every CMRC question at 100k and 200k chunks in
    under 1 ms, against 6-11 ms for flat (docs/benchmarks.md).
    """

    top_k: int = 5
    candidates: int = 50  # per ranker, before fusion
    rrf_k: float = 60.0
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    merge_overlaps: bool = True  # adjacent chunks of one document come back as one hit
    hnsw_ef_search: int = 256

    def __post_init__(self) -> None:
        _positive("top_k", self.top_k)
        _positive("candidates", self.candidates)
        _positive("rrf_k", self.rrf_k)
        _positive("hnsw_ef_search", self.hnsw_ef_search)
        if self.dense_weight < 0 or self.lexical_weight < 0:
            raise BadInput("dense_weight and lexical_weight must be at least 0")
        if self.dense_weight + self.lexical_weight == 0:
            raise BadInput("dense_weight and lexical_weight cannot both be 0")


@dataclass(frozen=True)
class AskConfig:
    """Answering: FAQ matching, refusal threshold (None: calibrated per KB), answer length."""

    retrieve: RetrieveConfig = field(default_factory=RetrieveConfig)
    # On Retrieval.relevance (best cosine + 0.1 x lexical coverage); overrides the calibration.
    refusal_threshold: float | None = None
    faq: bool = True
    # question-to-stored-question similarity for a FAQ answer; 0.76 sits between the best wrong
    # match (0.65) and the paraphrases (0.87) on the fit half of benchmarks/data/devcorp
    faq_min_similarity: float = 0.76
    max_question_chars: int = 512
    max_answer_chars: int = 200
    answer_sentences: int = 2  # a short answer: one or two sentences
    max_new_tokens: int = 512

    def __post_init__(self) -> None:
        if self.refusal_threshold is not None and not -1 <= self.refusal_threshold <= 1.1:
            raise BadInput(
                "refusal_threshold is a relevance in [-1, 1.1] (cosine + 0.1 x lexical "
                f"coverage), got {self.refusal_threshold}"
            )
        if not 0 < self.faq_min_similarity <= 1:
            raise BadInput(f"faq_min_similarity must be in (0, 1], got {self.faq_min_similarity}")
        _positive("max_question_chars", self.max_question_chars)
        _positive("max_answer_chars", self.max_answer_chars)
        _positive("answer_sentences", self.answer_sentences)
        _positive("max_new_tokens", self.max_new_tokens)


class Settings(BaseSettings):
    """Every environment knob, read once at an edge (CLI command, API lifespan)."""

    model_config = SettingsConfigDict(env_prefix="KBQA_", extra="ignore")

    home: Path = Path("indexes")
    default_kb: str = "demo"
    embedding_model: str | None = None
    embedding_batch_size: int = 32
    embedding_precision: str = "auto"  # auto, fp32, bf16, int8, fp16 (kbqa/embed/precision.py)
    chunk_size: int = 400
    chunk_overlap: int = 60
    top_k: int = 5
    llm: str | None = None
    # HTTP API (kbqa serve); the key format is described in kbqa/api/security.py.
    api_keys: str | None = None
    api_keys_file: Path | None = None
    # KBs anyone may read without a key when keys are set ("hr,faq", "*" for all); writes
    # and KB management always need a key.
    public_kbs: str = ""
    cors_origins: str = ""  # comma-separated origins a browser page may call the API from
    max_upload_mb: float = 50.0  # per uploaded file
    max_upload_files: int = 20  # per upload request
    max_upload_total_mb: float = Field(200.0, gt=0)  # all files of one upload request
    max_concurrent_uploads: int = Field(4, ge=1)  # uploads received at once (each spools to disk)
    max_body_kb: int = 1024  # any request body other than an upload
    # Per-file work limits of the loaders (kbqa.config.LoadConfig); the same for CLI and API.
    max_paragraphs: int = 200_000
    max_cells: int = 1_000_000
    max_rows: int = 1_000_000
    max_unzipped_mb: float = 1024.0
    llm_queue: int = 16  # generation requests waiting for the one LLM; more get 503
    # Threads for searches and extractive answers (0: one per CPU core). Raise it when dense
    # search is a network call (Milvus); see kbqa.api.deps.run_query for why it is small.
    query_threads: int = Field(0, ge=0)
    refusal_threshold: float | None = None
    candidates: int = 50
    max_new_tokens: int = 512
    # A secure Milvus cluster's credentials ("user:password" or an API key). Only ever handed to
    # kbqa.store.milvus_client.use_token by the edges; the URI goes to manifest.json, this never.
    milvus_token: SecretStr | None = None

    def split_config(self) -> SplitConfig:
        return SplitConfig(chunk_size=self.chunk_size, chunk_overlap=self.chunk_overlap)

    def load_config(self) -> LoadConfig:
        return LoadConfig(
            max_paragraphs=self.max_paragraphs, max_cells=self.max_cells,
            max_rows=self.max_rows, max_unzipped_mb=self.max_unzipped_mb,
        )  # fmt: skip

    def embed_config(self) -> EmbedConfig:
        return EmbedConfig(
            model=self.embedding_model,
            batch_size=self.embedding_batch_size,
            precision=self.embedding_precision,
        )

    def retrieve_config(self) -> RetrieveConfig:
        return RetrieveConfig(top_k=self.top_k, candidates=self.candidates)

    def ask_config(self) -> AskConfig:
        return AskConfig(
            retrieve=self.retrieve_config(),
            refusal_threshold=self.refusal_threshold,
            max_new_tokens=self.max_new_tokens,
        )


def load_settings() -> Settings:
    """The settings from the environment; a bad value is a BadInput naming what is wrong.

    The stage configs are built once here too, so a value that parses but is out of range
    (KBQA_REFUSAL_THRESHOLD=5) stops the command at once instead of failing each question.
    """
    try:
        settings = Settings()
    except ValidationError as e:
        problems = "; ".join(
            f"KBQA_{'_'.join(map(str, err['loc'])).upper()}={err.get('input')!r}: {err['msg']}"
            for err in e.errors()
        )
        raise BadInput(f"bad setting in the environment: {problems}") from None
    settings.ask_config()
    settings.load_config()
    settings.embed_config()
    apply_credentials(settings)
    return settings


def apply_credentials(settings: Settings) -> None:
    """Hand the secrets in ``settings`` to the modules that use them, deep below the edges.

    Called by load_settings (every CLI command, the LangChain opener) and by the API's start-up
    for a Settings made in code; the store then never reads the environment itself.
    """
    from kbqa.store.milvus_client import use_token

    use_token(settings.milvus_token)
