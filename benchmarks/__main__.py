"""`python -m benchmarks [--quick]`: run every benchmark script and rewrite docs/benchmarks.md.

Each script prints markdown; its output goes in a marked block inside the script's section
(the section whose text names ``benchmarks/<script>.py``, else a new one), so hand-written notes
around the blocks survive reruns, and a script that is not rerun keeps its last block. A script
not listed in SCRIPTS runs when it declares ``BENCH_ARGS = [...]`` (and ``BENCH_QUICK_ARGS``).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks"
DOC = ROOT / "docs" / "benchmarks.md"
QUICK_DOC = HERE / "out" / "benchmarks-quick.md"
HEADLINE = "bench_vs_langchain"
BUDGET_S = 14 * 60  # the limit is 15 minutes on 2 cores; keep a margin


@dataclass(frozen=True)
class Bench:
    """How the runner calls one script; ``quick=None``: not run in quick mode (needs weights)."""

    name: str
    full: tuple[str, ...] | None
    quick: tuple[str, ...] | None = None
    timeout_s: int = 300
    chart: bool = False


# Arguments chosen so the whole full run stays under BUDGET_S on 2 cores (see the run table).
SCRIPTS = {
    b.name: b
    for b in (
        Bench(HEADLINE, (), ("--quick", "--embedder", "hash"), timeout_s=400, chart=True),
        Bench(
            "bench_api_load",
            # three alternated rounds: the VM drifts between minutes (docs/benchmarks.md)
            tuple("--chunks 10000 --clients 16 --seconds 10 --rounds 3 --workers 1,2".split()),
        ),
        Bench("bench_embed", ("--n", "24", "--repeats", "1"), timeout_s=150),
        Bench("bench_finetune", ("--steps", "40"), timeout_s=240),
        Bench("bench_ingest", (), timeout_s=360),
        Bench("bench_llm_memory", (), timeout_s=150),
        Bench("bench_llm_overhead", (), timeout_s=120),
        # quality and refusal, the 100k-chunk pipeline, HNSW recall at 100k/200k; the 1M-vector
        # speed points are far beyond the budget and stay a hand-run section.
        Bench("bench_retrieval", ("report",), timeout_s=420),
    )
}


@dataclass
class Run:
    bench: Bench
    command: str
    status: str  # "ok", "failed (...)", "skipped (...)"
    seconds: float = 0.0
    output: str = ""


def declared(path: Path) -> Bench | None:
    """A script's own ``BENCH_ARGS`` / ``BENCH_QUICK_ARGS`` (read, not imported)."""
    values = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ("BENCH_ARGS", "BENCH_QUICK_ARGS"):
                values[target.id] = ast.literal_eval(node.value)
    if "BENCH_ARGS" not in values:
        return None
    quick = values.get("BENCH_QUICK_ARGS")
    return Bench(path.stem, tuple(values["BENCH_ARGS"]), None if quick is None else tuple(quick))


def plan() -> list[Bench | str]:
    """Every bench_*.py: its Bench, or its name when the runner does not know how to call it."""
    out: list[Bench | str] = []
    for path in sorted(HERE.glob("bench_*.py"), key=lambda p: (p.stem != HEADLINE, p.stem)):
        out.append(SCRIPTS.get(path.stem) or declared(path) or path.stem)
    return out


def run_one(bench: Bench, quick: bool, chart_dir: Path, deadline: float) -> Run:
    args = list((bench.quick if quick else bench.full) or ())
    if bench.chart:
        args += ["--chart", os.path.relpath(chart_dir / f"{bench.name}.png", ROOT)]
    command = " ".join(["python", f"benchmarks/{bench.name}.py", *args])
    left = deadline - time.monotonic()
    if (bench.quick if quick else bench.full) is None:
        return Run(bench, command, "skipped (needs real weights; quick mode)")
    if left < min(bench.timeout_s, 60):
        return Run(bench, command, f"skipped (time budget: {left:.0f} s left)")
    started = time.monotonic()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    try:
        proc = subprocess.run(
            [sys.executable, str(HERE / f"{bench.name}.py"), *args], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=min(bench.timeout_s, left),
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return Run(bench, command, "failed (timed out)", time.monotonic() - started)
    seconds = time.monotonic() - started
    log = HERE / "out" / "logs" / f"{bench.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1][:120]
        return Run(bench, command, f"failed (exit {proc.returncode}: {last})", seconds)
    return Run(bench, command, "ok", seconds, proc.stdout)


# -- the document ----------------------------------------------------------------------------

_BLOCK = re.compile(r"<!-- bench:(?P<name>[\w.-]+) -->\n.*?<!-- /bench:(?P=name) -->", re.S)


def as_markdown(output: str) -> str:
    """Script output as markdown: with tables, lines kept as lines (a blank line before a
    table, headings demoted below the section's); without, a text block (plain lines, JSON).

    >>> as_markdown("machine: x\\nrate: 2\\n| a |\\n|---|")
    'machine: x  \\nrate: 2\\n\\n| a |\\n|---|'
    """
    raw = output.strip().splitlines()
    if not any(line.startswith("|") for line in raw):
        return "```text\n" + "\n".join(raw) + "\n```"
    lines: list[str] = []
    for line in raw:
        if line.startswith("#"):
            line = "###" + line
        table_line = line.startswith("|")
        if table_line and lines and lines[-1] and not lines[-1].startswith("|"):
            lines.append("")
        elif not table_line and lines and lines[-1] and not lines[-1].startswith("|"):
            lines[-1] += "  "  # a markdown hard line break: plain output lines stay lines
        lines.append(line)
    return "\n".join(lines)


def block(run: Run, chart: Path | None, doc_dir: Path, day: str) -> str:
    body = as_markdown(run.output)
    parts = [
        f"<!-- bench:{run.bench.name} -->",
        f"_Measured by `python -m benchmarks` on {day}: `{run.command}` ({run.seconds:.0f} s)._",
        "",
        body,
    ]
    if chart is not None and chart.is_file():
        parts += ["", f"![{run.bench.name}]({os.path.relpath(chart, doc_dir)})"]
    parts.append(f"<!-- /bench:{run.bench.name} -->")
    return "\n".join(parts)


def sections(text: str) -> list[str]:
    """The ``## `` sections of a document (the part before the first is dropped: regenerated)."""
    parts = re.split(r"(?m)^(?=## )", text)
    return [p.rstrip() + "\n" for p in parts if p.startswith("## ")]


def title(name: str) -> str:
    path = HERE / f"{name}.py"
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or name
    return f"## {doc.splitlines()[0].rstrip('.')} (`benchmarks/{name}.py`)"


def merge(old: str, blocks: dict[str, str]) -> str:
    """Put fresh blocks into the old document's sections; new scripts get new sections."""
    out = sections(old)
    for name, fresh in blocks.items():
        for i, section in enumerate(out):
            if f"<!-- bench:{name} -->" in section:
                out[i] = _BLOCK.sub(
                    lambda m, n=name, f=fresh: f if m["name"] == n else m[0], section
                )
                break
            if f"benchmarks/{name}.py" in section:
                out[i] = section.rstrip() + "\n\n" + fresh + "\n"
                break
        else:
            new = f"{title(name)}\n\n{fresh}\n"
            out = [new, *out] if name == HEADLINE else [*out, new]
    return "\n".join(s.rstrip() + "\n" for s in out)


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo") if "model name" in line),
        platform.processor() or platform.machine(),
    )
    mem = next((line.split()[1] for line in _read("/proc/meminfo") if "MemTotal" in line), "0")
    versions = []
    for package in ("torch", "faiss-cpu", "sentence-transformers", "langchain-community"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{package} {metadata.version(package)}")
    return (
        f"{cpu}, {os.cpu_count()} cores, {int(mem) / 2**20:.0f} GiB RAM, "
        f"load average {os.getloadavg()[0]:.1f} at start (shared machine); "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        + ", ".join(versions)
    )


def _read(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def header(runs: list[Run], quick: bool, total_s: float, when: str, host: str) -> str:
    rows = "\n".join(
        f"| `benchmarks/{r.bench.name}.py` | `{r.command}` | {r.status} | {r.seconds:.0f} |"
        for r in runs
    )
    mode = "quick (CI smoke test, no real weights)" if quick else "full"
    return (
        "# Benchmarks\n\n"
        "Rewritten by `python -m benchmarks` (`--quick` for the CI smoke run); edit the prose "
        "around the `<!-- bench:... -->` blocks, not the blocks. Sections without a rerun "
        "block were measured by hand and are kept as written.\n\n"
        f"- date: {when}\n- machine: {host}\n- mode: {mode}; total {total_s:.0f} s\n\n"
        "| script | command | status | seconds |\n|---|---|---|---|\n"
        f"{rows}\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: small data, no weights")
    ap.add_argument("--doc", type=Path, help=f"write here [{DOC} or, quick, {QUICK_DOC}]")
    ap.add_argument("--base", type=Path, default=DOC, help="document whose sections are kept")
    ap.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for the whole run")
    args = ap.parse_args(argv)
    doc = (args.doc or (QUICK_DOC if args.quick else DOC)).resolve()
    chart_dir = doc.parent / "benchmarks"
    started = time.monotonic()
    when = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    host = machine()
    runs: list[Run] = []
    for item in plan():
        if isinstance(item, str):
            note = "skipped (not in SCRIPTS and no BENCH_ARGS: the runner does not know its flags)"
            runs.append(Run(Bench(item, None), f"python benchmarks/{item}.py", note))
            continue
        run = run_one(item, args.quick, chart_dir, started + args.budget)
        print(f"{item.name}: {run.status} ({run.seconds:.0f} s)", file=sys.stderr)
        runs.append(run)
    day = when.split()[0]
    blocks = {
        r.bench.name: block(r, chart_dir / f"{r.bench.name}.png" if r.bench.chart else None,
                            doc.parent, day)
        for r in runs if r.status == "ok"
    }  # fmt: skip
    old = args.base.read_text(encoding="utf-8") if args.base.is_file() else ""
    body = merge(old, blocks)
    text = header(runs, args.quick, time.monotonic() - started, when, host) + "\n" + body
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")
    print(f"wrote {doc}", file=sys.stderr)
    return 0 if all(not r.status.startswith("failed") for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
