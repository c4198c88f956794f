"""ChatGLM2/3 and GLM-4-9B-chat weights mapped onto transformers' native GlmForCausalLM."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kbqa.errors import ModelError
from kbqa.llm.chatglm.int4 import dequantize_int4
from kbqa.llm.chatglm.weights import iter_tensors

_LAYER = re.compile(r"transformer\.encoder\.layers\.(\d+)\.(.+)")
# Original per-layer names -> native ones (the fused qkv is split separately).
_RENAME = {
    "input_layernorm.weight": "input_layernorm.weight",
    "post_attention_layernorm.weight": "post_attention_layernorm.weight",
    "self_attention.dense.weight": "self_attn.o_proj.weight",
    # Same layout: SiLU on the first half (gate) times the second (up), as GlmMLP chunks it.
    "mlp.dense_h_to_4h.weight": "mlp.gate_up_proj.weight",
    "mlp.dense_4h_to_h.weight": "mlp.down_proj.weight",
}
_TOP = {
    "transformer.embedding.word_embeddings.weight": "model.embed_tokens.weight",
    "transformer.encoder.final_layernorm.weight": "model.norm.weight",
    "transformer.output_layer.weight": "lm_head.weight",
}


def glm_config(config: dict[str, Any]) -> Any:
    """The native GlmConfig equal to a ChatGLM2/3/GLM-4 config.json."""
    from transformers import GlmConfig

    heads = config["num_attention_heads"]
    head_dim = config.get("kv_channels") or config["hidden_size"] // heads
    kv_heads = (
        config.get("multi_query_group_num", heads) if config.get("multi_query_attention") else heads
    )
    eos = config.get("eos_token_id", 2)
    return GlmConfig(
        vocab_size=config["padded_vocab_size"],
        hidden_size=config["hidden_size"],
        intermediate_size=config["ffn_hidden_size"],
        num_hidden_layers=config["num_layers"],
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        max_position_embeddings=config.get("seq_length", 2048),
        rms_norm_eps=config.get("layernorm_epsilon", 1e-5),
        # Only the first half of each head rotates, in adjacent pairs: GLM's partial rotary.
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0 * float(config.get("rope_ratio", 1.0)),
            "partial_rotary_factor": 0.5,
        },
        attention_bias=bool(config.get("add_qkv_bias", True)),
        tie_word_embeddings=False,
        pad_token_id=config.get("pad_token_id", 0),
        eos_token_id=eos,
        bos_token_id=None,
        attention_dropout=0.0,
    )


def native_tensors(path: Path, config: dict[str, Any], dtype: Any) -> Iterator[tuple[str, Any]]:
    """(native name, tensor in ``dtype``) for each weight of ``path``, converted as it streams.

    The fused query_key_value rows are all query heads, then all key groups, then all value
    groups (bias alike); int4 weights (``weight`` int8 + ``weight_scale``) are dequantized.
    """
    heads = config["num_attention_heads"]
    head_dim = config.get("kv_channels") or config["hidden_size"] // heads
    kv_heads = (
        config.get("multi_query_group_num", heads) if config.get("multi_query_attention") else heads
    )
    sizes = [heads * head_dim, kv_heads * head_dim, kv_heads * head_dim]
    int4 = bool(config.get("quantization_bit"))
    pending: dict[str, Any] = {}  # int4 weight waiting for its scale (or the reverse)
    for name, tensor in iter_tensors(path):
        if name.endswith("rotary_pos_emb.inv_freq"):
            continue  # recomputed by the native rotary embedding, as the original does per call
        if int4 and (name.endswith(".weight_scale") or _is_packed(name, tensor)):
            base = name.removesuffix("_scale")
            if base not in pending:
                pending[base] = tensor
                continue
            other = pending.pop(base)
            packed, scale = (other, tensor) if name.endswith("_scale") else (tensor, other)
            name, tensor = base, dequantize_int4(packed, scale, dtype)
        yield from _rename(name, tensor.to(dtype), sizes, path)
    if pending:
        raise ModelError(
            f"{path}: int4 weight(s) {', '.join(sorted(pending))} lack their weight_scale "
            "(or the reverse); the checkpoint is incomplete"
        )


def _is_packed(name: str, tensor: Any) -> bool:
    import torch

    return name.endswith(".weight") and tensor.dtype == torch.int8


def _rename(name: str, tensor: Any, sizes: list[int], path: Path) -> Iterator[tuple[str, Any]]:
    if name in _TOP:
        yield _TOP[name], tensor
        return
    m = _LAYER.fullmatch(name)
    if m is None:
        raise ModelError(f"{path}: unexpected weight {name!r} for a ChatGLM2/3/GLM-4 checkpoint")
    prefix, rest = f"model.layers.{m.group(1)}.", m.group(2)
    if rest.startswith("self_attention.query_key_value."):
        kind = rest.rsplit(".", 1)[1]  # weight | bias
        if tensor.shape[0] != sum(sizes):
            raise ModelError(
                f"{path}: {name} has {tensor.shape[0]} rows, config.json implies {sum(sizes)} "
                "(heads x kv_channels + 2 x groups x kv_channels)"
            )
        for proj, part in zip(
            ("q_proj", "k_proj", "v_proj"), tensor.split(sizes, dim=0), strict=True
        ):
            yield f"{prefix}self_attn.{proj}.{kind}", part.contiguous()
        return
    if rest not in _RENAME:
        raise ModelError(f"{path}: unexpected weight {name!r} for a ChatGLM2/3/GLM-4 checkpoint")
    yield prefix + _RENAME[rest], tensor


def load_native(path: Path, config: dict[str, Any], dtype: Any, device: str = "cpu") -> Any:
    """GlmForCausalLM with the checkpoint's weights; peak memory stays near the model's size.

    The model is built on the meta device (no memory), then each converted tensor takes its
    parameter's place as it streams in, so only one source tensor is in flight at a time.
    """
    import torch
    from transformers import GlmForCausalLM

    hf_config = glm_config(config)
    hf_config._attn_implementation = "sdpa"
    with torch.device("meta"):
        model = GlmForCausalLM(hf_config)
    params = dict(model.named_parameters())
    seen: set[str] = set()
    for name, tensor in native_tensors(path, config, dtype):
        target = params.get(name)
        if target is None or tuple(target.shape) != tuple(tensor.shape):
            want = None if target is None else tuple(target.shape)
            raise ModelError(
                f"{path}: weight {name} has shape {tuple(tensor.shape)}, the model built from "
                f"config.json needs {want}; config.json and the weights disagree"
            )
        module_name, _, attr = name.rpartition(".")
        module = model.get_submodule(module_name)
        setattr(module, attr, torch.nn.Parameter(tensor.to(device), requires_grad=False))
        seen.add(name)
    missing = sorted(set(params) - seen)
    if missing:
        raise ModelError(
            f"{path}: the checkpoint lacks {len(missing)} weight(s), e.g. {missing[0]}"
        )
    # Buffers built on meta (rotary inverse frequencies) are rebuilt for real.
    from transformers.models.glm.modeling_glm import GlmRotaryEmbedding

    model.model.rotary_emb = GlmRotaryEmbedding(hf_config).to(device)
    model.config.dtype = dtype
    for p in model.parameters():
        p.requires_grad_(True)
    return model.eval()
