"""Adapters made with peft in the test: LoRA, prefix tuning, a ChatGLM ptuning checkpoint."""

from __future__ import annotations

import json

import pytest

from kbqa.errors import BadInput, ModelError
from kbqa.llm import GenerationConfig, load_generator

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
GREEDY = GenerationConfig(max_new_tokens=8)
PROMPT = "已知信息:\n年假十五天。\n根据已知信息回答问题:\n年假？"


def base_model(path=None, **overrides):
    from transformers import GlmConfig, GlmForCausalLM

    torch.manual_seed(1)
    if path is not None:
        return GlmForCausalLM.from_pretrained(path)
    cfg = dict(vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, head_dim=16, pad_token_id=1)  # fmt: skip
    cfg.update(overrides)
    return GlmForCausalLM(GlmConfig(**cfg))


def make_lora(model, out):
    cfg = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft.get_peft_model(model, cfg).save_pretrained(out)
    return out


def make_prefix(model, out, tokens=4):
    pm = peft.get_peft_model(
        model, peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=tokens)
    )
    with torch.no_grad():
        pm.prompt_encoder["default"].embedding.weight.normal_(0, 2.0)
    pm.save_pretrained(out)
    return pm.prompt_encoder["default"].embedding.weight.detach().clone()


def first_logits(gen):
    ids = gen.tokenizer(gen.render(PROMPT), add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        return gen.model(**ids).logits[0, -1].float()


def test_lora_adapter_changes_the_model(glm_dir, tmp_path):
    lora = make_lora(base_model(glm_dir), tmp_path / "lora")
    plain = load_generator(f"transformers:{glm_dir}", load=True)
    gen = load_generator(f"transformers:{glm_dir}?adapter={lora}", load=True)
    assert isinstance(gen.model, peft.PeftModel)
    assert not torch.allclose(first_logits(plain), first_logits(gen))
    assert "".join(gen.stream(PROMPT, (), GREEDY)) == gen.generate(PROMPT, (), GREEDY)


def test_prefix_adapter_and_chatglm_ptuning_checkpoint_agree(glm_dir, tmp_path):
    table = make_prefix(base_model(glm_dir), tmp_path / "prefix")
    ptuning = tmp_path / "ptuning"
    ptuning.mkdir()
    (ptuning / "config.json").write_text(json.dumps({"pre_seq_len": 4, "prefix_projection": False}))
    torch.save(
        {"transformer.prefix_encoder.embedding.weight": table}, ptuning / "pytorch_model.bin"
    )

    plain = load_generator(f"transformers:{glm_dir}", load=True)
    pre = load_generator(f"transformers:{glm_dir}?adapter={tmp_path / 'prefix'}", load=True)
    pt = load_generator(f"transformers:{glm_dir}?adapter={ptuning}", load=True)
    assert not torch.allclose(first_logits(plain), first_logits(pre))
    assert torch.allclose(first_logits(pre), first_logits(pt), atol=1e-5)
    assert pt.generate(PROMPT, (), GREEDY) == pre.generate(PROMPT, (), GREEDY)
    # The prefix must reach generate(), not only forward(): transformers 5.24 dropped it there.
    assert pre.generate(PROMPT, (), GREEDY) != plain.generate(PROMPT, (), GREEDY)


def test_prefix_adapter_refused_where_generate_would_drop_it(glm_dir, tmp_path, monkeypatch):
    import transformers

    make_prefix(base_model(glm_dir), tmp_path / "prefix")
    monkeypatch.setattr(transformers, "__version__", "5.24.0")
    with pytest.raises(ModelError, match="transformers<5.24"):
        load_generator(f"transformers:{glm_dir}?adapter={tmp_path / 'prefix'}", load=True)


def test_prefix_on_nf4_base_keeps_fp32_prefix(glm_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    make_prefix(base_model(glm_dir), tmp_path / "prefix")
    gen = load_generator(
        f"transformers:{glm_dir}?quant=nf4&adapter={tmp_path / 'prefix'}", load=True
    )
    assert gen.model.prompt_encoder["default"].embedding.weight.dtype == torch.float32
    assert "".join(gen.stream(PROMPT, (), GREEDY)) == gen.generate(PROMPT, (), GREEDY)


def test_lora_for_another_architecture_says_why(glm_dir, tmp_path):
    lora = make_lora(base_model(hidden_size=32, head_dim=8), tmp_path / "lora32")
    gen = load_generator(f"transformers:{glm_dir}?adapter={lora}")
    with pytest.raises(
        ModelError, match=r"does not fit the base model \(GlmForCausalLM\).*in_features=64"
    ):
        gen.load()


def test_prefix_for_another_depth_says_why(glm_dir, tmp_path):
    make_prefix(base_model(num_hidden_layers=3), tmp_path / "prefix3")
    gen = load_generator(f"transformers:{glm_dir}?adapter={tmp_path / 'prefix3'}")
    with pytest.raises(ModelError, match="prefixes for 3 layers, the model has 2"):
        gen.load()


def test_ptuning_checkpoint_of_wrong_width(glm_dir, tmp_path):
    bad = tmp_path / "pt"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"pre_seq_len": 4}))
    torch.save(
        {"transformer.prefix_encoder.embedding.weight": torch.zeros(4, 99)},
        bad / "pytorch_model.bin",
    )
    with pytest.raises(ModelError, match=r"shape \(4, 99\), this model needs \(4, 128\)"):
        load_generator(f"transformers:{glm_dir}?adapter={bad}").load()


def test_not_an_adapter(glm_dir, tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        load_generator(f"transformers:{glm_dir}?adapter={tmp_path / 'none'}")
    with pytest.raises(BadInput, match="is not an adapter"):
        load_generator(f"transformers:{glm_dir}?adapter={tmp_path}")
