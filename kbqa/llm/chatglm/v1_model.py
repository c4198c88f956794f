"""ChatGLM-6B (v1) as a small native model: prefix-LM attention, 2D rotary positions, tied head.

Module names follow the original checkpoint (``transformer.layers.N.attention.query_key_value``
...), so its weights, its P-Tuning ``transformer.prefix_encoder.*`` and LoRA adapters trained on
it load under their own names, and bitsandbytes quantizes it through ``from_pretrained``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

from kbqa.llm.chatglm.prefix import PrefixEncoder, fill_cache


class ChatGLM6BConfig(PretrainedConfig):
    """ChatGLM-6B's config.json keys (vocab_size, inner_hidden_size, ...), read as they are."""

    model_type = "kbqa_chatglm6b"

    def __init__(self, vocab_size=130528, hidden_size=4096, num_layers=28, num_attention_heads=32,
                 inner_hidden_size=16384, layernorm_epsilon=1e-5, max_sequence_length=2048,
                 bos_token_id=130004, eos_token_id=130005, mask_token_id=130000,
                 gmask_token_id=130001, pad_token_id=3, pre_seq_len=None, prefix_projection=False,
                 use_cache=True,
                 **kwargs):  # fmt: skip
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_hidden_layers = num_layers  # the name transformers' caches and peft read
        self.num_attention_heads = num_attention_heads
        self.inner_hidden_size = inner_hidden_size
        self.layernorm_epsilon = layernorm_epsilon
        self.max_sequence_length = max_sequence_length
        self.mask_token_id = mask_token_id
        self.gmask_token_id = gmask_token_id
        self.pre_seq_len = pre_seq_len
        self.prefix_projection = prefix_projection
        self.use_cache = use_cache
        kwargs["tie_word_embeddings"] = True  # the config has no such key: transformers ties
        super().__init__(bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                         pad_token_id=pad_token_id, **kwargs)  # fmt: skip


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self, config: ChatGLM6BConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // self.heads
        self.query_key_value = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x, cos_sin, mask, cache):
        b, n, _ = x.shape
        # The fused output is per head: each head's 3 x head_dim block holds its q, k, v.
        q, k, v = self.query_key_value(x).view(b, n, self.heads, 3 * self.head_dim).chunk(3, -1)
        (cos1, sin1), (cos2, sin2) = cos_sin
        # 2D rotary: the first half rotates with positions, the second with block positions.
        q1, q2 = q.chunk(2, dim=-1)
        k1, k2 = k.chunk(2, dim=-1)
        q = torch.cat(
            [q1 * cos1 + _rotate_half(q1) * sin1, q2 * cos2 + _rotate_half(q2) * sin2], -1
        )
        k = torch.cat(
            [k1 * cos1 + _rotate_half(k1) * sin1, k2 * cos2 + _rotate_half(k2) * sin2], -1
        )
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [b, heads, n, head_dim]
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        # As the original: q / (sqrt(d) * (layer + 1)), then scores * (layer + 1) in fp32.
        coeff = float(self.layer_idx + 1)
        scores = torch.matmul(q / (math.sqrt(self.head_dim) * coeff), k.transpose(-1, -2))
        scores = scores.float() * coeff
        scores = scores.masked_fill(~mask, -10000.0 * coeff)
        probs = F.softmax(scores, dim=-1).to(v.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, n, -1)
        return self.dense(out)


class MLP(nn.Module):
    def __init__(self, config: ChatGLM6BConfig) -> None:
        super().__init__()
        inner = config.inner_hidden_size or 4 * config.hidden_size
        self.dense_h_to_4h = nn.Linear(config.hidden_size, inner)
        self.dense_4h_to_h = nn.Linear(inner, config.hidden_size)

    def forward(self, x):
        return self.dense_4h_to_h(F.gelu(self.dense_h_to_4h(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, config: ChatGLM6BConfig, layer_idx: int) -> None:
        super().__init__()
        eps = config.layernorm_epsilon
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=eps)
        self.attention = Attention(config, layer_idx)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=eps)
        self.mlp = MLP(config)
        # The original GLMBlock is never passed num_layers and keeps its default of 28, so alpha
        # is sqrt(56) whatever the depth (the same value for the real 28-layer model).
        self.alpha = (2 * 28) ** 0.5

    def forward(self, x, cos_sin, mask, cache):
        # Each residual adds to the sub-layer's normalized input scaled by alpha.
        h = self.input_layernorm(x)
        x = h * self.alpha + self.attention(h, cos_sin, mask, cache)
        h = self.post_attention_layernorm(x)
        return h * self.alpha + self.mlp(h)


class Transformer(nn.Module):
    def __init__(self, config: ChatGLM6BConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_layers))
        self.final_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layernorm_epsilon)
        if config.pre_seq_len:
            heads = config.num_attention_heads
            kv = config.num_layers * 2 * config.hidden_size
            self.prefix_encoder = PrefixEncoder(
                config.pre_seq_len, kv, config.hidden_size if config.prefix_projection else kv,
                config.hidden_size if config.prefix_projection else None,
            )  # fmt: skip
            self.prefix_heads = heads


def positions(ids: torch.Tensor, config: ChatGLM6BConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """2D position ids [b, 2, n] and context lengths [b] (the index of <sop>) for full rows.

    Position = index up to <sop>, then the index of [gMASK] (or [MASK]); block position = 0
    before <sop>, then 1, 2, 3, ...
    """
    b, n = ids.shape
    pos = torch.arange(n, device=ids.device).expand(b, n).clone()
    block = torch.zeros_like(pos)
    ctx = torch.full((b,), n, dtype=torch.long, device=ids.device)
    for i, row in enumerate(ids.tolist()):
        c = row.index(config.bos_token_id) if config.bos_token_id in row else n
        mask_tok = config.gmask_token_id if config.gmask_token_id in row else config.mask_token_id
        m = row.index(mask_tok) if mask_tok in row[:c] else max(c - 1, 0)
        ctx[i] = c
        pos[i, c:] = m
        block[i, c:] = torch.arange(1, n - c + 1, device=ids.device)
    return torch.stack((pos, block), dim=1), ctx


class ChatGLM6BForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = ChatGLM6BConfig
    base_model_prefix = "transformer"
    _no_split_modules = ["Block"]
    _tied_weights_keys = {"lm_head.weight": "transformer.word_embeddings.weight"}
    _keys_to_ignore_on_load_unexpected = [r"rotary_emb\.inv_freq"]
    supports_gradient_checkpointing = False

    def __init__(self, config: ChatGLM6BConfig) -> None:
        super().__init__(config)
        self.transformer = Transformer(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.transformer.word_embeddings

    def set_input_embeddings(self, value):
        self.transformer.word_embeddings = value

    def get_output_embeddings(self):
        return self.lm_head

    def _rotary(self, pos: torch.Tensor, dtype: Any):
        """cos/sin [b, n, 1, half] for each row of 2D positions; frequencies rounded to fp16."""
        half = self.config.hidden_size // self.config.num_attention_heads // 2
        inv = 1.0 / (10000 ** (torch.arange(0, half, 2, device=pos.device).float() / half))
        inv = inv.half().float()  # the original stores them in fp16, even in an fp32 run
        out = []
        for p in (pos[:, 0], pos[:, 1]):
            freqs = p.float()[..., None] * inv
            emb = torch.cat((freqs, freqs), dim=-1)[:, :, None, :]
            out.append((emb.cos().to(dtype), emb.sin().to(dtype)))
        return out

    def _prefix_len(self) -> int:
        return self.config.pre_seq_len or 0

    def forward(self, input_ids=None, position_ids=None, attention_mask=None, past_key_values=None,
                use_cache=None, labels=None, inputs_embeds=None, **kwargs):  # fmt: skip
        del attention_mask, kwargs  # positions and the prefix-LM mask come from the ids
        b, n = input_ids.shape
        x = self.transformer.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if past_key_values is None and use_cache:
            past_key_values = DynamicCache()
        cache = past_key_values
        pre = self._prefix_len()
        if pre and (cache is None or cache.get_seq_length() == 0):
            cache = cache if cache is not None else DynamicCache()
            enc = self.transformer.prefix_encoder
            cfg = self.config
            fill_cache(cache, enc, b, cfg.num_layers, cfg.num_attention_heads,
                       cfg.hidden_size // cfg.num_attention_heads, x.dtype)  # fmt: skip
        past = cache.get_seq_length() if cache is not None else 0
        k_idx = torch.arange(past + n, device=x.device)[None, :]
        if position_ids is None:
            # A whole sequence after only non-token entries (a P-Tuning prefix, ours or peft's):
            # prefix-LM, every token sees the prefix and all tokens before <sop>, causal after.
            position_ids, ctx = positions(input_ids, self.config)
            if cache is not None:  # generation later subtracts these non-token entries
                cache.kbqa_prefix_len = past
            q_idx = torch.arange(n, device=x.device)[:, None]
            tok = k_idx - past
            mask = ((tok <= q_idx) | (tok < 0))[None, None] | (
                tok[None, None] < ctx[:, None, None, None]
            )
        else:
            # Decoding: new tokens come after <sop>, so each sees every earlier entry.
            q_idx = torch.arange(n, device=x.device)[:, None] + past
            mask = (k_idx <= q_idx)[None, None].expand(b, 1, n, past + n)
        cos_sin = self._rotary(position_ids, x.dtype)
        for layer in self.transformer.layers:
            x = layer(x, cos_sin, mask, cache)
        logits = self.lm_head(self.transformer.final_layernorm(x)).float()
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                ignore_index=-100,
            )  # fmt: skip
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=cache)

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, **kwargs):
        """Positions come from the whole sequence; only the unseen tokens are fed."""
        seen = 0
        if past_key_values is not None and past_key_values.get_seq_length():
            # The cache also holds the prefix entries the first pass found there.
            seen = past_key_values.get_seq_length() - getattr(past_key_values, "kbqa_prefix_len", 0)
        inputs = {"past_key_values": past_key_values, "use_cache": kwargs.get("use_cache", True)}
        if seen == 0:  # the first pass: forward derives positions and the prefix-LM mask
            return inputs | {"input_ids": input_ids}
        full_pos, _ = positions(input_ids, self.config)
        return inputs | {"input_ids": input_ids[:, seen:], "position_ids": full_pos[..., seen:]}
