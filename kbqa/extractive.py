"""Extractive answers (no LLM): the sentences of the top hits that best answer the question."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from kbqa.script import to_simplified
from kbqa.text import QA_LABEL_LINE, sentences, tokenize
from kbqa.tiers import tier_fit
from kbqa.types import Hit

# Two sentences fit in SHORT_CHARS; the second must score SECOND of the best. Fitted on the fit
# half of CMRC (even paragraphs): 80/0.9 lost the gold of the second sentence (EM 0.718 vs 0.759).
SHORT_CHARS = 120
SECOND = 0.8
_TRIM = "，,、：: \t*#"
WORDS_WEIGHT = 0.05  # extract_dense: a full match of the dictionary words, in cosine units


_TABLE_SEP = re.compile(r"^\|?\s*:?-{3,}")
_LIST_MARK = re.compile(r"^\s*(?:\d{1,2}[.、)）]|[（(]\d{1,2}[)）]|[-*•·])\s*")
_MARKUP = re.compile(r"\*\*|__|`|^#+\s*")
_HEADING = re.compile(
    r"^\s*(?:#{1,6}\s|第[一二三四五六七八九十百\d]+[条章节部分]|[一二三四五六七八九十]+[、.]|\d+(?:\.\d+)*\s)"
)
_CELL_PAIR = re.compile(r"^[^:：;；]{1,20}[:：]\s*[^;；]*$")


def units(text: str) -> list[str]:
    """Answer candidates of a passage: sentences and clauses, table rows whole, no headings.

    A table row becomes ``列名：值`` pairs under its header; list markers and markdown go;
    a heading (第二条 工作时间, ## 二、住宿标准) is context, never an answer.

    >>> units("## 住宿\\n| 级别 | 标准 |\\n| --- | --- |\\n| 经理 | 650 |\\n- 餐补每天100元。")
    ['级别：经理；标准：650', '餐补每天100元。']
    """
    out: list[str] = []
    header: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or _TABLE_SEP.match(line):
            continue
        if "|" in line:
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None or len(cells) != len(header):
                header = cells  # the first row of a table names its columns
                continue
            out.append("；".join(f"{h}：{c}" for h, c in zip(header, cells, strict=True) if c))
            continue
        header = None
        parts = [p.strip() for p in re.split(r"[;；]\s*", line) if p.strip()]
        # (not prose that happens to hold colons and semicolons: it has sentence ends)
        if len(parts) > 1 and all(_CELL_PAIR.match(p) for p in parts) and "。" not in line:
            # A spreadsheet row (列名: 值; 列名: 值): one answer, with every column
            out.append("；".join(re.sub(r"\s*[:：]\s*", "：", p, count=1) for p in parts))
            continue
        is_heading = _HEADING.match(line) and not re.search(r"[。！？；，,]", line)
        if is_heading or (len(line) <= 12 and not re.search(r"[。！？；，,\d]", line)):
            continue
        line = _MARKUP.sub("", _LIST_MARK.sub("", line))
        out += sentences(line, trim=_TRIM)
    return out


def answer_text(hit: Hit) -> str:
    """What a hit says: a Q/A row's answer (its question would only echo the user's)."""
    answer = hit.metadata.get("answer")
    if isinstance(answer, str) and answer.strip():
        return answer
    return QA_LABEL_LINE.sub("", hit.text)


def extract(
    question: str,
    hits: Sequence[Hit],
    idf: Callable[[str], float] | None = None,
    max_sentences: int = 3,
    max_chars: int = 200,
    focus: str = "",
    extra_tokens: Sequence[str] = (),
) -> str:
    """A short answer built from the best sentences, each followed by its source marker [n].

    A sentence scores the idf mass of the question's tokens it contains (plus character
    overlap, which catches what jieba splits differently), with a small bonus for higher-ranked
    hits. The words a passage is about (its subject, see ``_subject``) count for all of its
    sentences alike, so the rest of the question picks the sentence. The best sentence comes
    first; a second follows when it scores SECOND of the best and both fit in SHORT_CHARS.
    ``extra_tokens`` are the question's words jieba cut apart (LexicalIndex.recovered).
    """
    from kbqa.retrieval.signals import answer_type, has_clock, has_type, wants_clock

    kind, clock = answer_type(question), wants_clock(question)
    q_tokens = set(tokenize(question)) | set(extra_tokens)
    weight = {t: (idf(t) if idf else 1.0) for t in q_tokens}
    total = sum(weight.values()) or 1.0
    # A condensed follow-up (经理，普通员工…住宿标准是多少): its own words pick the row.
    f_tokens = set(tokenize(focus))
    scored: list[tuple[float, int, int, str]] = []
    plain_q = _plain(question)
    grades = _grades(question)
    cands = [[(sent, set(tokenize(sent))) for sent in units(answer_text(hit))] for hit in hits]
    for n, hit_units in enumerate(cands, start=1):
        before: set[str] = set()
        subject = _subject(q_tokens, hit_units, hits[n - 1])
        # The passage's subject (蓝线裸顶鲷, named first, then 本鱼) picked the passage: it counts
        # for every sentence of it, and the question's other words pick the sentence.
        given = sum(weight[t] for t in subject) / total
        rest_q = _plain(_strip(question, subject))
        rest_chars = set(rest_q) or set(plain_q)
        for pos, (sent, s_tokens) in enumerate(hit_units):
            lexical = given + sum(weight[t] for t in (q_tokens - subject) & s_tokens) / total
            # A clause leans on the one before it (迟到…不做处理。超过3次的，扣…): the words it
            # leaves out count at half weight from there.
            context = 0.5 * sum(weight[t] for t in (q_tokens & before) - s_tokens - subject) / total
            chars = len(rest_chars & set(_plain(sent))) / (len(rest_chars) or 1)
            # The sentence that holds what was asked for (a number for 几天) beats one that
            # only repeats the question's words; so does one quoting a phrase of it (超过3次).
            fits = 0.25 if kind and has_type(kind, sent) else 0.0
            if clock and has_clock(sent):
                fits += 0.25  # 几点 wants 9:00, not the 入职当天 that 什么时候 might want
            phrase = _common_run(rest_q or plain_q, _plain(sent))
            score = lexical + context + 0.3 * chars + fits + 0.1 / n
            score += min(0.4, 0.1 * max(0, phrase - 2)) - 0.3 * _opposite(question, sent)
            # 干满十年 against 5年以上不满10年: the rule of another tier; 工作两年 in 1年以上不满
            # 5年: the rule of its own
            score += 0.3 * tier_fit(question, sent)
            score += 0.3 * _grade_share(grades, sent)
            if f_tokens & s_tokens:
                score += 0.5
            scored.append((score, n, pos, sent))
            before = s_tokens
    if not scored:
        return ""
    scored.sort(key=lambda s: -s[0])
    best = scored[0][0]
    picked, used = [], 0
    for score, n, _, sent in scored:
        # A short answer: the best sentence, and a second only when it is nearly as good and
        # both fit in a glance (SHORT_CHARS).
        if len(picked) >= max_sentences or score < SECOND * best:
            break
        if picked and used + len(sent) > SHORT_CHARS:
            break
        room = max_chars - used
        if room < 8:
            break
        text = sent if len(sent) <= room else sent[: room - 1] + "…"
        if any(text in p or p in text for p, _ in picked):
            continue  # the same sentence from an overlapping chunk
        picked.append((text, n))
        used += len(text)
    return "".join(f"{text}[{n}]" for text, n in picked)


def _subject(q_tokens: set[str], hit_units: list[tuple[str, set[str]]], hit: Hit) -> set[str]:
    """The question's words a passage is about: in its first unit or in half of its units.

    A Q/A row's answer is about its stored question (忘记打卡怎么办？ for 每月可提交3次补卡申请):
    the words the asker shares with that question count for the answer's sentences.
    """
    stored = hit.metadata.get("question")
    if isinstance(stored, str) and stored.strip() and isinstance(hit.metadata.get("answer"), str):
        return q_tokens & set(tokenize(stored))
    if len(hit_units) < 2:
        return set()
    # In a passage of two units neither names the subject alone: only a word of both does
    # (住宿标准 of the first against 出差补贴 of the second; 去世 against 外地丧事).
    first = hit_units[0][1] if len(hit_units) > 2 else set()
    half = max(2, len(hit_units) / 2)
    return {t for t in q_tokens if t in first or sum(t in toks for _, toks in hit_units) >= half}


_GRADE = re.compile(r"(?<![A-Za-z])[A-Z](?![A-Za-z])")


def _grades(text: str) -> set[str]:
    """Levels named by one capital letter (考核得C, S级)."""
    return set(_GRADE.findall(text))


def _grade_share(asked: set[str], sentence: str) -> float:
    """How much ``sentence`` is about the asked grade: 1 for its row (等级：C；…), a fifth for
    the list of all five (分为S、A、B、C、D五个等级), 0 for another grade's rule.

    >>> _grade_share({"C"}, "等级：C；年终奖系数：0.5个月"), _grade_share({"C"}, "分为S、A、B、C、D")
    (1.0, 0.2)
    """
    named = _grades(sentence)
    return len(asked & named) / len(named) if asked and named else 0.0


def _strip(text: str, words: set[str]) -> str:
    for w in sorted(words, key=len, reverse=True):
        text = text.replace(w, "")
    return text


_OVER = re.compile(r"(?<!不)超过|以上|多于|大于|满")
_UNDER = re.compile(r"以内|以下|不超过|不满|少于|未满|不到")


def _opposite(question: str, sentence: str) -> bool:
    """The sentence rules on the other side of the question's limit (超过3次 vs 3次以内).

    >>> _opposite("迟到超过3次怎么处理", "累计3次以内的，不做处理。")
    True
    """
    q_over, q_under = bool(_OVER.search(question)), bool(_UNDER.search(question))
    s_over, s_under = bool(_OVER.search(sentence)), bool(_UNDER.search(sentence))
    return (q_over and not q_under and s_under and not s_over) or (
        q_under and not q_over and s_over and not s_under
    )


def _plain(text: str) -> str:
    return "".join(c for c in to_simplified(text).lower() if c.isalnum())


def _common_run(a: str, b: str) -> int:
    """Length of the longest run of characters ``a`` and ``b`` share.

    >>> _common_run("迟到超过3次怎么处理", "超过3次的每次扣1分")
    4
    """
    from difflib import SequenceMatcher

    if not a or not b:
        return 0
    return SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b)).size


def extract_dense(
    question_vector,
    hits: Sequence[Hit],
    embed: Callable,
    words: str = "",
    idf: Callable[[str], float] | None = None,
    pool: int = 3,
) -> str:
    """The unit of the first hits closest to the question in embedding space, with its [n].

    For a question in another language than the KB (English on Chinese): no word is shared, so
    the multilingual embedding tells which sentence answers it; the question's dictionary
    words in the KB's language (``words``, kbqa.retrieval.bridge) add a little for the share of
    their IDF weight a unit holds.
    """
    cands = [(n, u) for n, h in enumerate(hits[:pool], start=1) for u in units(answer_text(h))]
    if not cands:
        return ""
    vectors = embed([u for _, u in cands])
    scores = vectors @ question_vector
    weight = {t: (idf(t) if idf else 1.0) for t in set(tokenize(words))}
    total = sum(weight.values())
    if total > 0:
        for i, (_, unit) in enumerate(cands):
            held = set(tokenize(unit))
            scores[i] += WORDS_WEIGHT * sum(w for t, w in weight.items() if t in held) / total
    best = int(scores.argmax())
    n, unit = cands[best]
    return f"{unit}[{n}]"
