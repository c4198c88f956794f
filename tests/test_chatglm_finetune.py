"""`kbqa finetune` (LoRA, QLoRA, P-Tuning v2) on each ChatGLM fixture family, then served."""

from __future__ import annotations

import json

import pytest
from chatglm_data import FAMILIES, model_dir

from kbqa.finetune.methods import MethodConfig, load_adapter
from kbqa.finetune.samples import TrainRow
from kbqa.finetune.train import TrainConfig, train
from kbqa.llm import GenerationConfig, load_generator

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
ROWS = [
    TrainRow([{"role": "user", "content": q}, {"role": "assistant", "content": a}])
    for q, a in [("年假有几天？", "五天"), ("病假呢？", "需要证明"), ("几点上班？", "九点")]
]
LR = {"lora": 5e-2, "qlora": 5e-2, "ptuning-v2": 1e-1}
FAST = {("chatglm6b", "lora"), ("chatglm3", "qlora"), ("glm4-chat", "ptuning-v2"),
        ("chatglm6b", "ptuning-v2"), ("chatglm2-int4", "lora")}  # fmt: skip
MATRIX = [
    pytest.param(f, m, marks=() if (f, m) in FAST else pytest.mark.slow)
    for f in FAMILIES
    for m in ("lora", "qlora", "ptuning-v2")
]


@pytest.mark.parametrize(("family", "method"), MATRIX)
def test_trains_evaluates_and_serves(tmp_path, family, method):
    if method == "qlora":
        pytest.importorskip("bitsandbytes")
    base, out = model_dir(family), tmp_path / "adapter"
    cfg = MethodConfig(base, method, pre_seq_len=4, lora_dropout=0.0)
    metrics = train(
        cfg, TrainConfig(out, max_steps=6, learning_rate=LR[method], save_steps=6), ROWS
    )
    losses = metrics["losses"]
    assert len(losses) == 6 and all(x == x for x in losses) and losses[-1] < losses[0]
    model, tokenizer = load_adapter(base, out)  # what `kbqa finetune eval` loads
    assert tokenizer.chat_ids(ROWS[0].messages[:1])
    gen = load_generator(f"transformers:{base}?adapter={out}", load=True)
    answer = gen.generate("年假有几天？", config=GenerationConfig(max_new_tokens=4))
    assert isinstance(answer, str)


@pytest.mark.parametrize("family", ["chatglm6b", "chatglm3"])
def test_ptuning_v2_exports_to_chatglm_ptuning_format(tmp_path, family):
    from typer.testing import CliRunner

    from kbqa.cli.app import app

    base, out = model_dir(family), tmp_path / "adapter"
    cfg = MethodConfig(base, "ptuning-v2", pre_seq_len=4)
    train(cfg, TrainConfig(out, max_steps=2, learning_rate=1e-1, save_steps=2), ROWS)
    exported = tmp_path / "ptuning"
    args = ["finetune", "export-ptuning", "--base-model", str(base), "--adapter", str(out),
            "--output", str(exported), "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stdout
    saved = torch.load(exported / "pytorch_model.bin", weights_only=True)
    assert list(saved) == ["transformer.prefix_encoder.embedding.weight"]
    assert json.loads((exported / "config.json").read_text())["pre_seq_len"] == 4
    # ChatGLM's own prefix semantics (no positions for the prefix) are kbqa's in training and
    # serving: the peft adapter and its exported ptuning checkpoint give the same logits.
    peft_gen = load_generator(f"transformers:{base}?adapter={out}", load=True)
    ours = load_generator(f"transformers:{base}?adapter={exported}", load=True)
    ids = torch.tensor([ours.tokenizer.chat_ids([{"role": "user", "content": "年假有几天？"}])])
    with torch.no_grad():
        a = peft_gen.model(input_ids=ids).logits[0, -1]
        b = ours.model(input_ids=ids).logits[0, -1]
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "overwrite" in again.stdout
