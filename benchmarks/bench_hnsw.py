"""Approximate dense search at scale: HNSW (M, efConstruction, efSearch), HNSW-SQ8, IVF-Flat.

Each candidate index is built over N CMRC-like vectors (real e5 chunk vectors blended in pairs
plus noise, as in bench_retrieval's ``mixtures``) and searched with real CMRC questions, one at
a time on one thread (as FaissStore searches); recall@10 is against exact flat search.

    python benchmarks/bench_hnsw.py --sizes 100000 200000
    python benchmarks/bench_hnsw.py --sizes 1000000   # the 1M case: ~1.5 GB of vectors, long

Vectors of the first --paragraphs paragraphs' chunks and --questions questions are embedded
once with the default embedder and cached in benchmarks/out/hnsw_vectors.npz.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_retrieval import DATA, OUT, mixtures  # noqa: E402

# (label, factory string or HNSW (M, efConstruction), search parameter values)
CANDIDATES = {
    "hnsw32-80": (("hnsw", 32, 80), (256, 512)),
    "hnsw32-200": (("hnsw", 32, 200), (256, 512)),
    "hnsw48-200": (("hnsw", 48, 200), (256, 512)),
    "hnsw32-200-sq8": (("hnsw-sq8", 32, 200), (256, 512)),
    "ivf-flat": (("ivf", 0, 0), (32, 64, 128, 256)),
    # 8-bit codes in the lists (a quarter of the bytes to scan), the best 4k re-ranked exactly.
    "ivf-sq8-refine": (("ivf-sq8", 0, 0), (128, 256, 512)),
}


def vectors(data: Path, paragraphs: int, questions: int) -> tuple[np.ndarray, np.ndarray]:
    """(chunk vectors, question vectors), embedded once and cached."""
    cache = OUT / "hnsw_vectors.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if len(z["p"]) and z["meta"].tolist() == [paragraphs, questions]:
                return z["p"], z["q"]
    from kbqa.config import EmbedConfig, SplitConfig
    from kbqa.embed.factory import load_embedder
    from kbqa.ingest.split import split_documents
    from kbqa.types import Document

    squad = json.loads(data.read_text(encoding="utf-8"))
    paras = [p for a in squad["data"] for p in a["paragraphs"]][:paragraphs]
    chunks = [
        c.index_text
        for i, p in enumerate(paras)
        for c in split_documents([Document(p["context"], f"p{i}")], SplitConfig())
    ]
    asked = [q["question"] for p in paras for q in p["qas"]][:questions]
    emb = load_embedder(None, EmbedConfig())
    p, q = emb.embed_passages(chunks), emb.embed_queries(asked)
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(cache, p=p, q=q, meta=np.array([paragraphs, questions]))
    return p, q


def build(kind: tuple, data: np.ndarray):
    import faiss

    what, m, ef_c = kind
    dim = data.shape[1]
    if what == "hnsw":
        index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
    elif what == "hnsw-sq8":
        index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT)
    else:  # IVF-Flat / IVF-SQ8: sqrt(N)-ish lists, trained on a sample
        nlist = int(4 * np.sqrt(len(data)))
        sample = data[np.random.default_rng(1).permutation(len(data))[: nlist * 40]]
        quantizer = faiss.IndexFlatIP(dim)
        if what == "ivf":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFScalarQuantizer(
                quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
            )
        index.train(sample)
        if what == "ivf-sq8":
            index = faiss.IndexRefineFlat(index)
            index.k_factor = 4
    if not what.startswith("ivf"):
        index.hnsw.efConstruction = ef_c
        if what == "hnsw-sq8":
            index.train(data[:50_000])
    index.add(data)
    return index


def one_by_one(index, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, float]:
    """(ids, p50 ms) searching each query alone on one thread."""
    import faiss

    faiss.omp_set_num_threads(1)
    ids, lat = [], []
    for v in queries:
        t = time.perf_counter()
        ids.append(index.search(v[None], k)[1][0])
        lat.append((time.perf_counter() - t) * 1000)
    faiss.omp_set_num_threads(2)
    return np.array(ids), float(np.percentile(lat, 50))


def main(argv: list[str] | None = None) -> None:
    import faiss

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 200_000])
    ap.add_argument(
        "--only", nargs="*", help=f"candidates to run (default all: {list(CANDIDATES)})"
    )
    ap.add_argument("--paragraphs", type=int, default=120)
    ap.add_argument("--questions", type=int, default=100)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    real, qv = vectors(args.data, args.paragraphs, args.questions)
    rng, results = np.random.default_rng(0), {}
    for n in args.sizes:
        data = np.concatenate([real, mixtures(real, n - len(real), rng)])
        flat = faiss.IndexFlatIP(data.shape[1])
        flat.add(data)
        truth, flat_ms = one_by_one(flat, qv)
        print(f"{n:,} chunks: flat p50 {flat_ms:.2f} ms", flush=True)
        for label in args.only or CANDIDATES:
            kind, params = CANDIDATES[label]
            t = time.perf_counter()
            index = build(kind, data)
            built = time.perf_counter() - t
            for value in params:
                if kind[0].startswith("ivf"):
                    faiss.extract_index_ivf(index).nprobe = value
                else:
                    index.hnsw.efSearch = value
                ids, ms = one_by_one(index, qv)
                recall = float(
                    np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)])
                )
                row = {"build_s": round(built, 1), "param": value, "recall@10": round(recall, 3),
                       "p50_ms": round(ms, 2), "flat_p50_ms": round(flat_ms, 2)}  # fmt: skip
                results[f"{n}/{label}/{value}"] = row
                print(f"  {label:15s} {value:4d}: {row}", flush=True)
            del index
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
