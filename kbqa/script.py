"""Chinese script folding: Traditional -> Simplified (OpenCC tables), so either script matches."""

from __future__ import annotations

import functools


@functools.cache
def _converter():
    from opencc import OpenCC  # opencc-python-reimplemented: pure Python, the OpenCC tables

    return OpenCC("t2s")


@functools.cache
def _traditional() -> frozenset[str]:
    """The CJK characters that t2s changes, found once by converting each one alone (~0.1 s).

    Pure-Python OpenCC costs ~1 ms per 400 characters; a set test costs microseconds, so text
    without a Traditional character (nearly all of a Simplified KB) skips the conversion.
    """
    chars = [chr(c) for c in range(0x3400, 0xA000)]
    converted = _converter().convert("\n".join(chars)).split("\n")
    if len(converted) != len(chars):  # a phrase rule crossed a newline: compare one by one
        converted = [_converter().convert(c) for c in chars]
    return frozenset(c for c, s in zip(chars, converted, strict=True) if c != s)


def to_simplified(text: str) -> str:
    """``text`` with Traditional characters written in Simplified; other text unchanged.

    >>> to_simplified("臺北辦公室")
    '台北办公室'
    """
    if _traditional().isdisjoint(text):
        return text
    return _converter().convert(text)
