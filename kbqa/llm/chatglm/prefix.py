"""ChatGLM's P-Tuning v2 prefix: a table (optionally an MLP) of per-layer keys and values.

The original models feed the prefix as ``past_key_values`` ahead of the prompt, without rotary
and visible to every token, while the prompt's own positions still start at 0.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

PTUNING_PREFIX = "transformer.prefix_encoder."


class PrefixEncoder(nn.Module):
    """``embedding`` [pre_seq_len, width], or with ``prefix_projection`` embedding -> MLP.

    Names match the original ``transformer.prefix_encoder.*`` keys so a checkpoint loads as is.
    """

    def __init__(self, pre_seq_len: int, kv_size: int, embed_dim: int, hidden: int | None) -> None:
        super().__init__()
        self.pre_seq_len = pre_seq_len
        self.embedding = nn.Embedding(pre_seq_len, embed_dim)
        self.trans = (
            nn.Sequential(nn.Linear(embed_dim, hidden), nn.Tanh(), nn.Linear(hidden, kv_size))
            if hidden is not None
            else None
        )

    @classmethod
    def from_state(cls, state: dict[str, Any], kv_size: int) -> PrefixEncoder:
        """Sized from the checkpoint's own tensors (ChatGLM-6B and ChatGLM2 size the MLP apart)."""
        emb = state["embedding.weight"]
        hidden = state["trans.0.weight"].shape[0] if "trans.0.weight" in state else None
        enc = cls(emb.shape[0], kv_size, emb.shape[1], hidden)
        enc.load_state_dict({k: v.float() for k, v in state.items()})
        return enc.float()  # the prefix stays fp32, even on a half or quantized base

    def key_values(self, batch: int, layers: int, heads: int, head_dim: int, dtype: Any) -> list:
        """Per layer (key, value), each [batch, heads, pre_seq_len, head_dim]."""
        tokens = torch.arange(self.pre_seq_len, device=self.embedding.weight.device)
        table = self.embedding(tokens)
        if self.trans is not None:
            table = self.trans(table)
        # Row layout of the original: [pre_seq_len, layers * 2, heads, head_dim].
        kv = table.to(dtype).view(self.pre_seq_len, layers * 2, heads, head_dim)
        kv = kv.permute(1, 2, 0, 3).unsqueeze(1).expand(-1, batch, -1, -1, -1)
        return [(kv[2 * i], kv[2 * i + 1]) for i in range(layers)]


def fill_cache(cache: Any, encoder: PrefixEncoder, batch: int, layers: int, heads: int,
               head_dim: int, dtype: Any) -> None:  # fmt: skip
    """Put the prefix into an empty transformers Cache, layer by layer."""
    for i, (k, v) in enumerate(encoder.key_values(batch, layers, heads, head_dim, dtype)):
        cache.update(k.contiguous(), v.contiguous(), i)
