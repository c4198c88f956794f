"""Evaluation output: metrics.json, a markdown report and a PNG chart of grouped bars."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kbqa.evaluate.metrics import RowResult

log = logging.getLogger(__name__)

QUALITY = ("hit@1", "hit@3", "hit@5", "mrr@10", "exact_match", "f1")
REFUSAL = ("refusal_precision", "refusal_recall")


@dataclass
class Panel:
    """One bar chart: for each system (a colour), a value per label (a group of bars)."""

    title: str
    ylabel: str
    groups: dict[str, dict[str, float]]


def fmt(value) -> str:
    """A metric for a table: ratios to 3 places, None as an em dash.

    >>> fmt(0.93456), fmt(None), fmt(12)
    ('0.935', '—', '12')
    """
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def chart(path: Path, title: str, panels: Sequence[Panel]) -> Path | None:
    """Grouped bars, one panel per metric family; None (and a log line) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on servers and CI
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no chart (pip install matplotlib)")
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        systems = list(panel.groups)
        labels = list(dict.fromkeys(k for g in panel.groups.values() for k in g))
        width = 0.8 / max(1, len(systems))
        for s, system in enumerate(systems):
            xs = [i + (s - (len(systems) - 1) / 2) * width for i in range(len(labels))]
            values = [panel.groups[system].get(label) for label in labels]
            # A metric a system does not have is an empty slot marked "n/a", never a 0 bar.
            bars = ax.bar(xs, [v or 0.0 for v in values], width, label=system)
            marks = ["n/a" if v is None else fmt(v) for v in values]
            ax.bar_label(bars, labels=marks, fontsize=7, padding=1)
        ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
        ax.set_title(panel.title, fontsize=10)
        ax.set_ylabel(panel.ylabel)
        ax.margins(y=0.15)
        if len(systems) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def eval_panels(metrics: dict, system: str = "kbqa") -> list[Panel]:
    quality = {k: metrics[k] for k in (*QUALITY, *REFUSAL) if metrics.get(k) is not None}
    lat = metrics.get("latency_ms", {})
    # Percentiles as the colours, stages as the groups: p50 and p95 of a stage stand together.
    stages = {p: {s.removesuffix("_ms"): v[p] for s, v in lat.items()} for p in ("p50", "p95")}
    panels = [Panel(f"{system}: quality", "score", {system: quality})]
    if lat:
        panels.append(Panel("latency per stage", "ms", stages))
    return panels


def markdown(
    title: str, metrics: dict, results: Sequence[RowResult], chart_name: str | None
) -> str:
    """The human report: metrics, latency per stage, and the questions that went wrong."""
    parts = [f"# {title}", ""]
    counts = ", ".join(
        f"{metrics[k]} {k.replace('_', ' ')}" for k in ("questions", "answerable", "unanswerable")
    )
    parts += [counts + ".", ""]
    keys = [k for k in (*QUALITY, *REFUSAL, "refused") if k in metrics]
    parts += [table(["metric", "value"], [(k, metrics[k]) for k in keys]), ""]
    lat = metrics.get("latency_ms", {})
    if lat:
        rows = [(s, v["p50"], v["p95"]) for s, v in lat.items()]
        parts += ["Latency per question (ms):", "", table(["stage", "p50", "p95"], rows), ""]
    if chart_name:
        parts += [f"![metrics]({chart_name})", ""]
    misses = [r for r in results if r.answers and r.source and not (r.rank and r.rank <= 5)]
    wrong = [r for r in results if r.answers and not r.exact]
    false_refusals = [r for r in results if r.answers and r.refused]
    unrefused = [r for r in results if not r.answers and not r.refused]
    for heading, rows in (
        ("Gold document not in the first 5 hits", misses),
        ("Answer without a gold span", wrong),
        ("Refused though answerable", false_refusals),
        ("Answered though it should refuse", unrefused),
    ):
        if rows:
            parts += [f"## {heading} ({len(rows)}; first 10)", ""]
            parts += [
                f"- {r.question} — gold: {' / '.join(r.answers) or '(refuse)'}; "
                f"answer: {_short(r.answer)}"
                for r in rows[:10]
            ]
            parts.append("")
    return "\n".join(parts)


def _short(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def write_report(
    out: Path, title: str, metrics: dict, results: Sequence[RowResult], meta: dict
) -> dict[str, str]:
    """metrics.json (metrics + ``meta``), report.md and chart.png in ``out``; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    drawn = chart(out / "chart.png", title, eval_panels(metrics))
    paths = {"metrics": out / "metrics.json", "report": out / "report.md"}
    paths["metrics"].write_text(
        json.dumps({**meta, **metrics}, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    paths["report"].write_text(
        markdown(title, metrics, results, drawn.name if drawn else None), encoding="utf-8"
    )
    if drawn:
        paths["chart"] = drawn
    return {k: str(v) for k, v in paths.items()}
