"""Hand the C heap's free pages back to the OS between embedding batches (glibc only).

torch's CPU tensors come from malloc. Each batch of passages has its own padded length, so
its activations have new sizes; glibc keeps the freed blocks in its heaps, and RSS climbed
~400 MiB over one ingest of the CMRC trial set although nothing was alive in them.
``malloc_trim`` after a batch releases them (docs/benchmarks.md, "Peak memory of kbqa ingest").
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # the C library this process already runs on
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS, Windows): nothing to call


def trim_heap() -> bool:
    """Release free heap memory to the OS; True if some was released, False where unsupported."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
