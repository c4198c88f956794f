"""Token ids for training: the prompt as the generator renders it, labels on the answer only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kbqa.errors import ModelError
from kbqa.finetune.samples import Message, TrainRow

IGNORE = -100  # label id the loss skips: every prompt token


def prompt_ids(tokenizer: Any, messages: Sequence[Message]) -> list[int]:
    """Ids of the conversation up to the answer, rendered as kbqa's generator renders it.

    Same order of preference as ``kbqa.llm.transformers_gen``: a chat template, then ChatGLM3's
    ``build_chat_input``, then ChatGLM2's ``build_prompt``; a model trained on one rendering
    and served with another would see prompts it never learned.
    """
    if hasattr(tokenizer, "chat_ids"):  # kbqa's native ChatGLM-family tokenizers
        return tokenizer.chat_ids(list(messages))
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )
        return list(tokenizer(text, add_special_tokens=False).input_ids)
    query = messages[-1]["content"]
    if hasattr(tokenizer, "build_chat_input"):  # ChatGLM3's remote tokenizer
        ids = tokenizer.build_chat_input(query, history=list(messages[:-1]), role="user")
        return [int(t) for t in ids["input_ids"][0]]
    if hasattr(tokenizer, "build_prompt"):  # ChatGLM2's remote tokenizer
        users = [m["content"] for m in messages[:-1] if m["role"] == "user"]
        answers = [m["content"] for m in messages[:-1] if m["role"] == "assistant"]
        text = tokenizer.build_prompt(query, list(zip(users, answers, strict=False)))
        return list(tokenizer(text).input_ids)
    raise ModelError(
        "the tokenizer has no chat template (chat_template in tokenizer_config.json or "
        "chat_template.jinja); kbqa trains and serves chat models only"
    )


def encode(
    tokenizer: Any, row: TrainRow, max_source: int, max_target: int
) -> tuple[list[int], list[int]]:
    """Input ids and labels: prompt tokens are IGNORE so the loss covers the answer only."""
    src = prompt_ids(tokenizer, row.messages[:-1])
    tgt = tokenizer(row.response, add_special_tokens=False).input_ids[: max_target - 1]
    tgt = list(tgt) + [tokenizer.eos_token_id]
    if len(src) > max_source:
        # Keep the leading special tokens ([gMASK]<sop>) and the end (question, assistant tag):
        # a cut context hurts less than a lost question.
        special = set(tokenizer.all_special_ids)
        head = next((i for i, t in enumerate(src) if t not in special), 0)
        src = src[:head] + src[len(src) - (max_source - head) :]
    return src + tgt, [IGNORE] * len(src) + tgt


def collate(items: list[tuple[list[int], list[int]]], pad_id: int, device: str) -> dict[str, Any]:
    """Right-padded tensors: input_ids, labels (IGNORE on padding), attention_mask."""
    import torch

    width = max(len(ids) for ids, _ in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for i, (x, y) in enumerate(items):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return {
        "input_ids": ids.to(device),
        "labels": labels.to(device),
        "attention_mask": mask.to(device),
    }
