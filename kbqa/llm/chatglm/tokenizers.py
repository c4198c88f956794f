"""The ChatGLM family's own tokenizers, read without remote code, special tokens at real ids.

User text is always encoded as plain text: a ``<|user|>``, ``sop`` or ``[gMASK]`` typed by a
user never becomes a control token (the reference tokenizers split those out of any text, a
prompt-injection hole). Control tokens enter only through the chat format, by id.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbqa.errors import ModelError, missing_package
from kbqa.llm.chatglm import detect

V2_SPECIALS = ("[MASK]", "[gMASK]", "[sMASK]", "sop", "eop")
ROLE_SPECIALS = ("<|system|>", "<|user|>", "<|assistant|>", "<|observation|>")
GLM4_SPECIALS = ("<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>") + ROLE_SPECIALS + (
    "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>", "<|end_of_video|>"
)  # fmt: skip
# GLM-4's pre-tokenizer regex (from its tokenizer), applied before the byte-level BPE.
GLM4_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass
class Encoded:
    """What ``tokenizer(text)`` returns: ``.input_ids`` and ``["input_ids"]`` both work."""

    input_ids: Any

    def __getitem__(self, key: str) -> Any:
        if key != "input_ids":
            raise KeyError(key)
        return self.input_ids


class ChatGLMTokenizer:
    """The small part of the transformers tokenizer API kbqa uses, over a family's own vocab."""

    family: str
    specials: dict[str, int]
    eos_token_id: int
    pad_token_id: int
    vocab_size: int
    chat_template = None  # prompts come from kbqa.llm.chatglm.chat_format, never a template

    def encode_text(self, text: str, prefix: bool = True) -> list[int]:
        """Plain-text ids; ``prefix=False`` drops SentencePiece's dummy prefix (a continuation)."""
        raise NotImplementedError

    def _decode_text(self, ids: list[int]) -> str:
        raise NotImplementedError

    # -- transformers-like surface --------------------------------------------------------------

    @property
    def all_special_ids(self) -> list[int]:
        return sorted(set(self.specials.values()) | {self.eos_token_id, self.pad_token_id})

    @property
    def eos_token(self) -> str:
        return self.id_to_special.get(self.eos_token_id, "")

    @property
    def id_to_special(self) -> dict[int, str]:
        return {v: k for k, v in self.specials.items()}

    def special_id(self, token: str) -> int:
        return self.specials[token]

    def with_specials(self, ids: list[int]) -> list[int]:
        """What the family's tokenizer adds around plain ids (``add_special_tokens=True``)."""
        if self.family == detect.CHATGLM6B:
            return ids + [self.specials["[gMASK]"], self.specials["<sop>"]]
        sop = (
            "sop"
            if self.family in (detect.CHATGLM2, detect.CHATGLM2_INT4, detect.CHATGLM3)
            else "<sop>"
        )
        return [self.specials["[gMASK]"], self.specials[sop]] + ids

    def chat_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """Prompt ids as the model's own chat() builds them (kbqa.llm.chatglm.chat_format)."""
        from kbqa.llm.chatglm.chat_format import chat_ids

        return chat_ids(self, messages)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = self.encode_text(text)
        return self.with_specials(ids) if add_special_tokens else ids

    def __call__(
        self, text: str, add_special_tokens: bool = True, return_tensors: str | None = None
    ) -> Encoded:
        ids = self.encode(text, add_special_tokens=add_special_tokens)
        if return_tensors == "pt":
            import torch

            return Encoded(torch.tensor([ids], dtype=torch.long))
        return Encoded(ids)

    def decode(self, ids: Any, skip_special_tokens: bool = False, **_: Any) -> str:
        """Text of ``ids``; control tokens are kept as their names unless skipped; ids past the
        vocabulary (the padded rows of the embedding) decode to nothing."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        names = self.id_to_special
        out, run = [], []
        for i in (int(x) for x in ids):
            if i in names or i >= self.vocab_size or i < 0:
                if run:
                    out.append(self._decode_text(run))
                    run = []
                if i in names and not skip_special_tokens:
                    out.append(names[i])
                continue
            run.append(i)
        if run:
            out.append(self._decode_text(run))
        return "".join(out)


def _sentencepiece(file: Path) -> Any:
    try:
        import sentencepiece as spm
    except ImportError:
        raise missing_package("sentencepiece") from None
    try:
        return spm.SentencePieceProcessor(model_file=str(file))
    except (OSError, RuntimeError) as e:
        raise ModelError(f"{file} is not a SentencePiece model: {e}") from None


class SentencePieceTokenizer(ChatGLMTokenizer):
    """ChatGLM2/3: ``tokenizer.model``; the control tokens get the ids right after its pieces."""

    def __init__(self, file: Path, family: str) -> None:
        self.family = family
        self.sp = _sentencepiece(file)
        n = self.sp.vocab_size()
        names = V2_SPECIALS + (ROLE_SPECIALS if family == detect.CHATGLM3 else ())
        self.specials = {name: n + i for i, name in enumerate(names)}
        self.vocab_size = n + len(names)
        self.eos_token_id = self.sp.eos_id()
        self.pad_token_id = max(self.sp.unk_id(), 0)

    def encode_text(self, text: str, prefix: bool = True) -> list[int]:
        return list(self.sp.encode(text))  # the tiny and real models hold no control pieces

    def _decode_text(self, ids: list[int]) -> str:
        return self.sp.decode(ids)


class IceTextTokenizer(ChatGLMTokenizer):
    """ChatGLM-6B v1: ``ice_text.model`` with its newline, tab and blank-run pieces."""

    family = detect.CHATGLM6B
    CONTROL = ("[MASK]", "[gMASK]", "[sMASK]", "<unused_0>", "<sop>", "<eop>", "<ENC>", "<dBLOCK>")

    def __init__(self, file: Path, num_image_tokens: int = 0, max_blank: int = 80) -> None:
        self.sp = _sentencepiece(file)
        self.offset = num_image_tokens
        self.max_blank = max_blank
        self.vocab_size = self.sp.vocab_size() + num_image_tokens
        self.specials = {t: self.sp.piece_to_id(t) + num_image_tokens for t in self.CONTROL}
        self.eos_token_id = self.specials["<eop>"]
        self.pad_token_id = self.sp.piece_to_id("<pad>") + num_image_tokens
        # Every user-defined piece the model would match literally inside text.
        literal = list(self.CONTROL) + ["<n>", "<|tab|>"]
        literal += [f"<|blank_{i}|>" for i in range(2, max_blank + 1)]
        self._literal = re.compile(
            "|".join(re.escape(t) for t in sorted(literal, key=len, reverse=True))
        )

    def _preprocess(self, text: str) -> str:
        text = text.replace("\n", "<n>").replace("\t", "<|tab|>")
        for i in range(self.max_blank, 1, -1):
            text = text.replace(" " * i, f"<|blank_{i}|>")
        return text

    def _sp_ids(self, text: str, prefix: bool) -> list[int]:
        if not text:
            return []
        if prefix:
            ids = self.sp.encode(self._preprocess(text))
        else:  # v1's own trick: "<n>" takes the dummy prefix, then both are dropped
            ids = self.sp.encode("<n>" + self._preprocess(text))[2:]
        return [i + self.offset for i in ids]

    def encode_text(self, text: str, prefix: bool = True) -> list[int]:
        # A literal "[gMASK]" in the text is cut after its first character, so SentencePiece
        # cannot match the user-defined control piece: it stays text.
        cuts = [0] + [m.start() + 1 for m in self._literal.finditer(text)] + [len(text)]
        parts = [text[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
        ids: list[int] = []
        for part in parts:
            if part:
                ids += self._sp_ids(part, prefix and not ids)
        return ids

    def _decode_text(self, ids: list[int]) -> str:
        text = self.sp.decode([i - self.offset for i in ids if i >= self.offset])
        text = text.replace("<n>", "\n").replace("<|tab|>", "\t")
        return re.sub(r"<\|blank_(\d+)\|>", lambda m: " " * int(m.group(1)), text)


class TiktokenTokenizer(ChatGLMTokenizer):
    """GLM-4-9B-chat: a tiktoken rank file (base64 token, rank) with 14 specials after it."""

    family = detect.GLM4_CHAT

    def __init__(self, file: Path, tokenizer_config: dict[str, Any]) -> None:
        try:
            import tiktoken
        except ImportError:
            raise missing_package("tiktoken") from None
        ranks: dict[bytes, int] = {}
        try:
            for line in file.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    token, rank = line.split()
                    ranks[base64.b64decode(token)] = int(rank)
        except (OSError, ValueError) as e:
            raise ModelError(
                f"{file} is not a tiktoken rank file (base64 token, space, rank per line): {e}"
            ) from None
        self.enc = tiktoken.Encoding(
            name="glm4", pat_str=GLM4_PATTERN, mergeable_ranks=ranks, special_tokens={}
        )
        self.decoder = {r: t for t, r in ranks.items()}
        added = tokenizer_config.get("added_tokens_decoder") or {}
        by_name = {v.get("content"): int(k) for k, v in added.items()}
        self.specials = {t: by_name.get(t, len(ranks) + i) for i, t in enumerate(GLM4_SPECIALS)}
        self.vocab_size = max(self.specials.values()) + 1
        self.eos_token_id = self.pad_token_id = self.specials["<|endoftext|>"]

    def encode_text(self, text: str, prefix: bool = True) -> list[int]:
        return list(self.enc.encode_ordinary(text))  # ordinary: never a special token

    def _decode_text(self, ids: list[int]) -> str:
        return b"".join(self.decoder[i] for i in ids if i in self.decoder).decode(
            "utf-8", "replace"
        )


def load_tokenizer(path: Path, family: str) -> ChatGLMTokenizer:
    """The family's tokenizer from ``path``; ModelError names the missing file."""
    path = Path(path)
    if family == detect.CHATGLM6B:
        file = path / "ice_text.model"
        if not file.is_file():
            raise ModelError(
                f"{path} has no ice_text.model: ChatGLM-6B's tokenizer file; copy it from the "
                "chatglm-6b model folder (its tokenizer.model is another model's file)"
            )
        cfg = _json(path / "tokenizer_config.json")
        return IceTextTokenizer(file, int(cfg.get("num_image_tokens", 0)))
    file = path / "tokenizer.model"
    if not file.is_file():
        raise ModelError(f"{path} has no tokenizer.model; copy the complete model folder")
    if family == detect.GLM4_CHAT:
        return TiktokenTokenizer(file, _json(path / "tokenizer_config.json"))
    return SentencePieceTokenizer(file, family)


def _json(file: Path) -> dict[str, Any]:
    try:
        return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
    except (OSError, ValueError) as e:
        raise ModelError(f"{file} is not valid JSON: {e}") from None
