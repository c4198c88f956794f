"""KnowledgeBase reliability (issue 16): odd names, broken links, damaged or stray index files."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from kbqa.config import IngestConfig
from kbqa.kb import KnowledgeBase
from tests.corpus import LEAVE, TRAVEL, VPN, write
from tests.test_kb import assert_consistent, make_kb

INDEX_FILES = ("dense.faiss", "lexical.npz", "manifest.json")


def test_a_non_utf8_file_name_fails_alone_and_the_batch_commits(tmp_path, embedder):
    docs = tmp_path / "docs"
    write(docs, "a.md", LEAVE)
    (docs / os.fsdecode(b"\xb1\xa8\xb8\xe6.txt")).write_text(VPN, encoding="utf-8")  # GBK 报告
    write(docs, "z.md", TRAVEL)
    kb = make_kb(tmp_path, embedder)
    report = kb.ingest([docs], embedder, IngestConfig())
    assert report.files_added == 2 and report.files_seen == 3
    [failed] = report.files_failed
    assert "not valid UTF-8" in failed.error and "rename" in failed.error
    failed.path.encode("utf-8")  # shown with escapes, printable as JSON
    assert {Path(d.source).name for d in kb.documents()} == {"a.md", "z.md"}
    assert_consistent(kb)


def test_dangling_links_and_link_loops_are_reported_as_failed(tmp_path, embedder):
    docs = tmp_path / "docs"
    write(docs, "a.md", LEAVE)
    (docs / "gone.md").symlink_to(tmp_path / "nowhere.md")
    (docs / "loop1.md").symlink_to(docs / "loop2.md")
    (docs / "loop2.md").symlink_to(docs / "loop1.md")
    kb = make_kb(tmp_path, embedder)
    report = kb.ingest([docs], embedder, IngestConfig())
    assert report.files_added == 1 and report.files_seen == 4
    errors = {Path(f.path).name: f.error for f in report.files_failed}
    assert set(errors) == {"gone.md", "loop1.md", "loop2.md"}
    assert "missing target" in errors["gone.md"] and "loop" in errors["loop1.md"]


def test_temp_files_of_a_killed_checkpoint_are_removed_under_the_lock(tmp_path, embedder):
    kb = make_kb(tmp_path, embedder)
    stray = [kb.folder / f".{name}.k1ll3d.tmp" for name in INDEX_FILES]
    for path in stray:
        path.write_bytes(b"x" * 1000)
    kb.ingest([write(tmp_path / "docs", "a.md", LEAVE)], embedder, IngestConfig())
    assert [p for p in stray if p.exists()] == []
    assert not list(kb.folder.glob(".*.tmp"))


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_index_files_get_the_mode_of_chunks_sqlite(tmp_path, embedder, umask):
    old = os.umask(umask)
    try:
        kb = make_kb(tmp_path, embedder)
        kb.ingest([write(tmp_path / "docs", "a.md", LEAVE)], embedder, IngestConfig())
    finally:
        os.umask(old)
    mode = (kb.folder / "chunks.sqlite").stat().st_mode & 0o777
    assert mode == 0o644 & ~umask
    assert {n: (kb.folder / n).stat().st_mode & 0o777 for n in INDEX_FILES} == dict.fromkeys(
        INDEX_FILES, mode
    )


@pytest.mark.parametrize("name", ["dense.faiss", "lexical.npz"])
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_index_file_is_rebuilt_from_chunks_sqlite(
    tmp_path, embedder, caplog, name, damage
):
    docs = tmp_path / "docs"
    write(docs, "a.md", LEAVE)
    write(docs, "b.md", TRAVEL)
    kb = make_kb(tmp_path, embedder)
    kb.ingest([docs], embedder, IngestConfig())
    path = kb.folder / name
    data = path.read_bytes()
    path.write_bytes(b"\x00not an index" * 10 if damage == "garbage" else data[: len(data) // 2])
    caplog.set_level(logging.WARNING)
    reader = KnowledgeBase.open(kb.folder.parent, kb.name)
    hits = reader.search("年假有几天", 2, embedder)  # a reader rebuilds in memory
    assert hits and hits[0].source.endswith("a.md")
    assert len(reader.indexes.lexical.search("年假", 2)[0])
    assert any(name in r.getMessage() and "rebuild" in r.getMessage() for r in caplog.records)
    # The next writer saves the repaired file: a fresh reader loads it without a warning.
    write(docs, "c.txt", VPN)
    kb.ingest([docs], embedder, IngestConfig())
    caplog.clear()
    again = KnowledgeBase.open(kb.folder.parent, kb.name)
    assert again.indexes.dense is not None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert_consistent(again)
