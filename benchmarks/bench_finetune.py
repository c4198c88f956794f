"""Steps/s and peak memory of LoRA, QLoRA and P-Tuning v2 on the tiny test GLM, one process each.

Run: python benchmarks/bench_finetune.py [--steps 40] [--threads 2]
Each method runs in a fresh process so its peak resident set is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACTS = [
    ("年假有几天？", "十五天"),
    ("报销期限？", "三十天内"),
    ("几点上班？", "九点"),
    ("加班？", "提前申请"),
]


def one(method: str, steps: int, batch: int, threads: int) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    from kbqa.finetune.methods import MethodConfig
    from kbqa.finetune.samples import TrainRow
    from kbqa.finetune.train import TrainConfig, train
    from tests.tiny_models import build_tiny_glm

    torch.set_num_threads(threads)
    rows = [
        TrainRow([{"role": "user", "content": f"已知信息:\n{a}。\n根据已知信息回答问题:\n{q}"},
                  {"role": "assistant", "content": a}])
        for q, a in FACTS * 4
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        base = build_tiny_glm(Path(tmp) / "glm")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        cfg = TrainConfig(Path(tmp) / "out", max_steps=steps, batch_size=batch, save_steps=steps)
        m = train(MethodConfig(base, method, pre_seq_len=16), cfg, rows)
    return {
        "method": method,
        "steps": steps,
        "batch_size": batch,
        "steps_per_second": m["steps_per_second"],
        "peak_rss_mb": m["peak_memory_mb"],
        "rss_before_training_mb": round(rss_before, 1),
        "trainable_params": m["trainable_params"],
        "first_loss": m["first_loss"],
        "final_loss": m["final_loss"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.steps, args.batch_size, args.threads)))
        return
    results = []
    for method in ("lora", "qlora", "ptuning-v2"):
        cmd = [sys.executable, __file__, "--one", method, "--steps", str(args.steps)]
        cmd += ["--batch-size", str(args.batch_size), "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr)
    print(f"load average at the end: {os.getloadavg()}")
    print("| method | steps/s | peak RSS (MB) | RSS before training (MB) | trainable params |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['method']} | {r['steps_per_second']:.2f} | {r['peak_rss_mb']:.0f} | "
            f"{r['rss_before_training_mb']:.0f} | {r['trainable_params']:,} |"
        )


if __name__ == "__main__":
    main()
