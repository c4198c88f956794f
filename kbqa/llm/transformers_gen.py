"""A local causal LM run in-process through transformers, optionally quantized or adapted."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kbqa.errors import BadInput, ModelError
from kbqa.llm.base import GenerationConfig, History
from kbqa.llm.spec import TransformersSpec

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_WINDOW_KEYS = ("max_position_embeddings", "seq_length", "max_sequence_length", "n_positions")


def read_model_config(path: Path) -> dict[str, Any]:
    """config.json of a model directory, checking that weights sit beside it (no torch)."""
    if not path.is_dir():
        raise BadInput(f"model directory {path} does not exist (check the path in the LLM spec)")
    cfg = path / "config.json"
    if not cfg.is_file():
        raise ModelError(f"{path} has no config.json: it is not a transformers model directory")
    has_weights = any((path / f).is_file() for f in WEIGHT_FILES) or any(path.glob("*.safetensors"))
    if not has_weights:
        raise ModelError(
            f"{path} has no weights (model*.safetensors or pytorch_model*.bin); copy the full "
            "model directory, not only its config and tokenizer"
        )
    try:
        return json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{cfg} is not valid JSON: {e}") from None


class TransformersGenerator:
    """Generator over a local model directory; weights load on ``load()`` or first use."""

    def __init__(self, spec: TransformersSpec) -> None:
        self.spec = spec
        self.config = read_model_config(spec.path)
        from kbqa.llm.chatglm.detect import GLM4_HF, resolve_format, warn_remote_code_ignored

        # ChatGLM-6B/2/3 and GLM-4-9B-chat in their original layouts run natively, never through
        # their remote code (trust_remote_code is ignored for them); GLM-4 hf is plain transformers.
        family = resolve_format(spec.path, self.config, spec.format)
        self.chatglm_family = family if family not in (None, GLM4_HF) else None
        if self.chatglm_family and spec.trust_remote_code:
            warn_remote_code_ignored(spec.path, self.chatglm_family)
        if spec.adapter is not None:
            from kbqa.llm.adapters import inspect_adapter

            self.adapter = inspect_adapter(spec.adapter)
        else:
            self.adapter = None
        self.name = f"transformers:{spec.path.name}" + (
            f"?quant={spec.quant}" if spec.quant else ""
        )
        self._tokenizer: Any = None
        self._model: Any = None
        self._overhead: int | None = None
        self._lock = threading.Lock()  # one generation at a time per loaded model
        self.last_prompt: str | None = None  # the exact text the model last received

    # -- loading -------------------------------------------------------------------------------

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None and self.chatglm_family:
            from kbqa.llm.chatglm.tokenizers import load_tokenizer

            self._tokenizer = load_tokenizer(self.spec.path, self.chatglm_family)
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(
                    self.spec.path, trust_remote_code=self.spec.trust_remote_code
                )
            except (OSError, ValueError) as e:
                raise ModelError(f"cannot load the tokenizer from {self.spec.path}: {e}") from e
        return self._tokenizer

    def load(self) -> TransformersGenerator:
        """Load weights (and the adapter) now; later calls are free."""
        if self._model is None and self.chatglm_family:
            from kbqa.llm.chatglm.loader import load_for_spec

            self._model = load_for_spec(self.spec, self.config, self.chatglm_family, self.adapter)
        if self._model is None:
            from kbqa.llm.loading import load_model

            self._model = load_model(self.spec, self.config, self.adapter)
        return self

    def close(self) -> None:
        """Drop the weights; a generation still running keeps its own reference until it ends."""
        if self._model is None:
            return
        self._model = None
        import gc

        import torch

        gc.collect()  # the model's modules hold reference cycles
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # give the memory back to other processes on the GPU

    @property
    def model(self) -> Any:
        return self.load()._model

    # -- the Generator protocol ----------------------------------------------------------------

    @property
    def model_window(self) -> int:
        """Positions the model accepts, chat markup included (spec override, else config)."""
        return self.spec.context_window or next(
            (int(self.config[k]) for k in _WINDOW_KEYS if self.config.get(k)), 2048
        )

    @property
    def context_window(self) -> int:
        """Tokens for prompt text, history and answer: the model's window less chat markup."""
        if self._overhead is None:
            # One empty turn of history plus the empty prompt: the markup the template adds.
            _, ids = self._render_ids("", [("", "")])
            self._overhead = ids.shape[-1]
        return self.model_window - self._overhead

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def render(self, prompt: str, history: History = ()) -> str:
        """The text the model receives for ``prompt`` after ``history``, chat markup included."""
        return self._render_ids(prompt, history)[0]

    def generate(
        self, prompt: str, history: History = (), config: GenerationConfig = GenerationConfig()
    ) -> str:
        return "".join(self.stream(prompt, history, config, _threaded=False))

    def stream(
        self,
        prompt: str,
        history: History = (),
        config: GenerationConfig = GenerationConfig(),
        _threaded: bool = True,
    ) -> Iterator[str]:
        from kbqa.llm.decoding import run_generation

        text, ids = self._render_ids(prompt, history)
        n = ids.shape[-1]
        window = self.model_window
        if n + config.max_new_tokens > window:
            raise BadInput(
                f"the prompt takes {n} tokens and max_new_tokens is {config.max_new_tokens}, over "
                f"the model's context window of {window}; pack the prompt with a budget of "
                "context_window - max_new_tokens (kbqa.prompt.pack_prompt)"
            )
        with self._lock:
            # Set under the lock: under the API another request's prompt would otherwise
            # overwrite it while this one generates.
            self.last_prompt = text
            pieces = run_generation(
                self.model, self.tokenizer, ids, config, _threaded, stop_ids=self.stop_ids
            )
            if self.chatglm_family == "chatglm6b":  # as its chat(): full-width punctuation
                from kbqa.llm.chatglm.chat_format import v1_stream

                pieces = v1_stream(pieces)
            yield from pieces

    @property
    def stop_ids(self) -> list[int] | None:
        """The ids the model's own chat() stops on; None: the checkpoint's generation config."""
        if not self.chatglm_family:
            return None
        from kbqa.llm.chatglm.chat_format import stop_ids

        return stop_ids(self.tokenizer)

    # -- prompt rendering ----------------------------------------------------------------------

    def _encode_text(self, text: str) -> Any:
        return self.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]

    def _render_ids(self, prompt: str, history: History) -> tuple[str, Any]:
        tok = self.tokenizer
        if self.chatglm_family:  # exactly the ids the model's own chat() builds
            import torch

            from kbqa.llm.chatglm.chat_format import chat_ids

            ids = chat_ids(tok, _messages(prompt, history))
            return tok.decode(ids), torch.tensor([ids], dtype=torch.long)
        if getattr(tok, "chat_template", None):
            messages = []
            for user, assistant in history:
                messages += [
                    {"role": "user", "content": user},
                    {"role": "assistant", "content": assistant},
                ]
            messages.append({"role": "user", "content": prompt})
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return text, self._encode_text(text)
        if hasattr(tok, "build_chat_input"):  # ChatGLM3's remote tokenizer
            hist = []
            for user, assistant in history:
                hist += [
                    {"role": "user", "content": user},
                    {"role": "assistant", "content": assistant},
                ]
            ids = tok.build_chat_input(prompt, history=hist, role="user")["input_ids"]
            return tok.decode(ids[0]), ids
        if hasattr(tok, "build_prompt"):  # ChatGLM2's remote tokenizer
            text = tok.build_prompt(prompt, list(history))
            return text, tok(text, return_tensors="pt")["input_ids"]
        raise ModelError(
            f"the tokenizer in {self.spec.path} has no chat template (chat_template in "
            "tokenizer_config.json or chat_template.jinja); kbqa needs a chat model"
        )


def _messages(prompt: str, history: History) -> list[dict[str, str]]:
    messages = []
    for user, assistant in history:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return messages + [{"role": "user", "content": prompt}]
