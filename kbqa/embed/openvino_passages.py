"""Passages through OpenVINO: the rebuild's verified ONNX export compiled for this CPU.

Measured on the 2-core AMD EPYC (avx512_bf16, no AMX), 128 CMRC passages of 400 characters,
sorted, one process each (docs/benchmarks.md, issue 14, fourth round): OpenVINO bf16 10.6 s of
CPU (the IR below) against 25.1 s for torch bf16 (kbqa's passage path before) and 38.7 s for
torch fp32; minimum cosine to torch fp32 0.9998. The ONNX export is the one the query path uses
(kbqa.embed.onnx_queries), so a passage job imports no torch at all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kbqa.config import EmbedConfig
from kbqa.embed.base import Batched, embed_batched, mean_pooled
from kbqa.embed.onnx_queries import ONNX_FILE, OnnxQueryEncoder, remove_orphans
from kbqa.embed.precision import CHECK_TEXTS, MIN_COSINE, cached_check, machine_key, record_check
from kbqa.errors import ModelError

log = logging.getLogger(__name__)

IR_FILE = "openvino-model.xml"  # + openvino-model.bin: the export's weights in fp16, mmapped
# Passages per inference (at most the configured batch size): 256 CMRC chunks of 400
# characters, sorted, bf16, paired three times, took 0.86x the CPU in batches of 8 than of 32
# (22.2-22.8 vs 25.5-26.7 s; batches of 4 alike, 64 worse): a small batch's activations stay in
# the caches.
BATCH = 8
# OpenVINO's names for the precisions kbqa records (kbqa.embed.precision): bf16 where the CPU
# computes it natively, fp32 otherwise (its int8 needs a calibrated model, which kbqa does not
# make: int8 on a VNNI-only CPU runs f32 here, still ~0.53x of torch fp32's CPU).
_HINTS = {"bf16": "bf16", "fp32": "f32"}


def available() -> bool:
    """Whether the openvino package imports (the ``openvino`` extra; a broken install is not)."""
    try:
        import openvino  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means: use torch
        return False
    return True


def prepare(directory: Path) -> Path:
    """``directory/IR_FILE``, converted once from the ONNX export (which must exist).

    OpenVINO's own format with fp16 weights, which it maps from disk: compiling it for bf16
    peaked at 267 MiB against 965 MiB from the fp32 ONNX file (measured, one process each).
    The .bin goes in place first, the .xml last, so an .xml that exists is complete.
    """
    import os

    import openvino as ov

    final = Path(directory) / IR_FILE
    if final.is_file():
        return final
    remove_orphans(Path(directory), IR_FILE)
    tmp = Path(directory) / f".{IR_FILE}.{os.getpid()}.tmp"
    tmp.mkdir(exist_ok=True)
    try:
        model = ov.Core().read_model(str(Path(directory) / ONNX_FILE))
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=True)
        (tmp / "model.bin").replace(final.with_suffix(".bin"))
        (tmp / "model.xml").replace(final)
    finally:
        for leftover in tmp.iterdir():
            leftover.unlink()
        tmp.rmdir()
    return final


class OpenVinoEmbedder(Batched):
    """Mean-pooled, L2-normalised vectors of the ONNX export on OpenVINO's CPU plugin.

    ``precision`` is ``bf16`` or ``fp32``; bf16 is used only after it matched the fp32 export
    (onnxruntime) to MIN_COSINE on the check texts on this machine (cached), else fp32.
    """

    def __init__(
        self,
        directory: Path,
        config: EmbedConfig,
        *,
        model_id: str,
        dim: int,
        query_prefix: str,
        passage_prefix: str,
        precision: str,
        max_tokens: int = 512,
    ) -> None:
        self.directory = Path(directory)
        self.config = config
        self.model_id, self.dim = model_id, dim
        self.query_prefix, self.passage_prefix = query_prefix, passage_prefix
        self.max_tokens = max_tokens
        self._wanted = precision if precision in _HINTS else "fp32"
        self.precision = "fp32"  # what the vectors are computed in, known after load()
        self.precision_cosine: float | None = None
        self._compiled: Any = None
        self._tokenize: Any = None

    def load(self) -> OpenVinoEmbedder:
        """Compile the model in the wanted precision, else fp32, whichever matches the fp32
        export first (ModelError when neither does: the caller keeps torch)."""
        if self._compiled is not None:
            return self
        import openvino as ov

        from kbqa.embed.e5_tokenizer import load_tokenizer

        # Padded to each batch's longest text (the mask hides the rest); SentencePiece for the
        # e5 rebuild's XLM-R vocabulary (~200 MiB less than the tokenizers library's trie).
        self._tokenize = load_tokenizer(self.directory, self.max_tokens)
        core = ov.Core()
        model = core.read_model(str(prepare(self.directory)))
        for precision in dict.fromkeys([self._wanted, "fp32"]):
            self._compiled = core.compile_model(
                model, "CPU", {"INFERENCE_PRECISION_HINT": _HINTS[precision],
                               "PERFORMANCE_HINT": "LATENCY"},
            )  # fmt: skip
            cosine = self._check(precision, ov.__version__)
            if cosine >= MIN_COSINE:
                self.precision, self.precision_cosine = precision, cosine
                return self
            log.warning(
                "OpenVINO %s matched fp32 only to cosine %.4f (< %s) on this machine",
                precision, cosine, MIN_COSINE,
            )  # fmt: skip
        self._compiled = None
        raise ModelError(f"OpenVINO's e5 in {self.directory} does not match its fp32 export")

    def _check(self, precision: str, version: str) -> float:
        """Min cosine to the fp32 export (onnxruntime) on CHECK_TEXTS, checked once here.

        Checked for fp32 too: the IR holds fp16 weights (``prepare``).
        """
        sizes = (self.directory / IR_FILE).with_suffix(".bin").stat().st_size
        key = machine_key(f"{self.model_id}|{sizes}", precision, "cpu", f"openvino {version}")
        cosine = cached_check(key)
        if cosine is None:
            texts = list(CHECK_TEXTS)
            reference = OnnxQueryEncoder(self.directory, threads=0).encode(texts)
            cosine = float(np.min(np.sum(reference * self._encode(texts), axis=1)))
            record_check(key, cosine)
        return cosine

    def _encode(self, texts: list[str]) -> np.ndarray:
        """One padded batch: hidden states, mean over the real tokens, normalised."""
        from kbqa.embed.heap import trim_heap

        ids, masks = self._tokenize(texts)
        ids, mask = np.asarray(ids, np.int64), np.asarray(masks, np.int64)
        # One request per call: concurrent ingest jobs (one per KB) may share the model.
        request = self._compiled.create_infer_request()
        hidden = request.infer({"input_ids": ids, "attention_mask": mask})[0]
        vectors = mean_pooled(hidden, mask)
        del request, hidden
        trim_heap()  # each padded length leaves freed buffers resident, as with torch
        return vectors

    def _embed(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        self.load()
        size = min(self.config.batch_size, BATCH)
        return embed_batched(self._encode, [prefix + t for t in texts], size, self.dim)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts, self.passage_prefix)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts, self.query_prefix)
