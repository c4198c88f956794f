"""Loose ends of the native ChatGLM loading: no remote-code paths, flags that say what they do."""

from __future__ import annotations

import json

import pytest
from chatglm_data import chatglm_root, model_dir, reference

from kbqa.errors import BadInput, ModelError
from kbqa.llm import GenerationConfig, load_generator

torch = pytest.importorskip("torch")
GREEDY = GenerationConfig(max_new_tokens=8)


def _ptuning_table(folder, table, projection=False):
    folder.mkdir()
    cfg = {"pre_seq_len": table.shape[0], "prefix_projection": projection}
    (folder / "config.json").write_text(json.dumps(cfg))
    torch.save({"transformer.prefix_encoder.embedding.weight": table}, folder / "pytorch_model.bin")
    return folder


def test_chatglm_ptuning_with_remote_code_flag_loads_natively(monkeypatch):
    """trust_remote_code=1 on a ChatGLM folder never reaches the auto classes' remote code."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("a ChatGLM folder went through the transformers auto classes")

    monkeypatch.setattr("kbqa.llm.loading.load_model", refuse)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    family = "chatglm3"
    ptuning = chatglm_root() / family / "ptuning"
    gen = load_generator(
        f"transformers:{model_dir(family)}?adapter={ptuning}&trust_remote_code=1", load=True
    )
    c = next(c for c in reference(family)["cases"] if c["name"] == "history")
    answer = gen.generate(c["query"], [tuple(h) for h in c["history"]], GREEDY)
    new = c["ptuning"]["greedy_new_ids"]
    stops = set(reference(family)["stop_ids"])
    cut = next((i for i, t in enumerate(new) if t in stops), len(new))
    assert answer == gen.tokenizer.decode(new[:cut], skip_special_tokens=True)


def test_native_glm_reads_a_ptuning_table_the_same_with_remote_code_flag(glm_dir, tmp_path):
    """On a native model the flag changes nothing: the table becomes peft's prefix either way."""
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    table = torch.randn(4, 2 * 2 * 2 * 16) * 2  # pre_seq_len, layers * 2 * kv_heads * head_dim
    pt = _ptuning_table(tmp_path / "pt", table)
    plain = load_generator(f"transformers:{glm_dir}?adapter={pt}", load=True)
    flagged = load_generator(f"transformers:{glm_dir}?adapter={pt}&trust_remote_code=1", load=True)
    assert isinstance(flagged.model, peft.PeftModel)
    assert flagged.generate("年假？", (), GREEDY) == plain.generate("年假？", (), GREEDY)


def test_projected_ptuning_on_a_native_glm_says_where_it_loads(glm_dir, tmp_path):
    pt = _ptuning_table(tmp_path / "pt", torch.zeros(4, 32), projection=True)
    gen = load_generator(f"transformers:{glm_dir}?adapter={pt}&trust_remote_code=1")
    with pytest.raises(ModelError, match="load only on the ChatGLM-6B/2/3 model"):
        gen.load()


REMOTE_CODE_NOTICE = "trust_remote_code is ignored"


def _notices(caplog):
    return [r for r in caplog.records if REMOTE_CODE_NOTICE in r.getMessage()]


def test_remote_code_flag_on_a_chatglm_folder_is_a_logged_notice(caplog, glm_dir):
    caplog.set_level("WARNING", logger="kbqa")
    load_generator(f"transformers:{model_dir('chatglm2')}?trust_remote_code=1")
    (notice,) = _notices(caplog)
    assert notice.levelname == "WARNING"
    text = notice.getMessage()
    assert str(model_dir("chatglm2")) in text and "chatglm2 checkpoint" in text
    assert "always loads the ChatGLM formats natively" in text and "drop the flag" in text
    caplog.clear()
    load_generator(f"transformers:{model_dir('chatglm2')}")  # no flag: nothing to say
    load_generator(f"transformers:{glm_dir}?trust_remote_code=1")  # not ChatGLM: the flag counts
    assert _notices(caplog) == []


def test_finetune_with_remote_code_flag_on_a_chatglm_folder_says_it_is_ignored(caplog):
    from kbqa.finetune.methods import MethodConfig, _load_base

    caplog.set_level("WARNING", logger="kbqa")
    cfg = MethodConfig(base_model=model_dir("chatglm3"), trust_remote_code=True)
    _load_base(cfg, "cpu")
    assert len(_notices(caplog)) == 1


@pytest.fixture
def renamed_chatglm3(tmp_path):
    """The ChatGLM3 fixture as a user might keep it: renamed, without the tokenizer's markers."""
    import shutil

    d = tmp_path / "faq-bot"
    shutil.copytree(model_dir("chatglm3"), d)
    for f in d.iterdir():
        f.chmod(0o644)  # the shared copy is read-only
    cfg = json.loads((d / "config.json").read_text())
    cfg["_name_or_path"] = "faq-bot"
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "ChatGLMTokenizer"}))
    return d


def test_format_override_reads_a_renamed_chatglm3_folder(renamed_chatglm3):
    c = next(c for c in reference("chatglm3")["cases"] if c["name"] == "history")
    history = [tuple(h) for h in c["history"]]
    guessed = load_generator(f"transformers:{renamed_chatglm3}")
    assert guessed.chatglm_family == "chatglm2"  # nothing left to tell it from ChatGLM2
    assert guessed._render_ids(c["query"], history)[1][0].tolist() != c["input_ids"]
    gen = load_generator(f"transformers:{renamed_chatglm3}?format=chatglm3")
    assert gen.chatglm_family == "chatglm3"
    assert gen._render_ids(c["query"], history)[1][0].tolist() == c["input_ids"]
    assert gen.stop_ids == reference("chatglm3")["stop_ids"]
    answer = gen.generate(c["query"], history, GREEDY)
    stops = set(reference("chatglm3")["stop_ids"])
    new = c["greedy_new_ids"]
    cut = next((i for i, t in enumerate(new) if t in stops), len(new))
    assert answer == gen.tokenizer.decode(new[:cut], skip_special_tokens=True)


def test_format_override_that_matches_detection_is_accepted():
    for family in ("chatglm2", "glm4-chat"):
        gen = load_generator(f"transformers:{model_dir(family)}?format={family}")
        assert gen.chatglm_family == family


@pytest.mark.parametrize(
    ("family", "override", "detected"),
    [("chatglm6b", "chatglm3", "chatglm6b"), ("chatglm2", "glm4-chat", "chatglm2"),
     ("glm4-chat", "chatglm3", "glm4-chat"), ("chatglm2-int4", "chatglm2", "chatglm2-int4")],
)  # fmt: skip
def test_format_override_that_contradicts_config_is_bad_input(family, override, detected):
    with pytest.raises(BadInput) as e:
        load_generator(f"transformers:{model_dir(family)}?format={override}")
    text = str(e.value)
    assert f"format={override} does not fit" in text and f"a {detected} checkpoint" in text
    assert "chatglm2 from chatglm3" in text


def test_format_override_on_a_non_chatglm_model_is_bad_input(glm_dir, tmp_path):
    import shutil

    llama = tmp_path / "llama"
    shutil.copytree(glm_dir, llama)
    cfg = json.loads((llama / "config.json").read_text())
    (llama / "config.json").write_text(json.dumps({**cfg, "model_type": "llama"}))
    with pytest.raises(BadInput, match="no ChatGLM-family model \\(model_type 'llama'\\)"):
        load_generator(f"transformers:{llama}?format=chatglm3")
    with pytest.raises(BadInput, match="a glm4-hf checkpoint"):
        load_generator(f"transformers:{glm_dir}?format=chatglm3")


@pytest.mark.parametrize("value", ["chatglm4", "ChatGLM3", "glm4"])
def test_unknown_format_value_names_the_parameter_and_the_valid_values(value):
    from kbqa.llm import parse_spec

    with pytest.raises(BadInput) as e:
        parse_spec(f"transformers:/m?format={value}")
    text = str(e.value)
    assert text.startswith("format must be one of") and repr(value) in text
    for valid in ("chatglm6b", "chatglm2", "chatglm2-int4", "chatglm3", "glm4-chat", "glm4-hf"):
        assert repr(valid) in text


def test_format_is_parsed_from_the_spec():
    from kbqa.llm import parse_spec

    assert parse_spec("transformers:/m?format=chatglm3&quant=nf4").format == "chatglm3"
    assert parse_spec("transformers:/m").format is None
    assert parse_spec("transformers:/m?format=").format is None


def test_int8_generation_on_cpu_does_not_log_the_cast_notice_per_matmul(caplog):
    pytest.importorskip("bitsandbytes")
    caplog.set_level("WARNING")
    gen = load_generator(f"transformers:{model_dir('chatglm2')}?quant=int8&device=cpu", load=True)
    gen.generate("年假可以按半天休吗？", (), GenerationConfig(max_new_tokens=3))
    assert [r for r in caplog.records if "MatMul8bitLt" in r.getMessage()] == []


def test_int8_cast_filter_drops_that_notice_only(caplog):
    import logging
    import warnings

    from kbqa.llm.loading import quiet_int8_cast_notice

    caplog.set_level("WARNING")
    bnb_log = logging.getLogger("bitsandbytes.autograd._functions")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_int8_cast_notice()
        quiet_int8_cast_notice()  # idempotent: one log filter, whatever the number of loads
        warnings.warn(
            "MatMul8bitLt: inputs will be cast from torch.float32 to float16", stacklevel=1
        )
        warnings.warn("MatMul8bitLt: something else", stacklevel=1)
    bnb_log.warning("MatMul8bitLt: inputs will be cast from %s to float16", "torch.float32")
    bnb_log.warning("int8 kernel missing")
    assert [str(w.message) for w in seen] == ["MatMul8bitLt: something else"]
    assert [r.getMessage() for r in caplog.records if r.name == bnb_log.name] == [
        "int8 kernel missing"
    ]
    assert len(bnb_log.filters) == 1


def test_native_quantized_load_draws_no_progress_bar(capfd):
    pytest.importorskip("bitsandbytes")
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()  # as in a fresh process
    load_generator(f"transformers:{model_dir('chatglm2')}?quant=int8&device=cpu", load=True)
    assert "Loading weights" not in capfd.readouterr().err
