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


def attach_prefix(model: Any, state: dict[str, Any]) -> Any:
    """``model`` (a native GlmForCausalLM, maybe quantized) fed a ChatGLM ptuning prefix."""
    cfg = model.config
    kv_size = cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * cfg.head_dim
    enc = PrefixEncoder.from_state(state, kv_size).to(model.device)
    model = as_chatglm(model)
    model.add_module("prefix_encoder", enc)
    return model


def as_chatglm(model: Any) -> Any:
    """The same GlmForCausalLM with ChatGLM's prefix semantics (see ChatGLMGlmForCausalLM)."""
    from transformers import GlmForCausalLM

    if not isinstance(model, GlmForCausalLM):
        raise TypeError(f"expected a GlmForCausalLM, got {type(model).__name__}")
    model.__class__ = ChatGLMGlmForCausalLM  # same weights; forward adds the prefix semantics
    return model


def _prefix_kwargs(model: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    from transformers.cache_utils import DynamicCache

    enc, cfg = getattr(model, "prefix_encoder", None), model.config
    ref = kwargs.get("input_ids")
    ref = ref if ref is not None else kwargs["inputs_embeds"]
    b, n = ref.shape[:2]
    cache = kwargs.get("past_key_values")
    if enc is not None and (cache is None or cache.get_seq_length() == 0):
        cache = cache if cache is not None else DynamicCache(config=cfg)
        dtype = model.model.embed_tokens.weight.dtype
        fill_cache(cache, enc, b, cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim,
                   dtype)  # fmt: skip
    if cache is None:
        return kwargs
    # Entries already in the cache at its first forward are a prefix (ours or peft's), not
    # tokens: they take no position, so prompt positions start at 0 as in ChatGLM's code.
    if getattr(cache, "kbqa_prefix_len", None) is None:
        cache.kbqa_prefix_len = cache.get_seq_length()
    pre, past = cache.kbqa_prefix_len, cache.get_seq_length()
    kwargs["past_key_values"] = cache
    if not pre:
        return kwargs
    device = ref.device
    kwargs["cache_position"] = torch.arange(past, past + n, device=device)
    mask = kwargs.get("attention_mask")
    if mask is not None and mask.dim() == 2:
        tokens = past - pre + n
        if mask.shape[-1] >= past + n:  # peft already put ones for its prefix in front
            mask = mask[:, -(past + n) :]
            token_mask = mask[:, pre:]
        else:
            token_mask = mask[:, -tokens:]
            mask = torch.cat([token_mask.new_ones((b, pre)), token_mask], dim=-1)
        kwargs["attention_mask"] = mask
        kwargs["position_ids"] = (token_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -n:]
    else:
        kwargs["position_ids"] = (kwargs["cache_position"] - pre).unsqueeze(0).expand(b, -1)
    return kwargs


try:  # transformers is a core dependency; the class only exists where it imports
    from transformers import GlmForCausalLM as _Glm

    class ChatGLMGlmForCausalLM(_Glm):
        """GlmForCausalLM for converted ChatGLM2/3/GLM-4 checkpoints.

        As ChatGLM's own code: a P-Tuning prefix (``prefix_encoder``, or one peft puts in the
        cache) sits before the prompt without taking positions; without one it is plain Glm.
        """

        def forward(self, input_ids=None, attention_mask=None, position_ids=None,
                    past_key_values=None, inputs_embeds=None, labels=None, use_cache=None,
                    cache_position=None, logits_to_keep=0, **kwargs: Any) -> Any:  # fmt: skip
            kwargs.update(input_ids=input_ids, attention_mask=attention_mask,
                          position_ids=position_ids, past_key_values=past_key_values,
                          inputs_embeds=inputs_embeds, labels=labels, use_cache=use_cache,
                          cache_position=cache_position, logits_to_keep=logits_to_keep)  # fmt: skip
            return super().forward(**_prefix_kwargs(self, kwargs))

except ImportError:  # pragma: no cover
    pass
