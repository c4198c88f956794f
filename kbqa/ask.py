"""Ask: retrieve, then a stored FAQ answer, a refusal, an extractive or a generated answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

from kbqa.config import AskConfig
from kbqa.errors import BadInput
from kbqa.prompt import Prompts, pack_prompt
from kbqa.retrieval.condense import (
    clean_history,
    condense,
    focus_of,
    names_its_words,
    with_earlier_question,
)
from kbqa.retrieval.retriever import Retriever
from kbqa.types import Answer, History, Hit

if TYPE_CHECKING:
    from kbqa.embed.base import Embedder
    from kbqa.kb import KnowledgeBase
    from kbqa.llm.base import Generator

log = logging.getLogger(__name__)
FAQ_POOL = 8  # hits searched for a stored Q/A pair, even when fewer sources are shown

# What Asker.stream yields: ("sources", list[Hit]), ("token", str) pieces, ("done", Answer).
Event = tuple[Literal["sources", "token", "done"], Any]


class Route(Enum):
    """How a question is answered, decided once retrieval is done."""

    FAQ = "faq"  # a stored Q/A pair matched: its answer as stored
    REFUSE = "refuse"  # nothing relevant enough: the refusal text, no generation
    EXTRACT = "extract"  # sentences of the hits (no LLM configured)
    GENERATE = "generate"  # the LLM, prompted with the hits


@dataclass(frozen=True)
class Plan:
    route: Route
    sources: list[Hit] = field(default_factory=list)
    stored_answer: str = ""  # Route.FAQ only


class Asker:
    """Answers questions from one KB; ``generator=None`` gives extractive answers (no LLM)."""

    def __init__(
        self,
        kb: KnowledgeBase,
        embedder: Embedder,
        generator: Generator | None,
        prompts: Prompts,
        config: AskConfig | None = None,
        *,
        generation: Any = None,
        system: str | None = None,
    ) -> None:
        """``generation`` (a GenerationConfig) and ``system`` (an instruction put before the
        prompt) shape generative answers only: client sampling fields (OpenAI, ChatGLM)."""
        self.config = config or AskConfig()
        self.generation = generation
        self.system = system
        self.retriever = Retriever(kb, embedder, self.config.retrieve)
        self.kb = kb
        self.embedder = embedder
        self.generator = generator
        self.prompts = prompts

    def threshold(self) -> tuple[float, str]:
        """(relevance threshold, where it came from): the user's override, else the calibration."""
        if self.config.refusal_threshold is not None:
            return self.config.refusal_threshold, "override"
        from kbqa.retrieval.refusal import threshold_for

        cal = threshold_for(self.retriever)
        return (cal.threshold, "calibrated") if cal else (1.0, "empty")

    def ask(
        self, question: str, top_k: int | None = None, history: History = (), debug: bool = False
    ) -> Answer:
        answer = None
        with self.kb.store.pinned():  # one generation read (see ChunkStore.pinned)
            for kind, value in self.stream(question, top_k, history, debug, incremental=False):
                if kind == "done":
                    answer = value
        assert answer is not None
        return answer

    def stream(
        self,
        question: str,
        top_k: int | None = None,
        history: History = (),
        debug: bool = False,
        *,
        incremental: bool = True,
    ) -> Iterator[Event]:
        """Yields ("sources", hits), then ("token", text) pieces, then ("done", Answer).

        ``incremental=False`` (``ask``) has the LLM answer in one piece: no streaming thread and
        no per-token hand-off, which measurably cost a small model a few percent.
        """
        started = time.perf_counter()
        question, notices = self._clean(question)
        k = top_k if top_k is not None else self.config.retrieve.top_k
        if k < 1:
            raise BadInput(f"top_k must be at least 1, got {k}")
        history, trimmed = clean_history(history)
        notices += trimmed
        # What is searched: a follow-up (那经理呢？) made standalone with the earlier turns.
        standalone = condense(question, history, self.generator, self.prompts.condense)
        found = self.retriever.retrieve(standalone, max(k, FAQ_POOL))
        threshold, origin = self.threshold()
        info: dict[str, Any] = {}
        plan = self._plan(standalone, found, k, threshold, info)
        if plan.route is Route.REFUSE:
            retried = self._with_earlier_question(question, standalone, history, k, threshold)
            if retried is not None:
                standalone, found, info, plan = retried
        timings = dict(found.timings)
        timings["retrieve_ms"] = _ms(time.perf_counter() - started)
        info.update(
            standalone_question=standalone,
            **found.signals(),
            threshold=threshold,
            threshold_from=origin,
        )
        t_gen = time.perf_counter()
        yield "sources", plan.sources
        if plan.route is Route.REFUSE:
            text = self.prompts.refusal
            yield "token", text
        elif plan.route is Route.EXTRACT:
            focus = focus_of(question) if standalone != question else ""
            text = self._extract(standalone, plan.sources, found, focus=focus)
            yield "token", text
        elif plan.route is Route.GENERATE:
            pieces = []
            for piece in self._generate(question, plan.sources, history, info, debug, incremental):
                pieces.append(piece)
                yield "token", piece
            text = "".join(pieces).strip()
        else:
            text = plan.stored_answer
            yield "token", text
        timings["generate_ms"] = _ms(time.perf_counter() - t_gen)
        timings["total_ms"] = _ms(time.perf_counter() - started)
        # Answer.debug carries notices (a truncated question) even without debug, so every edge
        # shows them; with debug it also has the scores, threshold and prompt.
        extra = {**info} if debug else None
        if notices:
            extra = {**(extra or {}), "notices": notices}
        refused = plan.route is Route.REFUSE
        mode = "faq" if plan.route is Route.FAQ else self._answer_mode()
        yield "done", Answer(question, text, refused, mode, plan.sources, timings, extra)

    def _with_earlier_question(
        self, question: str, standalone: str, history: History, k: int, threshold: float
    ) -> tuple[str, Any, dict[str, Any], Plan] | None:
        """Nothing found for the question alone: a follow-up asked in a way the rules do not
        know, searched with the earlier question (kbqa.retrieval.condense.with_earlier_question).
        (searched, found, info, plan), or None when that is refused too or lacks the question's
        own topic words."""
        again = with_earlier_question(question, history)
        if again is None or again == standalone:
            return None
        found = self.retriever.retrieve(again, max(k, FAQ_POOL))
        info: dict[str, Any] = {}
        plan = self._plan(again, found, k, threshold, info)
        if plan.route is Route.REFUSE:
            return None
        if not names_its_words(question, [h.text for h in plan.sources]):
            return None
        return again, found, info, plan

    def _answer_mode(self) -> str:
        return "generative" if self.generator else "extractive"

    def _plan(self, question: str, found, k: int, threshold: float, info: dict) -> Plan:
        """FAQ first; then refusal below the threshold; else an extracted or generated answer."""
        faq = self._faq(question, found)
        if faq is not None:
            info["faq_similarity"] = faq.similarity
            return Plan(Route.FAQ, [faq.hit], faq.answer)
        hits = found.hits[:k]
        if not hits or found.relevance < threshold:
            # Refusal comes before any generation: nothing relevant means nothing to invent from.
            return Plan(Route.REFUSE)
        return Plan(Route.GENERATE if self.generator else Route.EXTRACT, hits)

    def _clean(self, question: str) -> tuple[str, list[str]]:
        if not isinstance(question, str) or not question.strip():
            raise BadInput("the question is empty: write a question")
        question = question.strip()
        limit = self.config.max_question_chars
        if len(question) <= limit:
            return question, []
        notice = f"the question had {len(question)} characters; only the first {limit} were used"
        log.warning(notice)
        return question[:limit], [notice]

    def _faq(self, question: str, found) -> Any:
        if not self.config.faq or not found.hits:
            return None
        from kbqa.retrieval.faq import best_match

        idf = self.kb.indexes.lexical.idf
        match = best_match(question, found.query_vector, found.hits, self.embedder, idf)
        return match if match and match.similarity >= self.config.faq_min_similarity else None

    def _extract(self, question: str, hits: list[Hit], found, focus: str = "") -> str:
        from kbqa.extractive import extract, extract_dense

        if found.foreign:
            text = extract_dense(
                found.query_vector, hits, self.embedder.embed_passages, found.bridged,
                self.kb.indexes.lexical.idf,
            )  # fmt: skip
            return text or self.prompts.refusal
        from kbqa.text import tokenize

        lexical = self.kb.indexes.lexical
        return extract(
            question, hits, idf=lexical.idf, max_sentences=self.config.answer_sentences,
            max_chars=self.config.max_answer_chars, focus=focus,
            extra_tokens=lexical.recovered(question, tokenize(question)),
        ) or self.prompts.refusal  # fmt: skip

    def _generate(self, question, hits, history, info, debug, incremental) -> Iterator[str]:
        from kbqa.llm.base import GenerationConfig, cut_at_stop

        gen = self.generator
        config = self.generation or GenerationConfig(max_new_tokens=self.config.max_new_tokens)
        system = f"{self.system.strip()}\n\n" if self.system and self.system.strip() else ""
        budget = gen.context_window - config.max_new_tokens - gen.count_tokens(system)
        packed = pack_prompt(self.prompts.qa, question, hits, history, budget, gen.count_tokens)
        prompt = system + packed.prompt
        if debug:
            info["prompt"] = prompt
        if incremental:
            yield from cut_at_stop(gen.stream(prompt, packed.history_used, config), config.stop)
        else:
            text = gen.generate(prompt, packed.history_used, config)
            yield "".join(cut_at_stop([text], config.stop))


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
