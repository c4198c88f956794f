"""ChatGLM2-6B-int4's packed weights back to floats: two signed nibbles per byte, a scale per row."""

from __future__ import annotations

from typing import Any


def unpack_int4(packed: Any) -> Any:
    """[out, in/2] int8 bytes -> [out, in] int8 values in -8..7.

    Column 2j sits in the high nibble and 2j+1 in the low one, both two's complement.
    Example: the byte 0x7F (127) holds columns [7, -1].
    """
    import torch

    w = packed.to(torch.int16)
    high = w >> 4  # arithmetic shift of the sign-extended byte keeps the high nibble's sign
    low = ((w & 0xF) ^ 8) - 8  # sign-extend the low nibble
    return torch.stack((high, low), dim=-1).reshape(w.shape[0], -1).to(torch.int8)


def dequantize_int4(packed: Any, scale: Any, dtype: Any) -> Any:
    """The float weight: scale[row] * nibble, computed in fp32 as the repo's CPU kernel does."""
    import torch

    if packed.dtype != torch.int8 or packed.dim() != 2 or scale.shape != packed.shape[:1]:
        raise ValueError(
            f"int4 weight must be int8 [out, in/2] with a [out] scale, got {packed.dtype} "
            f"{tuple(packed.shape)} and scale {tuple(scale.shape)}"
        )
    values = unpack_int4(packed).to(torch.float32)
    return (values * scale.to(torch.float32)[:, None]).to(dtype)
