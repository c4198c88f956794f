"""peft LoRA adapters trained on ChatGLM2/3/GLM-4's original module names, moved onto native ones.

The fused ``query_key_value`` LoRA becomes three LoRAs (q/k/v) that share ``lora_A`` and split
``lora_B`` by rows, so each merged q/k/v weight equals the matching rows of the fused merge.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from kbqa.errors import ModelError
from kbqa.llm.chatglm import detect

ORIGINAL_TARGETS = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h", "output_layer")
_NATIVE = {
    "self_attention.dense": "self_attn.o_proj",
    "mlp.dense_h_to_4h": "mlp.gate_up_proj",
    "mlp.dense_4h_to_h": "mlp.down_proj",
}
_KEY = re.compile(
    r"(base_model\.model\.)?transformer\.encoder\.layers\.(\d+)\.(.+?)\.(lora_[AB])(\..*)"
)
_TARGET_MAP = {"query_key_value": ["q_proj", "k_proj", "v_proj"], "dense": ["o_proj"],
               "dense_h_to_4h": ["gate_up_proj"], "dense_4h_to_h": ["down_proj"],
               "output_layer": ["lm_head"]}  # fmt: skip


def is_original(adapter_config: dict[str, Any]) -> bool:
    targets = adapter_config.get("target_modules") or []
    if isinstance(targets, str):
        return any(t in targets for t in ORIGINAL_TARGETS)
    return any(t in ORIGINAL_TARGETS for t in targets)


def _qkv_sizes(config: dict[str, Any]) -> list[int]:
    heads = config["num_attention_heads"]
    head_dim = config.get("kv_channels") or config["hidden_size"] // heads
    kv = (
        config.get("multi_query_group_num", heads) if config.get("multi_query_attention") else heads
    )
    return [heads * head_dim, kv * head_dim, kv * head_dim]


def convert_tensors(
    tensors: dict[str, Any], config: dict[str, Any], source: Path
) -> dict[str, Any]:
    """Original-name LoRA tensors -> native-name ones (pure; see the module docstring)."""
    sizes = _qkv_sizes(config)
    out: dict[str, Any] = {}
    for key, t in tensors.items():
        if key.startswith(
            ("base_model.model.transformer.output_layer.", "transformer.output_layer.")
        ):
            out["base_model.model.lm_head." + key.split("output_layer.", 1)[1]] = t
            continue
        m = _KEY.fullmatch(key)
        if m is None:
            raise ModelError(
                f"{source}: LoRA weight {key!r} is on a module kbqa cannot map onto the native GLM "
                "(only query_key_value, dense, dense_h_to_4h, dense_4h_to_h and output_layer are)"
            )
        layer, module, part, rest = m.group(2), m.group(3), m.group(4), m.group(5)
        base = f"base_model.model.model.layers.{layer}."
        if module == "self_attention.query_key_value":
            pieces = t.split(sizes, dim=0) if part == "lora_B" else (t, t, t)
            for proj, piece in zip(("q_proj", "k_proj", "v_proj"), pieces, strict=True):
                out[f"{base}self_attn.{proj}.{part}{rest}"] = piece.contiguous().clone()
        elif module in _NATIVE:
            out[f"{base}{_NATIVE[module]}.{part}{rest}"] = t
        else:
            raise ModelError(f"{source}: LoRA weight {key!r} is on unknown module {module!r}")
    return out


def convert_adapter(src: Path, dst: Path, config: dict[str, Any]) -> None:
    """Write the native-name copy of the LoRA adapter ``src`` into ``dst``."""
    from safetensors.torch import save_file

    from kbqa.llm.adapters import _load_tensors, _weights_file

    cfg = json.loads((src / "adapter_config.json").read_text(encoding="utf-8"))
    if cfg.get("bias", "none") != "none":
        raise ModelError(f"{src}: LoRA bias={cfg['bias']!r} cannot be moved onto split q/k/v; "
                         "retrain with bias='none'")  # fmt: skip
    targets = cfg.get("target_modules") or []
    if isinstance(targets, str):
        raise ModelError(f"{src}: a regex target_modules ({targets!r}) cannot be converted")
    cfg["target_modules"] = sorted({n for t in targets for n in _TARGET_MAP.get(t, [t])})
    for key in ("rank_pattern", "alpha_pattern"):
        if cfg.get(key):
            raise ModelError(f"{src}: LoRA {key} cannot be converted onto the native modules")
    file = _weights_file(src)
    if file is None:
        raise ModelError(f"{src}: no adapter_model.safetensors or adapter_model.bin")
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "adapter_config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    save_file(
        convert_tensors(_load_tensors(file), config, src), str(dst / "adapter_model.safetensors")
    )


def convert_if_original(adapter: Any, config: dict[str, Any], family: str, workdir: Path) -> Any:
    """The adapter to apply: converted into ``workdir`` when trained on the original names.

    ChatGLM-6B needs none: kbqa's v1 class keeps the original module names.
    """
    if family == detect.CHATGLM6B or not is_original(adapter.config):
        return adapter
    convert_adapter(adapter.path, workdir, config)
    cfg = json.loads((workdir / "adapter_config.json").read_text(encoding="utf-8"))
    return replace(adapter, path=workdir, config=cfg)
