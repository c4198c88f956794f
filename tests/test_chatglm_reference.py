"""kbqa's native ChatGLM family against the original remote code's recorded outputs.

For every fixture family and input: the chat prompt ids exactly, the fp32 last-position logits
within 1e-4, and 8 greedy tokens exactly (a recorded near-tie may flip, then the rest differs).
"""

from __future__ import annotations

import json

import pytest
from chatglm_data import FAMILIES, PTUNING_FAMILIES, chatglm_root, messages, model_dir, reference

from kbqa.llm.chatglm.chat_format import chat_ids, stop_ids
from kbqa.llm.chatglm.detect import detect_format
from kbqa.llm.chatglm.loader import attach_ptuning, load_chatglm
from kbqa.llm.chatglm.tokenizers import load_tokenizer

torch = pytest.importorskip("torch")
CASES = ("rag", "greeting", "history")
NEAR_TIE = 1e-3  # the smallest recorded top1 - top2 gap is about 0.001


def _load(family: str, ptuning: bool = False):
    d = model_dir(family)
    cfg = json.loads((d / "config.json").read_text())
    model = load_chatglm(d, cfg, detect_format(d, cfg), "cpu", dtype=torch.float32)
    if ptuning:
        state = torch.load(
            chatglm_root() / family / "ptuning" / "pytorch_model.bin", weights_only=True
        )
        prefix = "transformer.prefix_encoder."
        model = attach_ptuning(model, {k.removeprefix(prefix): v for k, v in state.items()}, family)
    return model


_MODELS: dict = {}


def model_for(family: str, ptuning: bool = False):
    if (family, ptuning) not in _MODELS:
        _MODELS[(family, ptuning)] = _load(family, ptuning)
    return _MODELS[(family, ptuning)]


def ref_logits(family: str, key: str):
    from safetensors.torch import load_file

    return load_file(str(chatglm_root() / family / "reference_logits.safetensors"))[key]


def case(family: str, name: str) -> dict:
    return next(c for c in reference(family)["cases"] if c["name"] == name)


def assert_greedy(got: list[int], want: list[int], steps: list[dict]) -> None:
    for i, (g, w) in enumerate(zip(got, want, strict=False)):
        if g != w:
            assert steps[i]["top1_minus_top2"] < NEAR_TIE, f"step {i}: {g} != {w}, no near-tie"
            return
    assert len(got) == len(want)


@pytest.mark.parametrize("family", FAMILIES)
def test_special_ids_and_stop_ids(family):
    ref = reference(family)
    tok = load_tokenizer(model_dir(family), family)
    assert stop_ids(tok) == ref["stop_ids"]
    for name, want in ref["special_tokens"].items():
        if name in tok.specials:
            assert tok.specials[name] == want, name
    assert tok.eos_token_id == ref["special_tokens"]["eos_token_id"]
    assert tok.pad_token_id == ref["special_tokens"]["pad_token_id"]


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_ids_exactly_as_chat(family, name):
    c = case(family, name)
    tok = load_tokenizer(model_dir(family), family)
    assert chat_ids(tok, messages(c)) == c["input_ids"]


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("family", FAMILIES)
def test_fp32_logits_and_greedy_tokens(family, name):
    c = case(family, name)
    model = model_for(family)
    ids = torch.tensor([c["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].float()
    assert (logits - ref_logits(family, f"{name}/base")).abs().max().item() < 1e-4
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                         do_sample=False, eos_token_id=reference(family)["stop_ids"],
                         pad_token_id=0)  # fmt: skip
    assert_greedy(out[0, ids.shape[1] :].tolist(), c["greedy_new_ids"], c["greedy_steps"])


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("family", PTUNING_FAMILIES)
def test_ptuning_checkpoint_logits_and_greedy_tokens(family, name):
    c = case(family, name)
    model = model_for(family, ptuning=True)
    ids = torch.tensor([c["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].float()
    assert (logits - ref_logits(family, f"{name}/ptuning")).abs().max().item() < 1e-4
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                         do_sample=False, eos_token_id=reference(family)["stop_ids"],
                         pad_token_id=0)  # fmt: skip
    p = c["ptuning"]
    assert_greedy(out[0, ids.shape[1] :].tolist(), p["greedy_new_ids"], p["greedy_steps"])


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_text_decodes_as_the_reference(family):
    tok = load_tokenizer(model_dir(family), family)
    for c in reference(family)["cases"]:
        if c["greedy_new_text"] is not None:
            assert tok.decode(c["greedy_new_ids"]) == c["greedy_new_text"]
