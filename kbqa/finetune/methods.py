"""LoRA, QLoRA and P-Tuning v2 through peft: one config, one entry point that builds the model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbqa.errors import BadInput, ModelError, NotFound, missing_package

METHODS = ("lora", "qlora", "ptuning-v2")

# Attention projections per architecture (config.model_type); LoRA papers find attention enough.
DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    "glm": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "glm4": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "chatglm": ("query_key_value",),
    "kbqa_chatglm6b": ("query_key_value",),  # kbqa's native ChatGLM-6B keeps the original names
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "qwen2": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "gpt2": ("c_attn",),
}


@dataclass(frozen=True)
class MethodConfig:
    """The base model and how it is adapted; ``target_modules=None`` picks per architecture."""

    base_model: Path
    method: str = "lora"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None
    pre_seq_len: int = 16
    prefix_projection: bool = False
    prefix_hidden_size: int = 512
    gradient_checkpointing: bool = False
    bf16: bool = False
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise BadInput(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        for name in ("lora_r", "lora_alpha", "pre_seq_len", "prefix_hidden_size"):
            if getattr(self, name) < 1:
                raise BadInput(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.lora_dropout < 1:
            raise BadInput(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.target_modules is not None and not self.target_modules:
            raise BadInput("target_modules, when given, needs at least one module name")

    def check_base(self) -> Path:
        """The base model folder, or NotFound saying what a usable folder holds."""
        path = Path(self.base_model)
        if not path.is_dir():
            raise NotFound(
                f"base model directory {path} does not exist; give a local model folder "
                "(config.json, weights, tokenizer): weights are never downloaded"
            )
        if not (path / "config.json").is_file():
            raise NotFound(f"{path} has no config.json: it is not a transformers model folder")
        return path


def linear_layers(model: Any) -> list[str]:
    """Sorted leaf names of the model's linear layers (what LoRA can target), lm_head aside."""
    import torch

    names = {
        n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
    }
    # Conv1D is GPT-2's linear layer; peft targets it too.
    names |= {
        n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Conv1D"
    }
    names.discard("lm_head")
    return sorted(names)


def resolve_targets(model: Any, requested: tuple[str, ...] | None) -> list[str]:
    """Requested target modules checked against the model, or the architecture's defaults."""
    available = linear_layers(model)
    if requested is None:
        model_type = getattr(model.config, "model_type", "")
        default = DEFAULT_TARGETS.get(model_type)
        if default is None or not set(default) <= set(available):
            raise BadInput(
                f"no default LoRA target modules for architecture {model_type!r}; choose with "
                f"--target-modules from the model's linear layers: {', '.join(available)}"
            )
        return list(default)
    missing = [t for t in requested if t not in available]
    if missing:
        raise BadInput(
            f"target module(s) {', '.join(missing)} not in the model; its linear layers are: "
            f"{', '.join(available)}"
        )
    return list(requested)


def _chatglm_family(path: Path) -> tuple[str | None, dict[str, Any]]:
    """The ChatGLM format of ``path`` that kbqa loads natively (None: plain transformers)."""
    from kbqa.llm.chatglm.detect import GLM4_HF, detect_format

    cfg_file = Path(path) / "config.json"
    cfg = json.loads(cfg_file.read_text(encoding="utf-8")) if cfg_file.is_file() else {}
    family = detect_format(Path(path), cfg)
    return (family if family != GLM4_HF else None), cfg


def load_tokenizer(path: Path, trust_remote_code: bool = False) -> Any:
    family, _ = _chatglm_family(path)
    if family:
        from kbqa.llm.chatglm.tokenizers import load_tokenizer as load_chatglm_tokenizer

        return load_chatglm_tokenizer(path, family)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(
        path, local_files_only=True, trust_remote_code=trust_remote_code
    )
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def _load_base(config: MethodConfig, device: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    path = config.check_base()
    family, cfg = _chatglm_family(path)
    if family:  # ChatGLM-6B/2/3, GLM-4-9B-chat in their original layouts: no remote code
        from kbqa.llm.chatglm.detect import warn_remote_code_ignored
        from kbqa.llm.chatglm.loader import load_chatglm

        if config.trust_remote_code:
            warn_remote_code_ignored(path, family)

        quant = "nf4" if config.method == "qlora" else None
        dtype = torch.bfloat16 if config.bf16 else torch.float32
        return load_chatglm(path, cfg, family, device, quant, None if quant else dtype)
    kwargs: dict[str, Any] = {
        "local_files_only": True,
        "trust_remote_code": config.trust_remote_code,
    }
    dtype = torch.bfloat16 if config.bf16 else torch.float32
    if config.method == "qlora":
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise missing_package("bitsandbytes", "train") from None
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {"": 0} if device == "cuda" else "cpu"
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"cannot load the base model from {path}: {exc}") from exc
    return model if config.method == "qlora" else model.to(device)


def build_model(config: MethodConfig, device: str = "cpu") -> tuple[Any, Any]:
    """The trainable peft model and its tokenizer, as ``config`` describes."""
    try:
        import peft
    except ImportError:
        raise missing_package("peft", "train") from None

    tokenizer = load_tokenizer(config.check_base(), config.trust_remote_code)
    model = _load_base(config, device)
    if config.method == "qlora":
        model = peft.prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=config.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.method == "ptuning-v2":
        if config.gradient_checkpointing:
            raise BadInput("gradient checkpointing does not work with P-Tuning v2's cached prefix")
        pcfg: Any = peft.PrefixTuningConfig(
            task_type="CAUSAL_LM",
            num_virtual_tokens=config.pre_seq_len,
            prefix_projection=config.prefix_projection,
            encoder_hidden_size=config.prefix_hidden_size,
        )
    else:
        pcfg = peft.LoraConfig(
            task_type="CAUSAL_LM",
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=resolve_targets(model, config.target_modules),
        )
    model = peft.get_peft_model(model, pcfg)
    if config.method == "ptuning-v2":
        # As ChatGLM-6B's P-Tuning: the prefix encoder trains in fp32 even on a bf16 base.
        model.prompt_encoder.float()
    return model, tokenizer


def load_adapter(base_model: Path, adapter: Path, device: str = "cpu") -> tuple[Any, Any]:
    """Base model plus a trained adapter, for evaluation; ``disable_adapter()`` gives the base."""
    try:
        from peft import PeftModel
    except ImportError:
        raise missing_package("peft", "train") from None
    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise NotFound(f"{adapter} holds no adapter_config.json: not a trained adapter folder")
    # A QLoRA adapter is evaluated on the 4-bit base it was trained on.
    info_file = adapter / "kbqa_finetune.json"
    info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
    cfg = MethodConfig(base_model=Path(base_model), method=info.get("method", "lora"))
    tokenizer = load_tokenizer(cfg.check_base())
    model = PeftModel.from_pretrained(_load_base(cfg, device), adapter).eval()
    return model, tokenizer
