"""Answer generators: extractive (default), transformers (GLM family), openai-compatible."""

from __future__ import annotations

from kbqa.llm.base import GenerationConfig, Generator, History
from kbqa.llm.spec import LLMSpec, OpenAISpec, TransformersSpec, parse_spec


def load_generator(
    spec: str | LLMSpec | None, *, api_key: str | None = None, load: bool = False
) -> Generator | None:
    """The generator for an LLM spec; None means no LLM (extractive answers).

    Paths are checked now; weights load on ``load=True``, ``.load()`` or first use.
    Example: ``load_generator("openai:http://127.0.0.1:8000/v1?model=glm-4")``.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    if isinstance(parsed, OpenAISpec):
        from kbqa.llm.openai_gen import OpenAIGenerator

        return OpenAIGenerator(parsed, api_key=api_key)
    from kbqa.llm.transformers_gen import TransformersGenerator

    gen = TransformersGenerator(parsed)
    return gen.load() if load else gen


__all__ = [
    "GenerationConfig",
    "Generator",
    "History",
    "LLMSpec",
    "OpenAISpec",
    "TransformersSpec",
    "load_generator",
    "parse_spec",
]
