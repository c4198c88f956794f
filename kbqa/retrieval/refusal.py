"""Refusal threshold calibrated per KB and embedding model: keyword probes vs their swapped twins."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import numpy as np

from kbqa.retrieval.retriever import Retriever
from kbqa.text import sentences

log = logging.getLogger(__name__)

EXTRA_KEY = "refusal"
# v2: thresholds Retrieval.relevance, not the bare cosine; v3: negatives made from the KB itself,
# relevance with unknown terms and answer type, fitted in the writer at checkpoint; v4: the
# threshold is placed by keyword probes and their swapped twins (below), not by generic
# off-topic questions, whose scores depend on the KB's genre (trivia on Wikipedia); v5: unknown
# terms by their telling part (股票代码), an unknown kind of a known thing (高温补贴), and the
# swapped probes' 65th percentile.
METHOD = "keyword-probes-v5"
# The threshold is this percentile of the KB-made negatives (keyword probes with their rarest
# word swapped for one the KB never mentions): fitted on the fit and report splits of
# benchmarks/data/devcorp (benchmarks/fit_refusal.py), never on report2 or report3.
SWAPPED_PERCENTILE = 65
# ... and at most this percentile of the keyword probes: the KB's own answerable questions pass.
PROBE_PERCENTILE = 5
KEYWORD_PROBES = 128
KEYWORD_WORDS = 3
# The writer refits when more than this share of the KB's chunks was added since the last fit
# (the same 20% as the size band of ``stored``).
REFIT_SHARE = 0.2
# The old placement (v3), kept for a KB too small or too plain to make swapped probes from.
PLACEMENT = 0.38
# Words a company's documents rarely hold, swapped into probes to make near-domain negatives
# ("年假有几天" -> "游泳馆有几天"); only those the KB never mentions are used.
SWAP_WORDS = (
    "游泳馆",
    "直升机",
    "高尔夫",
    "托儿所",
    "理发店",
    "潜水",
    "滑雪场",
    "钢琴课",
    "宠物医院",
    "彩票",
    "露营",
    "演唱会",
    "瑜伽课",
    "珠宝",
    "游艇",
    "马术",
    "电竞",
    "温泉",
)
PROBES = 48
# Questions no company knowledge base should answer. They are the negatives of every
# calibration, so they must stay generic (weather, food, sport, trivia) and never be used to
# score the refusal benchmark (benchmarks/ has its own, separate list).
OFF_TOPIC = (
    "今天北京的天气怎么样？",
    "明天会下雨吗",
    "红烧肉怎么做才好吃？",
    "推荐几部好看的科幻电影",
    "世界杯冠军是哪个国家？",
    "如何减肥最快？",
    "给我讲个笑话吧",
    "猫为什么喜欢睡觉？",
    "比特币现在多少钱？",
    "怎么学好英语口语",
    "你叫什么名字？",
    "李白最有名的诗是哪一首",
    "周末去哪里玩比较好",
    "怎样养好多肉植物？",
    "感冒了吃什么药好得快",
    "宇宙有多大",
    "地球到月球的距离是多少",
    "如何煮出好喝的咖啡？",
    "NBA历史得分王是谁",
    "帮我写一首关于春天的诗",
    "狗狗可以吃巧克力吗",
    "为什么天空是蓝色的",
    "怎么做蛋炒饭",
    "马拉松全程多少公里",
    "今年春节是几月几号",
    "如何提高睡眠质量",
    "What is the capital of Australia?",
    "How do I bake sourdough bread?",
    "Who won the last Formula 1 race?",
    "Tell me a fun fact about octopuses.",
    "吉他初学者应该先练什么",
    "股票怎么选才能赚钱",
)


@dataclass
class Calibration:
    """A threshold on a question's retrieval relevance (Retrieval.relevance), and its origin."""

    threshold: float
    model_id: str
    chunks: int
    method: str = METHOD
    probe_p10: float = 0.0  # verbatim probes (a piece of a chunk)
    offtopic_p90: float = 0.0
    swapped_refused: float = 0.0  # share of the KB-made near-domain negatives refused
    created_at: float = 0.0
    keyword_p05: float = 0.0  # keyword probes: what an asker keeps of a chunk's sentence
    swapped_p50: float = 0.0
    offtopic_p50: float = 0.0
    last_chunk_id: int = 0  # the newest chunk when fitted: what was added since is counted by id


def probe_text(text: str, max_chars: int = 40) -> str:
    """A question-sized piece of a chunk: its middle sentence, cut to ``max_chars``.

    >>> probe_text("甲。乙丙丁。戊。")
    '乙丙丁'
    """
    parts = sentences(text, keep_mark=False)
    if not parts:
        return text.strip()[:max_chars]
    return parts[len(parts) // 2][:max_chars]


def keyword_probe(text: str, lexical) -> tuple[str, list[str]] | None:
    """A paraphrase-like probe: the rarest topic words of a chunk's sentence, asked about.

    Real questions keep a passage's names and drop its wording (蓝线裸顶鲷以什么为食 for
    ``…属肉食性，以甲壳类…为食``), so they score well below a verbatim piece of the chunk; a
    probe of the words alone scores as they do (CMRC: 5th percentiles 0.935 vs 0.938).
    """
    from kbqa.retrieval.signals import topic_words

    words = sorted(dict.fromkeys(topic_words(probe_text(text))), key=lexical.idf, reverse=True)
    words = words[:KEYWORD_WORDS]
    return ("".join(words) + "是什么？", words) if words else None


def swap_keyword(words: list[str], swap: str) -> str:
    """The keyword probe with its rarest word replaced: about something the KB never mentions.

    >>> swap_keyword(["调休", "加班"], "游泳馆")
    '游泳馆加班是什么？'
    """
    return "".join([swap, *words[1:]]) + "是什么？"


def calibrate(retriever: Retriever, probes: int = PROBES) -> Calibration | None:
    """Fit the threshold from the KB alone; None for an empty KB.

    Positives are keyword probes (the rarest words of a chunk's sentence), negatives the same
    probes with their rarest word swapped for one the KB never mentions: the same form, so
    the gap between them is the one between an answerable and a near-domain unanswerable
    question. The threshold is the negatives' median, at most the positives' 5th percentile
    (the KB's own questions pass) and at least the generic off-topic questions' median. A KB
    too small for 8 swapped probes keeps the v3 placement between verbatim probes and
    off-topic questions.
    """
    kb = retriever.kb
    lexical = kb.indexes.lexical
    total = kb.store.counts()["chunks"]
    if total == 0:
        return None
    chunks = [h.text for h in kb.iter_chunks()]
    step = max(1, total // probes)
    probes_ = [p for p in (probe_text(t) for t in chunks[::step][:probes]) if p]
    keyword = [k for k in (keyword_probe(t, lexical) for t in _spread(chunks)) if k]
    unknown = [w for w in SWAP_WORDS if not lexical.known(w)]
    swapped_q = [swap_keyword(w, unknown[i % len(unknown)]) for i, (_, w) in enumerate(keyword)]
    if not unknown:
        swapped_q = []
    pos = _best(retriever, probes_)
    neg = _best(retriever, list(OFF_TOPIC))
    p10, n90, n50 = (float(np.percentile(a, q)) for a, q in ((pos, 10), (neg, 90), (neg, 50)))
    threshold = n90 + PLACEMENT * (p10 - n90) if p10 > n90 else (p10 + n90) / 2
    k05 = s50 = 0.0
    swapped = np.array([threshold])
    if len(swapped_q) >= 8:
        kw = _best(retriever, [q for q, _ in keyword])
        swapped = _best(retriever, swapped_q)
        k05 = float(np.percentile(kw, PROBE_PERCENTILE))
        s50 = float(np.percentile(swapped, SWAPPED_PERCENTILE))
        threshold = max(min(s50, k05), n50)
    return Calibration(
        threshold=round(threshold, 4),
        model_id=kb.manifest.embedding_model_id,
        chunks=total,
        probe_p10=round(p10, 4),
        offtopic_p90=round(n90, 4),
        swapped_refused=round(float((swapped < threshold).mean()), 4),
        created_at=time.time(),
        keyword_p05=round(k05, 4),
        swapped_p50=round(s50, 4),
        offtopic_p50=round(n50, 4),
        last_chunk_id=kb.store.last_chunk_id(),
    )


def _spread(chunks: list[str], n: int = KEYWORD_PROBES) -> list[str]:
    """At most ``n`` chunks spread evenly over the KB."""
    step = max(1, len(chunks) // n)
    return chunks[::step][:n]


def _best(retriever: Retriever, queries: list[str]) -> np.ndarray:
    """Relevance of each query's hits; queries are embedded in one batch (the slow part)."""
    vectors = retriever.embedder.embed_queries(queries)
    return np.array(
        [retriever.retrieve(q, 5, v).relevance for q, v in zip(queries, vectors, strict=True)]
    )


def stored(kb) -> Calibration | None:
    """The KB's saved calibration if it is for its model and its size has not moved much."""
    data = kb.manifest.extra.get(EXTRA_KEY)
    if not isinstance(data, dict):
        return None
    try:
        cal = Calibration(**data)
    except TypeError:
        return None
    chunks = kb.store.counts()["chunks"]
    fresh = cal.method == METHOD and cal.model_id == kb.manifest.embedding_model_id
    return cal if fresh and 0.8 * cal.chunks <= chunks <= 1.25 * cal.chunks else None


def threshold_for(retriever: Retriever) -> Calibration | None:
    """The stored calibration (the writer fits it at checkpoint), else one kept in memory.

    A reader never writes the manifest: a KB written before calibration moved to the writer
    (or by a writer without an embedder, ``kb remove``) is calibrated here, for this process.
    """
    kb = retriever.kb
    cal = stored(kb)
    if cal is None:
        generation = kb.store.pinned_generation()  # read before calibrating: data this new
        cached = getattr(kb, "_refusal_cache", None)
        if cached is not None and cached[0] == generation:
            return cached[1]
        cal = calibrate(retriever)
        kb._refusal_cache = (generation, cal)
    return cal


def fit_at_checkpoint(kb, embedder) -> dict | None:
    """The calibration for a KB's manifest, fitted by the writer as it checkpoints.

    The stored one is kept while the KB has not moved much: at most REFIT_SHARE of its chunks
    added since the fit (chunk ids only grow, so replaced files count as added) and its size
    within the band ``stored`` accepts. A fit is a few hundred searches (about a second on a
    2,000-chunk KB), which one uploaded file must not pay; the threshold is a property of the
    whole KB, which one file barely shifts.
    """
    cal = stored(kb)
    if cal is not None and kb.store.chunks_after(cal.last_chunk_id) <= REFIT_SHARE * cal.chunks:
        return asdict(cal)
    cal = calibrate(Retriever(kb, embedder))
    return asdict(cal) if cal is not None else None
