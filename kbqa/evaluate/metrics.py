"""Evaluation data (Q/A jsonl, SQuAD-style JSON) and metrics: retrieval hit@k/MRR, EM/F1, refusal."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kbqa.errors import BadInput, NotFound

HIT_KS = (1, 3, 5)
MRR_K = 10


@dataclass(frozen=True)
class QaRow:
    """One evaluation question; no ``answers`` means the KB should refuse it."""

    question: str
    answers: tuple[str, ...] = ()
    source: str | None = None
    line: int = 0  # where it came from, for messages

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass
class SquadSet:
    """A SQuAD-style file as a KB: one text file per paragraph, one row per question."""

    documents: dict[str, str]  # file name -> paragraph text
    rows: list[QaRow]


# -- reading ---------------------------------------------------------------------------------


def is_squad(path: Path) -> bool:
    """A ``.json`` file (not jsonl) is read as SQuAD-style: ``{"data": [{"paragraphs": ...}]}``."""
    return path.suffix.lower() == ".json"


def read_qa(path: Path) -> list[QaRow]:
    """Rows ``{"question", "answers": [...], "source"?}`` of a jsonl file; blank lines skipped."""
    rows: list[QaRow] = []
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as e:
        raise NotFound(f"{path}: cannot read the Q/A file ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise BadInput(f"{path}: not UTF-8 text; save the Q/A file as UTF-8 jsonl") from e
    for n, line in enumerate(lines, 1):
        if line.strip():
            rows.append(_row(json_line(path, n, line), path, n))
    if not rows:
        raise BadInput(f"{path}: no questions found; write one JSON object per line")
    return rows


def json_line(path: Path, n: int, line: str) -> dict:
    try:
        data = json.loads(line)
    except ValueError as e:
        raise BadInput(f"{path}, line {n}: not valid JSON ({e.msg})") from e
    if not isinstance(data, dict):
        raise BadInput(f'{path}, line {n}: expected a JSON object with "question" and "answers"')
    return data


def _row(data: dict, path: Path, n: int) -> QaRow:
    where = f"{path}, line {n}"
    question = data.get("question")
    if not isinstance(question, str) or not question.strip():
        raise BadInput(f'{where}: "question" must be a non-empty string')
    answers = data.get("answers", [])
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise BadInput(f'{where}: "answers" must be a list of strings ([] if it should refuse)')
    source = data.get("source")
    if source is not None and (not isinstance(source, str) or not source.strip()):
        raise BadInput(f'{where}: "source" must be a file name or path when given')
    return QaRow(question.strip(), tuple(a for a in answers if a.strip()), source, n)


def read_squad(path: Path) -> SquadSet:
    """Paragraphs become ``<title or id>_<n>.txt`` documents; each question's source is its file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
        articles = data["data"]
        if not isinstance(articles, list):
            raise TypeError("data is not a list")
    except OSError as e:
        raise NotFound(f"{path}: cannot read the SQuAD file ({e.strerror})") from e
    except (ValueError, KeyError, TypeError) as e:
        raise BadInput(
            f'{path}: not a SQuAD-style file ({e}); expected {{"data": [{{"paragraphs": '
            '[{"context", "qas"}]}]}, or use a .jsonl Q/A file'
        ) from e
    docs: dict[str, str] = {}
    rows: list[QaRow] = []
    for a, article in enumerate(articles):
        stem = file_stem(str(article.get("title") or article.get("id") or f"doc{a}"))
        for p, para in enumerate(article.get("paragraphs", [])):
            name = f"{stem}_{p}.txt"
            while name in docs:  # two articles with one title
                stem += "_"
                name = f"{stem}_{p}.txt"
            docs[name] = para["context"]
            for qa in para.get("qas", []):
                answers = tuple(dict.fromkeys(x["text"] for x in qa.get("answers", [])))
                if not qa.get("question", "").strip():
                    continue  # CMRC 2018's trial set has two rows with no question text
                if not qa.get("is_impossible") and not answers:
                    continue  # SQuAD 1.x rows without spans score nothing
                rows.append(QaRow(qa["question"].strip(), answers, name, len(rows) + 1))
    if not rows:
        raise BadInput(f"{path}: no questions found in the SQuAD file")
    return SquadSet(docs, rows)


def file_stem(title: str) -> str:
    return re.sub(r"[\\/:*?\"<>|\s]+", "_", title).strip("._")[:60] or "doc"


def write_documents(squad: SquadSet, folder: Path) -> list[Path]:
    """Write the paragraphs as UTF-8 text files; unchanged files are left alone (same sha256)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in squad.documents.items():
        path = folder / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


# -- metrics ---------------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*|\S")


def segment(text: str) -> list[str]:
    """CMRC 2018's mixed segmentation: CJK characters one by one, Latin words and numbers whole,
    punctuation dropped.

    >>> segment("Nexon开发，2V2!")
    ['nexon', '开', '发', '2v2']
    """
    tokens = _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())
    return [t for t in tokens if not _is_punct(t)]


def _is_punct(token: str) -> bool:
    return len(token) == 1 and unicodedata.category(token)[0] in "PSZ"


def _longest_common_run(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common contiguous run of tokens (CMRC's ``find_lcs``)."""
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def char_f1(prediction: str, golds: Iterable[str]) -> float:
    """Character-level F1 against the best gold span, as CMRC 2018 scores it.

    >>> round(char_f1("4分钟内", ["4分钟"]), 3)
    0.857
    """
    pred = segment(prediction)
    best = 0.0
    for gold in golds:
        ref = segment(gold)
        common = _longest_common_run(pred, ref)
        if common:
            p, r = common / len(pred), common / len(ref)
            best = max(best, 2 * p * r / (p + r))
    return best


def contains_answer(prediction: str, golds: Iterable[str]) -> bool:
    """Exact match as the issue defines it: a gold span, punctuation-free, inside the answer.

    >>> contains_answer("则4分钟内不得配对。", ["4 分钟"])
    True
    """
    pred = "".join(segment(prediction))
    return any((g := "".join(segment(gold))) and g in pred for gold in golds)


def source_matches(source: str, wanted: str) -> bool:
    """KnowledgeBase.find_document's rule: equal, or ending with ``/`` + the wanted tail.

    >>> source_matches("/data/kb/泡泡战士_0.txt", "泡泡战士_0.txt")
    True
    """
    tail = wanted.replace("\\", "/").lstrip("/")
    source = source.replace("\\", "/")
    return source in (wanted, tail) or source.endswith("/" + tail)


def first_rank(sources: Sequence[str], wanted: str) -> int | None:
    """1-based rank of the first hit from the wanted document, None when absent."""
    for rank, source in enumerate(sources, 1):
        if source_matches(source, wanted):
            return rank
    return None


def retrieval_metrics(ranks: Sequence[int | None]) -> dict[str, float]:
    """hit@1/3/5 and MRR@10 over questions with a known source (rank None: not retrieved).

    >>> retrieval_metrics([1, 2, None])["mrr@10"]
    0.5
    """
    n = len(ranks)
    if n == 0:
        return {}
    out = {f"hit@{k}": sum(1 for r in ranks if r and r <= k) / n for k in HIT_KS}
    out[f"mrr@{MRR_K}"] = sum(1 / r for r in ranks if r and r <= MRR_K) / n
    return {k: round(v, 4) for k, v in out.items()}


def refusal_metrics(refused: Sequence[bool], should_refuse: Sequence[bool]) -> dict[str, float]:
    """Precision and recall of refusing (None where nothing was refused / nothing should be).

    >>> refusal_metrics([True, True, False], [True, False, False])["refusal_precision"]
    0.5
    """
    both = sum(1 for r, s in zip(refused, should_refuse, strict=True) if r and s)
    n_refused, n_should = sum(refused), sum(should_refuse)
    return {
        "refusal_precision": round(both / n_refused, 4) if n_refused else None,
        "refusal_recall": round(both / n_should, 4) if n_should else None,
        "refused": n_refused,
    }


def latency(timings: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """p50/p95 in ms per stage over all questions.

    >>> latency([{"retrieve_ms": 10.0}, {"retrieve_ms": 30.0}])["retrieve_ms"]["p50"]
    20.0
    """
    stages = dict.fromkeys(k for t in timings for k in t)
    out = {}
    for stage in stages:
        values = np.array([t[stage] for t in timings if stage in t], dtype=float)
        out[stage] = {
            "p50": round(float(np.percentile(values, 50)), 2),
            "p95": round(float(np.percentile(values, 95)), 2),
        }
    return out


@dataclass
class RowResult:
    """What one question got: the gold document's rank, the answer and its scores."""

    question: str
    answers: tuple[str, ...]
    source: str | None
    rank: int | None = None
    answer: str = ""
    refused: bool = False
    mode: str = ""
    exact: bool = False
    f1: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


def summarize(results: Sequence[RowResult]) -> dict:
    """The metrics JSON of ``kbqa eval`` from per-question results."""
    answerable = [r for r in results if r.answers]
    with_source = [r for r in answerable if r.source]
    metrics: dict = {
        "questions": len(results),
        "answerable": len(answerable),
        "unanswerable": len(results) - len(answerable),
        "with_source": len(with_source),
        **retrieval_metrics([r.rank for r in with_source]),
    }
    if answerable:
        metrics["exact_match"] = round(sum(r.exact for r in answerable) / len(answerable), 4)
        metrics["f1"] = round(sum(r.f1 for r in answerable) / len(answerable), 4)
    metrics.update(refusal_metrics([r.refused for r in results], [not r.answers for r in results]))
    metrics["latency_ms"] = latency([r.timings for r in results])
    return metrics
