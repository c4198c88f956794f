"""Refusal threshold calibrated per KB and embedding model: own-chunk probes vs off-topic questions."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass

import numpy as np

from kbqa.retrieve import Retriever

log = logging.getLogger(__name__)

EXTRA_KEY = "refusal"
# v2: thresholds Retrieval.relevance, not the bare cosine; v3: negatives made from the KB itself
# (probes with their key word swapped for one the KB never mentions), relevance with unknown
# terms and answer type, fitted in the writer at checkpoint.
METHOD = "probe-vs-swapped-v3"
# Where the threshold sits between the negatives' 90th and the probes' 10th percentile: fitted on
# the fit half of benchmarks/data/devcorp (benchmarks/fit_refusal.py), never on its report half.
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
    probe_p10: float = 0.0
    offtopic_p90: float = 0.0
    swapped_refused: float = 0.0  # share of the KB-made near-domain negatives refused
    created_at: float = 0.0


def probe_text(text: str, max_chars: int = 40) -> str:
    """A question-sized piece of a chunk: its middle sentence, cut to ``max_chars``.

    >>> probe_text("甲。乙丙丁。戊。")
    '乙丙丁'
    """
    parts = [p.strip() for p in re.split(r"[。！？；!?;\n]+", text) if len(p.strip()) >= 2]
    if not parts:
        return text.strip()[:max_chars]
    return parts[len(parts) // 2][:max_chars]


def swap_probes(probes: list[str], lexical) -> list[str]:
    """Near-domain negatives: each probe with its rarest topic word swapped for an unknown one.

    They keep the KB's wording and topic, as the hardest unanswerable questions do, and ask
    about something the KB never mentions.
    """
    from kbqa.signals import topic_words

    words = [w for w in SWAP_WORDS if not lexical.known(w)]
    out = []
    for i, probe in enumerate(probes):
        topic = [w for w in topic_words(probe) if w in probe]
        if not topic or not words:
            continue
        key = max(topic, key=lexical.idf)
        out.append(probe.replace(key, words[i % len(words)], 1))
    return out


def calibrate(retriever: Retriever, probes: int = PROBES) -> Calibration | None:
    """Score probes cut from the KB's own chunks against OFF_TOPIC; None for an empty KB.

    Probes are verbatim sentence pieces, so they score higher than real questions, which are
    paraphrases; the threshold therefore sits just above the off-topic scores (their 90th
    percentile plus a quarter of the gap to the probes' 10th percentile), not mid-way.
    """
    kb = retriever.kb
    total = kb.store.counts()["chunks"]
    if total == 0:
        return None
    step = max(1, total // probes)
    texts = [h.text for i, h in enumerate(kb.iter_chunks()) if i % step == 0][:probes]
    probes_ = [probe_text(t) for t in texts if probe_text(t)]
    pos = _best(retriever, probes_)
    neg = _best(retriever, list(OFF_TOPIC))
    p10, n90 = float(np.percentile(pos, 10)), float(np.percentile(neg, 90))
    threshold = n90 + PLACEMENT * (p10 - n90) if p10 > n90 else (p10 + n90) / 2
    # Swapped probes keep a probe's verbatim wording, so they score far above real near-domain
    # questions (devcorp: median 1.02 vs 0.87): measured, reported, but not used to place the
    # threshold (it would refuse most answerable questions).
    swapped = _best(retriever, swap_probes(probes_, kb.indexes.lexical) or ["-"])
    swapped_refused = float((swapped < threshold).mean())
    return Calibration(
        threshold=round(threshold, 4),
        model_id=kb.manifest.embedding_model_id,
        chunks=total,
        probe_p10=round(p10, 4),
        offtopic_p90=round(n90, 4),
        swapped_refused=round(swapped_refused, 4),
        created_at=time.time(),
    )


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
        cached = getattr(kb, "_refusal_cache", None)
        if cached is not None and cached[0] == kb.store.generation():
            return cached[1]
        cal = calibrate(retriever)
        kb._refusal_cache = (kb.store.generation(), cal)
    return cal


def fit_at_checkpoint(kb, embedder) -> dict | None:
    """The calibration for a KB's manifest, fitted by the writer as it checkpoints."""
    cal = calibrate(Retriever(kb, embedder))
    return asdict(cal) if cal is not None else None
