"""`kbqa finetune` (LoRA, QLoRA, P-Tuning v2) on each ChatGLM fixture family, then served."""

from __future__ import annotations

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
