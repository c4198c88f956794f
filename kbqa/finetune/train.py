"""The training loop: answer-only loss, accumulation, lr schedule, checkpoints and exact resume."""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kbqa.errors import BadInput, Conflict, NotFound
from kbqa.finetune.encoding import collate, encode
from kbqa.finetune.methods import MethodConfig, build_model
from kbqa.finetune.samples import TrainRow

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


@dataclass
class StepLog:
    step: int
    total_steps: int
    loss: float
    lr: float
    steps_per_second: float


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


def _save_checkpoint(
    model: Any, opt: Any, step: int, losses: list[float], config: TrainConfig
) -> None:
    import torch
    from safetensors.torch import save_file

    ckpt = Path(config.output) / f"checkpoint-{step}"
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # Every trainable tensor as it is (peft's own save drops a prefix projection's MLP).
    trainable = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(trainable, str(tmp / "trainable.safetensors"))
    state = opt.state_dict()
    tensors = {f"{i}.{k}": v for i, s in state["state"].items() for k, v in s.items()}
    tensors["rng"] = torch.get_rng_state()
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "trainer_state.json").write_text(
        json.dumps({"step": step, "losses": losses, "param_groups": state["param_groups"]})
    )
    shutil.rmtree(ckpt, ignore_errors=True)
    tmp.rename(ckpt)
    done = sorted(Path(config.output).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    for old in done[: -config.save_total_limit]:
        shutil.rmtree(old)


def _load_checkpoint(model: Any, opt: Any, ckpt: Path) -> tuple[int, list[float]]:
    import torch
    from safetensors.torch import load_file

    missing = set(load_file(str(ckpt / "trainable.safetensors")))
    missing -= {n for n, _ in model.named_parameters()}
    if missing:
        raise Conflict(f"checkpoint {ckpt} was trained with another method or model")
    model.load_state_dict(load_file(str(ckpt / "trainable.safetensors")), strict=False)
    meta = json.loads((ckpt / "trainer_state.json").read_text())
    tensors = load_file(str(ckpt / "optimizer.safetensors"))
    torch.set_rng_state(tensors.pop("rng"))
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return int(meta["step"]), list(meta["losses"])


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

    if not rows:
        raise BadInput("no training rows: every row went to the dev split or the file is empty")
    resume = _prepare_output(config)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed)
    model, tokenizer = build_model(method, device)
    encoded = [encode(tokenizer, r, config.max_source_len, config.max_target_len) for r in rows]
    per_epoch = math.ceil(len(encoded) / config.batch_size)
    steps_per_epoch = math.ceil(per_epoch / config.grad_accum)
    total = config.max_steps or math.ceil(config.epochs * steps_per_epoch)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    start, losses = _load_checkpoint(model, opt, resume) if resume else (0, [])

    def micro_batch(m: int) -> dict[str, Any]:
        # Each epoch's order depends only on (seed, epoch): a resumed run sees the same batches.
        epoch, within = divmod(m, per_epoch)
        order = torch.randperm(
            len(encoded), generator=torch.Generator().manual_seed(config.seed + epoch)
        )
        idx = order[within * config.batch_size : (within + 1) * config.batch_size].tolist()
        return collate([encoded[i] for i in idx], tokenizer.pad_token_id, device)

    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=method.bf16)
    model.train()
    t0 = time.perf_counter()
    for step in range(start, total):
        lr = lr_at(step, total, config)
        for group in opt.param_groups:
            group["lr"] = lr
        step_loss = 0.0
        for a in range(config.grad_accum):
            with autocast:
                loss = model(**micro_batch(step * config.grad_accum + a)).loss / config.grad_accum
            loss.backward()
            step_loss += loss.item()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(step_loss)
        done = step + 1
        if on_step:
            rate = (done - start) / (time.perf_counter() - t0)
            on_step(StepLog(done, total, step_loss, lr, rate))
        if done % config.save_steps == 0 or done == total:
            _save_checkpoint(model, opt, done, losses, config)
    seconds = time.perf_counter() - t0
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
