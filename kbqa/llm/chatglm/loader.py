"""Load a ChatGLM-family checkpoint natively: plain, nf4/int8 through bitsandbytes, P-Tuning."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from kbqa.errors import KbqaError, ModelError
from kbqa.llm.chatglm import detect

# config.json keys that are not ChatGLM6BConfig arguments.
_V1_SKIP = ("architectures", "auto_map", "model_type", "_name_or_path", "torch_dtype",
            "transformers_version", "quantization_bit", "quantization_embeddings",
            "position_encoding_2d")  # fmt: skip


def v1_config(config: dict[str, Any]) -> Any:
    from kbqa.llm.chatglm.v1_model import ChatGLM6BConfig

    return ChatGLM6BConfig(**{k: v for k, v in config.items() if k not in _V1_SKIP})


def pick_dtype(config: dict[str, Any], device: str, quant: str | None) -> Any:
    """Compute dtype: fp16 checkpoints run in fp32 on CPU (ChatGLM's own CPU recipe)."""
    import torch

    if quant == "nf4":
        return torch.bfloat16
    if quant == "int8":
        return torch.float16 if device.startswith("cuda") else torch.float32
    stored = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(
        str(config.get("torch_dtype", "float32")), torch.float32
    )
    if stored == torch.float16 and not device.startswith("cuda"):
        return torch.float32
    return stored


def load_chatglm(
    path: Path, config: dict[str, Any], family: str, device: str, quant: str | None = None,
    dtype: Any = None,
) -> Any:  # fmt: skip
    """The model for a ChatGLM-family directory, in eval mode on ``device``."""
    dtype = dtype or pick_dtype(config, device, quant)
    try:
        if family == detect.CHATGLM6B:
            model = _load_v1(path, config, device, quant, dtype)
        elif quant is None:
            from kbqa.llm.chatglm.convert import load_native

            model = load_native(path, config, dtype, device)
        else:
            model = _load_native_quantized(path, config, device, quant, dtype)
        if family != detect.CHATGLM6B:
            from kbqa.llm.chatglm.prefix import as_chatglm

            model = as_chatglm(model)
        _set_stop_ids(model, path, family)
        # peft records this as the adapter's base model: the user's folder, not a temp copy.
        model.name_or_path = model.config._name_or_path = str(path)
        return model
    except KbqaError:
        raise
    except Exception as e:  # torch, safetensors, bitsandbytes: translated once, here
        raise ModelError(
            f"cannot load the {family} model in {path}: {e}; check that the directory holds the "
            "complete checkpoint (config.json and every weight shard)"
        ) from e


def _set_stop_ids(model: Any, path: Path, family: str) -> None:
    """generate() stops where the model's own chat() does, even when called directly."""
    from kbqa.llm.chatglm.chat_format import stop_ids
    from kbqa.llm.chatglm.tokenizers import load_tokenizer

    try:
        tok = load_tokenizer(path, family)
    except ModelError:  # weights without a tokenizer: whoever tokenizes will say what is missing
        return
    model.generation_config.eos_token_id = stop_ids(tok)
    model.generation_config.pad_token_id = tok.pad_token_id


def _quant_kwargs(quant: str | None, device: str) -> dict[str, Any]:
    if quant is None:
        return {}
    from kbqa.llm.loading import quantization_config

    qc = quantization_config(quant)
    return {"quantization_config": qc, "device_map": {"": device}}


def _load_v1(path: Path, config: dict[str, Any], device: str, quant: str | None, dtype: Any):
    from kbqa.llm.chatglm.v1_model import ChatGLM6BForCausalLM

    model = ChatGLM6BForCausalLM.from_pretrained(
        path, config=v1_config(config), dtype=dtype, **_quant_kwargs(quant, device)
    )
    return (model if quant else model.to(device)).eval()


def _load_native_quantized(path: Path, config: dict[str, Any], device: str, quant: str, dtype):
    """Convert into a temporary native checkpoint, then let bitsandbytes quantize it on load."""
    from safetensors.torch import save_file
    from transformers import GlmForCausalLM

    from kbqa.llm.chatglm.convert import glm_config, native_tensors

    with tempfile.TemporaryDirectory(prefix="kbqa-glm-") as tmp:
        out = Path(tmp)
        glm_config(config).save_pretrained(out)
        shard: dict[str, Any] = {}
        size, files, weight_map = 0, 0, {}

        def flush() -> None:
            nonlocal shard, size, files
            files += 1
            save_file(shard, str(out / f"model-{files:05d}.safetensors"))
            weight_map.update(dict.fromkeys(shard, f"model-{files:05d}.safetensors"))
            shard, size = {}, 0

        for name, tensor in native_tensors(path, config, dtype):
            shard[name] = tensor
            size += tensor.numel() * tensor.element_size()
            if size > 256 << 20:  # small shards keep the conversion's own memory small
                flush()
        del tensor  # noqa: F821 (the loop ran: a checkpoint has weights)
        if shard:
            flush()  # nothing converted stays referenced while bitsandbytes loads
        index = {"metadata": {}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index))
        model = GlmForCausalLM.from_pretrained(out, dtype=dtype, **_quant_kwargs(quant, device))
    return model.eval()


def attach_ptuning(model: Any, state: dict[str, Any], family: str) -> Any:
    """Add a ChatGLM ptuning prefix (``transformer.prefix_encoder.*`` with the prefix cut)."""
    from kbqa.llm.chatglm.prefix import PrefixEncoder, attach_prefix

    if family == detect.CHATGLM6B:
        cfg = model.config
        enc = PrefixEncoder.from_state(state, cfg.num_layers * 2 * cfg.hidden_size)
        model.transformer.add_module("prefix_encoder", enc.to(model.device))
        model.config.pre_seq_len = enc.pre_seq_len
        return model
    return attach_prefix(model, state)


def load_for_spec(spec: Any, config: dict[str, Any], family: str, adapter: Any = None) -> Any:
    """The model for an LLM spec over a ChatGLM-family directory, its adapter applied."""
    from transformers.utils import logging as hf_logging

    from kbqa.llm.loading import _device

    hf_logging.disable_progress_bar()  # as load_model: a "Loading weights" bar per command is noise
    device = _device(spec)
    model = load_chatglm(spec.path, config, family, device, spec.quant)
    if adapter is None:
        return model
    if adapter.kind == "chatglm_ptuning":
        from kbqa.llm.adapters import PTUNING_PREFIX, _load_tensors, _weights_file

        tensors = _load_tensors(_weights_file(adapter.path))
        state = {
            k[len(PTUNING_PREFIX) :]: v for k, v in tensors.items() if k.startswith(PTUNING_PREFIX)
        }
        if "embedding.weight" not in state:
            raise ModelError(
                f"{adapter.path}: no {PTUNING_PREFIX}embedding.weight in the checkpoint; is it a "
                "ChatGLM P-Tuning v2 output folder?"
            )
        if family == detect.GLM4_CHAT:
            raise ModelError(
                f"{adapter.path} is a ChatGLM ptuning checkpoint, but GLM-4-9B-chat's own code has "
                "no prefix encoder: such checkpoints exist for ChatGLM-6B, ChatGLM2 and ChatGLM3 only"
            )
        try:
            return attach_ptuning(model, state, family).eval()
        except RuntimeError as e:
            raise ModelError(
                f"adapter {adapter.path} does not fit the model in {spec.path}: "
                f"{str(e).splitlines()[0]}; use a ptuning checkpoint trained on this base model"
            ) from None
    from kbqa.llm.adapters import apply_adapter

    if adapter.kind != "lora":
        return apply_adapter(model, adapter, quantized=bool(spec.quant)).eval()
    from kbqa.llm.chatglm.lora import convert_if_original

    with tempfile.TemporaryDirectory(prefix="kbqa-lora-") as tmp:
        native = convert_if_original(adapter, config, family, Path(tmp))
        return apply_adapter(model, native, quantized=bool(spec.quant)).eval()
