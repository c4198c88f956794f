"""Fine-tuning an adapter: answer-only loss, accumulation, lr schedule, checkpoints, exact resume.

The loop is ``transformers.Trainer`` (kbqa.finetune.hf_trainer adds the schedule and saves);
this module checks the inputs, prepares the output folder and writes metrics.json.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kbqa.errors import BadInput, Conflict, NotFound
from kbqa.finetune.encoding import collate, encode
from kbqa.finetune.methods import MethodConfig, build_model
from kbqa.finetune.samples import TrainRow

if TYPE_CHECKING:  # hf_trainer imports transformers' Trainer: only when training starts
    from kbqa.finetune.hf_trainer import StepLog

SCHEDULERS = ("linear", "cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """The loop's knobs; ``max_steps`` overrides ``epochs`` when given."""

    output: Path
    epochs: float = 3.0
    max_steps: int | None = None
    learning_rate: float = 2e-4
    batch_size: int = 4
    grad_accum: int = 1
    max_source_len: int = 512
    max_target_len: int = 128
    warmup_ratio: float = 0.0
    scheduler: str = "linear"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    save_steps: int = 100
    save_total_limit: int = 2
    seed: int = 42
    overwrite: bool = False
    resume_from: Path | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "grad_accum", "max_source_len", "max_target_len", "save_steps"):
            if getattr(self, name) < 1:
                raise BadInput(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise BadInput(f"max_steps must be at least 1, got {self.max_steps}")
        if self.epochs <= 0:
            raise BadInput(f"epochs must be greater than 0, got {self.epochs}")
        if self.learning_rate <= 0:
            raise BadInput(f"learning_rate must be greater than 0, got {self.learning_rate}")
        if self.scheduler not in SCHEDULERS:
            raise BadInput(f"scheduler must be one of {', '.join(SCHEDULERS)}")
        if not 0 <= self.warmup_ratio < 1:
            raise BadInput(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


def lr_at(step: int, total: int, config: TrainConfig) -> float:
    """Learning rate for ``step``: linear warm-up, then the configured decay to 0."""
    warm = int(total * config.warmup_ratio)
    if step < warm:
        return config.learning_rate * (step + 1) / warm
    if config.scheduler == "constant":
        return config.learning_rate
    frac = (step - warm) / max(1, total - warm)
    if config.scheduler == "cosine":
        return config.learning_rate * 0.5 * (1 + math.cos(math.pi * frac))
    return config.learning_rate * (1 - frac)


def _prepare_output(config: TrainConfig) -> Path | None:
    """Refuse to write into a used folder; return the checkpoint to resume from, if any."""
    out = Path(config.output)
    if config.resume_from is not None:
        ckpt = Path(config.resume_from)
        if ckpt.name == "latest":
            found = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
            if not found:
                raise NotFound(f"no checkpoint-* folder in {out} to resume from")
            ckpt = found[-1]
        if not (ckpt / "trainer_state.json").is_file():
            raise NotFound(f"{ckpt} is not a checkpoint folder (no trainer_state.json)")
        return ckpt
    if out.exists() and any(out.iterdir()):
        if not config.overwrite:
            raise Conflict(f"output directory {out} exists and is not empty; pass --overwrite")
        # Old checkpoints would be mistaken for this run's on a later --resume.
        for old in out.glob("checkpoint-*"):
            shutil.rmtree(old)
    out.mkdir(parents=True, exist_ok=True)
    return None


def peak_memory_mb(device: str) -> float:
    """Peak memory: CUDA allocations on a GPU, else the process's peak resident set."""
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def train(
    method: MethodConfig,
    config: TrainConfig,
    rows: list[TrainRow],
    dev_rows: Sequence[TrainRow] = (),
    on_step: Callable[[StepLog], None] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Train an adapter on ``rows``; save it (peft format) in ``config.output``; return metrics."""
    import torch

    from kbqa.finetune.hf_trainer import check_checkpoint

    if not rows:
        raise BadInput("no training rows: every row went to the dev split or the file is empty")
    resume = _prepare_output(config)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed)
    model, tokenizer = build_model(method, device)
    if resume is not None:
        check_checkpoint(model, resume)
    encoded = [encode(tokenizer, r, config.max_source_len, config.max_target_len) for r in rows]
    per_epoch = math.ceil(len(encoded) / config.batch_size)
    steps_per_epoch = math.ceil(per_epoch / config.grad_accum)
    total = config.max_steps or math.ceil(config.epochs * steps_per_epoch)
    trainer = _trainer(model, tokenizer, encoded, method, config, total, device, on_step)
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - t0
    start = _step_of(resume)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    # Never the embeddings: peft guesses "resized" when the base config names no vocab_size
    # (ChatGLM's padded_vocab_size) and would copy the whole table into the adapter.
    model.save_pretrained(config.output, save_embedding_layers=False)
    info = {"method": method.method, "base_model": str(method.base_model)}
    (Path(config.output) / "kbqa_finetune.json").write_text(json.dumps(info, indent=2))
    trainable, total_params = model.get_nb_trainable_parameters()
    metrics: dict[str, Any] = {
        "method": method.method,
        "device": device,
        "steps": total,
        "steps_run": total - start,
        "resumed_from_step": start,
        "train_rows": len(rows),
        "epochs": round(total / steps_per_epoch, 3),
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "losses": [round(x, 5) for x in losses],
        "seconds": round(seconds, 3),
        "steps_per_second": round((total - start) / seconds, 4) if seconds else None,
        "peak_memory_mb": round(peak_memory_mb(device), 1),
        "trainable_params": trainable,
        "total_params": total_params,
        "config": json.loads(json.dumps(asdict(config) | asdict(method), default=str)),
    }
    if dev_rows:
        metrics["dev_loss"] = dev_loss(model, tokenizer, dev_rows, config, device)
    (Path(config.output) / "metrics.json").write_text(
        json.dumps(metrics, indent=2, ensure_ascii=False)
    )
    return metrics


def _trainer(
    model: Any,
    tokenizer: Any,
    encoded: list[tuple[list[int], list[int]]],
    method: MethodConfig,
    config: TrainConfig,
    total: int,
    device: str,
    on_step: Callable[[StepLog], None] | None,
) -> Any:
    """A transformers Trainer over ``encoded`` with kbqa's schedule and saves."""
    from transformers import TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from kbqa.finetune.hf_trainer import KbqaTrainer, TrainableSave

    args = TrainingArguments(
        output_dir=str(config.output),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        max_steps=total,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=1,
        seed=config.seed,
        data_seed=config.seed,
        bf16=method.bf16,
        use_cpu=device == "cpu",
        report_to="none",
        disable_tqdm=True,  # the CLI draws its own bar from on_step
        dataloader_num_workers=0,
        remove_unused_columns=False,
        log_level="warning",
    )
    trainer = KbqaTrainer(
        model=model,
        args=args,
        train_dataset=encoded,
        data_collator=lambda items: collate(items, tokenizer.pad_token_id, "cpu"),
        callbacks=[TrainableSave(model, total)],
        lr_lambda=lambda step: lr_at(step, total, config) / config.learning_rate,
        on_step=on_step,
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log to stdout (the --json)
    return trainer


def _step_of(ckpt: Path | None) -> int:
    return int(ckpt.name.split("-")[1]) if ckpt is not None else 0


def dev_loss(
    model: Any, tokenizer: Any, rows: Sequence[TrainRow], config: TrainConfig, device: str
) -> float:
    """Mean answer-token loss over ``rows`` (no dropout, no gradients)."""
    import torch

    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(rows), config.batch_size):
            items = [
                encode(tokenizer, r, config.max_source_len, config.max_target_len)
                for r in rows[i : i + config.batch_size]
            ]
            total += model(**collate(items, tokenizer.pad_token_id, device)).loss.item() * len(
                items
            )
    model.train()
    return round(total / len(rows), 5)
