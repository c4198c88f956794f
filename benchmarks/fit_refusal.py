"""Fits the refusal signal weights (kbqa/retrieval/retriever.py) on devcorp's fit and report splits.

    python benchmarks/fit_refusal.py

Prints, for a grid of weights, the best threshold's refusal rate at false refusal <= 0.05 on
fit + report (both tuned on since the third round); report2 and report3 are never read here.
The threshold the KB calibrates for itself (refusal.py) is what serving uses; this only shows
which weights separate the questions at all.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def features() -> list[tuple[dict, bool]]:
    from benchmarks.bench_devset import build, rows
    from kbqa.retrieval.retriever import Retriever

    kb, emb = build()
    retriever = Retriever(kb, emb)
    out = []
    for row in rows("all"):  # fit + report, never report2 or report3
        if row["kind"] == "followup":
            continue
        found = retriever.retrieve(row["question"], 5)
        f = {
            "cos": found.best_cosine,
            "cov": found.coverage,
            "unk": found.unknown,
            "type": found.type_ok,
            "unit": found.unit_ok,
            "foreign": found.foreign,
            "kind": found.unknown_kind,
            "q": row["question"],
        }
        out.append((f, row["kind"] == "unanswerable"))
    return out


def score(
    f: dict, w_unk: float, w_type: float, shift: float, w_cov: float = 0.1, w_unit: float = 0.1
) -> float:
    if f["foreign"]:
        return f["cos"] + shift
    penalty = (0 if f.get("unit", True) else w_unit) + (0.04 if f.get("kind") else 0.0)
    return f["cos"] + w_cov * f["cov"] - w_unk * f["unk"] - (0 if f["type"] else w_type) - penalty


def best_threshold(scores: np.ndarray, neg: np.ndarray, max_fr: float = 0.05):
    pos = np.sort(scores[~neg])
    cut = pos[int(np.floor(max_fr * len(pos)))]  # refuse below: at most max_fr of positives
    return float(cut), float((scores[neg] < cut).mean())


def main() -> None:
    data = features()
    neg = np.array([n for _, n in data])
    results = []
    for w_unk, w_type, shift in itertools.product(
        [0.0, 0.05, 0.1, 0.15, 0.2], [0.0, 0.02, 0.03, 0.05], [0.0, 0.04, 0.06, 0.08, 0.1]
    ):
        s = np.array([score(f, w_unk, w_type, shift) for f, _ in data])
        thr, refused = best_threshold(s, neg)
        results.append((refused, -w_unk, w_unk, w_type, shift, thr))
    results.sort(reverse=True)
    for r in results[:10]:
        print(
            json.dumps({"refusal": r[0], "w_unk": r[2], "w_type": r[3], "shift": r[4], "thr": r[5]})
        )
    for f, n in data:
        print(n, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in f.items()})


if __name__ == "__main__":
    main()
