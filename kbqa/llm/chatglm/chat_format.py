"""Chat prompts and stop ids exactly as each ChatGLM model's own ``chat()`` builds them.

Messages are ``{"role": "user"|"assistant"|"system", "content": str}`` dicts, oldest first,
ending with the user turn to answer. All text is encoded as plain text; control tokens are
added by id only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kbqa.errors import BadInput
from kbqa.llm.chatglm import detect
from kbqa.llm.chatglm.tokenizers import ChatGLMTokenizer


def _pairs(messages: Sequence[dict[str, Any]]) -> tuple[list[tuple[str, str]], str]:
    """(query, response) history pairs and the final query, for the round-based formats."""
    if not messages or messages[-1].get("role") != "user":
        raise BadInput("a chat prompt must end with a user message")
    turns = [m for m in messages[:-1] if m.get("role") in ("user", "assistant")]
    pairs: list[tuple[str, str]] = []
    for i in range(0, len(turns) - 1, 2):
        pairs.append((turns[i]["content"], turns[i + 1]["content"]))
    return pairs, messages[-1]["content"]


def v1_prompt(pairs: list[tuple[str, str]], query: str) -> str:
    """ChatGLM-6B: the bare query without history, else rounds numbered from 0."""
    if not pairs:
        return query
    text = "".join(f"[Round {i}]\n问：{q}\n答：{r}\n" for i, (q, r) in enumerate(pairs))
    return text + f"[Round {len(pairs)}]\n问：{query}\n答："


def v2_prompt(pairs: list[tuple[str, str]], query: str) -> str:
    """ChatGLM2: rounds numbered from 1, blank lines between the parts."""
    text = "".join(f"[Round {i}]\n\n问：{q}\n\n答：{r}\n\n" for i, (q, r) in enumerate(pairs, 1))
    return text + f"[Round {len(pairs) + 1}]\n\n问：{query}\n\n答："


def chat_ids(tok: ChatGLMTokenizer, messages: Sequence[dict[str, Any]]) -> list[int]:
    """The prompt ids the model's own ``chat()`` would pass to ``generate()``."""
    family = tok.family
    if family == detect.CHATGLM6B:
        return tok.with_specials(tok.encode_text(v1_prompt(*_pairs(messages))))
    if family in (detect.CHATGLM2, detect.CHATGLM2_INT4):
        return tok.with_specials(tok.encode_text(v2_prompt(*_pairs(messages))))
    if not messages or messages[-1].get("role") != "user":
        raise BadInput("a chat prompt must end with a user message")
    ids = tok.with_specials([])
    for m in messages:
        role = f"<|{m['role']}|>"
        if role not in tok.specials:
            raise BadInput(f"unknown chat role {m['role']!r}; use system, user or assistant")
        meta, content = m.get("metadata") or "", m["content"]
        if family == detect.CHATGLM3:
            # build_single_message: role token, metadata + newline, then the content apart.
            ids += [tok.special_id(role)] + tok.encode_text(f"{meta}\n") + tok.encode_text(content)
        elif content:  # GLM-4's template skips a message with empty content
            ids += [tok.special_id(role)] + tok.encode_text(f"{meta}\n{content}")
    return ids + [tok.special_id("<|assistant|>")]


def stop_ids(tok: ChatGLMTokenizer) -> list[int]:
    """Ids that end an answer: ChatGLM3 and GLM-4 also stop at the next role token."""
    if tok.family in (detect.CHATGLM3, detect.GLM4_CHAT):
        return [tok.eos_token_id, tok.special_id("<|user|>"), tok.special_id("<|observation|>")]
    return [tok.eos_token_id]


_V1_PUNCT = ((",", "，"), ("!", "！"), (":", "："), (";", "；"), ("?", "？"))
_CJK = "\u4e00-\u9fff"


def v1_response(text: str) -> str:
    """ChatGLM-6B's ``process_response``: its tokenizer normalises punctuation to ASCII, so
    chat() turns it back to full width next to Chinese characters.

    Example: ``v1_response(" 好,的 ")`` is ``"好，的"``.
    """
    import re

    text = text.strip().replace("[[训练时间]]", "2023年")
    for ascii_p, full in _V1_PUNCT:
        p = re.escape(ascii_p)
        text = re.sub(rf"([{_CJK}]){p}", rf"\g<1>{full}", text)
        text = re.sub(rf"{p}([{_CJK}])", rf"{full}\g<1>", text)
    return text


def v1_stream(pieces: Any) -> Any:
    """``v1_response`` over streamed pieces: a tail that the next piece could still change
    (whitespace, ASCII punctuation, a partial ``[[训练时间]]``) is held back until it is known."""
    raw, sent = "", ""
    marker = "[[训练时间]]"
    for piece in pieces:
        raw += piece
        safe = len(raw.rstrip())
        while safe and raw[safe - 1] in ",!:;?":
            safe -= 1
        for k in range(min(len(marker) - 1, safe), 0, -1):
            if raw[:safe].endswith(marker[:k]):
                safe -= k
                break
        done = v1_response(raw[:safe]) if raw[:safe].strip() else ""
        if done.startswith(sent) and len(done) > len(sent):
            yield done[len(sent) :]
            sent = done
    final = v1_response(raw)
    if final.startswith(sent) and len(final) > len(sent):
        yield final[len(sent) :]
