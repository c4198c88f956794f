"""Build a transformers model from a spec: device, dtype, bitsandbytes quantization, adapter."""

from __future__ import annotations

import logging
import warnings
from typing import Any

from kbqa.errors import ModelError, missing_package
from kbqa.llm.spec import TransformersSpec

INT8_CAST_NOTICE = "MatMul8bitLt: inputs will be cast"


class _DropInt8CastNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(INT8_CAST_NOTICE)


def quiet_int8_cast_notice() -> None:
    """Drop bitsandbytes' "inputs will be cast ... to float16" notice, that one only.

    int8 kernels quantize fp16 inputs, and kbqa keeps int8's unquantized parts in fp32 on CPU
    (fastest there), so every int8 matmul casts on purpose; bitsandbytes says so on each call:
    hundreds of identical lines per answer. It logs it (0.45+) or warns it (0.43/0.44).
    """
    warnings.filterwarnings("ignore", message=INT8_CAST_NOTICE, category=UserWarning)
    logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropInt8CastNotice) for f in logger.filters):
        logger.addFilter(_DropInt8CastNotice())


def quantization_config(quant: str) -> Any:
    """The BitsAndBytesConfig for ``nf4`` (double quantization, bf16 compute) or ``int8``."""
    try:
        import bitsandbytes  # noqa: F401  (transformers needs it; fail here with the fix)
    except ImportError:
        raise missing_package("bitsandbytes", "train") from None
    import torch
    from transformers import BitsAndBytesConfig

    if quant == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    quiet_int8_cast_notice()  # every int8 load goes through here, ChatGLM's native one too
    return BitsAndBytesConfig(load_in_8bit=True)


def _device(spec: TransformersSpec) -> str:
    import torch

    if spec.device:
        if spec.device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"device={spec.device} was asked for but torch sees no CUDA device")
        return spec.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(spec: TransformersSpec, config: dict[str, Any], adapter: Any = None) -> Any:
    """Load the model for ``spec`` in eval mode, with its adapter applied.

    ChatGLM-family folders never come here (kbqa.llm.chatglm.loader loads them natively), so a
    ChatGLM ptuning checkpoint here sits on a native model: peft's prefix table (adapters.py).
    """
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per command is noise
    device = _device(spec)
    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
    if spec.quant:
        kwargs["quantization_config"] = quantization_config(spec.quant)
        kwargs["device_map"] = {"": device}  # bitsandbytes quantizes while placing weights
        # Unquantized parts (embeddings, norms, lm_head): bf16 beside nf4's bf16 compute;
        # int8's matmul runs in fp16 on GPU, and CPU kernels are fastest in fp32.
        if spec.quant == "nf4":
            kwargs["dtype"] = torch.bfloat16
        else:
            kwargs["dtype"] = torch.float16 if device.startswith("cuda") else torch.float32
    else:
        kwargs["dtype"] = "auto"
    try:
        model = AutoModelForCausalLM.from_pretrained(spec.path, **kwargs)
    except ImportError as e:
        raise ModelError(f"loading {spec.path} needs a package that is missing: {e}") from e
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelError(f"cannot load the model in {spec.path}: {e}") from e
    if not spec.quant:
        model.to(device)
    if adapter is not None:
        from kbqa.llm.adapters import apply_adapter

        model = apply_adapter(model, adapter, quantized=bool(spec.quant))
    return model.eval()
