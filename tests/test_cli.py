"""The `kbqa` command line: DESIGN.md JSON shapes, exit codes and messages for bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kbqa.cli.app import app
from tests.tiny_models import build_tiny_sentence_transformer

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "ingest"
INGEST_KEYS = {
    "kb", "files_seen", "files_added", "files_updated", "files_unchanged", "files_failed",
    "files_duplicate",
    "chunks_added", "chunks_removed", "seconds",
}  # fmt: skip
HIT_KEYS = {"chunk_id", "doc_id", "source", "text", "score", "metadata"}


def as_json(result) -> dict:
    return json.loads(result.stdout)


def test_ingest_search_and_reingest_in_the_design_shapes(cli, tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE, docs)
    report = as_json(cli("ingest", str(docs), "--kb", "demo", "--json"))
    assert set(report) == INGEST_KEYS
    assert report["files_failed"] == []
    assert report["files_added"] == report["files_seen"] == len(list(docs.iterdir()))
    again = as_json(cli("ingest", str(docs), "--kb", "demo", "--json"))
    assert again["files_unchanged"] == report["files_seen"] and again["chunks_added"] == 0
    found = as_json(cli("search", "年假有几天", "--kb", "demo", "--top-k", "3", "--json"))
    assert found["query"] == "年假有几天" and len(found["hits"]) == 3
    assert all(set(h) == HIT_KEYS for h in found["hits"])
    human = cli("search", "年假有几天", "--kb", "demo")
    assert "1." in human.stdout


def test_kb_commands(cli, tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE, docs)
    cli("ingest", str(docs), "--kb", "hr", "--json")
    listed = as_json(cli("kb", "list", "--json"))
    assert [k["name"] for k in listed["kbs"]] == ["hr"]
    shown = as_json(cli("kb", "show", "hr", "--json"))
    assert shown["documents"] and {"source", "sha256", "status", "error"} <= set(
        shown["documents"][0]
    )
    name = Path(shown["documents"][0]["source"]).name
    removed = as_json(cli("kb", "remove", "hr", name, "--json"))
    assert removed["chunks_removed"] >= 1
    assert (
        len(as_json(cli("kb", "show", "hr", "--json"))["documents"]) == len(shown["documents"]) - 1
    )
    assert as_json(cli("kb", "delete", "hr", "--yes", "--json"))["deleted"] is True
    assert as_json(cli("kb", "list", "--json"))["kbs"] == []


def test_a_failing_file_is_reported_and_exits_1(cli, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ok.md").write_text("# 考勤\n\n上班时间为上午九点。\n", encoding="utf-8")
    (docs / "scan.bin").write_bytes(b"\x00\x01")
    (docs / "empty.txt").write_text("")
    result = cli("ingest", str(docs), "--kb", "demo", "--json", code=1)
    report = as_json(result)
    failed = {Path(f["path"]).name: f["error"] for f in report["files_failed"]}
    assert set(failed) == {"scan.bin", "empty.txt"}
    assert "scan.bin" in failed["scan.bin"] and "empty" in failed["empty.txt"]
    assert report["files_added"] == 1
    human = cli("ingest", str(docs), "--kb", "demo", code=1)
    assert "empty.txt" in human.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ingest", "/no/such/dir", "--kb", "demo"), "/no/such/dir"),
        (("ingest", "{docs}", "--kb", "../etc"), "not allowed"),
        (("ingest", "{docs}", "--kb", "a/b"), "not allowed"),
        (("ingest", "{docs}", "--kb", "demo", "--chunk-size", "50", "--chunk-overlap", "50"),
         "chunk_overlap"),
        (("search", "年假", "--kb", "nope"), "does not exist"),
        (("search", "   ", "--kb", "demo"), "empty"),
        (("kb", "show", "nope"), "does not exist"),
        (("kb", "remove", "demo", "nope.md"), "no document"),
    ],
)  # fmt: skip
def test_bad_usage_exits_2_with_a_message(cli, tmp_path, args, message):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("年假为五天。", encoding="utf-8")
    cli("ingest", str(docs), "--kb", "demo", "--json")
    args = tuple(a.format(docs=docs) for a in args)
    result = cli(*args, code=2)
    assert message in result.stderr
    json_result = cli(*args, "--json", code=2)
    assert message in as_json(json_result)["error"]


def test_searching_with_another_model_is_a_clear_error(cli, tmp_path, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("年假为五天。", encoding="utf-8")
    cli("ingest", str(docs), "--kb", "demo", "--json")
    other = build_tiny_sentence_transformer(tmp_path / "other-st")
    monkeypatch.setenv("KBQA_EMBEDDING_MODEL", str(other))
    result = cli("search", "年假", "--kb", "demo", code=1)
    assert "was built with embedding model" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"), [("KBQA_TOP_K", "abc"), ("KBQA_QUERY_THREADS", "-1")]
)
def test_a_bad_environment_setting_names_its_variable(cli, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    result = cli("kb", "list", code=2)
    assert variable in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_sample_corpus_answers_the_leave_question_with_the_default_model(tmp_path, monkeypatch):
    """The README's promise, with the real multilingual-e5-small."""
    monkeypatch.setenv("KBQA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KBQA_EMBEDDING_MODEL", raising=False)
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(SAMPLE), "--kb", "demo", "--json"]).exit_code == 0
    result = runner.invoke(app, ["search", "年假有几天", "--kb", "demo", "--json"])
    top = json.loads(result.stdout)["hits"][0]
    # The leave policy section or the FAQ row that restates it: both carry the answer.
    assert "年假" in top["text"] and "5天" in top["text"], top
