"""Chinese script folding: Traditional -> Simplified (OpenCC tables), so either script matches."""

from __future__ import annotations

import functools
import re

_HAN = re.compile(r"[\u4e00-\u9fff]")


@functools.cache
def _converter():
    from opencc import OpenCC  # opencc-python-reimplemented: pure Python, the OpenCC tables

    return OpenCC("t2s")


def to_simplified(text: str) -> str:
    """``text`` with Traditional characters written in Simplified; other text unchanged.

    >>> to_simplified("臺北辦公室")
    '台北办公室'
    """
    if not _HAN.search(text):
        return text  # no Han characters: skip the table walk
    return _converter().convert(text)
