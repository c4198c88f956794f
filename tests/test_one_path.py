"""One retrieval path: `kbqa search --json` equals REST search; calibration lives in the writer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from kbqa.api.app import create_app
from kbqa.cli.app import app
from kbqa.config import EmbedConfig, Settings
from kbqa.embed.factory import load_embedder
from kbqa.kb import KnowledgeBase
from kbqa.retrieval.refusal import EXTRA_KEY, METHOD, threshold_for
from kbqa.retrieval.retriever import Retriever

SAMPLE = Path(__file__).resolve().parents[1] / "ingest"


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("onepath")
    model = tiny_model
    docs = tmp / "docs"
    shutil.copytree(SAMPLE, docs)
    mp = pytest.MonkeyPatch()
    mp.setenv("KBQA_HOME", str(tmp / "home"))
    mp.setenv("KBQA_EMBEDDING_MODEL", str(model))
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(docs), "--kb", "demo", "--json"]).exit_code == 0
    yield tmp / "home", model, runner
    mp.undo()


def test_cli_search_json_equals_rest_search(built):
    home, model, runner = built
    embedder = load_embedder(str(model), EmbedConfig())
    with TestClient(create_app(Settings(home=home), embedder=embedder)) as client:
        for query in ("年假有几天", "报销需要多久到账", "VPN"):
            cli = runner.invoke(app, ["search", query, "--kb", "demo", "--top-k", "4", "--json"])
            rest = client.post("/v1/kbs/demo/search", json={"query": query, "top_k": 4})
            got, want = json.loads(cli.stdout)["hits"], rest.json()["hits"]
            assert [h["chunk_id"] for h in got] == [h["chunk_id"] for h in want]
            assert [round(h["score"], 5) for h in got] == [round(h["score"], 5) for h in want]


def test_the_writer_calibrates_at_checkpoint_and_readers_never_write(built):
    home, model, _ = built
    kb = KnowledgeBase.open(home, "demo")
    cal = kb.manifest.extra[EXTRA_KEY]
    assert cal["method"] == METHOD and 0 < cal["threshold"] < 1.2
    before = (kb.folder / "manifest.json").read_bytes()
    kb.manifest.extra.pop(EXTRA_KEY)  # as a KB from before calibration moved to the writer
    again = threshold_for(Retriever(kb, load_embedder(str(model), EmbedConfig())))
    assert again is not None and (kb.folder / "manifest.json").read_bytes() == before


def test_relevance_does_not_depend_on_top_k(built):
    home, model, _ = built
    kb = KnowledgeBase.open(home, "demo")
    r = Retriever(kb, load_embedder(str(model), EmbedConfig()))
    assert r.retrieve("年假有几天", 1).relevance == pytest.approx(
        r.retrieve("年假有几天", 8).relevance
    )
