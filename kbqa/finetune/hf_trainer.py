"""kbqa's fine-tuning on ``transformers.Trainer``: the schedule, the saves, the progress hook.

Trainer does the loop: sampling each epoch in a seeded order, gradient accumulation, clipping,
AdamW, checkpoints (``trainer_state.json`` in its own schema, optimizer, scheduler and RNG
states) and exact resume. What kbqa adds is here:

- ``TrainableSave``, a callback that writes every trainable tensor of a checkpoint as it is
  (``trainable.safetensors``), which KbqaTrainer loads back on resume: peft's adapter file of a
  P-Tuning v2 prefix projection holds the projected prefix, not the MLP that trains;
- a Trainer that keeps kbqa's learning-rate schedule (``lr_at``), saves adapters without the
  embedding table, and reports each step to ``on_step``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback

from kbqa.errors import Conflict

TRAINABLE = "trainable.safetensors"


@dataclass
class StepLog:
    step: int
    total_steps: int
    loss: float
    lr: float
    steps_per_second: float


def trainable_tensors(model: Any) -> dict[str, Any]:
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def check_checkpoint(model: Any, ckpt: Path) -> None:
    """A Conflict when ``ckpt`` holds tensors ``model`` lacks (another method or base model)."""
    from safetensors import safe_open

    path = ckpt / TRAINABLE
    if not path.is_file():
        raise Conflict(f"checkpoint {ckpt} has no {TRAINABLE}; it was not written by kbqa")
    with safe_open(str(path), "pt") as f:
        missing = set(f.keys()) - {n for n, _ in model.named_parameters()}
    if missing:
        raise Conflict(f"checkpoint {ckpt} was trained with another method or model")


class TrainableSave(TrainerCallback):
    """Saves the trainable tensors with each checkpoint (KbqaTrainer loads them on resume)."""

    def __init__(self, model: Any, total: int) -> None:
        self.model, self.total = model, total

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.total:  # the finished adapter is a checkpoint too
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        from safetensors.torch import save_file

        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        save_file(trainable_tensors(self.model), str(ckpt / TRAINABLE))


class KbqaTrainer(Trainer):
    """Trainer with kbqa's schedule, adapter save and per-step report."""

    def __init__(
        self,
        *args: Any,
        lr_lambda: Callable[[int], float],
        on_step: Callable[[StepLog], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._lr_lambda = lr_lambda
        self._on_step = on_step
        self._started: tuple[float, int | None] = (time.perf_counter(), None)

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
        # kbqa's warm-up starts at lr/warm rather than 0 (a 1-step warm-up trains), and the
        # tests and docs describe lr_at; the decay curves equal transformers' own.
        import torch

        if self.lr_scheduler is None:
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer or self.optimizer, self._lr_lambda
            )
        return self.lr_scheduler

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        # The full copy, not peft's adapter file: with a prefix projection that file holds the
        # projected prefix (another shape) and the MLP is missing. Optimizer, scheduler and RNG
        # states are still Trainer's to restore.
        from safetensors.torch import load_file

        tensors = load_file(str(Path(resume_from_checkpoint) / TRAINABLE))
        (model or self.model).load_state_dict(tensors, strict=False)

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        # Never the embeddings: peft guesses "resized" when the base config names no vocab_size
        # (ChatGLM's padded_vocab_size) and would copy the whole table into every checkpoint.
        out = Path(output_dir or self.args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(out), save_embedding_layers=False)

    def train(self, *args: Any, **kwargs: Any) -> Any:
        self._started = (time.perf_counter(), None)
        return super().train(*args, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        super().log(logs, start_time)
        if "loss" not in logs or self._on_step is None:
            return
        step = self.state.global_step
        t0, before = self._started
        if before is None:  # the first step of this run (a resumed one starts later)
            before = step - 1
            self._started = (t0, before)
        rate = (step - before) / max(time.perf_counter() - t0, 1e-9)
        lr = self.args.learning_rate * self._lr_lambda(step - 1)  # the rate this step used
        self._on_step(StepLog(step, self.state.max_steps, logs["loss"], lr, rate))
