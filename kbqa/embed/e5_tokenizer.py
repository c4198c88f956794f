"""XLM-R's tokenizer.json run by SentencePiece: the same ids in ~50 MiB of RSS instead of ~280.

The ``tokenizers`` library holds the 250k-piece Unigram vocabulary in a trie with a hash map
per node; loading e5's tokenizer.json took ~280 MiB, the largest part of the embedder after
the weights. SentencePiece keeps the same pieces and scores in a double array (~50 MiB), and
its Unigram search and normaliser (the same precompiled charsmap) give the same pieces. What
tokenizer.json adds around them is applied here as it does: special tokens matched in the raw
text, runs of spaces collapsed after normalising, ``▁`` for spaces and in front of each
segment, ``<s> ... </s>`` around the truncated ids (tests/test_embed_bert.py).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

SPM_FILE = "tokenizer.spm"  # beside tokenizer.json, made from it once
_SPACE = "\u2581"


def spm_model(tokenizer_json: dict[str, Any]) -> bytes:
    """A serialised SentencePiece ModelProto with tokenizer.json's pieces, scores and charsmap.

    Its normaliser applies the charsmap and writes spaces as ``▁``; collapsing them, prefixes
    and specials are ours (SpmTokenizer).
    """
    from sentencepiece import sentencepiece_model_pb2 as pb

    model = tokenizer_json["model"]
    if model["type"] != "Unigram":
        raise ValueError(f"not a Unigram tokenizer: {model['type']}")
    steps = tokenizer_json["normalizer"]
    steps = steps.get("normalizers", [steps])
    charsmap = next((s["precompiled_charsmap"] for s in steps if s["type"] == "Precompiled"), None)
    if charsmap is None:
        raise ValueError("no precompiled charsmap: not an XLM-R style tokenizer.json")
    proto = pb.ModelProto()
    proto.trainer_spec.model_type = pb.TrainerSpec.UNIGRAM
    proto.trainer_spec.unk_id = model["unk_id"]
    proto.trainer_spec.bos_id = proto.trainer_spec.eos_id = proto.trainer_spec.pad_id = -1
    spec = proto.normalizer_spec
    spec.name = "kbqa-charsmap"
    spec.precompiled_charsmap = base64.b64decode(charsmap)
    spec.add_dummy_prefix = spec.remove_extra_whitespaces = False
    spec.escape_whitespaces = True  # spaces become ``▁``, the pieces' word marker
    specials = {t["id"] for t in tokenizer_json["added_tokens"]}
    kind = pb.ModelProto.SentencePiece
    for i, (piece, score) in enumerate(model["vocab"]):
        entry = proto.pieces.add(piece=piece, score=score)
        if i == model["unk_id"]:
            entry.type = kind.UNKNOWN
        elif i in specials:
            entry.type = kind.CONTROL  # never produced from text
    return proto.SerializeToString()


def spm_bytes(directory: Path) -> bytes:
    """``directory``'s SentencePiece model, made from its tokenizer.json once and kept beside it
    (written atomically; a read-only directory only means making it again next time)."""
    path = directory / SPM_FILE
    if path.is_file():
        return path.read_bytes()
    data = spm_model(json.loads((directory / "tokenizer.json").read_text(encoding="utf-8")))
    tmp = path.with_name(f".{SPM_FILE}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
    return data


class SpmTokenizer:
    """Padded batches of ids and attention masks, as tokenizer.json gives them for XLM-R."""

    def __init__(self, directory: Path, max_length: int, pad_id: int) -> None:
        import sentencepiece

        self.sp = sentencepiece.SentencePieceProcessor(model_proto=spm_bytes(directory))
        # tokenizer.json's added tokens are the control pieces and <unk> (spm_model), read
        # from here rather than from its 17 MB of JSON again.
        sp = self.sp
        added = (i for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i))
        self.specials = {sp.id_to_piece(i): i for i in added}
        self._split = re.compile("(" + "|".join(map(re.escape, self.specials)) + ")")
        self.bos, self.eos = self.specials["<s>"], self.specials["</s>"]
        self.max_length, self.pad_id = max_length, pad_id

    def ids(self, text: str) -> list[int]:
        """``<s>`` + the text's ids (cut to fit) + ``</s>``."""
        out: list[int] = []
        for i, part in enumerate(self._split.split(text)):
            if i % 2:
                out.append(self.specials[part])
                continue
            # tokenizer.json's normaliser: the charsmap, then runs of spaces collapsed (here
            # already ``▁``: a literal ``▁`` beside a space is collapsed too, unlike there).
            part = re.sub(_SPACE + "{2,}", _SPACE, self.sp.normalize(part))
            if part and not part.startswith(_SPACE):
                part = _SPACE + part  # Metaspace's prefix
            out += self.sp.encode(part) if part else []
        return [self.bos, *out[: self.max_length - 2], self.eos]

    def encode_batch(self, texts: list[str]) -> tuple[list[list[int]], list[list[int]]]:
        """(ids, attention masks), padded with ``pad_id`` to the longest text of the batch."""
        rows = [self.ids(t) for t in texts]
        width = max(map(len, rows), default=0)
        ids = [r + [self.pad_id] * (width - len(r)) for r in rows]
        return ids, [[1] * len(r) + [0] * (width - len(r)) for r in rows]


def load_tokenizer(
    directory: Path, max_length: int, pad_id: int | None = None
) -> Callable[[list[str]], Any]:
    """``encode(texts) -> (ids, masks)``: SentencePiece for a Unigram tokenizer.json (XLM-R, the
    e5 rebuild), else the ``tokenizers`` library itself (tests' tiny WordPiece models).

    ``pad_id``: config.json's ``pad_token_id`` unless given."""
    if pad_id is None:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        pad_id = config["pad_token_id"]
    try:
        return SpmTokenizer(directory, max_length, pad_id).encode_batch
    except ValueError:
        from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=pad_id, pad_token=tokenizer.id_to_token(pad_id))

    def encode(texts: list[str]) -> tuple[list[list[int]], list[list[int]]]:
        batch = tokenizer.encode_batch(texts)
        return [e.ids for e in batch], [e.attention_mask for e in batch]

    return encode
