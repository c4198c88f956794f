"""ROUGE-1/2/L over jieba tokens and BLEU-4 over characters, as ChatGLM's P-Tuning evaluation."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kbqa.finetune.samples import TrainRow
from kbqa.text import words


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _f1(overlap: float, n_pred: int, n_ref: int) -> float:
    if not overlap or not n_pred or not n_ref:
        return 0.0
    p, r = overlap / n_pred, overlap / n_ref
    return 2 * p * r / (p + r)


def rouge_n(pred: Sequence[str], ref: Sequence[str], n: int) -> float:
    """ROUGE-N F1 over distinct n-grams, as rouge_chinese (ChatGLM's scorer) counts them.

    Example: ``rouge_n(["a", "b"], ["a", "c"], 1) == 0.5``.
    """
    p, r = set(_ngrams(pred, n)), set(_ngrams(ref, n))
    return _f1(len(p & r), len(p), len(r))


def rouge_l(pred: Sequence[str], ref: Sequence[str]) -> float:
    """ROUGE-L F1 from the longest common subsequence."""
    if not pred or not ref:
        return 0.0
    prev = [0] * (len(ref) + 1)
    for a in pred:
        cur = [0]
        for j, b in enumerate(ref):
            cur.append(prev[j] + 1 if a == b else max(prev[j + 1], cur[j]))
        prev = cur
    return _f1(prev[-1], len(pred), len(ref))


def bleu4(pred: Sequence[str], ref: Sequence[str]) -> float:
    """Sentence BLEU-4 with NLTK's smoothing method3 (as ChatGLM's evaluation uses).

    method3 (NIST geometric smoothing): the k-th n-gram order without a match counts
    1 / (2^k * candidate n-grams) instead of 0.
    """
    if not pred:
        return 0.0
    log_sum, k = 0.0, 0
    for n in range(1, 5):
        p, r = _ngrams(pred, n), _ngrams(ref, n)
        total = max(sum(p.values()), 1)
        hit = sum((p & r).values())
        if hit == 0 and n == 1:
            return 0.0  # NLTK scores 0 without a single matching unigram, smoothing or not
        if hit == 0:
            k += 1
            hit = 1 / 2**k
        log_sum += math.log(hit / total) / 4
    bp = 1.0 if len(pred) > len(ref) else math.exp(1 - len(ref) / len(pred))
    return bp * math.exp(log_sum)


def text_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L (jieba words) and BLEU-4 (characters) in percent, as ChatGLM reports."""
    sums = {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0, "bleu-4": 0.0}
    for pred, ref in zip(predictions, references, strict=True):
        pw, rw = words(pred), words(ref)
        sums["rouge-1"] += rouge_n(pw, rw, 1)
        sums["rouge-2"] += rouge_n(pw, rw, 2)
        sums["rouge-l"] += rouge_l(pw, rw)
        sums["bleu-4"] += bleu4(list(pred), list(ref))
    n = max(len(predictions), 1)
    return {k: round(100 * v / n, 4) for k, v in sums.items()}


def answer_scores(
    predictions: Sequence[str], references: Sequence[str], refusal: str
) -> dict[str, float | None]:
    """kbqa.evaluate's answer metrics (CMRC char F1, containment, refusal) plus exact match."""
    from kbqa.evaluate.metrics import char_f1, contains_answer, refusal_metrics

    n = max(len(predictions), 1)
    pairs = list(zip(predictions, references, strict=True))
    out: dict[str, float | None] = {
        "exact_match": round(sum(p.strip() == r.strip() for p, r in pairs) / n, 4),
        "char_f1": round(sum(char_f1(p, [r]) for p, r in pairs) / n, 4),
        "contains_answer": round(sum(contains_answer(p, [r]) for p, r in pairs) / n, 4),
    }
    refused = [refusal in p for p, _ in pairs]
    return out | refusal_metrics(refused, [refusal in r for _, r in pairs])


def evaluate(
    base_model: Path,
    adapter: Path,
    rows: Sequence[TrainRow],
    refusal: str,
    max_new_tokens: int = 128,
    max_source_len: int = 512,
) -> dict[str, Any]:
    """Greedy answers from the base and the adapted model on ``rows``, scored against the targets."""
    import torch

    from kbqa.finetune.encoding import IGNORE, encode
    from kbqa.finetune.methods import load_adapter

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer = load_adapter(base_model, adapter, device)
    refs = [r.response for r in rows]

    def answers() -> list[str]:
        out = []
        for row in rows:
            ids, labels = encode(tokenizer, row, max_source_len, 1)
            prompt = ids[: labels.count(IGNORE)]
            x = torch.tensor([prompt], device=device)
            with torch.no_grad():
                gen = model.generate(
                    input_ids=x,
                    attention_mask=torch.ones_like(x),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                )
            out.append(tokenizer.decode(gen[0, len(prompt) :], skip_special_tokens=True).strip())
        return out

    tuned = answers()
    with model.disable_adapter():
        base = answers()
    result: dict[str, Any] = {"rows": len(rows)}
    for name, preds in (("base", base), ("adapter", tuned)):
        result[name] = text_scores(preds, refs) | answer_scores(preds, refs, refusal)
    result["examples"] = [
        {"prompt": r.prompt[-200:], "reference": ref, "base": b, "adapter": a}
        for r, ref, b, a in list(zip(rows, refs, base, tuned, strict=True))[:5]
    ]
    return result
