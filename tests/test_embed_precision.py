"""Embedding precision: the choice per hardware, the fp32 check and its cache, KBs across precisions."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from fakes import HashEmbedder
from tiny_models import build_tiny_sentence_transformer

from kbqa.config import EmbedConfig, IngestConfig, SplitConfig
from kbqa.embed import precision as ep
from kbqa.embed.sentence_transformer import SentenceTransformerEmbedder
from kbqa.errors import BadInput
from kbqa.kb import KnowledgeBase

ZEN4 = frozenset({"avx512f", "avx512_bf16", "avx512_vnni"})
VNNI_ONLY = frozenset({"avx512f", "avx512_vnni"})
OLD_CPU = frozenset({"sse4_2", "avx2"})


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own check cache, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize(
    ("setting", "device", "flags", "expected", "notice"),
    [
        ("auto", "cpu", ZEN4, "bf16", False),
        ("auto", "cpu", VNNI_ONLY, "int8", False),
        ("auto", "cpu", OLD_CPU, "fp32", True),  # neither bf16 nor VNNI: fp32, said so
        ("bf16", "cpu", OLD_CPU, "fp32", True),  # forced, but the CPU would only emulate it
        ("int8", "cpu", ZEN4, "int8", False),
        ("fp16", "cpu", ZEN4, "fp32", True),
        ("auto", "cuda", OLD_CPU, "fp16", False),
        ("int8", "cuda:0", ZEN4, "fp32", True),
        ("fp32", "cpu", ZEN4, "fp32", False),
    ],
)
def test_choice_follows_the_hardware(setting, device, flags, expected, notice) -> None:
    choice = ep.choose(setting, device, flags)
    assert choice.precision == expected
    assert (choice.notice is not None) == notice


def test_a_bad_precision_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from kbqa.config import load_settings

    with pytest.raises(BadInput, match="KBQA_EMBEDDING_PRECISION='fp8'"):
        ep.check_precision("fp8")
    with pytest.raises(BadInput, match="precision"):
        EmbedConfig(precision="half")
    monkeypatch.setenv("KBQA_EMBEDDING_PRECISION", "fp8")
    with pytest.raises(BadInput, match="fp8"):
        load_settings()
    monkeypatch.setenv("KBQA_EMBEDDING_PRECISION", "BF16")
    assert load_settings().embed_config().precision == "bf16"


def _linear_model():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8))


def _encoder(calls: list[str]):
    import torch

    def encode(model, texts):
        calls.append(str(next(model.parameters()).dtype))
        x = torch.stack(
            [torch.full((16,), (len(t) % 7) / 7.0) + torch.arange(16) / 16 for t in texts]
        )
        with torch.no_grad():
            return model(x.to(next(model.parameters()).dtype)).float().numpy()

    return encode


def test_bf16_is_checked_once_per_machine_then_cached(caplog) -> None:
    calls: list[str] = []
    model, precision, cosine = ep.apply(_linear_model(), "auto", "cpu", "m1", _encoder(calls), ZEN4)
    assert precision == "bf16" and cosine >= ep.MIN_COSINE
    assert str(next(model.parameters()).dtype) == "torch.bfloat16"
    assert calls == ["torch.float32", "torch.bfloat16"]  # fp32 reference, then the candidate
    calls.clear()
    _, again, cached = ep.apply(_linear_model(), "auto", "cpu", "m1", _encoder(calls), ZEN4)
    assert again == "bf16" and cached == pytest.approx(cosine, abs=1e-6)
    assert calls == [], "the cached check is not run again"


def test_a_cpu_without_bf16_or_vnni_falls_back_to_fp32_with_a_notice(caplog) -> None:
    calls: list[str] = []
    with caplog.at_level(logging.WARNING, logger="kbqa.embed.precision"):
        model, precision, cosine = ep.apply(
            _linear_model(), "auto", "cpu", "m1", _encoder(calls), OLD_CPU
        )
    assert precision == "fp32" and cosine is None and calls == []
    assert str(next(model.parameters()).dtype) == "torch.float32"
    assert "neither bf16" in caplog.text


def test_a_check_under_the_cosine_bound_falls_back_to_fp32_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    def lossy(model, precision):  # a precision that garbles the vectors
        import torch

        with torch.no_grad():
            for p in model.parameters():
                p.mul_(-1.0)
        return model

    monkeypatch.setattr(ep, "convert", lossy)
    calls: list[str] = []
    original = _linear_model()
    before = [p.detach().clone() for p in original.parameters()]
    with caplog.at_level(logging.WARNING, logger="kbqa.embed.precision"):
        model, precision, _ = ep.apply(original, "bf16", "cpu", "m2", _encoder(calls), ZEN4)
    assert precision == "fp32"
    assert all(bool((a == b).all()) for a, b in zip(before, model.parameters(), strict=True))
    assert "matched fp32 only to cosine" in caplog.text and "embedding in fp32" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kbqa.embed.precision"):  # cached failure too
        _, precision, _ = ep.apply(_linear_model(), "bf16", "cpu", "m2", _encoder([]), ZEN4)
    assert precision == "fp32" and "matched fp32 only" in caplog.text


def test_int8_converts_linear_layers() -> None:
    model = ep.convert(_linear_model(), "int8")
    assert "Quantized" in type(model[0]).__name__ or "quantized" in type(model[0]).__module__


def test_sentence_transformer_embedder_reports_its_precision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = build_tiny_sentence_transformer(tmp_path / "tiny-e5-small")
    monkeypatch.setattr(ep, "cpu_flags", lambda: OLD_CPU)
    slow_cpu = SentenceTransformerEmbedder(directory, EmbedConfig(precision="auto")).load()
    assert slow_cpu.precision == "fp32"
    monkeypatch.setattr(ep, "cpu_flags", lambda: ZEN4)
    fast = SentenceTransformerEmbedder(directory, EmbedConfig(precision="bf16")).load()
    # Whatever the check decided for these random weights, it is recorded and consistent.
    if fast.precision == "bf16":
        assert fast.precision_cosine >= ep.MIN_COSINE
    vectors = fast.embed_passages(["公司的年假是每年十五天。", "The office opens at nine."])
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    reference = slow_cpu.embed_passages(["公司的年假是每年十五天。", "The office opens at nine."])
    assert ep.min_cosine(reference, vectors) >= (
        ep.MIN_COSINE if fast.precision == "bf16" else 0.9999
    )


class PrecisionHash(HashEmbedder):
    def __init__(self, precision: str) -> None:
        super().__init__()
        self.precision = precision


def test_a_kb_built_in_bf16_is_searched_in_fp32_and_records_both(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.txt").write_text("年假每年十五天，入职满一年后开始享受。", encoding="utf-8")
    (docs / "pay.txt").write_text("报销需要在三十天内提交发票。", encoding="utf-8")
    home = tmp_path / "home"
    built = PrecisionHash("bf16")
    kb = KnowledgeBase.open_or_create(home, "p", built, "test", SplitConfig())
    kb.ingest([docs / "leave.txt"], built, IngestConfig())
    kb.close()
    kb = KnowledgeBase.open(home, "p")
    assert kb.manifest.embedding_precisions == ["bf16"]
    # Same model, another precision: allowed (vectors agree to cosine >= 0.995), not a Conflict.
    searcher = PrecisionHash("fp32")
    assert kb.search("年假有几天", 1, searcher)[0].source.endswith("leave.txt")
    kb.close()
    kb = KnowledgeBase.open(home, "p")
    kb.ingest([docs / "pay.txt"], searcher, IngestConfig())
    kb.close()
    kb = KnowledgeBase.open(home, "p")
    assert kb.manifest.embedding_precisions == ["bf16", "fp32"]
    assert kb.info()["embedding_precisions"] == ["bf16", "fp32"]


def test_a_verified_precision_is_loaded_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(ep, "cpu_flags", lambda: ZEN4)
    assert ep.verified_dtype("auto", "cpu", "m3") is None  # not checked yet: load fp32 first
    ep.record_check(ep.machine_key("m3", "bf16", "cpu"), 0.9991)
    assert ep.verified_dtype("auto", "cpu", "m3") is torch.bfloat16
    assert ep.verified_dtype("fp32", "cpu", "m3") is None
    ep.record_check(ep.machine_key("m4", "bf16", "cpu"), 0.98)  # failed its check
    assert ep.verified_dtype("auto", "cpu", "m4") is None
    monkeypatch.setattr(ep, "cpu_flags", lambda: OLD_CPU)
    assert ep.verified_dtype("auto", "cpu", "m3") is None
