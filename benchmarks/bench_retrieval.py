"""Retrieval benchmark: CMRC 2018 quality and refusal, and dense search speed at scale.

    python benchmarks/bench_retrieval.py report    # all of the below that `python -m benchmarks` keeps
    python benchmarks/bench_retrieval.py quality   # hit@1/5, MRR@10, refusal rates (e5)
    python benchmarks/bench_retrieval.py speed     # p50/p95 flat vs HNSW, HNSW recall@10
    python benchmarks/bench_retrieval.py recall    # HNSW efSearch sweep on CMRC-like vectors
    python benchmarks/bench_retrieval.py pipeline [N] [flat|hnsw]  # Retriever.retrieve at N

e5 vectors are cached in benchmarks/out/ (git-ignored) keyed by text, so a re-run costs
seconds; the first run embeds ~470 chunks and ~1,000 questions (minutes on 2 cores).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cmrc2018_trial.json"
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT))

# Written for this benchmark (not the calibration's OFF_TOPIC list in kbqa/retrieval/refusal.py): questions
# a Chinese-Wikipedia sample of games, people, places and history cannot answer.
OFF_TOPIC = [
    "我的快递什么时候能到？",
    "公司年假有几天？",
    "报销需要哪些发票？",
    "怎么重置邮箱密码？",
    "明天上海会不会下雪",
    "糖醋排骨的做法",
    "怎么给手机清理内存",
    "晚饭吃什么好",
    "信用卡逾期了怎么办",
    "社保断缴有什么影响",
    "孩子发烧38度要去医院吗",
    "如何申请加班费",
    "Python怎么读取Excel文件",
    "租房合同要注意什么",
    "高铁可以带充电宝吗",
    "怎么开发票抬头",
    "失眠吃什么水果好",
    "驾照扣分怎么查",
    "小区停车费多少钱一个月",
    "什么牌子的洗衣机好",
    "如何给领导写请假条",
    "公积金怎么提取",
    "WiFi密码忘了怎么办",
    "猫砂多久换一次",
    "How much is a coffee at the canteen?",
    "What time does the gym open?",
    "会议室怎么预定",
    "打印机卡纸怎么处理",
    "离职证明怎么开",
    "体检报告什么时候出",
]


class CachedEmbedder:
    """The real embedder behind a text-keyed vector cache (benchmarks/out/*.npz)."""

    precision = "fp32"  # cached vectors were embedded in fp32

    def __init__(self, inner) -> None:
        self.inner, self.model_id, self.dim = inner, inner.model_id, inner.dim
        self.batch_size = inner.batch_size
        self.cache: dict[str, np.ndarray] = {}
        for name in ("prefill_q.npz", "prefill_p.npz", "cache.npz"):
            if (OUT / name).is_file():
                with np.load(OUT / name, allow_pickle=False) as z:
                    self.cache.update(zip(z["keys"].tolist(), z["vecs"], strict=True))
        self.misses = 0

    def _embed(self, kind: str, texts, fn) -> np.ndarray:
        keys = [hashlib.sha1((kind + t).encode()).hexdigest() for t in texts]
        todo = [i for i, k in enumerate(keys) if k not in self.cache]
        if todo:
            self.misses += len(todo)
            vecs = fn([texts[i] for i in todo])
            self.cache.update((keys[i], v) for i, v in zip(todo, vecs, strict=True))
        return np.stack([self.cache[k] for k in keys]) if keys else np.zeros((0, self.dim))

    def load(self) -> CachedEmbedder:
        self.inner.load()
        return self

    def embed_passages(self, texts):
        return self._embed("p", list(texts), self.inner.embed_passages)

    def embed_queries(self, texts):
        return self._embed("q", list(texts), self.inner.embed_queries)

    def save(self) -> None:
        keys = list(self.cache)
        np.savez(
            OUT / "cache.npz", keys=np.array(keys), vecs=np.stack([self.cache[k] for k in keys])
        )


def cmrc_kb(embedder, home: Path):
    """A KB of the CMRC paragraphs (one .txt document each), chunked with the defaults."""
    from kbqa.config import IngestConfig, SplitConfig
    from kbqa.kb import KnowledgeBase

    data = json.loads(DATA.read_text(encoding="utf-8"))
    docs = home / "docs"
    docs.mkdir(parents=True)
    questions = []
    for a in data["data"]:
        for p in a["paragraphs"]:
            (docs / f"{p['id']}.txt").write_text(p["context"], encoding="utf-8")
            questions += [(q["question"], p["id"]) for q in p["qas"] if q["question"].strip()]
    kb = KnowledgeBase.open_or_create(home / "kbs", "cmrc", embedder, "default", SplitConfig())
    kb.ingest([docs], embedder, IngestConfig())
    return kb, questions


def quality() -> dict:
    from kbqa.ask import Asker
    from kbqa.config import AskConfig, EmbedConfig, RetrieveConfig
    from kbqa.embed.factory import load_embedder
    from kbqa.prompt import load_prompts
    from kbqa.retrieval.retriever import Retriever

    emb = CachedEmbedder(load_embedder(None, EmbedConfig()))
    home = Path(tempfile.mkdtemp())
    kb, questions = cmrc_kb(emb, home)
    qv = emb.embed_queries([q for q, _ in questions])
    chunks = kb.store.counts()["chunks"]
    results = {"chunks": chunks, "questions": len(questions)}
    variants = {
        "dense": RetrieveConfig(top_k=10, lexical_weight=0.0),
        "bm25": RetrieveConfig(top_k=10, dense_weight=0.0),
        "rrf": RetrieveConfig(top_k=10),
    }
    for name, cfg in variants.items():
        r = Retriever(kb, emb, cfg)
        ranks = []
        for (q, gold), v in zip(questions, qv, strict=True):
            hits = r.retrieve(q, 10, v).hits
            docs = [Path(h.source).stem for h in hits]
            ranks.append(docs.index(gold) + 1 if gold in docs else 0)
        ranks = np.array(ranks)
        results[name] = {
            "hit@1": round(float(np.mean(ranks == 1)), 3),
            "hit@5": round(float(np.mean((ranks >= 1) & (ranks <= 5))), 3),
            "mrr@10": round(float(np.mean(np.where(ranks > 0, 1 / np.maximum(ranks, 1), 0))), 3),
        }
        print(name, results[name], flush=True)
    asker = Asker(kb, emb, None, load_prompts(), AskConfig())
    threshold, origin = asker.threshold()
    answered = sum(not asker.ask(q).refused for q, _ in questions)
    refused = sum(asker.ask(q).refused for q in OFF_TOPIC)
    results["refusal"] = {
        "threshold": threshold, "threshold_from": origin,
        "calibration": kb.manifest.extra.get("refusal"),
        "real_answered": round(answered / len(questions), 3),
        "offtopic_refused": round(refused / len(OFF_TOPIC), 3),
    }  # fmt: skip
    t = time.perf_counter()
    for q in ["《战国无双3》是由哪两个公司合作开发的？"] * 20:
        emb.inner.embed_queries([q])
    results["query_embed_ms"] = round((time.perf_counter() - t) / 20 * 1000, 1)
    emb.save()
    return results


def speed(sizes=(10_000, 100_000, 1_000_000), dim: int = 384, queries: int = 200) -> dict:
    """Random unit vectors (say so when reporting): flat vs HNSW latency and HNSW recall@10."""
    import faiss

    from kbqa.store.faiss_store import FaissStore, new_index

    rng = np.random.default_rng(0)
    out = {"threads": faiss.omp_get_max_threads()}
    for n in sizes:
        base = rng.standard_normal((n, dim), dtype=np.float32)
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        # Queries near stored vectors, as real questions are near their passages.
        q = base[rng.integers(0, n, queries)] + 0.5 * rng.standard_normal((queries, dim)) / 20
        q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
        row = {}
        truth = None
        for kind in ("flat", "hnsw"):
            t = time.perf_counter()
            store = FaissStore(dim, new_index(dim, kind))
            store.add(np.arange(n, dtype=np.int64), base)
            build = time.perf_counter() - t
            lat, found = [], []
            for v in q:
                t = time.perf_counter()
                _, ids = store.search(v[None], 10)
                lat.append((time.perf_counter() - t) * 1000)
                found.append(ids[0])
            found = np.array(found)
            if kind == "flat":
                truth = found
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
            row[kind] = {
                "build_s": round(build, 1), "p50_ms": round(float(np.percentile(lat, 50)), 2),
                "p95_ms": round(float(np.percentile(lat, 95)), 2), "recall@10": round(recall, 3),
            }  # fmt: skip
            print(n, kind, row[kind], flush=True)
        out[str(n)] = row
    return out


def mixtures(vecs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` synthetic vectors on the real ones' manifold: a random blend of two real chunk
    vectors plus a little noise, normalised. Unlike jittered copies (hundreds of near-ties per
    chunk, which make any recall figure meaningless) or uniform random vectors (no structure at
    all, HNSW's worst case), these keep the anisotropy of real e5 vectors, so HNSW recall on
    them says something about a real corpus.
    """
    i, j = rng.integers(0, len(vecs), n), rng.integers(0, len(vecs), n)
    a = rng.uniform(0, 1, (n, 1)).astype(np.float32)
    out = a * vecs[i] + (1 - a) * vecs[j]
    out += rng.standard_normal(out.shape).astype(np.float32) * 0.02
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def pipeline_kb(n: int, queries: int, kind: str):
    """An n-chunk KB for the pipeline timings: (retriever, questions, exact flat store or None).

    The CMRC chunks (real text, real e5 vectors) are copied until the KB holds ``n`` chunks,
    each copy with a synthetic vector from ``mixtures``; the questions are real CMRC questions
    embedded live with the default embedder; ``kind`` is the dense index (for HNSW an exact
    flat store of the same vectors comes too, for recall).
    """
    from kbqa.config import EmbedConfig, RetrieveConfig
    from kbqa.embed.factory import load_embedder
    from kbqa.retrieval.lexical import LexicalIndex
    from kbqa.retrieval.retriever import Retriever
    from kbqa.store.faiss_store import FaissStore, new_index
    from kbqa.store.indexes import Indexes
    from kbqa.text import tokenize

    live = load_embedder(None, EmbedConfig())
    emb = CachedEmbedder(live)
    kb, questions = cmrc_kb(emb, Path(tempfile.mkdtemp()))
    base = list(kb.iter_chunks())
    vecs = kb.store.vectors_of([h.chunk_id for h in base], kb.manifest.dim)
    tokens = [tokenize(h.text) for h in base]
    rng = np.random.default_rng(0)
    dense, lexical = FaissStore(kb.manifest.dim, new_index(kb.manifest.dim, kind)), LexicalIndex()
    exact = FaissStore(kb.manifest.dim) if kind != "flat" else None
    dense.add(np.array([h.chunk_id for h in base]), vecs)
    if exact is not None:
        exact.add(np.array([h.chunk_id for h in base]), vecs)
    lexical.add_tokens([h.chunk_id for h in base], tokens)
    from kbqa.types import Chunk

    kb.store.begin()
    while len(dense) < n:
        take = min(len(base), n - len(dense))
        copy = mixtures(vecs, take, rng)
        ids = kb.store.add_chunks(
            base[0].doc_id, 0, [Chunk(h.text, h.metadata) for h in base[:take]], copy
        )
        dense.add(ids, copy)
        if exact is not None:
            exact.add(ids, copy)
        lexical.add_tokens(ids, tokens[:take])
    kb.store.commit()
    lexical.compact()  # as a checkpoint leaves it
    kb._publish(Indexes(dense, lexical), kb.store.generation(), kb.manifest)
    retriever = Retriever(kb, live, RetrieveConfig(top_k=5))
    live.embed_queries(["预热"])
    sample = [q for q, _ in questions[:: max(1, len(questions) // queries)]][:queries]
    return retriever, sample, exact


def pipeline(n: int = 100_000, queries: int = 200, kind: str = "flat") -> dict:
    """End-to-end `Retriever.retrieve` latency on an n-chunk KB, query embedding included
    (for HNSW, recall@10 of the dense stage against an exact flat search is reported too)."""
    retriever, sample, exact = pipeline_kb(n, queries, kind)
    live, dense = retriever.embedder, retriever.kb.indexes.dense
    total, stages = [], {}
    for q in sample:
        t = time.perf_counter()
        found = retriever.retrieve(q, 5)
        total.append((time.perf_counter() - t) * 1000)
        for key, ms in found.timings.items():
            stages.setdefault(key, []).append(ms)
    out = {"chunks": len(dense), "queries": len(sample), "index": kind}
    if exact is not None:
        qv = live.embed_queries(sample)
        approx, truth = dense.search(qv, 10)[1], exact.search(qv, 10)[1]
        out["dense_recall@10"] = round(
            float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx, truth, strict=True)])),
            3,
        )
    out["total"] = {
        "p50_ms": round(float(np.percentile(total, 50)), 1),
        "p95_ms": round(float(np.percentile(total, 95)), 1),
    }
    for key, values in stages.items():
        out[key.removesuffix("_ms") + "_p50_ms"] = round(float(np.percentile(values, 50)), 1)
    return out


def hnsw_recall(sizes=(100_000, 200_000), efs=(96, 256, 512), queries: int = 200) -> dict:
    """HNSW against exact flat search on CMRC-like vectors (``mixtures``) with real questions.

    Reports recall@10, the share of HNSW's top 10 scoring within 1e-3 of flat's 10th (on a
    dense synthetic set many neighbours tie, and swapping tied ones costs nothing), top-1
    agreement and single-query p50 per efSearch, and flat's p50 beside them.
    """
    import faiss

    from kbqa.config import EmbedConfig
    from kbqa.embed.factory import load_embedder
    from kbqa.store.faiss_store import HNSW_EF_CONSTRUCTION, HNSW_M

    emb = CachedEmbedder(load_embedder(None, EmbedConfig()))
    kb, questions = cmrc_kb(emb, Path(tempfile.mkdtemp()))
    vecs = kb.store.vectors_of([h.chunk_id for h in kb.iter_chunks()], kb.manifest.dim)
    qv = emb.embed_queries(
        [q for q, _ in questions[:: max(1, len(questions) // queries)]][:queries]
    )
    emb.save()
    rng, out = np.random.default_rng(0), {}

    def p50(index) -> float:
        faiss.omp_set_num_threads(1)  # as FaissStore searches one query
        lat = []
        for v in qv:
            t = time.perf_counter()
            index.search(v[None], 10)
            lat.append((time.perf_counter() - t) * 1000)
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        return round(float(np.percentile(lat, 50)), 2)

    for n in sizes:
        data = np.concatenate([vecs, mixtures(vecs, n - len(vecs), rng)])
        flat = faiss.IndexFlatIP(data.shape[1])
        flat.add(data)
        truth_d, truth = flat.search(qv, 10)
        t = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(data.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        hnsw.add(data)
        row = {"build_s": round(time.perf_counter() - t, 1), "flat_p50_ms": p50(flat)}
        for ef in efs:
            hnsw.hnsw.efSearch = ef
            d, ids = hnsw.search(qv, 10)
            row[f"ef{ef}"] = {
                "recall@10": round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)])), 3),
                "within_1e-3": round(float(np.mean(d >= truth_d[:, 9:10] - 1e-3)), 3),
                "top1": round(float(np.mean(ids[:, 0] == truth[:, 0])), 3),
                "p50_ms": p50(hnsw),
            }  # fmt: skip
        out[str(n)] = row
        print(n, row, flush=True)
    return out


def report() -> str:
    """What `python -m benchmarks` records: quality and refusal, the 100k pipeline, HNSW recall."""
    with contextlib.redirect_stdout(sys.stderr):  # progress lines stay out of the report
        q = quality()
        p = pipeline(100_000)
        r = hnsw_recall((100_000, 200_000), (96, 256))
    ref = q["refusal"]
    lines = [
        f"CMRC 2018 trial: {q['chunks']} chunks, {q['questions']} questions; a hit is a chunk "
        "of the gold paragraph.",
        "",
        "| ranker | hit@1 | hit@5 | MRR@10 |",
        "|---|---|---|---|",
        *(f"| {n} | {q[n]['hit@1']} | {q[n]['hit@5']} | {q[n]['mrr@10']} |" for n in ("dense", "bm25", "rrf")),
        "| reference (data README) | 0.959 | 0.995 | - |",
        "",
        f"Refusal (threshold {ref['threshold']}, {ref['threshold_from']}): real questions answered "
        f"{ref['real_answered']} (goal >= 0.95), 30 off-topic questions refused "
        f"{ref['offtopic_refused']} (goal >= 0.90).",
        "",
        f"`Retriever.retrieve` at {p['chunks']:,} chunks (flat index), one query at a time, "
        f"query embedding included: p50 {p['total']['p50_ms']} ms, p95 {p['total']['p95_ms']} ms "
        f"(goal p50 <= 30 ms); stages p50: embed {p['embed_p50_ms']}, dense {p['dense_p50_ms']}, "
        f"BM25 {p['lexical_p50_ms']}, fuse {p['fuse_p50_ms']} ms.",
        "",
        "HNSW (M=32, efConstruction=80) against exact flat search, CMRC-like vectors, real questions:",
        "",
        "| chunks | build s | flat p50 ms | efSearch | recall@10 | within 1e-3 of 10th | top-1 agrees | p50 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for n, row in r.items():
        for key, v in row.items():
            if key.startswith("ef"):
                lines.append(
                    f"| {int(n):,} | {row['build_s']} | {row['flat_p50_ms']} | {key[2:]} | "
                    f"{v['recall@10']} | {v['within_1e-3']} | {v['top1']} | {v['p50_ms']} |"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "quality"
    if what == "report":  # the runner's entry: markdown on stdout
        print(report())
        sys.exit(0)
    if what == "pipeline":  # pipeline [N] [flat|hnsw]
        n = int(sys.argv[2]) if sys.argv[2:] else 100_000
        result = pipeline(n, kind=sys.argv[3] if sys.argv[3:] else "flat")
    elif what == "recall":  # recall [N ...]: HNSW vs flat on CMRC-like vectors
        result = hnsw_recall(tuple(int(s) for s in sys.argv[2:]) or (100_000, 200_000))
    else:
        sizes = tuple(int(s) for s in sys.argv[2:]) or (10_000, 100_000, 1_000_000)
        result = quality() if what == "quality" else speed(sizes)
    OUT.mkdir(exist_ok=True)
    (OUT / f"{what}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(json.dumps(result, indent=2, ensure_ascii=False))
