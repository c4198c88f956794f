"""Adapters on a loaded base: peft LoRA, peft prefix tuning, ChatGLM-6B ptuning checkpoints."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbqa.errors import BadInput, ModelError, missing_package

PTUNING_PREFIX = "transformer.prefix_encoder."


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter directory holds, read from its config files (no torch)."""

    path: Path
    kind: str  # lora | prefix | chatglm_ptuning
    config: dict[str, Any] = field(default_factory=dict)
    pre_seq_len: int = 0
    prefix_projection: bool = False


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BadInput(f"{path} is not valid JSON: {e}") from None


def inspect_adapter(path: Path) -> AdapterInfo:
    """Classify an adapter directory; BadInput when it is none of the kinds we read."""
    path = Path(path)
    if not path.is_dir():
        raise BadInput(f"adapter directory {path} does not exist (check adapter= in the LLM spec)")
    if (path / "adapter_config.json").is_file():
        cfg = _json(path / "adapter_config.json")
        kind = {"LORA": "lora", "PREFIX_TUNING": "prefix"}.get(cfg.get("peft_type", ""))
        if kind is None:
            raise BadInput(
                f"{path}: peft_type {cfg.get('peft_type')!r} is not supported; kbqa reads LORA "
                "and PREFIX_TUNING (P-Tuning v2) adapters"
            )
        return AdapterInfo(path=path, kind=kind, config=cfg)
    if (path / "config.json").is_file() and "pre_seq_len" in (cfg := _json(path / "config.json")):
        if not _weights_file(path):
            raise BadInput(
                f"{path}: a ptuning checkpoint needs pytorch_model.bin beside config.json"
            )
        return AdapterInfo(
            path=path,
            kind="chatglm_ptuning",
            config=cfg,
            pre_seq_len=int(cfg["pre_seq_len"]),
            prefix_projection=bool(cfg.get("prefix_projection", False)),
        )
    raise BadInput(
        f"{path} is not an adapter: expected adapter_config.json (peft LoRA or prefix tuning) or a "
        "ChatGLM-6B ptuning checkpoint (config.json with pre_seq_len, and pytorch_model.bin)"
    )


def _weights_file(path: Path) -> Path | None:
    for name in ("adapter_model.safetensors", "adapter_model.bin", "pytorch_model.bin",
                 "model.safetensors"):  # fmt: skip
        if (path / name).is_file():
            return path / name
    return None


def _load_tensors(file: Path) -> dict[str, Any]:
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    import torch

    # weights_only: a checkpoint is data, never code to unpickle.
    return torch.load(file, map_location="cpu", weights_only=True)


def _misfit(info: AdapterInfo, model: Any, why: str) -> ModelError:
    base = info.config.get("base_model_name_or_path") or "another model"
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    arch = type(inner).__name__
    return ModelError(
        f"adapter {info.path} does not fit the base model ({arch}): {why}. It was trained "
        f"for {base}; use an adapter trained on this base model"
    )


def _check_lora(model: Any, info: AdapterInfo) -> None:
    file = _weights_file(info.path)
    if file is None:
        raise BadInput(f"{info.path}: no adapter_model.safetensors or adapter_model.bin")
    for key, tensor in _load_tensors(file).items():
        for part, dim in ((".lora_A.", 1), (".lora_B.", 0)):
            if part not in key:
                continue
            name = key.split(part)[0].removeprefix("base_model.model.")
            try:
                module = model.get_submodule(name)
            except AttributeError:
                raise _misfit(
                    info, model, f"it has weights for module {name!r}, which is not there"
                ) from None
            want = module.in_features if dim == 1 else module.out_features
            if tensor.shape[dim] != want:
                side = "in" if dim == 1 else "out"
                raise _misfit(
                    info,
                    model,
                    f"{name} has {side}_features={want} but the adapter's {key} has shape "
                    f"{tuple(tensor.shape)}",
                )


def _kv_dims(model: Any) -> tuple[int, int]:
    cfg = model.config
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    return cfg.num_hidden_layers, head_dim * kv_heads


def _check_prefix(model: Any, info: AdapterInfo) -> None:
    layers, kv_dim = _kv_dims(model)
    got_layers, got_dim = info.config.get("num_layers"), info.config.get("token_dim")
    if got_layers != layers:
        raise _misfit(
            info, model, f"it has prefixes for {got_layers} layers, the model has {layers}"
        )
    if got_dim != kv_dim:
        raise _misfit(
            info, model, f"its prefix width is {got_dim}, the model's key/value width {kv_dim}"
        )


def _apply_ptuning(model: Any, info: AdapterInfo, quantized: bool) -> Any:
    tensors = _load_tensors(_weights_file(info.path))  # type: ignore[arg-type]
    state = {
        k[len(PTUNING_PREFIX) :]: v for k, v in tensors.items() if k.startswith(PTUNING_PREFIX)
    }
    if not state:
        raise BadInput(f"{info.path}: no {PTUNING_PREFIX}* weights in the checkpoint")
    # ChatGLM-6B/2/3 folders get their ptuning prefix in kbqa.llm.chatglm.loader; here the base
    # is a native transformers model, where a ptuning prefix without projection is exactly
    # peft's prefix-tuning table.
    if info.prefix_projection:
        raise _misfit(
            info,
            model,
            "prefix_projection=True checkpoints load only on the ChatGLM-6B/2/3 model they were "
            "trained on",
        )
    layers, kv_dim = _kv_dims(model)
    emb = state.get("embedding.weight")
    want = (info.pre_seq_len, layers * 2 * kv_dim)
    if emb is None or tuple(emb.shape) != want:
        got = None if emb is None else tuple(emb.shape)
        raise _misfit(info, model, f"the prefix table has shape {got}, this model needs {want}")
    from peft import PrefixTuningConfig, get_peft_model

    cfg = PrefixTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=info.pre_seq_len, inference_mode=True
    )
    peft_model = get_peft_model(model, cfg)
    peft_model.prompt_encoder["default"].embedding.weight.data = emb.float().clone()
    return peft_model


def _check_prefix_support() -> None:
    """Refuse prefix adapters where transformers would drop the prefix at generation time.

    From transformers 5.24, ``generate`` hands the model its own ``cache`` and ignores the
    ``past_key_values`` through which peft injects the prefix: answers would silently come from
    the bare base model (training still works, which hides it).
    """
    import transformers

    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    if (major, minor) >= (5, 24):
        raise ModelError(
            f"P-Tuning v2 / prefix adapters are ignored by transformers {transformers.__version__}"
            " when generating: install transformers<5.24 (pip install 'transformers<5.24')"
        )


def apply_adapter(model: Any, info: AdapterInfo, quantized: bool) -> Any:
    """Return ``model`` with the adapter applied; ModelError says why one does not fit."""
    try:
        import peft  # noqa: F401
    except ImportError:
        raise missing_package("peft", "train") from None
    from peft import PeftModel

    if info.kind != "lora":
        _check_prefix_support()
    if info.kind == "chatglm_ptuning":
        model = _apply_ptuning(model, info, quantized)
    else:
        (_check_lora if info.kind == "lora" else _check_prefix)(model, info)
        try:
            model = PeftModel.from_pretrained(model, str(info.path), is_trainable=False)
        except (ValueError, RuntimeError, KeyError) as e:
            raise _misfit(info, model, str(e).splitlines()[0]) from None
    if info.kind != "lora" and hasattr(model, "prompt_encoder"):
        model.prompt_encoder.float()  # prefixes stay fp32 on a quantized base
    return model
