"""ChatGLM format detection from config.json, and the error for a directory that fits none."""

from __future__ import annotations

import json
import shutil

import pytest
from chatglm_data import FAMILIES, model_dir

from kbqa.errors import ModelError
from kbqa.llm.chatglm.detect import GLM4_HF, detect_format


@pytest.mark.parametrize("family", FAMILIES)
def test_each_fixture_layout_is_recognised(family):
    d = model_dir(family)
    assert detect_format(d, json.loads((d / "config.json").read_text())) == family


def test_native_glm_and_other_models(tmp_path):
    assert detect_format(tmp_path, {"model_type": "glm"}) == GLM4_HF
    assert detect_format(tmp_path, {"model_type": "glm4"}) == GLM4_HF
    assert detect_format(tmp_path, {"model_type": "llama"}) is None


def _copy(family, tmp_path):
    d = tmp_path / family
    shutil.copytree(model_dir(family), d)
    return d, json.loads((d / "config.json").read_text())


def test_chatglm3_told_from_chatglm2_by_its_tokenizer(tmp_path):
    d, cfg = _copy("chatglm2", tmp_path)
    cfg["_name_or_path"] = "local"
    assert detect_format(d, cfg) == "chatglm2"
    (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": "<|user|>"}))
    assert detect_format(d, cfg) == "chatglm3"


@pytest.mark.parametrize(
    ("family", "change", "field"),
    [
        ("chatglm3", {"padded_vocab_size": None}, "padded_vocab_size"),
        ("chatglm3", {"rmsnorm": False}, "rmsnorm"),
        ("chatglm3", {"add_bias_linear": True}, "add_bias_linear"),
        ("chatglm2", {"quantization_bit": 8}, "quantization_bit"),
        ("chatglm6b", {"quantization_bit": 4}, "quantization_bit"),
        ("chatglm6b", {"vocab_size": "x"}, "vocab_size"),
        ("glm4-chat", {"quantization_bit": 4}, "quantization_bit"),
    ],
)
def test_chatglm_like_config_that_fits_none_names_the_field(tmp_path, family, change, field):
    d, cfg = _copy(family, tmp_path)
    cfg.update(change)
    with pytest.raises(ModelError, match=f"'{field}'") as info:
        detect_format(d, cfg)
    assert str(d) in str(info.value)
