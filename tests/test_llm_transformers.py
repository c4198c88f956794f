"""The transformers generator on a tiny random GLM: plain, nf4, int8, LoRA and prefix adapters."""

from __future__ import annotations

import json
import sys

import pytest

from kbqa.errors import BadInput, ModelError
from kbqa.llm import GenerationConfig, load_generator
from kbqa.prompt import DEFAULT_QA_TEMPLATE, pack_prompt
from kbqa.types import Hit

torch = pytest.importorskip("torch")
GREEDY = GenerationConfig(max_new_tokens=10)
HITS = [
    Hit(1, 1, "hr.md", "公司的年假是每年十五天。", 0.9),
    Hit(2, 1, "hr.md", "报销需要在三十天内提交发票。", 0.5),
]


def spec(path, **opts) -> str:
    query = "&".join(f"{k}={v}" for k, v in opts.items())
    return f"transformers:{path}" + (f"?{query}" if query else "")


def captured_prompt(gen) -> list[str]:
    """Wrap ``generate`` to record the text the model actually receives."""
    seen: list[str] = []
    original = gen.model.generate

    def spy(*args, **kwargs):
        seen.append(gen.tokenizer.decode(kwargs["input_ids"][0]))
        return original(*args, **kwargs)

    gen.model.generate = spy
    return seen


def test_prompt_holds_context_in_template(glm_dir):
    gen = load_generator(spec(glm_dir))
    assert gen._model is None  # weights load late
    budget = gen.context_window - GREEDY.max_new_tokens
    packed = pack_prompt(DEFAULT_QA_TEMPLATE, "年假有几天？", HITS, [], budget, gen.count_tokens)
    seen = captured_prompt(gen.load())
    answer = gen.generate(packed.prompt, [("你好", "您好")], GREEDY)
    assert isinstance(answer, str)
    expected = (
        "[gMASK]<sop><|user|>\n你好<|assistant|>\n您好<|user|>\n已知信息:\n[1] 公司的年假是每年十五天。\n"
        "[2] 报销需要在三十天内提交发票。\n根据已知信息回答问题:\n年假有几天？<|assistant|>\n"
    )
    assert seen == [expected] and gen.last_prompt == expected


def test_last_prompt_is_set_only_once_the_generation_lock_is_held(glm_dir):
    import threading
    import time

    gen = load_generator(spec(glm_dir), load=True)
    with gen._lock:  # another request is generating
        waiting = threading.Thread(target=gen.generate, args=("年假？", (), GREEDY))
        waiting.start()
        time.sleep(0.3)
        assert gen.last_prompt is None  # the waiting request has not overwritten it
    waiting.join(60)
    assert gen.last_prompt is not None and "年假？" in gen.last_prompt


def test_stream_equals_generate_greedy(glm_dir):
    gen = load_generator(spec(glm_dir), load=True)
    config = GenerationConfig(max_new_tokens=24)
    pieces = list(gen.stream("已知信息:\n年假十五天。\n根据已知信息回答问题:\n年假？", (), config))
    assert len(pieces) > 1
    assert "".join(pieces) == gen.generate(
        "已知信息:\n年假十五天。\n根据已知信息回答问题:\n年假？", (), config
    )


def test_packing_budget_keeps_prompt_inside_window(glm_dir):
    gen = load_generator(spec(glm_dir, context_window=160))
    hits = [Hit(i, 1, "a.md", f"第{i}条规定" + "年假" * 12, 1.0) for i in range(6)]
    history = [("旧问题" * 5, "旧回答" * 5)]
    budget = gen.context_window - GREEDY.max_new_tokens
    packed = pack_prompt(DEFAULT_QA_TEMPLATE, "年假？", hits, history, budget, gen.count_tokens)
    assert packed.history_used == [] and 0 < len(packed.hits_used) < 6
    rendered = gen.tokenizer(gen.render(packed.prompt, packed.history_used))["input_ids"]
    assert len(rendered) + GREEDY.max_new_tokens <= gen.model_window
    gen.generate(packed.prompt, packed.history_used, GREEDY)  # fits, so no error
    too_long = "年假" * 200
    with pytest.raises(BadInput, match="context window"):
        gen.generate(too_long, (), GREEDY)


@pytest.mark.parametrize(("quant", "layer"), [("nf4", "Linear4bit"), ("int8", "Linear8bitLt")])
def test_quantized_loads_and_streams(glm_dir, quant, layer):
    pytest.importorskip("bitsandbytes")
    gen = load_generator(spec(glm_dir, quant=quant), load=True)
    assert type(gen.model.model.layers[0].mlp.down_proj).__name__ == layer
    text = gen.generate("年假有几天？", (), GREEDY)
    assert "".join(gen.stream("年假有几天？", (), GREEDY)) == text


def test_nf4_without_bitsandbytes_says_what_to_install(glm_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import now raises ImportError
    gen = load_generator(spec(glm_dir, quant="nf4"))
    with pytest.raises(ModelError, match="pip install.*bitsandbytes|bitsandbytes.*pip install"):
        gen.load()


def test_missing_directory_and_missing_weights(tmp_path, glm_dir):
    with pytest.raises(BadInput, match="does not exist"):
        load_generator(spec(tmp_path / "nope"))
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((glm_dir / "config.json").read_text())
    with pytest.raises(ModelError, match="has no weights"):
        load_generator(spec(bare))


def test_chatglm_config_that_fits_no_format_names_the_field(tmp_path, glm_dir):
    # ChatGLM checkpoints load natively now (tests/test_chatglm_*.py); a config.json that fits
    # none of the published layouts is a clear error naming the field, not remote code.
    fake = tmp_path / "chatglm3"
    fake.mkdir()
    (fake / "config.json").write_text(json.dumps({"model_type": "chatglm"}))
    (fake / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ModelError, match="'num_layers'"):
        load_generator(spec(fake))
