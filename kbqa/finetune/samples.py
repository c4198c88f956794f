"""Training samples in the service's prompt format, and reading training jsonl files."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbqa.errors import BadInput
from kbqa.finetune.qa import QAPair
from kbqa.types import Hit

Retrieve = Callable[[str, int], list[Hit]]
Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": ...}

FORMATS_HELP = (
    'expected {"prompt": ..., "response": ..., "history"?: [[user, assistant], ...]} '
    'or ChatGLM3 {"conversations": [{"role": "user", "content": ...}, '
    '{"role": "assistant", "content": ...}, ...]}'
)


@dataclass(frozen=True)
class SampleConfig:
    """How samples are built: chunks per prompt and the share of refusal samples."""

    top_k: int = 3
    refusal_share: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise BadInput(f"top_k must be at least 1, got {self.top_k}")
        if not 0 <= self.refusal_share <= 1:
            raise BadInput(f"refusal_share must be in [0, 1], got {self.refusal_share}")


@dataclass
class TrainRow:
    """One training conversation; the last message is the assistant turn the loss is taken on."""

    messages: list[Message]
    split: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        return self.messages[-2]["content"]

    @property
    def response(self) -> str:
        return self.messages[-1]["content"]


def _holds_gold(hit: Hit, pair: QAPair) -> bool:
    return hit.chunk_id == pair.chunk_id or pair.context.strip() in hit.text


def _gold_context(pair: QAPair, hits: list[Hit], top_k: int, rng: random.Random) -> list[Hit]:
    hits = hits[:top_k]
    # Retrieval may merge adjacent chunks into one hit: then the gold text sits inside it.
    if any(_holds_gold(h, pair) for h in hits):
        return hits
    gold = Hit(pair.chunk_id, pair.doc_id, pair.source, pair.context, 0.0, {})
    # Retrieval missed the gold chunk: put it at a random rank so the model does not learn
    # that the answer always sits in one position.
    kept = hits[: top_k - 1]
    kept.insert(rng.randint(0, len(kept)), gold)
    return kept


def build_samples(
    pairs: Sequence[QAPair],
    retrieve: Retrieve,
    template: str,
    refusal: str,
    config: SampleConfig = SampleConfig(),
) -> list[dict[str, Any]]:
    """Rows with ``prompt``/``response`` as the service renders them, plus the pair's fields.

    Each pair gives one sample whose context holds the gold chunk among what ``retrieve``
    returns; a ``refusal_share`` of pairs also gives a sample without it, answered ``refusal``.
    """
    from kbqa.prompt import render

    rng = random.Random(config.seed)
    refuse = set(rng.sample(range(len(pairs)), round(len(pairs) * config.refusal_share)))
    rows: list[dict[str, Any]] = []
    for i, pair in enumerate(pairs):
        # Ask for more than top_k so a refusal context still has top_k chunks once gold is gone.
        hits = retrieve(pair.question, config.top_k + 2)
        context = _gold_context(pair, list(hits), config.top_k, rng)
        base = pair.to_dict()
        rows.append(
            base
            | {
                "prompt": render(template, pair.question, context),
                "response": pair.answer,
                "refusal": False,
                "context_chunk_ids": [h.chunk_id for h in context],
            }
        )
        if i in refuse:
            # Without the gold chunk, and without any chunk that happens to state the answer.
            others = [h for h in hits if not _holds_gold(h, pair) and pair.answer not in h.text]
            others = others[: config.top_k]
            rows.append(
                base
                | {
                    "prompt": render(template, pair.question, others),
                    "response": refusal,
                    "refusal": True,
                    "context_chunk_ids": [h.chunk_id for h in others],
                }
            )
    return rows


def _conversation(path: Path, n: int, turns: Any) -> list[Message]:
    if not isinstance(turns, list) or not turns:
        raise BadInput(f"{path} line {n}: 'conversations' must be a non-empty list")
    messages: list[Message] = []
    for t in turns:
        if not isinstance(t, dict) or not isinstance(t.get("content"), str):
            raise BadInput(f"{path} line {n}: each turn needs a 'role' and a string 'content'")
        role = t.get("role")
        if role not in ("system", "user", "assistant"):
            raise BadInput(f"{path} line {n}: unknown role {role!r} (system, user, assistant)")
        messages.append({"role": role, "content": t["content"]})
    if messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
        raise BadInput(f"{path} line {n}: the conversation must end with an assistant turn")
    if len(messages) < 2 or messages[-2]["role"] != "user":
        raise BadInput(f"{path} line {n}: the last assistant turn must follow a user turn")
    return messages


def _prompt_response(path: Path, n: int, row: dict[str, Any]) -> list[Message]:
    prompt, response = row["prompt"], row["response"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadInput(f"{path} line {n}: 'prompt' must be a non-empty string")
    if not isinstance(response, str) or not response.strip():
        raise BadInput(f"{path} line {n}: 'response' must be a non-empty string")
    messages: list[Message] = []
    for turn in row.get("history") or []:
        if not (isinstance(turn, list | tuple) and len(turn) == 2):
            raise BadInput(f"{path} line {n}: 'history' must be a list of [user, assistant]")
        messages += [{"role": "user", "content": str(turn[0])}]
        messages += [{"role": "assistant", "content": str(turn[1])}]
    return messages + [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": response},
    ]


def read_training_file(path: Path) -> list[TrainRow]:
    """Rows of a training jsonl (prompt/response, or ChatGLM3 conversations); errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"data file {path} does not exist")
    rows: list[TrainRow] = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInput(f"{path} line {n}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise BadInput(f"{path} line {n}: a row must be a JSON object; {FORMATS_HELP}")
            if "conversations" in row:
                messages = _conversation(path, n, row["conversations"])
            elif "prompt" in row and "response" in row:
                messages = _prompt_response(path, n, row)
            else:
                raise BadInput(
                    f"{path} line {n}: neither supported format (keys {sorted(row)}); {FORMATS_HELP}"
                )
            split = row.get("split")
            meta = {k: row[k] for k in ("source", "question", "answer", "refusal") if k in row}
            rows.append(TrainRow(messages, split if split in ("train", "dev") else None, meta))
    if not rows:
        raise BadInput(f"data file {path} is empty: it holds no rows; {FORMATS_HELP}")
    return rows


def split_rows(
    rows: list[TrainRow], dev_ratio: float = 0.1, seed: int = 0
) -> tuple[list[TrainRow], list[TrainRow]]:
    """Train and dev rows: a row's own ``split`` wins; unmarked rows are split by source."""
    import hashlib

    def side(row: TrainRow, i: int) -> str:
        if row.split:
            return row.split
        # Unmarked rows of one source stay together, as in qa.split_by_document.
        key = str(row.metadata.get("source", i))
        h = int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return "dev" if h < dev_ratio else "train"

    train, dev = [], []
    for i, row in enumerate(rows):
        (dev if side(row, i) == "dev" else train).append(row)
    return train, dev
