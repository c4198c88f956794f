"""Tell which ChatGLM checkpoint format a model directory holds, from its config files alone."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kbqa.errors import BadInput, ModelError

log = logging.getLogger(__name__)

# Formats kbqa loads without remote code (see README "Which model formats load").
CHATGLM6B = "chatglm6b"  # ChatGLM-6B v1: our own model class (prefix-LM, 2D positions)
CHATGLM2 = "chatglm2"  # ChatGLM2-6B: weights mapped onto transformers' GlmForCausalLM
CHATGLM2_INT4 = "chatglm2-int4"  # ChatGLM2-6B-int4: packed int4 dequantized at load
CHATGLM3 = "chatglm3"  # ChatGLM3-6B: ChatGLM2's architecture, role tokens in the tokenizer
GLM4_CHAT = "glm4-chat"  # GLM-4-9B-chat in its original remote-code layout, tiktoken tokenizer
GLM4_HF = "glm4-hf"  # glm-4-9b-chat-hf / GLM-4-0414: transformers' own classes, as is
FORMATS = (CHATGLM6B, CHATGLM2, CHATGLM2_INT4, CHATGLM3, GLM4_CHAT, GLM4_HF)

# ChatGLM3 is ChatGLM2's architecture with another tokenizer: their config.json files are alike,
# so the LLM spec's ``format=`` may choose between them (a renamed ChatGLM3 folder needs it).
_SAME_CONFIG = (CHATGLM2, CHATGLM3)

# Keys every ChatGLM2/3/GLM-4 config.json has; without one the shapes cannot be known.
_V2_REQUIRED = ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads",
                "padded_vocab_size")  # fmt: skip
_V1_REQUIRED = ("num_layers", "hidden_size", "num_attention_heads", "vocab_size")


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{path} is not valid JSON: {e}") from None


def _bad(path: Path, field: str, why: str) -> ModelError:
    return ModelError(
        f"{path} looks like a ChatGLM checkpoint but config.json field {field!r} {why}; kbqa loads "
        "ChatGLM-6B, ChatGLM2-6B(-int4), ChatGLM3-6B and GLM-4-9B-chat as published: check that "
        "config.json is the one that came with the weights"
    )


def _is_tiktoken_file(path: Path) -> bool:
    """GLM-4's tokenizer.model is text (base64 token, space, rank); SentencePiece's is protobuf."""
    try:
        head = path.read_bytes()[:200]
    except OSError:
        return False
    line = head.split(b"\n", 1)[0].split()
    return len(line) == 2 and line[1].isdigit()


def detect_format(path: Path, config: dict[str, Any]) -> str | None:
    """The format name of the model in ``path``, or None when it is not a ChatGLM-family model.

    Example: a config.json with ``model_type: chatglm`` and ``quantization_bit: 4`` is
    ``"chatglm2-int4"``.
    """
    path = Path(path)
    model_type = config.get("model_type")
    if model_type in ("glm", "glm4"):
        return GLM4_HF
    if model_type != "chatglm":
        return None
    if "position_encoding_2d" in config or "inner_hidden_size" in config:
        return _check_v1(path, config)
    for key in _V2_REQUIRED:
        if not isinstance(config.get(key), int):
            raise _bad(path, key, "is missing or not an integer")
    for key, want in (("rmsnorm", True), ("post_layer_norm", True), ("original_rope", True),
                      ("apply_residual_connection_post_layernorm", False)):  # fmt: skip
        if config.get(key, want) != want:
            raise _bad(path, key, f"is {config.get(key)!r}; the published models have {want}")
    if config.get("add_bias_linear", False):
        raise _bad(path, "add_bias_linear", "is true; the native GLM classes have no such biases")
    bits = config.get("quantization_bit") or 0
    tok_cfg = _json(path / "tokenizer_config.json")
    glm4 = tok_cfg.get("tokenizer_class") == "ChatGLM4Tokenizer" or _is_tiktoken_file(
        path / "tokenizer.model"
    )
    if bits not in (0, 4) or (bits == 4 and glm4):
        raise _bad(path, "quantization_bit", f"is {bits!r}; only ChatGLM2-6B-int4 (4) is read")
    if glm4:
        return GLM4_CHAT
    if bits == 4:
        return CHATGLM2_INT4
    # ChatGLM3 differs from ChatGLM2 only in its tokenizer: role tokens and a chat template.
    markers = json.dumps(tok_cfg) + str(config.get("_name_or_path", ""))
    return CHATGLM3 if ("<|user|>" in markers or "chatglm3" in markers.lower()) else CHATGLM2


def resolve_format(path: Path, config: dict[str, Any], override: str | None = None) -> str | None:
    """``detect_format``, unless ``override`` (the spec's ``format=``) names the other of
    ChatGLM2/ChatGLM3; BadInput when the override contradicts what config.json says.

    Example: a ChatGLM3 folder renamed ``faq-bot`` with a bare tokenizer_config.json reads as
    ``"chatglm2"``; ``resolve_format(path, config, "chatglm3")`` is ``"chatglm3"``.
    """
    detected = detect_format(path, config)
    if override is None or override == detected:
        return detected
    if detected in _SAME_CONFIG and override in _SAME_CONFIG:
        return override
    what = (
        f"a {detected} checkpoint"
        if detected
        else f"no ChatGLM-family model (model_type {config.get('model_type')!r})"
    )
    raise BadInput(
        f"format={override} does not fit {path}: its config.json is {what}; format= only tells "
        f"{' from '.join(_SAME_CONFIG)} apart (their config.json files are alike): drop it or "
        "check the model directory"
    )


def _check_v1(path: Path, config: dict[str, Any]) -> str:
    for key in _V1_REQUIRED:
        if not isinstance(config.get(key), int):
            raise _bad(path, key, "is missing or not an integer")
    if not config.get("position_encoding_2d", True):
        raise _bad(path, "position_encoding_2d", "is false; ChatGLM-6B uses 2D positions")
    if config.get("quantization_bit") or 0:
        raise _bad(
            path,
            "quantization_bit",
            f"is {config['quantization_bit']}; quantized ChatGLM-6B checkpoints are not read, use "
            "the fp16 chatglm-6b weights with quant=nf4|int8",
        )
    return CHATGLM6B


def warn_remote_code_ignored(path: Path, family: str) -> None:
    """Say that ``trust_remote_code`` does nothing here, rather than ignore it silently.

    A warning, not an error: recipes written for the original remote code pass the flag, and
    the folder loads fine without it (the user gets what the flag was meant to give).
    """
    log.warning(
        "trust_remote_code is ignored for %s: it is a %s checkpoint, and kbqa always loads the "
        "ChatGLM formats natively (no code from the model folder runs); drop the flag",
        path,
        family,
    )
