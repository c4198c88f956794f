"""The rebuilt e5's BERT encoder in plain torch: mean-pooled passages without transformers.

Importing sentence-transformers (and with it transformers, peft, bitsandbytes, scikit-learn,
scipy, torch._dynamo) takes ~330 MiB of RSS beyond torch itself, for a forward pass of a dozen
standard layers; a one-shot ``kbqa ingest`` paid it on every run. This module runs the same
layers (embeddings, SDPA self-attention, exact GELU, post-LayerNorm, mean pooling) on the
same weights and torch kernels: the 468 CMRC trial chunks' bf16 vectors came out bit-identical
to sentence-transformers' (tests/test_embed_bert.py; docs/benchmarks.md "Peak memory of kbqa
ingest").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from kbqa.errors import ModelError

WEIGHTS = "model.safetensors"
# Rows of a weight converted at a time: the 250k-token table is 370 MiB in fp32, 185 in bf16.
_ROWS = 16384


class _Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, ffn: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value, self.out = (nn.Linear(hidden, hidden) for _ in range(4))
        self.attn_norm = nn.LayerNorm(hidden, eps=eps)
        self.up, self.down = nn.Linear(hidden, ffn), nn.Linear(ffn, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:  # (b, n, hidden) -> (b, heads, n, d)
            return t.view(b, n, self.heads, -1).transpose(1, 2)

        a = F.scaled_dot_product_attention(
            split(self.query(x)), split(self.key(x)), split(self.value(x)), attn_mask=mask
        )
        x = self.attn_norm(x + self.out(a.transpose(1, 2).reshape(b, n, -1)))
        return self.ffn_norm(x + self.down(F.gelu(self.up(x))))


class Bert(nn.Module):
    """BertModel's encoder (no pooler) from a config.json; ``forward`` mean-pools and normalises."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        hidden, eps = config["hidden_size"], config["layer_norm_eps"]
        self.word = nn.Embedding(config["vocab_size"], hidden)
        self.position = nn.Embedding(config["max_position_embeddings"], hidden)
        self.token_type = nn.Embedding(config["type_vocab_size"], hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        heads, ffn = config["num_attention_heads"], config["intermediate_size"]
        self.layers = nn.ModuleList(
            _Layer(hidden, heads, ffn, eps) for _ in range(config["num_hidden_layers"])
        )

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n = ids.shape[1]
        positions = torch.arange(n, device=ids.device)
        x = self.word(ids) + self.token_type.weight[0] + self.position(positions)
        x = self.norm(x)
        attend = mask.bool()[:, None, None, :]  # padding is never attended to
        for layer in self.layers:
            x = layer(x, attend)
        # Summed in fp32, as sentence-transformers' mean pooling does for bf16/fp16.
        keep = mask.unsqueeze(-1).to(x.dtype)
        total = (x * keep).sum(1, dtype=torch.float32)
        pooled = (total / keep.sum(1, dtype=torch.float32).clamp(min=1e-9)).to(x.dtype)
        return F.normalize(pooled, p=2, dim=-1)


def _names(layers: int) -> dict[str, str]:
    """Our parameter names -> the rebuild's BertModel names (kbqa.embed.e5_rebuild)."""
    names = {
        "word.weight": "embeddings.word_embeddings.weight",
        "position.weight": "embeddings.position_embeddings.weight",
        "token_type.weight": "embeddings.token_type_embeddings.weight",
        "norm.weight": "embeddings.LayerNorm.weight",
        "norm.bias": "embeddings.LayerNorm.bias",
    }
    parts = {
        "query": "attention.self.query",
        "key": "attention.self.key",
        "value": "attention.self.value",
        "out": "attention.output.dense",
        "attn_norm": "attention.output.LayerNorm",
        "up": "intermediate.dense",
        "down": "output.dense",
        "ffn_norm": "output.LayerNorm",
    }
    for i in range(layers):
        for ours, theirs in parts.items():
            for p in ("weight", "bias"):
                names[f"layers.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
    return names


def load_bert(directory: Path, dtype: torch.dtype | None = None) -> Bert:
    """The encoder of a rebuild directory, its weights converted to ``dtype`` as they load."""
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    with torch.device("meta"):  # no memory until the weights are assigned
        model = Bert(config)
    names = _names(config["num_hidden_layers"])
    state = dict(
        zip(names, _read_f32(directory / WEIGHTS, list(names.values()), dtype), strict=True)
    )
    model.load_state_dict(state, assign=True)
    return model.eval()


def _read_f32(path: Path, names: list[str], dtype: torch.dtype | None) -> Iterator[torch.Tensor]:
    """The named F32 tensors of a safetensors file, each converted ``_ROWS`` rows at a time.

    Read, not mapped: every page of a mapped file counts in RSS while it stays mapped (all 450
    MiB of it by the last tensor), and a whole fp32 tensor would be the 370 MiB word table.
    The peak of loading is the converted model plus one slice.
    """
    with path.open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        for name in names:
            meta = header[name]
            if meta["dtype"] != "F32":
                raise ModelError(f"{path}: {name} is {meta['dtype']}, expected F32: rebuild it")
            shape = meta["shape"]
            out = torch.empty(shape, dtype=dtype or torch.float32)
            buf = np.empty((min(_ROWS, shape[0]), *shape[1:]), np.float32)
            f.seek(8 + size + meta["data_offsets"][0])
            for i in range(0, shape[0], _ROWS):
                part = buf[: min(_ROWS, shape[0] - i)]
                f.readinto(memoryview(part).cast("B"))
                out[i : i + len(part)] = torch.from_numpy(part)
            yield out


def encode(
    model: Bert, tokenize: Callable[[list[str]], Any], texts: list[str], device: str = "cpu"
) -> np.ndarray:
    """(len(texts), hidden) float32 unit vectors; ``tokenize(texts)`` gives padded (ids, masks)."""
    ids, masks = tokenize(texts)
    with torch.inference_mode():
        out = model(torch.tensor(ids, device=device), torch.tensor(masks, device=device))
        return out.float().cpu().numpy()
