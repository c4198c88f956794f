"""docs/deploy.md's vLLM wiring: kbqa's OpenAI generator against kbqa's own chat endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbqa.api.app import create_app
from kbqa.api.security import KeyRing
from kbqa.config import IngestConfig, Settings, SplitConfig
from kbqa.errors import ModelError
from kbqa.kb import KnowledgeBase
from kbqa.llm import load_generator
from tests.corpus import LEAVE
from tests.fakes import HashEmbedder

ROOT = Path(__file__).resolve().parents[1]


def endpoint_exists() -> bool:
    from kbqa.api import routes_openai

    return any(
        getattr(r, "path", "") == "/v1/chat/completions" for r in routes_openai.router.routes
    )


@pytest.fixture
def server(tmp_path: Path, live_server) -> str:
    """kbqa's API on a real port (extractive answers), as vLLM would be: a base URL."""
    embedder = HashEmbedder()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text(LEAVE, encoding="utf-8")
    kb = KnowledgeBase.open_or_create(tmp_path / "home", "demo", embedder, "test", SplitConfig())
    kb.ingest([docs], embedder, IngestConfig())
    app = create_app(
        # HashEmbedder cosines are not e5's: a calibrated threshold would refuse (as in test_api_ask)
        Settings(home=tmp_path / "home", refusal_threshold=-1.0),
        embedder=embedder,
        generator=None,
        keys=KeyRing({}),
    )
    return live_server(app) + "/v1"


@pytest.mark.skipif(not endpoint_exists(), reason="the REST API has no /v1/chat/completions yet")
def test_openai_generator_talks_to_kbqas_own_chat_completions(server):
    generator = load_generator(f"openai:{server}?model=kbqa/demo&timeout=10&retries=0")
    answer = generator.generate("年假有几天？")
    assert "5天" in answer
    assert "".join(generator.stream("年假有几天？")) == answer
    missing = load_generator(f"openai:{server}?model=kbqa/nope&timeout=10&retries=0")
    with pytest.raises(ModelError, match="HTTP 404"):
        missing.generate("年假有几天？")
    generator.close()


def test_deploy_doc_names_the_spec_that_the_generator_parses():
    from kbqa.llm.spec import OpenAISpec, parse_spec

    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    spec = "openai:http://vllm:8000/v1?model=glm-4"
    assert spec in text
    assert parse_spec(spec) == OpenAISpec(base_url="http://vllm:8000/v1", model="glm-4")
    assert "--served-model-name glm-4" in text
