"""Embedding precision: pick bf16 / int8 / fp16 from what the hardware offers, verify it, cache it.

Measured on the 2-core AMD EPYC (avx512_bf16, avx512_vnni, no AMX) with the rebuilt e5-small,
16 CMRC passages of 300 characters, paired in one run (docs/benchmarks.md, issue 14): bf16 used
0.55-0.60x the CPU of fp32 at a minimum cosine of 0.998; torch's dynamic int8 used 0.53x but
its minimum cosine was 0.970, under the bound, so on this machine the check rejects int8 and
``auto`` picks bf16, which passes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kbqa import cache_home
from kbqa.errors import BadInput

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "int8", "fp16")
MIN_COSINE = 0.995
# CPU flags (Linux /proc/cpuinfo names) that make each reduced precision fast rather than emulated.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
# Chinese and English, short and long, queries and passages: what a reduced precision must keep.
CHECK_TEXTS = (
    "query: 公司的年假是每年几天？",
    "query: How many days of annual leave do new employees get?",
    "passage: 报销需要在费用发生后三十天内提交发票和审批单，逾期不予受理。财务部每月五日统一"
    "打款，节假日顺延；金额超过五千元的报销还需部门负责人和财务总监两级审批。",
    "passage: 《红楼梦》是中国古典四大名著之一，作者一般认为是清代的曹雪芹。小说以贾、史、王、"
    "薛四大家族的兴衰为背景，以贾宝玉、林黛玉的爱情悲剧为主线。",
    "passage: The office opens at nine in the morning and closes at six in the evening; "
    "visitors register at the front desk and wear a badge at all times.",
    "passage: 混合文本 mixed text: VPN 连接失败时请先检查 2FA 设置，再重启客户端。",
)


def check_precision(value: str, name: str = "KBQA_EMBEDDING_PRECISION") -> str:
    """The precision setting, lower-cased, if it is one of PRECISIONS.

    >>> check_precision("BF16")
    'bf16'
    """
    key = (value or "auto").strip().lower()
    if key not in PRECISIONS:
        raise BadInput(f"{name}={value!r} is not a precision: use one of {', '.join(PRECISIONS)}")
    return key


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (empty where /proc/cpuinfo cannot be read: then fp32)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


@dataclass(frozen=True)
class Choice:
    """The precision to try, and why another one was not (a notice for the user, or None)."""

    precision: str
    notice: str | None = None


def choose(setting: str, device: str, flags: frozenset[str]) -> Choice:
    """What ``setting`` means on this device: the fastest kept precision, or fp32 with a notice.

    >>> choose("auto", "cpu", frozenset({"avx512_bf16"})).precision
    'bf16'
    >>> choose("bf16", "cpu", frozenset()).precision
    'fp32'
    """
    setting = check_precision(setting)
    gpu = device.startswith("cuda")
    if setting == "fp32":
        return Choice("fp32")
    if gpu:
        if setting in ("auto", "fp16", "bf16"):
            return Choice("fp16" if setting == "auto" else setting)
        return Choice("fp32", f"embedding precision {setting} is for CPUs; using fp32 on {device}")
    if setting == "fp16":
        return Choice("fp32", "embedding precision fp16 needs a GPU; using fp32 on the CPU")
    has_bf16, has_int8 = bool(flags & BF16_FLAGS), bool(flags & INT8_FLAGS)
    if setting == "auto":
        if has_bf16:
            return Choice("bf16")
        if has_int8:
            return Choice("int8")
        return Choice(
            "fp32", "this CPU has neither bf16 (avx512_bf16/AMX) nor VNNI: embedding in fp32"
        )
    wanted, needed = ("bf16", BF16_FLAGS) if setting == "bf16" else ("int8", INT8_FLAGS)
    if not flags & needed:
        return Choice(
            "fp32",
            f"KBQA_EMBEDDING_PRECISION={wanted} but this CPU lacks {'/'.join(sorted(needed))} "
            "(it would be emulated, slower than fp32): embedding in fp32",
        )
    return Choice(wanted)


def onnx_query_precision(setting: str, flags: frozenset[str]) -> str:
    """int8 or fp32 for the ONNX query model (onnxruntime has no bf16 kernels on CPUs).

    ``auto`` and ``int8`` take int8 where VNNI makes it fast; fp32 and bf16 keep fp32 queries.

    >>> onnx_query_precision("auto", frozenset({"avx512_vnni"}))
    'int8'
    >>> onnx_query_precision("auto", frozenset())
    'fp32'
    """
    wanted = check_precision(setting) in ("auto", "int8")
    return "int8" if wanted and flags & INT8_FLAGS else "fp32"


def convert(model: Any, precision: str) -> Any:
    """``model`` (a torch module) in ``precision``; bf16/fp16 in place, int8 a quantized copy."""
    import torch

    if precision == "bf16":
        return model.to(torch.bfloat16)
    if precision == "fp16":
        return model.half()
    if precision == "int8":
        import warnings

        # Dynamic quantization of the linear layers (VNNI kernels via fbgemm/oneDNN). torch
        # warns that torch.ao moves to torchao; it still works in 2.13, the version kbqa pins.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(
                model, {torch.nn.Linear}, dtype=torch.qint8
            )
    return model


def min_cosine(reference: np.ndarray, other: np.ndarray) -> float:
    """The lowest row-wise cosine between two sets of vectors.

    >>> min_cosine(np.array([[1.0, 0.0]]), np.array([[1.0, 1.0]]))
    0.7071...
    """
    a = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    b = other / np.linalg.norm(other, axis=1, keepdims=True)
    return float(np.min(np.sum(a * b, axis=1)))


def _cache_file() -> Path:
    return cache_home() / "precision-checks.json"


def machine_key(model_key: str, precision: str, device: str, runtime: str | None = None) -> str:
    """One check per model, precision, device, machine (CPU model and flags) and runtime
    (``runtime``, e.g. ``openvino 2026.4``; by default torch and its version)."""
    if runtime is None:
        import torch

        runtime = torch.__version__
    cpu = _cpu_model() or platform.processor() or platform.machine()
    flags = ",".join(sorted(cpu_flags() & (BF16_FLAGS | INT8_FLAGS)))
    raw = f"{model_key}|{precision}|{device}|{cpu}|{flags}|{runtime}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return next(
        (ln.partition(":")[2].strip() for ln in text.splitlines() if ln.startswith("model name")),
        "",
    )


def cached_check(key: str) -> float | None:
    """The min cosine recorded for ``key``, or None if it was never checked here."""
    try:
        value = json.loads(_cache_file().read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def record_check(key: str, cosine: float) -> None:
    """Remember a check's result; a cache that cannot be written only means checking again."""
    path = _cache_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        data = data if isinstance(data, dict) else {}
        data[key] = round(cosine, 6)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        tmp.replace(path)
    except (OSError, ValueError) as exc:
        log.info("precision check not cached (%s)", exc)


def verified_dtype(setting: str, device: str | None, model_key: str) -> Any:
    """The torch dtype to load in when bf16/fp16 is chosen and already passed its check here.

    None means load in fp32 (then ``apply`` checks, or keeps fp32).
    """
    import torch

    device = device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    choice = choose(setting, device, cpu_flags())
    if choice.precision not in ("bf16", "fp16"):
        return None
    cosine = cached_check(machine_key(model_key, choice.precision, device))
    if cosine is None or cosine < MIN_COSINE:
        return None
    return torch.bfloat16 if choice.precision == "bf16" else torch.float16


def apply(
    model: Any,
    setting: str,
    device: str,
    model_key: str,
    encode: Callable[[Any, list[str]], np.ndarray],
    flags: frozenset[str] | None = None,
) -> tuple[Any, str, float | None]:
    """(model in the chosen precision, that precision, its min cosine to fp32 or None for fp32).

    ``model`` is the loaded fp32 model; ``encode(model, texts)`` embeds with it. A precision is
    used only once it has matched fp32 to MIN_COSINE on CHECK_TEXTS on this machine (checked
    once, then cached); otherwise the model stays fp32 and a warning says why.
    """
    choice = choose(setting, device, cpu_flags() if flags is None else flags)
    if choice.notice:
        log.warning("%s", choice.notice)
    if choice.precision == "fp32":
        return model, "fp32", None
    key = machine_key(model_key, choice.precision, device)
    cosine = cached_check(key)
    if cosine is None:
        import copy

        reference = encode(model, list(CHECK_TEXTS))
        candidate = convert(copy.deepcopy(model), choice.precision)
        cosine = min_cosine(reference, encode(candidate, list(CHECK_TEXTS)))
        record_check(key, cosine)
        del candidate
    if cosine < MIN_COSINE:
        log.warning(
            "embedding precision %s matched fp32 only to cosine %.4f (< %s) on this machine: "
            "embedding in fp32 (set KBQA_EMBEDDING_PRECISION to choose another)",
            choice.precision, cosine, MIN_COSINE,
        )  # fmt: skip
        return model, "fp32", None
    return convert(model, choice.precision), choice.precision, cosine
