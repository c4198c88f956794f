"""Ingestion cost: `kbqa ingest` against embedding the same chunks alone, and a no-op re-ingest.

Each CMRC 2018 trial paragraph becomes one .txt file. Three subprocesses run in one go, each
paying the same start-up (imports, model load): `kbqa ingest`, a script that only splits and
embeds the same files with the same model, and `kbqa ingest` again over the unchanged files.
Usage: python benchmarks/bench_ingest.py [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cmrc2018_trial.json"

EMBED_ONLY = """
import sys
from pathlib import Path
from kbqa.config import EmbedConfig, LoadConfig, SplitConfig
from kbqa.embed.factory import load_embedder
from kbqa.ingest.loaders import load
from kbqa.ingest.split import split_documents

emb = load_embedder(None, EmbedConfig())
files = sorted(Path(sys.argv[1]).iterdir())
texts = [c.index_text for f in files for c in split_documents(load(f, LoadConfig()), SplitConfig())]
emb.embed_passages(texts)
print(len(texts))
"""


def paragraphs(limit: int | None) -> list[str]:
    data = json.loads(DATA.read_text(encoding="utf-8"))["data"]
    paras = [p["context"] for d in data for p in d["paragraphs"]]
    return paras[:limit] if limit else paras


def timed(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(seconds, peak RSS in MiB, stdout) of one subprocess."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    seconds = time.perf_counter() - t0
    # ru_maxrss of children is the max over all children so far: run the biggest first.
    peak = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    return seconds, peak, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None, help="only the first N paragraphs")
    args = ap.parse_args()
    paras = paragraphs(args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs"
        docs.mkdir()
        for i, text in enumerate(paras):
            (docs / f"p{i:04d}.txt").write_text(text, encoding="utf-8")
        env = {**os.environ, "KBQA_HOME": str(Path(tmp) / "home")}
        kbqa = [sys.executable, "-m", "kbqa.cli"]
        t_ingest, peak, out = timed([*kbqa, "ingest", str(docs), "--kb", "bench", "--json"], env)
        report = json.loads(out)
        t_embed, _, out = timed([sys.executable, "-c", EMBED_ONLY, str(docs)], env)
        assert int(out) == report["chunks_added"], "both runs must embed the same chunks"
        t_again, _, out = timed([*kbqa, "ingest", str(docs), "--kb", "bench", "--json"], env)
        assert json.loads(out)["files_unchanged"] == len(paras)
    chunks = report["chunks_added"]
    rows = [
        ("paragraphs (files)", f"{len(paras)}"),
        ("chunks", f"{chunks}"),
        ("`kbqa ingest` wall time", f"{t_ingest:.1f} s"),
        ("embed-only wall time (same chunks, same model)", f"{t_embed:.1f} s"),
        ("ingest / embed-only", f"{t_ingest / t_embed:.3f} (goal <= 1.10)"),
        ("re-ingest unchanged", f"{t_again:.2f} s"),
        ("re-ingest / first ingest", f"{t_again / t_ingest:.3%} (goal <= 2%)"),
        ("chunks/s (ingest)", f"{chunks / t_ingest:.2f}"),
        ("peak RSS of `kbqa ingest`", f"{peak:.0f} MiB"),
    ]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; date: {date.today()}")
    print("| measure | value |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
