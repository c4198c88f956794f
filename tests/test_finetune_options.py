"""`kbqa finetune`'s typed options: each bad flag is one BadInput naming it, before any model."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbqa.errors import BadInput
from kbqa.finetune.options import FinetuneOptions

PATHS = dict(base_model=Path("m"), data=Path("d.jsonl"), output=Path("o"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"base_model": None}, "--base-model is required"),
        ({"output": None}, "--output is required"),
        ({"batch_size": 0}, "--batch-size: batch_size must be at least 1, got 0"),
        ({"lr": 0.0}, "--lr: learning_rate must be greater than 0"),
        ({"max_steps": 0}, "--max-steps: max_steps must be at least 1"),
        ({"scheduler": "step"}, "--scheduler: scheduler must be one of linear"),
        ({"warmup_ratio": 1.0}, r"--warmup-ratio: warmup_ratio must be in \[0, 1\)"),
        ({"method": "full"}, "--method: method must be one of"),
        ({"lora_dropout": 1.5}, r"--lora-dropout: lora_dropout must be in \[0, 1\)"),
        ({"lora_r": 0}, "--lora-r: lora_r must be at least 1"),
        ({"dev_ratio": 1.0}, r"--dev-ratio must be in \[0, 1\)"),
        ({"target_modules": " , "}, "--target-modules names no module"),
    ],
)
def test_each_bad_flag_is_named(change: dict, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        FinetuneOptions(**(PATHS | change))


def test_options_become_the_method_and_loop_configs() -> None:
    opts = FinetuneOptions(
        **PATHS, lr=1e-3, target_modules="q_proj, v_proj", resume=True, method="qlora"
    )
    method, loop = opts.method_config(bf16=True), opts.train_config()
    assert (
        method.target_modules == ("q_proj", "v_proj") and method.bf16 and method.method == "qlora"
    )
    assert loop.learning_rate == 1e-3 and loop.resume_from == Path("latest")
    assert loop.output == Path("o")


def test_an_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        FinetuneOptions(**PATHS, learning_rate=1e-3)


def test_the_command_reports_a_bad_flag_before_loading_anything(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from kbqa.cli.finetune import register

    app = typer.Typer()
    register(app)
    args = ["finetune", "--base-model", str(tmp_path / "nope"), "--data", str(tmp_path / "d")]
    res = CliRunner().invoke(app, [*args, "--output", str(tmp_path / "o"), "--batch-size", "0"])
    # The flag's error, not the missing model folder's: options are checked first.
    assert res.exit_code == 2 and "--batch-size: batch_size must be at least 1" in res.stderr
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "--output is required to train" in res.stderr
