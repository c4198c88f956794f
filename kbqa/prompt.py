"""Prompt templates from prompts/ and packing retrieved chunks under a model's token budget."""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kbqa.errors import BadInput
from kbqa.types import History, Hit

QA_FILE = "knowledge_qa.txt"
REFUSAL_FILE = "refusal.txt"
CONDENSE_FILE = "condense.txt"
QA_PLACEHOLDERS = ("context", "question")

# Used when the package is installed without the repository's prompts/ folder beside it;
# tests check that these equal the shipped files.
DEFAULT_QA_TEMPLATE = "已知信息:\n{context}\n根据已知信息回答问题:\n{question}"
DEFAULT_REFUSAL = "根据已知信息无法回答该问题。"

_REPO_PROMPTS = Path(__file__).resolve().parent.parent / "prompts"


@dataclass(frozen=True)
class Prompts:
    qa: str
    refusal: str
    condense: str = ""  # follow-up rewrite for an LLM ({history}, {question}); "" : rules only


@dataclass(frozen=True)
class PackedPrompt:
    """A rendered prompt and what went into it; ``tokens`` counts prompt plus history."""

    prompt: str
    hits_used: list[Hit]
    history_used: list[tuple[str, str]]
    tokens: int


def _placeholders(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as e:  # an unmatched brace
        raise BadInput(
            f"bad placeholder syntax ({e}); write a literal brace as {{{{ or }}}}"
        ) from e


def check_template(template: str, required: tuple[str, ...], where: str = "template") -> str:
    """Return ``template`` if it holds exactly the ``required`` placeholders, else BadInput."""
    try:
        found = _placeholders(template)
    except BadInput as e:
        raise BadInput(f"{where}: {e}") from None
    missing = [p for p in required if p not in found]
    extra = sorted(found - set(required))
    if missing:
        need = ", ".join("{" + p + "}" for p in missing)
        raise BadInput(f"{where} lacks the placeholder(s) {need}; it must contain each of them")
    if extra:
        raise BadInput(
            f"{where} has unknown placeholder(s) {extra}; only {list(required)} are filled in"
            " (write a literal brace as {{ or }})"
        )
    return template


def load_template(path: Path, required: tuple[str, ...]) -> str:
    """Read a template file (UTF-8) and check its placeholders; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"prompt template {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"prompt template {path} cannot be read as UTF-8 text: {e}") from None
    # Editors add a final newline; it is not part of the prompt.
    return check_template(text.rstrip("\n"), required, where=f"prompt template {path}")


def default_prompts_dir() -> Path | None:
    """The repository's prompts/ folder, if this package runs from a checkout."""
    return _REPO_PROMPTS if (_REPO_PROMPTS / QA_FILE).is_file() else None


def load_prompts(folder: Path | None = None) -> Prompts:
    """Templates from ``folder`` (default: the repo's prompts/, else the built-in copies)."""
    if folder is None:
        folder = default_prompts_dir()
        if folder is None:
            return Prompts(qa=DEFAULT_QA_TEMPLATE, refusal=DEFAULT_REFUSAL)
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInput(f"prompts folder {folder} does not exist")
    qa = load_template(folder / QA_FILE, QA_PLACEHOLDERS)
    refusal = load_template(folder / REFUSAL_FILE, ()).strip()
    if not refusal:
        raise BadInput(f"prompt file {folder / REFUSAL_FILE} is empty; write the refusal text")
    condense_file = folder / CONDENSE_FILE
    condense = (
        load_template(condense_file, ("history", "question")) if condense_file.is_file() else ""
    )
    return Prompts(qa=qa, refusal=refusal, condense=condense)


def format_context(hits: Sequence[Hit]) -> str:
    """Number chunks so an answer's [n] maps to ``sources[n-1]``.

    Example: ``format_context([hit_a, hit_b]) == "[1] text a\\n[2] text b"``.
    """
    return "\n".join(f"[{i}] {h.text.strip()}" for i, h in enumerate(hits, start=1))


def render(template: str, question: str, hits: Sequence[Hit]) -> str:
    # format() reads braces only in the template, never in the chunk text it inserts.
    return template.format(context=format_context(hits), question=question)


def pack_prompt(
    template: str,
    question: str,
    hits: Sequence[Hit],
    history: History,
    budget_tokens: int,
    count_tokens: Callable[[str], int],
) -> PackedPrompt:
    """Fit prompt + history into ``budget_tokens``: drop oldest turns, then lowest-ranked hits.

    ``hits`` are best first. Nothing is truncated mid-text; if even the best chunk alone
    cannot fit, BadInput says by how much.
    """
    if budget_tokens <= 0:
        raise BadInput(
            f"the prompt budget is {budget_tokens} tokens: max_new_tokens leaves no room for a "
            "prompt in the model's context window; lower max_new_tokens"
        )
    turns = [(u, a) for u, a in history]
    turn_cost = [count_tokens(u) + count_tokens(a) for u, a in turns]
    kept = list(hits)

    def total() -> tuple[str, int]:
        prompt = render(template, question, kept)
        return prompt, count_tokens(prompt) + sum(turn_cost)

    prompt, tokens = total()
    while tokens > budget_tokens and turns:
        turns.pop(0)
        turn_cost.pop(0)
        prompt, tokens = total()
    while tokens > budget_tokens and len(kept) > 1:
        kept.pop()
        prompt, tokens = total()
    if tokens > budget_tokens:
        if not kept:
            raise BadInput(
                f"the question and template alone take {tokens} tokens, over the prompt budget of "
                f"{budget_tokens}; shorten the question or use a model with a larger context"
            )
        bare = count_tokens(render(template, question, []))
        chunk = tokens - bare
        raise BadInput(
            f"not even one retrieved chunk fits: the prompt budget is {budget_tokens} tokens, the "
            f"template and question take {bare} and the best chunk {chunk}; ingest with smaller "
            "chunks (--chunk-size), lower max_new_tokens, or use a model with a larger context"
        )
    return PackedPrompt(prompt=prompt, hits_used=kept, history_used=turns, tokens=tokens)
