"""`kbqa finetune`'s options as one typed, checked record (as peft's configs are).

The command builds a ``FinetuneOptions`` from its flags; ``__post_init__`` rejects each bad
value with a BadInput naming the flag, before any model is loaded. The method and loop
configs are then derived from it, so the CLI and code that trains share one set of rules.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from kbqa.errors import BadInput
from kbqa.finetune.methods import MethodConfig
from kbqa.finetune.train import TrainConfig

# The config fields whose flag is not the field's name with dashes.
_FLAG = {"learning_rate": "--lr", "resume_from": "--resume"}


def flag(field: str) -> str:
    return _FLAG.get(field, "--" + field.replace("_", "-"))


@dataclass(frozen=True)
class FinetuneOptions:
    """Every `kbqa finetune` flag; defaults are the method's and the loop's own."""

    base_model: Path | None = None
    data: Path | None = None
    output: Path | None = None
    method: str = MethodConfig.method
    epochs: float = TrainConfig.epochs
    max_steps: int | None = TrainConfig.max_steps
    lr: float = TrainConfig.learning_rate
    batch_size: int = TrainConfig.batch_size
    grad_accum: int = TrainConfig.grad_accum
    max_source_len: int = TrainConfig.max_source_len
    max_target_len: int = TrainConfig.max_target_len
    scheduler: str = TrainConfig.scheduler
    warmup_ratio: float = TrainConfig.warmup_ratio
    lora_r: int = MethodConfig.lora_r
    lora_alpha: int = MethodConfig.lora_alpha
    lora_dropout: float = MethodConfig.lora_dropout
    target_modules: str | None = None  # comma-separated, as typed
    pre_seq_len: int = MethodConfig.pre_seq_len
    prefix_projection: bool = MethodConfig.prefix_projection
    gradient_checkpointing: bool = MethodConfig.gradient_checkpointing
    bf16: bool | None = None  # None: on a GPU that supports it
    save_steps: int = TrainConfig.save_steps
    dev_ratio: float = 0.1
    seed: int = TrainConfig.seed
    resume: bool = False
    overwrite: bool = TrainConfig.overwrite
    trust_remote_code: bool = MethodConfig.trust_remote_code

    def __post_init__(self) -> None:
        for name in ("base_model", "data", "output"):
            if getattr(self, name) is None:
                raise BadInput(f"{flag(name)} is required to train")
        if not 0 <= self.dev_ratio < 1:
            raise BadInput(f"--dev-ratio must be in [0, 1), got {self.dev_ratio}")
        if self.target_modules is not None and not self.modules():
            raise BadInput("--target-modules names no module (comma-separated names)")
        # The method's and the loop's own checks, reported with the flag that was wrong.
        try:
            self.method_config(bf16=False)
            self.train_config()
        except BadInput as e:
            raise BadInput(f"{_flag_of(str(e))}: {e}") from None

    def modules(self) -> tuple[str, ...] | None:
        if self.target_modules is None:
            return None
        return tuple(v.strip() for v in self.target_modules.split(",") if v.strip())

    def method_config(self, bf16: bool) -> MethodConfig:
        return MethodConfig(
            base_model=Path(self.base_model or ""), method=self.method, lora_r=self.lora_r,
            lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
            target_modules=self.modules(), pre_seq_len=self.pre_seq_len,
            prefix_projection=self.prefix_projection,
            gradient_checkpointing=self.gradient_checkpointing, bf16=bf16,
            trust_remote_code=self.trust_remote_code,
        )  # fmt: skip

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            output=Path(self.output or ""), epochs=self.epochs, max_steps=self.max_steps,
            learning_rate=self.lr, batch_size=self.batch_size, grad_accum=self.grad_accum,
            max_source_len=self.max_source_len, max_target_len=self.max_target_len,
            warmup_ratio=self.warmup_ratio, scheduler=self.scheduler, save_steps=self.save_steps,
            seed=self.seed, overwrite=self.overwrite,
            resume_from=Path("latest") if self.resume else None,
        )  # fmt: skip


def _flag_of(message: str) -> str:
    """The flag of a config error, whose message starts with the field's name."""
    names = {f.name for f in fields(MethodConfig)} | {f.name for f in fields(TrainConfig)}
    first = message.split(" ", 1)[0].strip(",:")
    return flag(first) if first in names else "kbqa finetune"
