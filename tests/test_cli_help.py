"""CLI conventions: help with env fallbacks and examples, --home, the model-loading line,
confirmation on kb delete, serve --json."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from kbqa.cli.app import app
from kbqa.cli.help import EXAMPLES


def _help(*path: str) -> str:
    r = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert r.exit_code == 0, r.output
    return r.output


def test_help_keeps_env_fallbacks_and_defaults():
    text = _help("ingest")
    assert "[env: KBQA_DEFAULT_KB, default: demo]" in text
    assert "[env: KBQA_CHUNK_SIZE; 400; a KB keeps its own]" in text
    assert "[env: KBQA_TOP_K; 5]" in _help("search")
    assert "[env: KBQA_HOME; default: ./indexes]" in _help()


@pytest.mark.parametrize("path", sorted(EXAMPLES))
def test_every_command_has_an_example(path):
    text = _help(*path.split())
    assert "Examples:" in text and EXAMPLES[path][0].split("  ")[0] in text


def test_every_command_is_in_the_examples():
    import click
    import typer.main

    def walk(cmd: click.Command, prefix: str = "") -> list[str]:
        if isinstance(cmd, click.Group):
            out = [prefix.strip()] if prefix and cmd.callback else []
            for name, sub in cmd.commands.items():
                out += walk(sub, f"{prefix}{name} ")
            return out
        return [prefix.strip()]

    names = walk(typer.main.get_command(app))
    assert set(names) - {"", "kb", "feedback"} <= set(EXAMPLES), set(names) - set(EXAMPLES)


@pytest.fixture
def run(cli, tmp_path, monkeypatch):
    """conftest's `cli` without a KBQA_HOME (so --home and ./indexes are what count), in tmp."""
    # deleted after conftest set it: monkeypatch then restores whatever --home writes there
    monkeypatch.delenv("KBQA_HOME")
    monkeypatch.chdir(tmp_path)
    return cli


def test_home_option_and_the_loading_line(run, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# 年假\n\n员工每年享有5天带薪年假。\n", encoding="utf-8")
    first = run("--home", str(tmp_path / "elsewhere"), "ingest", str(docs), "--kb", "hr")
    assert "loading the embedding model" in first.stderr
    assert (tmp_path / "elsewhere" / "hr" / "manifest.json").is_file()
    assert not (tmp_path / "indexes").exists()
    # Unchanged files embed nothing: no model is loaded and no line is printed.
    again = run("--home", str(tmp_path / "elsewhere"), "ingest", str(docs), "--kb", "hr")
    assert "loading the embedding model" not in again.stderr
    # search and ask say it too (stderr), but not with --json
    asked = run("--home", str(tmp_path / "elsewhere"), "ask", "年假几天", "--kb", "hr")
    assert "loading the embedding model" in asked.stderr
    quiet = run("--home", str(tmp_path / "elsewhere"), "search", "年假", "--kb", "hr", "--json")
    assert "loading" not in quiet.stderr and json.loads(quiet.stdout)["hits"]
    listed = json.loads(run("--home", str(tmp_path / "elsewhere"), "kb", "list", "--json").stdout)
    assert [kb["name"] for kb in listed["kbs"]] == ["hr"]


def test_kb_delete_asks_in_a_terminal_only(run, tmp_path, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("员工每年享有5天带薪年假。\n", encoding="utf-8")
    run("ingest", str(docs), "--kb", "hr", "--json")
    import kbqa.cli.kbs

    real = kbqa.cli.kbs.sys

    class Terminal:  # CliRunner swaps sys.stdin for a pipe-like object; say it is a tty
        def __getattr__(self, name):
            return getattr(real, name)

        @property
        def stdin(self):
            stdin = real.stdin
            stdin.isatty = lambda: True
            return stdin

    monkeypatch.setattr(kbqa.cli.kbs, "sys", Terminal())
    no = run("kb", "delete", "hr", input="n\n", code=1)
    assert "Delete knowledge base 'hr'" in no.output
    assert (tmp_path / "indexes" / "hr").is_dir()
    run("kb", "delete", "hr", input="y\n")
    assert not (tmp_path / "indexes" / "hr" / "manifest.json").exists()


def test_kb_delete_without_a_terminal_does_not_ask(run, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("员工每年享有5天带薪年假。\n", encoding="utf-8")
    run("ingest", str(docs), "--kb", "hr", "--json")
    r = run("kb", "delete", "hr")  # CliRunner's stdin is no terminal
    assert "deleted" in r.stdout and "Delete knowledge base" not in r.output


def test_serve_json_prints_its_address(run, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: None)
    r = run("serve", "--port", "8123", "--json")
    out = json.loads(r.stdout)
    assert out["url"] == "http://127.0.0.1:8123" and out["docs"].endswith("/docs")
    assert out["host"] == "127.0.0.1" and out["port"] == 8123 and out["auth"] is False


def test_feedback_export(run, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("员工每年享有5天带薪年假。\n", encoding="utf-8")
    run("ingest", str(docs), "--kb", "hr", "--json")
    rows = [{"question": "年假几天", "answer": "5天", "vote": "up"},
            {"question": "报销", "answer": "不知道", "vote": "down", "comment": "错"}]  # fmt: skip
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    (tmp_path / "indexes" / "hr" / "feedback.jsonl").write_text(
        "\n".join([*lines, '{"torn']) + "\n", encoding="utf-8"
    )
    out = json.loads(run("feedback", "export", "--kb", "hr", "--json").stdout)
    assert (out["total"], out["up"], out["down"]) == (2, 1, 1)
    assert [r["question"] for r in out["records"]] == ["年假几天", "报销"]
    plain = run("feedback", "export", "--kb", "hr", "--vote", "down").stdout.splitlines()
    assert [json.loads(x)["comment"] for x in plain] == ["错"]
    target = tmp_path / "fb.jsonl"
    run("feedback", "export", "--kb", "hr", "--out", str(target))
    assert len(target.read_text(encoding="utf-8").splitlines()) == 2
    bad = run("feedback", "export", "--kb", "hr", "--vote", "sideways", code=2)
    assert "--vote" in bad.stderr


def test_ingest_reports_a_duplicate(run, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a.md", "copy-of-a.md"):
        (docs / name).write_text("员工每年享有5天带薪年假。\n", encoding="utf-8")
    r = run("ingest", str(docs), "--kb", "hr")
    assert (
        "duplicate" in r.stderr and "copy-of-a.md" in r.stderr and "not indexed again" in r.stderr
    )
    report = json.loads(run("ingest", str(docs), "--kb", "hr", "--json").stdout)
    assert report["files_unchanged"] == 1 and len(report["files_duplicate"]) == 1
