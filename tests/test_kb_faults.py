"""Fault injection (issue 16; slow): SIGKILL at random points of 20 ingest runs, then check."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kbqa.kb import KnowledgeBase
from tests.corpus import write
from tests.test_kb import KILL_SCRIPT, ROOT, assert_consistent

RUNS = 20
FILES = 30


def check(home: Path) -> dict[str, str]:
    """The KB as a killed writer left it is whole: every vector has its chunk and vice versa,
    every ok document has exactly its recorded chunks, no temporary file is left once a
    writer has run. Returns {file name: stored text} of the committed documents."""
    kb = KnowledgeBase.open(home, "demo")
    try:
        assert_consistent(kb)
        texts: dict[str, list[str]] = {}
        for hit in kb.iter_chunks():
            texts.setdefault(Path(hit.source).name, []).append(hit.text)
        for doc in kb.documents():
            assert doc.status == "ok", doc
            assert len(texts.get(Path(doc.source).name, [])) == doc.chunks, doc
        return {name: "".join(parts) for name, parts in texts.items()}
    finally:
        kb.close()


@pytest.mark.slow
def test_sigkill_at_random_points_of_20_ingest_runs_leaves_a_consistent_kb(tmp_path):
    rng = random.Random(16)
    docs, home = tmp_path / "docs", tmp_path / "home"
    script = tmp_path / "ingest.py"
    script.write_text(KILL_SCRIPT.format(root=str(ROOT)))
    version = dict.fromkeys(range(FILES), 0)
    kills = 0
    for run in range(RUNS):
        # Each run changes a few files, so kills also land in replacements of old versions.
        for i in rng.sample(range(FILES), 5) if run else range(FILES):
            version[i] = run
            write(docs, f"doc{i:02d}.txt", f"第{i}号文件第{run}版。内容编号{i}-{run}，用于测试。\n")
        proc = subprocess.Popen(
            [sys.executable, str(script), str(home), str(docs), "0.02"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = proc.stdout.readline()  # the first batch is embedded: the writer is at work
        time.sleep(rng.uniform(0, 0.6))  # then anywhere: mid-file, mid-commit, mid-checkpoint
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        proc.stdout.close()
        assert line, "the ingest subprocess ended before it embedded anything"
        check(home)
    assert kills >= RUNS // 2, "most runs should have been killed mid-way"
    # A run to the end finds every file at its latest version, nothing lost or duplicated.
    done = subprocess.run(
        [sys.executable, str(script), str(home), str(docs), "0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stored = check(home)
    assert sorted(stored) == [f"doc{i:02d}.txt" for i in range(FILES)]
    for i, run in version.items():
        assert f"第{run}版" in stored[f"doc{i:02d}.txt"]
    assert not list((home / "demo").glob(".*.tmp")), "temp files of killed checkpoints remain"
