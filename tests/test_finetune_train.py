"""LoRA, QLoRA and P-Tuning v2 on a tiny random GLM: loss falls, adapters reload, resume is exact."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from kbqa.cli.finetune import register
from kbqa.errors import BadInput, Conflict, NotFound
from kbqa.finetune.methods import MethodConfig, build_model, load_adapter
from kbqa.finetune.samples import TrainRow
from kbqa.finetune.train import TrainConfig, train
from tests.tiny_models import build_tiny_glm

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

FACTS = [
    ("年假有几天？", "十五天"),
    ("报销期限？", "三十天内"),
    ("几点上班？", "九点"),
    ("加班？", "提前申请"),
]
ROWS = [
    TrainRow([{"role": "user", "content": q}, {"role": "assistant", "content": a}])
    for q, a in FACTS
]
# Per method: steps and learning rate that memorise FACTS on the tiny model within seconds.
PLAN = {"lora": (16, 1e-2), "qlora": (10, 1e-2), "ptuning-v2": (16, 1e-1)}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoModelForCausalLM

    path = build_tiny_glm(tmp_path_factory.mktemp("glm") / "model")
    model = AutoModelForCausalLM.from_pretrained(path)
    # A random lm_head's logits span about ±1, so a frozen head caps how far any adapter can
    # lower the loss; scaled up, a few dozen steps memorise the facts, as a real model would.
    with torch.no_grad():
        model.lm_head.weight.mul_(30)
    model.save_pretrained(path)
    return path


def greedy(model, tokenizer, question: str) -> list[int]:
    from kbqa.finetune.encoding import prompt_ids

    ids = torch.tensor([prompt_ids(tokenizer, [{"role": "user", "content": question}])])
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False
        )
    return out[0, ids.shape[1] :].tolist()


@pytest.mark.parametrize("method", ["lora", "qlora", "ptuning-v2"])
def test_loss_falls_adapter_saves_reloads_and_changes_generation(
    base: Path, tmp_path: Path, method: str
) -> None:
    steps, lr = PLAN[method]
    out = tmp_path / "adapter"
    cfg = MethodConfig(base, method, pre_seq_len=8, lora_dropout=0.0)
    metrics = train(
        cfg, TrainConfig(out, max_steps=steps, learning_rate=lr, save_steps=steps), ROWS, ROWS[:1]
    )
    losses = metrics["losses"]
    assert len(losses) == steps and losses[-1] < 0.6 * losses[0]
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["steps_per_second"] > 0 and saved["peak_memory_mb"] > 0 and "dev_loss" in saved

    model, tokenizer = load_adapter(base, out)
    tuned = greedy(model, tokenizer, FACTS[0][0])
    with model.disable_adapter():
        plain = greedy(model, tokenizer, FACTS[0][0])
    assert tuned != plain

    # The service's path: the generator with ?adapter= answers differently from the bare base.
    from kbqa.llm import GenerationConfig, load_generator

    gen_cfg = GenerationConfig(max_new_tokens=6)
    bare = load_generator(f"transformers:{base}", load=True).generate(FACTS[0][0], config=gen_cfg)
    spec = f"transformers:{base}?adapter={out}"
    assert load_generator(spec, load=True).generate(FACTS[0][0], config=gen_cfg) != bare


def test_resume_from_a_checkpoint_gives_the_same_next_loss(base: Path, tmp_path: Path) -> None:
    # Dropout on, so the saved random state matters too.
    cfg = MethodConfig(base, "lora", lora_dropout=0.1)
    full = train(
        cfg,
        TrainConfig(tmp_path / "a", max_steps=6, save_steps=3, learning_rate=1e-2, batch_size=2),
        ROWS,
    )
    resumed_dir = tmp_path / "b"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "a" / "checkpoint-3", resumed_dir / "checkpoint-3")
    resumed = train(
        cfg,
        TrainConfig(
            resumed_dir,
            max_steps=6,
            save_steps=3,
            learning_rate=1e-2,
            batch_size=2,
            resume_from=Path("latest"),
        ),
        ROWS,
    )
    assert resumed["resumed_from_step"] == 3 and resumed["steps_run"] == 3
    assert resumed["losses"][:3] == full["losses"][:3]
    assert resumed["losses"][3:] == pytest.approx(full["losses"][3:], abs=1e-5)


def test_missing_base_model_and_unknown_target_modules(base: Path, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        build_model(MethodConfig(tmp_path / "nope", "lora"))
    with pytest.raises(BadInput, match=r"attn_qkv.*its linear layers are: .*q_proj.*v_proj"):
        build_model(MethodConfig(base, "lora", target_modules=("attn_qkv",)))
    with pytest.raises(BadInput, match="method must be one of"):
        MethodConfig(base, "full")


def test_cli_refuses_a_used_output_without_overwrite_and_reports_bad_data(
    base: Path, tmp_path: Path
) -> None:
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    data = tmp_path / "d.jsonl"
    rows = [{"prompt": q, "response": a, "split": "train"} for q, a in FACTS]
    rows.append({"prompt": FACTS[0][0], "response": FACTS[0][1], "split": "dev"})
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["finetune", "--base-model", str(base), "--data", str(data), "--output", str(out)]
    args += ["--max-steps", "2", "--lr", "1e-2", "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == Conflict.exit_code and "--overwrite" in res.stderr
    res = runner.invoke(app, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["steps"] == 2 and (out / "keep.txt").exists()

    res = runner.invoke(
        app,
        [
            "finetune",
            "eval",
            "--base-model",
            str(base),
            "--adapter",
            str(out),
            "--data",
            str(data),
            "--max-new-tokens",
            "4",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    scores = json.loads(res.stdout)
    assert scores["rows"] == 1 and {
        "rouge-1",
        "rouge-2",
        "rouge-l",
        "bleu-4",
        "exact_match",
    } <= set(scores["adapter"])
    assert set(scores["base"]) == set(scores["adapter"])

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"text": "c"}\n')
    res = runner.invoke(
        app,
        [
            "finetune",
            "--base-model",
            str(base),
            "--data",
            str(bad),
            "--output",
            str(tmp_path / "o2"),
        ],
    )
    assert res.exit_code == 2 and "line 2: neither supported format" in res.stderr
    res = runner.invoke(
        app,
        [
            "finetune",
            "--base-model",
            str(tmp_path / "nope"),
            "--data",
            str(data),
            "--output",
            str(tmp_path / "o3"),
        ],
    )
    assert res.exit_code == 2 and "does not exist" in res.stderr


def test_gradient_checkpointing_accumulation_and_schedule(base: Path, tmp_path: Path) -> None:
    from kbqa.finetune.train import lr_at

    cfg = TrainConfig(
        tmp_path / "o",
        max_steps=4,
        learning_rate=1e-2,
        batch_size=2,
        grad_accum=2,
        scheduler="cosine",
        warmup_ratio=0.25,
    )
    assert [round(lr_at(s, 4, cfg), 5) for s in range(4)] == [0.01, 0.01, 0.0075, 0.0025]
    metrics = train(MethodConfig(base, "lora", gradient_checkpointing=True), cfg, ROWS)
    assert (
        metrics["epochs"] == 4
    )  # 4 steps x 2 micro-batches x 2 rows over 4 rows and metrics["losses"][-1] < metrics["losses"][0]
    with pytest.raises(BadInput, match="gradient checkpointing"):
        build_model(MethodConfig(base, "ptuning-v2", gradient_checkpointing=True))


def test_resume_restores_a_prefix_projection_and_refuses_another_methods_checkpoint(
    base: Path, tmp_path: Path
) -> None:
    # peft's adapter save drops the prefix MLP; the TrainableSave callback carries it over.
    cfg = MethodConfig(base, "ptuning-v2", pre_seq_len=4, prefix_projection=True)
    plan = dict(max_steps=4, save_steps=2, learning_rate=1e-2, batch_size=2)
    full = train(cfg, TrainConfig(tmp_path / "a", **plan), ROWS)
    ckpt = tmp_path / "a" / "checkpoint-2"
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["global_step"] == 2  # transformers' own schema
    assert (ckpt / "trainable.safetensors").is_file()
    resumed_dir = tmp_path / "b"
    resumed_dir.mkdir()
    shutil.copytree(ckpt, resumed_dir / "checkpoint-2")
    resumed = train(cfg, TrainConfig(resumed_dir, resume_from=Path("latest"), **plan), ROWS)
    assert resumed["losses"] == pytest.approx(full["losses"], abs=1e-5)

    lora_dir = tmp_path / "c"
    lora_dir.mkdir()
    shutil.copytree(ckpt, lora_dir / "checkpoint-2")
    with pytest.raises(Conflict, match="another method or model"):
        train(
            MethodConfig(base, "lora"),
            TrainConfig(lora_dir, resume_from=Path("latest"), **plan),
            ROWS,
        )
