"""Text rules shared by every stage: sentence ends, Q/A labels, jieba tokens (one home each)."""

from __future__ import annotations

import functools
import re
import threading

from kbqa.script import to_simplified

# -- sentences -------------------------------------------------------------------------------

# Marks that end a sentence in Chinese text (full width) and the ASCII ones mixed text uses.
CJK_SENTENCE_MARKS = "。！？；"
ASCII_SENTENCE_MARKS = "!?;"
SENTENCE_MARKS = CJK_SENTENCE_MARKS + ASCII_SENTENCE_MARKS
_CLOSERS = "」』”’）)】》〉\"'"
_CJK = "\u3400-\u9fff\uf900-\ufaff"
# For chunking (kbqa.ingest.split), where a cut in the wrong place costs recall: CJK enders
# (and …) end a sentence wherever they stand; ASCII ones only before whitespace or the end (so
# 3.14, v1.0 and URLs stay whole), and ! ? ; also before a CJK character, since mixed text
# often uses half-width marks without a space. Closing quotes/brackets stay with their sentence.
SENTENCE_END = re.compile(
    rf"[{CJK_SENTENCE_MARKS}…]+[{_CLOSERS}]*"
    rf"|[.{ASCII_SENTENCE_MARKS}]+[{_CLOSERS}]*(?=\s|$)"
    rf"|[{ASCII_SENTENCE_MARKS}]+[{_CLOSERS}]*(?=[{_CJK}])"
)
# For answers and probes: a sentence is what lies between marks or line breaks, plus its mark.
_SENTENCE = re.compile(rf"[^{SENTENCE_MARKS}\n]+[{SENTENCE_MARKS}]?")


def sentences(
    text: str, *, keep_mark: bool = True, trim: str | None = None, min_chars: int = 2
) -> list[str]:
    """The sentences of a text (between marks and line breaks), ``trim`` stripped, short ones out.

    >>> sentences("年假5天。病假另计！\\n见附表")
    ['年假5天。', '病假另计！', '见附表']
    >>> sentences("甲。乙丙丁；戊", keep_mark=False, min_chars=1)
    ['甲', '乙丙丁', '戊']
    """
    out = []
    for sentence in _SENTENCE.findall(text):
        if not keep_mark:
            sentence = sentence.rstrip(SENTENCE_MARKS)
        sentence = sentence.strip(trim)
        if len(sentence) >= min_chars:
            out.append(sentence)
    return out


# -- Q/A labels ------------------------------------------------------------------------------

QUESTION_LABEL = r"(?:问|问题|Q)\s*[:：]"
ANSWER_LABEL = r"(?:答|回答|答案|A)\s*[:：]"
# 问：…答：… or Q: … A: … pairs written in running text (one pair per match).
QA_PAIR = re.compile(
    rf"(?:^|\n)\s*{QUESTION_LABEL}\s*(?P<q>.+?)\s*\n?\s*{ANSWER_LABEL}\s*"
    rf"(?P<a>.+?)(?=\n\s*{QUESTION_LABEL}|\Z)",
    re.S | re.I,
)
# A question line whole, or an answer line's label: what an answer quoting a pair leaves out.
QA_LABEL_LINE = re.compile(rf"^\s*{QUESTION_LABEL}.*$|^\s*{ANSWER_LABEL}", re.M | re.I)

# -- jieba -----------------------------------------------------------------------------------

_WORD = re.compile(r"\w", re.UNICODE)
# Particles and question words carry no topic; dropping them keeps BM25 from matching on them.
STOPWORDS = frozenset(
    "的 了 是 在 和 与 及 或 吗 呢 吧 啊 么 什么 哪 哪些 哪个 哪里 怎么 怎样 如何 为什么 多少 几 "
    "谁 有 被 把 这 那 这个 那个 一个 也 都 就 而 之 其 为 于 以 对 从 到 上 中 下 "
    "the a an of to in on and or is are was were what which who how why".split()
)
_jieba_lock = threading.Lock()
_jieba_ready = False


def load_jieba():
    """The jieba module with its dictionary loaded (once, under a lock, without its log lines)."""
    global _jieba_ready
    import jieba as module

    if not _jieba_ready:
        with _jieba_lock:  # jieba loads its dictionary on first use; once, not per thread
            module.setLogLevel(60)
            module.initialize()
            _jieba_ready = True
    return module


@functools.lru_cache(maxsize=1024)
def tagged(text: str) -> tuple[tuple[str, str], ...]:
    """jieba's part-of-speech cut of ``text``: (word, tag) pairs, as jieba.posseg gives them.

    Kept for the last questions: each retrieval tags its question twice (topic words, unknown
    kinds) and a follow-up once more (its slots), and the tagger's Viterbi (~0.2 ms a question)
    is jieba's slow part. The dictionary never changes at run time, so a kept cut stays right.

    >>> tagged("公司有健身房吗")[:2]
    (('公司', 'n'), ('有', 'v'))
    """
    import jieba.posseg

    load_jieba()  # its dictionary, loaded once under its lock
    return tuple((w.word, w.flag) for w in jieba.posseg.cut(text))


def tokenize(text: str) -> list[str]:
    """jieba search-mode tokens, lower-cased, without punctuation and stopwords (BM25's terms).

    Traditional script is folded to Simplified first: jieba's dictionary is Simplified, and a
    question in either script must find a document in the other (台北辦公室 = 台北办公室).

    >>> tokenize("年假有几天？")
    ['年', '假', '几天']
    """
    out = []
    for tok in load_jieba().cut_for_search(to_simplified(text).lower()):
        tok = tok.strip()
        if tok and tok not in STOPWORDS and _WORD.search(tok):
            out.append(tok)
    return out


@functools.lru_cache(maxsize=1024)
def query_tokens(text: str) -> tuple[str, ...]:
    """``tokenize(text)`` kept for the last questions: one retrieval needs its question's
    tokens three times (BM25, coverage, the cross-lingual check), ~0.2 ms each."""
    return tuple(tokenize(text))


def words(text: str) -> list[str]:
    """Words as jieba cuts them (accurate mode), spaces dropped: ROUGE's units, as ChatGLM's.

    >>> words("年假 十五天")
    ['年', '假', '十五天']
    """
    return [t for t in load_jieba().lcut(text) if t.strip()]
