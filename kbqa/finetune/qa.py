"""Q/A pair derivation from a knowledge base: stored Q/A rows, LLM questions, offline rules."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kbqa.errors import BadInput
from kbqa.text import SENTENCE_MARKS
from kbqa.types import Hit

PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts"

# A number with the unit that makes it a fact worth asking about ("十五天", "30 个工作日", "500元").
_NUM = r"(?:[0-9０-９]+(?:\.[0-9]+)?|[零一二两三四五六七八九十百千万]+)"
_UNIT = r"(?:个工作日|个月|小时|分钟|万元|公里|工作日|天|日|周|月|年|元|次|人|岁|倍|%|％|页|份|名)"
_FACT_RE = re.compile(rf"{_NUM}\s*({_UNIT})")
# "X是指Y" / "X指的是Y" / "X定义为Y" / short-subject "X是Y": the subject becomes "什么是X？".
_DEF_RE = re.compile(r"^([^，,。；：:\s]{1,12}?)(?:是指|指的是|定义为|即|是)(.{4,})$")
# Cut after every mark (a run of them too) and at line breaks: marks stay with their sentence.
_SENT_END = re.compile(rf"(?<=[{SENTENCE_MARKS}])|\n+")
_PUNCT = re.compile(r"[\s\W_]+", re.UNICODE)


@dataclass
class QAPair:
    """One question with its answer and the chunk it comes from (the gold chunk)."""

    question: str
    answer: str
    source: str
    doc_id: int
    chunk_id: int
    context: str  # the gold chunk's text, kept so samples and audits can show it
    origin: str  # "qa" (a stored Q/A row), "llm" or "rule"
    split: str = "train"
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sentences(text: str) -> list[str]:
    """Split Chinese prose at sentence ends; e.g. ``sentences("甲。乙！")`` -> ``["甲。", "乙！"]``."""
    return [s.strip() for s in _SENT_END.split(text) if s and s.strip()]


def _question_mark(text: str) -> str:
    return text.rstrip("。！？；!?;，, ") + "？"


def rule_questions(hit: Hit) -> list[tuple[str, str]]:
    """Offline (question, answer) pairs from a prose chunk: numeric facts, definitions, headings.

    Example: a chunk "年假是每年十五天。" gives ``("年假是每年多少天？", "年假是每年十五天。")``.
    """
    out: list[tuple[str, str]] = []
    sents = sentences(hit.text)
    for sent in sents:
        m = _FACT_RE.search(sent)
        if m and len(sent) <= 200:
            unit = m.group(1)
            # "多少" + unit reads naturally for every unit above ("多少天", "多少元"), "%" aside.
            question = sent[: m.start()] + "多少" + ("" if unit in ("%", "％") else unit)
            # Keep only up to the end of the clause holding the number: the rest is the answer's.
            question += re.split(r"[，,；;。！？!?]", sent[m.end() :], maxsplit=1)[0]
            out.append((_question_mark(question), sent))
            continue
        d = _DEF_RE.match(sent.rstrip("。"))
        if d and not _FACT_RE.search(d.group(1)):
            out.append((f"什么是{d.group(1)}？", sent))
    headings = hit.metadata.get("headings") or []
    if headings and sents:
        title = str(headings[-1]).lstrip("# ").strip()
        if title:
            answer = "".join(sents[:3])[:300]
            out.append((f"{title}有哪些内容？", answer))
    return out


def parse_llm_pairs(text: str) -> list[tuple[str, str]]:
    """Read "问：…\\n答：…" blocks from an LLM's reply; lines without both parts are skipped."""
    pairs = re.findall(r"问[:：]\s*(.+?)\s*\n+\s*答[:：]\s*(.+?)(?=\n\s*问[:：]|\Z)", text, re.S)
    return [(q.strip(), a.strip()) for q, a in pairs if q.strip() and a.strip()]


def load_generation_template(path: Path | None = None) -> str:
    """The question-generation prompt, with ``{context}`` and ``{n}`` slots."""
    path = path or PROMPTS_DIR / "qa_generation.txt"
    try:
        template = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read the question-generation template {path}: {exc}") from exc
    if "{context}" not in template:
        raise BadInput(f"the template {path} needs a {{context}} slot")
    return template


def derive_pairs(
    chunks: Iterable[Hit],
    generate: Callable[[str], str] | None = None,
    template: str | None = None,
    questions_per_chunk: int = 3,
) -> Iterator[QAPair]:
    """Pairs from every chunk: Q/A rows directly, prose through ``generate`` or, without it, rules.

    Duplicates are not removed here; see :func:`dedupe`.
    """
    if generate is not None and template is None:
        template = load_generation_template()
    for hit in chunks:
        meta = hit.metadata or {}
        base = {"source": hit.source, "doc_id": hit.doc_id, "chunk_id": hit.chunk_id}
        if meta.get("question") and meta.get("answer"):
            q, a = str(meta["question"]).strip(), str(meta["answer"]).strip()
            yield QAPair(q, a, context=hit.text, origin="qa", **base)
            continue
        if generate is not None and template is not None:
            prompt = template.replace("{context}", hit.text).replace(
                "{n}", str(questions_per_chunk)
            )
            found = parse_llm_pairs(generate(prompt))[:questions_per_chunk]
            origin = "llm"
        else:
            found = rule_questions(hit)[:questions_per_chunk]
            origin = "rule"
        for q, a in found:
            yield QAPair(q, a, context=hit.text, origin=origin, **base)


def _norm(text: str) -> str:
    return _PUNCT.sub("", text).lower()


def dedupe(pairs: Iterable[QAPair]) -> list[QAPair]:
    """Drop pairs whose question repeats an earlier one, ignoring case, spaces and punctuation."""
    seen: set[str] = set()
    out: list[QAPair] = []
    for p in pairs:
        key = _norm(p.question)
        if key and key not in seen:
            seen.add(key)
            out.append(p)
    return out


def split_by_document(pairs: list[QAPair], dev_ratio: float = 0.1, seed: int = 0) -> list[QAPair]:
    """Mark each pair train or dev so that all pairs of one document land on the same side."""
    if not 0 <= dev_ratio < 1:
        raise BadInput(f"dev_ratio must be in [0, 1), got {dev_ratio}")
    docs = sorted({p.source for p in pairs})
    # A seeded hash order, stable across runs and machines (unlike Python's hash()).
    docs.sort(key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    n_dev = math.ceil(len(docs) * dev_ratio) if dev_ratio > 0 and len(docs) > 1 else 0
    dev = set(docs[: min(n_dev, len(docs) - 1)])
    for p in pairs:
        p.split = "dev" if p.source in dev else "train"
    return pairs


def write_jsonl(rows: Iterable[dict[str, Any]], path: Path) -> int:
    """Write rows as UTF-8 jsonl through a temporary file moved into place; returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n
