"""`kbqa ask --llm transformers:DIR` through every ChatGLM fixture family: plain, nf4, int8."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from chatglm_data import FAMILIES, chatglm_root, model_dir, reference
from typer.testing import CliRunner

from kbqa.cli.app import app
from kbqa.errors import ModelError
from kbqa.llm import GenerationConfig, load_generator
from kbqa.llm.chatglm.chat_format import v1_response

torch = pytest.importorskip("torch")
GREEDY = GenerationConfig(max_new_tokens=8)
SAMPLE = Path(__file__).resolve().parents[1] / "ingest"


def history_case(family: str) -> dict:
    return next(c for c in reference(family)["cases"] if c["name"] == "history")


@pytest.mark.parametrize("family", FAMILIES)
def test_generator_reproduces_chat_prompt_and_greedy_answer(family):
    c = history_case(family)
    gen = load_generator(f"transformers:{model_dir(family)}")
    history = [tuple(h) for h in c["history"]]
    _, ids = gen._render_ids(c["query"], history)
    assert ids[0].tolist() == c["input_ids"]
    answer = gen.generate(c["query"], history, GREEDY)
    # The answer stops at the first stop id, decoded without control tokens.
    new = c["greedy_new_ids"]
    stops = set(reference(family)["stop_ids"])
    cut = next((i for i, t in enumerate(new) if t in stops), len(new))
    want = gen.tokenizer.decode(new[:cut], skip_special_tokens=True)
    assert answer == (v1_response(want) if family == "chatglm6b" else want)
    assert gen.stop_ids == reference(family)["stop_ids"]
    assert 0 < gen.context_window < gen.model_window


@pytest.mark.parametrize("quant", ["nf4", "int8"])
@pytest.mark.parametrize("family", FAMILIES)
def test_quantized_load_answers_through_bitsandbytes(family, quant):
    bnb = pytest.importorskip("bitsandbytes")
    gen = load_generator(f"transformers:{model_dir(family)}?quant={quant}", load=True)
    kind = bnb.nn.Linear4bit if quant == "nf4" else bnb.nn.Linear8bitLt
    assert any(isinstance(m, kind) for m in gen.model.modules())
    assert isinstance(
        gen.generate("年假可以按半天休吗？", [("年假有几天？", "五天。")], GREEDY), str
    )


@pytest.mark.parametrize("family", ["chatglm6b", "chatglm2", "chatglm3"])
def test_ptuning_adapter_through_the_spec(family):
    ptuning = chatglm_root() / family / "ptuning"
    c = history_case(family)
    gen = load_generator(f"transformers:{model_dir(family)}?adapter={ptuning}")
    answer = gen.generate(c["query"], [tuple(h) for h in c["history"]], GREEDY)
    new = c["ptuning"]["greedy_new_ids"]
    stops = set(reference(family)["stop_ids"])
    cut = next((i for i, t in enumerate(new) if t in stops), len(new))
    assert answer == gen.tokenizer.decode(new[:cut], skip_special_tokens=True)


def test_glm4_refuses_a_ptuning_checkpoint():
    ptuning = chatglm_root() / "chatglm3" / "ptuning"
    gen = load_generator(f"transformers:{model_dir('glm4-chat')}?adapter={ptuning}")
    with pytest.raises(ModelError, match="no prefix encoder"):
        gen.load()


def test_broken_v1_weights_are_a_model_error_naming_the_directory(tmp_path):
    d = tmp_path / "chatglm6b"
    shutil.copytree(model_dir("chatglm6b"), d)
    (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:5000])
    with pytest.raises(ModelError, match=str(d)):
        load_generator(f"transformers:{d}", load=True)


def test_broken_weights_are_a_model_error_naming_the_directory(tmp_path):
    d = tmp_path / "chatglm3"
    shutil.copytree(model_dir("chatglm3"), d)
    (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:5000])
    with pytest.raises(ModelError, match=str(d)):
        load_generator(f"transformers:{d}", load=True)
    cfg = json.loads((d / "config.json").read_text())
    shutil.copy(model_dir("chatglm3") / "model.safetensors", d / "model.safetensors")
    cfg["ffn_hidden_size"] = 96
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="disagree"):
        load_generator(f"transformers:{d}", load=True)


@pytest.fixture(scope="module")
def cli(tmp_path_factory, tiny_model):
    """One KB of the sample documents for the whole module (env per call, not monkeypatch)."""
    home = tmp_path_factory.mktemp("home")
    env = {"KBQA_HOME": str(home), "KBQA_EMBEDDING_MODEL": str(tiny_model)}
    runner = CliRunner()

    def run(*args: str, code: int = 0):
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == code, (result.stdout, result.stderr)
        return result

    run("ingest", str(SAMPLE), "--kb", "demo", "--json")
    return run


# Three in the default run (v1, a converted family on nf4, GLM-4); all with -m slow.
ASK = [("chatglm6b", ""), ("chatglm3", "?quant=nf4"), ("glm4-chat", "")] + [
    pytest.param(f, o, marks=pytest.mark.slow)
    for f, o in [
        ("chatglm2", ""),
        ("chatglm2-int4", ""),
        ("chatglm3", ""),
        ("chatglm6b", "?quant=int8"),
    ]
]


@pytest.mark.parametrize(("family", "opts"), ASK)
def test_kbqa_ask_answers_through_each_family(cli, family, opts):
    spec = f"transformers:{model_dir(family)}{opts}"
    out = json.loads(cli("ask", "病假需要什么材料？", "--kb", "demo", "--llm", spec,
                         "--refusal-threshold", "-1", "--json").stdout)  # fmt: skip
    assert out["mode"] in ("generative", "faq") and isinstance(out["answer"], str)
    assert out["sources"]


def test_kbqa_ask_load_failure_is_exit_1_with_a_json_error(cli, tmp_path):
    d = tmp_path / "broken"
    shutil.copytree(model_dir("glm4-chat"), d)
    (d / "tokenizer.model").write_text("not a rank file\n")
    out = cli("ask", "病假需要什么材料？", "--kb", "demo", "--llm", f"transformers:{d}",
              "--refusal-threshold", "-1", "--json", code=1)  # fmt: skip
    assert "tokenizer.model" in json.loads(out.stdout)["error"]


def test_api_answers_a_model_load_failure_with_json(tmp_path, monkeypatch):
    from tests.api_fixtures import build_kb, client_for
    from tests.corpus import LEAVE
    from tests.fakes import HashEmbedder

    d = tmp_path / "broken"
    shutil.copytree(model_dir("chatglm3"), d)
    (d / "model.safetensors").write_bytes(b"\0" * 16)
    embedder, home = HashEmbedder(), tmp_path / "home"
    build_kb(home, "demo", embedder, {"leave.md": LEAVE})
    generator = load_generator(f"transformers:{d}")
    # HashEmbedder scores are low: never refuse, so the question reaches the broken model.
    with client_for(home, embedder, generator=generator, refusal_threshold=-1.0) as client:
        r = client.post("/v1/kbs/demo/ask", json={"question": "年假有几天？", "top_k": 3})
    assert r.status_code >= 500 and str(d) in r.json()["detail"]


@pytest.mark.parametrize("family", ["chatglm6b", "chatglm3"])
def test_ptuning_on_an_nf4_base_keeps_an_fp32_prefix(family):
    pytest.importorskip("bitsandbytes")
    ptuning = chatglm_root() / family / "ptuning"
    gen = load_generator(f"transformers:{model_dir(family)}?quant=nf4&adapter={ptuning}", load=True)
    enc = (
        gen.model.transformer.prefix_encoder if family == "chatglm6b" else gen.model.prefix_encoder
    )
    assert enc.embedding.weight.dtype == torch.float32
    assert isinstance(gen.generate("你好", (), GREEDY), str)


@pytest.mark.parametrize("family", ["chatglm6b", "chatglm3"])
def test_ptuning_with_prefix_projection_equals_its_table(tmp_path, family):
    """A prefix_projection=True checkpoint (embedding -> MLP) acts as the MLP's output table."""
    hidden, layers = 64, 2
    kv = layers * 2 * (hidden if family == "chatglm6b" else 2 * 16)
    emb_dim = hidden if family == "chatglm6b" else kv  # ChatGLM-6B and ChatGLM2/3 differ here
    g = torch.Generator().manual_seed(3)
    state = {
        "transformer.prefix_encoder.embedding.weight": torch.randn(4, emb_dim, generator=g),
        "transformer.prefix_encoder.trans.0.weight": torch.randn(hidden, emb_dim, generator=g)
        * 0.2,
        "transformer.prefix_encoder.trans.0.bias": torch.randn(hidden, generator=g) * 0.1,
        "transformer.prefix_encoder.trans.2.weight": torch.randn(kv, hidden, generator=g) * 0.5,
        "transformer.prefix_encoder.trans.2.bias": torch.randn(kv, generator=g) * 0.1,
    }
    t = torch.tanh(state["transformer.prefix_encoder.embedding.weight"] @ state["transformer.prefix_encoder.trans.0.weight"].T + state["transformer.prefix_encoder.trans.0.bias"])  # fmt: skip
    table = t @ state["transformer.prefix_encoder.trans.2.weight"].T + state["transformer.prefix_encoder.trans.2.bias"]  # fmt: skip
    base_cfg = json.loads((model_dir(family) / "config.json").read_text())
    for name, tensors, proj in (("proj", state, True), ("table", {"transformer.prefix_encoder.embedding.weight": table}, False)):  # fmt: skip
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(
            json.dumps(base_cfg | {"pre_seq_len": 4, "prefix_projection": proj})
        )
        torch.save(tensors, d / "pytorch_model.bin")
    a = load_generator(f"transformers:{model_dir(family)}?adapter={tmp_path / 'proj'}", load=True)
    b = load_generator(f"transformers:{model_dir(family)}?adapter={tmp_path / 'table'}", load=True)
    ids = torch.tensor([a.tokenizer.chat_ids([{"role": "user", "content": "你好"}])])
    with torch.no_grad():
        la, lb = a.model(input_ids=ids).logits[0, -1], b.model(input_ids=ids).logits[0, -1]
    torch.testing.assert_close(la, lb, rtol=0, atol=1e-4)
