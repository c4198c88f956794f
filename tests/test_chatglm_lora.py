"""peft LoRA adapters trained on ChatGLM's original module names, converted onto native GLM."""

from __future__ import annotations

import json

import pytest
from chatglm_data import model_dir

from kbqa.errors import ModelError
from kbqa.llm import load_generator

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
R, ALPHA = 4, 8
SHAPES = {  # original module -> (in, out) on the tiny ChatGLM2/3/GLM-4 fixtures
    "self_attention.query_key_value": (64, 128),
    "self_attention.dense": (64, 64),
    "mlp.dense_h_to_4h": (64, 256),
    "mlp.dense_4h_to_h": (128, 64),
}


def original_lora(path, targets=("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    tensors = {}
    for layer in range(2):
        for module, (fan_in, fan_out) in SHAPES.items():
            if module.rsplit(".", 1)[1] not in targets:
                continue
            key = f"base_model.model.transformer.encoder.layers.{layer}.{module}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(R, fan_in, generator=g) * 0.1
            tensors[f"{key}.lora_B.weight"] = torch.randn(fan_out, R, generator=g) * 0.1
    path.mkdir()
    save_file(tensors, str(path / "adapter_model.safetensors"))
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": R, "lora_alpha": ALPHA,
           "lora_dropout": 0.0, "bias": "none", "target_modules": list(targets),
           "base_model_name_or_path": "THUDM/chatglm3-6b"}  # fmt: skip
    (path / "adapter_config.json").write_text(json.dumps(cfg))
    return tensors


def test_original_name_lora_merges_to_exactly_the_fused_merge(tmp_path):
    from safetensors.torch import load_file

    tensors = original_lora(tmp_path / "lora")
    gen = load_generator(f"transformers:{model_dir('chatglm3')}?adapter={tmp_path / 'lora'}")
    merged = gen.model.merge_and_unload()
    orig = load_file(str(model_dir("chatglm3") / "model.safetensors"))
    scale = ALPHA / R
    for layer in range(2):
        pre = f"transformer.encoder.layers.{layer}."
        key = f"base_model.model.{pre}"

        def fused(module, pre=pre, key=key):
            a, b = tensors[f"{key}{module}.lora_A.weight"], tensors[f"{key}{module}.lora_B.weight"]
            return orig[f"{pre}{module}.weight"] + scale * b @ a

        attn = merged.model.layers[layer].self_attn
        q, k, v = fused("self_attention.query_key_value").split([64, 32, 32])
        for got, want in ((attn.q_proj, q), (attn.k_proj, k), (attn.v_proj, v),
                          (attn.o_proj, fused("self_attention.dense"))):  # fmt: skip
            torch.testing.assert_close(got.weight, want, rtol=0, atol=1e-6)
        mlp = merged.model.layers[layer].mlp
        torch.testing.assert_close(
            mlp.gate_up_proj.weight, fused("mlp.dense_h_to_4h"), rtol=0, atol=1e-6
        )
        torch.testing.assert_close(
            mlp.down_proj.weight, fused("mlp.dense_4h_to_h"), rtol=0, atol=1e-6
        )
    assert isinstance(gen.generate("你好"), str)


@pytest.mark.slow  # ~14 s on the shared 2-core machine
def test_qlora_on_query_key_value_loads_on_nf4(tmp_path):
    pytest.importorskip("bitsandbytes")
    original_lora(tmp_path / "lora", targets=("query_key_value",))
    spec = f"transformers:{model_dir('chatglm3')}?quant=nf4&adapter={tmp_path / 'lora'}"
    gen = load_generator(spec, load=True)
    names = {n for n, _ in gen.model.named_modules() if n.endswith("lora_A")}
    assert any("q_proj" in n for n in names) and any("v_proj" in n for n in names)
    assert isinstance(gen.generate("你好"), str)


def test_unconvertible_lora_is_a_clear_error(tmp_path):
    original_lora(tmp_path / "lora")
    cfg = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    cfg["bias"] = "lora_only"
    (tmp_path / "lora" / "adapter_config.json").write_text(json.dumps(cfg))
    gen = load_generator(f"transformers:{model_dir('chatglm3')}?adapter={tmp_path / 'lora'}")
    with pytest.raises(ModelError, match="bias"):
        gen.load()
