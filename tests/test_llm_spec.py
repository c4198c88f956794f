"""LLM spec strings parse into typed specs; bad ones say what is wrong."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kbqa.errors import BadInput
from kbqa.llm import OpenAISpec, TransformersSpec, load_generator, parse_spec


def test_transformers_spec_with_options():
    spec = parse_spec("transformers:/models/glm-4?quant=nf4&adapter=/a/lora&trust_remote_code=1")
    assert spec == TransformersSpec(
        path=Path("/models/glm-4"), quant="nf4", adapter=Path("/a/lora"), trust_remote_code=True
    )
    assert parse_spec("transformers:/m").quant is None


def test_openai_spec():
    spec = parse_spec("openai:http://127.0.0.1:8000/v1/?model=glm-4&timeout=5&retries=0")
    assert spec == OpenAISpec(
        base_url="http://127.0.0.1:8000/v1", model="glm-4", timeout=5, retries=0
    )


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("glm-4", "does not parse"),
        ("llama:/m", "does not parse"),
        ("transformers:", "no model directory"),
        ("transformers:/m?quant=q3", "quant must be one of"),
        ("transformers:/m?colour=red", "unknown option 'colour'"),
        ("transformers:/m?trust_remote_code=maybe", "must be 1 or 0"),
        ("transformers:/m?context_window=big", "context_window must be a int"),
        ("openai:http://h:1/v1", "model=NAME"),
        ("openai:localhost:8000?model=m", "http"),
    ],
)
def test_bad_specs(spec, says):
    with pytest.raises(BadInput, match=says):
        parse_spec(spec)


def test_none_means_no_llm():
    assert load_generator(None) is None and load_generator("  ") is None
    gen = load_generator("openai:http://127.0.0.1:9/v1?model=m")
    assert gen is not None and gen.name == "openai:m"


def test_import_does_not_pull_torch():
    import subprocess

    code = "import sys, kbqa.llm, kbqa.prompt; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
