"""Run ``model.generate`` and turn its token ids into text pieces, streamed or not."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from kbqa.errors import ModelError
from kbqa.llm.base import GenerationConfig

_DONE = object()


def generate_kwargs(config: GenerationConfig, tokenizer: Any) -> dict[str, Any]:
    """transformers ``generate`` arguments for our config; temperature 0 means greedy."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": config.max_new_tokens,
        "repetition_penalty": config.repetition_penalty,
        "do_sample": config.temperature > 0,
    }
    if config.temperature > 0:
        kwargs.update(temperature=config.temperature, top_p=config.top_p)
    else:
        # Unset the checkpoint's sampling defaults so greedy runs without warnings.
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if tokenizer.pad_token_id is not None:
        kwargs["pad_token_id"] = tokenizer.pad_token_id
    return kwargs


class _IdQueue:
    """A transformers streamer: hands new token ids to the consuming thread."""

    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue()
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # generate() first puts the prompt itself
            self._prompt_seen = True
            return
        self.queue.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self.queue.put(_DONE)


def _pieces(tokenizer: Any, chunks: Iterator[list[int]]) -> Iterator[str]:
    """Decode growing id lists into new text, holding back a split multi-byte character."""
    ids: list[int] = []
    sent = ""
    for chunk in chunks:
        ids.extend(chunk)
        text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        # A trailing U+FFFD is half a character whose other bytes come with the next token.
        if text.endswith("\ufffd") or not text.startswith(sent) or len(text) == len(sent):
            continue
        yield text[len(sent) :]
        sent = text
    text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    if text.startswith(sent) and len(text) > len(sent):
        yield text[len(sent) :]


def run_generation(
    model: Any,
    tokenizer: Any,
    input_ids: Any,
    config: GenerationConfig,
    threaded: bool,
    stop_ids: list[int] | None = None,
) -> Iterator[str]:
    """Yield the answer as text pieces; ``threaded`` streams them while generation runs.

    ``stop_ids`` replace the checkpoint's eos ids (ChatGLM3 / GLM-4 also stop at role tokens).
    """
    import torch

    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    kwargs = generate_kwargs(config, tokenizer)
    if stop_ids:
        kwargs["eos_token_id"] = list(stop_ids)
    if not threaded:
        with torch.inference_mode():
            out = _call(model.generate, **inputs, **kwargs)
        yield from _pieces(tokenizer, iter([out[0, input_ids.shape[-1] :].tolist()]))
        return

    streamer = _IdQueue()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            with torch.inference_mode():
                _call(model.generate, **inputs, **kwargs, streamer=streamer)
        except BaseException as e:  # re-raised in the consuming thread below
            failure.append(e)
            streamer.queue.put(_DONE)

    thread = threading.Thread(target=work, name="kbqa-generate", daemon=True)
    thread.start()

    def chunks() -> Iterator[list[int]]:
        while (item := streamer.queue.get()) is not _DONE:
            yield item

    yield from _pieces(tokenizer, chunks())
    thread.join()
    if failure:
        raise failure[0]


def _call(fn: Any, **kwargs: Any) -> Any:
    import torch

    try:
        return fn(**kwargs)
    except torch.OutOfMemoryError as e:
        raise ModelError(
            "out of memory while generating; use quant=nf4, a shorter context or fewer "
            "max_new_tokens"
        ) from e
