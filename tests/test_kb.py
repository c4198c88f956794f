"""KnowledgeBase: incremental ingestion, removal, failures recorded, consistency, the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kbqa.config import IngestConfig, SplitConfig
from kbqa.errors import BadInput, Conflict, NotFound
from kbqa.kb import KnowledgeBase, list_kbs, validate_name
from kbqa.store.lock import writer_lock
from tests.corpus import LEAVE, VPN, write
from tests.fakes import HashEmbedder

ROOT = Path(__file__).resolve().parents[1]


def make_kb(tmp_path: Path, embedder, name: str = "demo") -> KnowledgeBase:
    return KnowledgeBase.open_or_create(tmp_path / "home", name, embedder, "test", SplitConfig())


def assert_consistent(kb: KnowledgeBase) -> None:
    """Every vector has its chunk row and every chunk row its vector, on disk and in memory."""
    stored = set(kb.store.chunk_ids().tolist())
    reopened = KnowledgeBase.open(kb.folder.parent, kb.name)
    dense = reopened.indexes.dense
    ids = set(dense._index.id_map.at(i) for i in range(len(dense))) if len(dense) else set()
    assert ids == stored
    reopened.close()


def test_ingest_then_search_ranks_the_right_chunk_first(tmp_path, corpus, embedder):
    kb = make_kb(tmp_path, embedder)
    report = kb.ingest([corpus], embedder, IngestConfig())
    assert (report.files_seen, report.files_added, report.files_failed) == (3, 3, [])
    assert report.chunks_added >= 3
    hits = kb.search("年假有几天", 3, embedder)
    assert hits[0].source.endswith("leave.md")
    assert "5天带薪年假" in hits[0].text
    assert hits[0].metadata["headings"] == ["休假制度", "年假"]
    assert -1.0 <= hits[-1].score <= hits[0].score <= 1.0001
    assert_consistent(kb)
    assert list_kbs(tmp_path / "home") == ["demo"]


def test_unchanged_files_cost_a_hash_and_nothing_else(tmp_path, corpus, embedder):
    kb = make_kb(tmp_path, embedder)
    kb.ingest([corpus], embedder, IngestConfig())
    generation, calls = kb.store.generation(), embedder.calls
    mtime = (kb.folder / "dense.faiss").stat().st_mtime_ns
    report = kb.ingest([corpus], embedder, IngestConfig())
    assert report.files_unchanged == 3 and report.files_added == report.files_updated == 0
    assert embedder.calls == calls, "re-ingesting unchanged files must not embed"
    assert kb.store.generation() == generation
    assert (kb.folder / "dense.faiss").stat().st_mtime_ns == mtime


def test_changed_file_replaces_its_old_chunks(tmp_path, corpus, embedder):
    kb = make_kb(tmp_path, embedder)
    kb.ingest([corpus], embedder, IngestConfig())
    before = kb.store.counts()["chunks"]
    write(corpus, "travel.md", "# 出差标准\n\n出差住宿标准调整为每晚800元。\n")
    report = kb.ingest([corpus], embedder, IngestConfig())
    assert (report.files_updated, report.files_unchanged) == (1, 2)
    assert report.chunks_removed >= 1
    texts = [h.text for h in kb.iter_chunks()]
    assert any("800元" in t for t in texts) and not any("600元" in t for t in texts)
    assert kb.store.counts()["chunks"] == before - report.chunks_removed + report.chunks_added
    assert_consistent(kb)


def test_counts_follow_another_process_and_an_open_transaction(tmp_path, corpus, embedder):
    """counts() is cached per generation: a reader sees another writer's commit, a writer its
    own uncommitted rows, and a rollback leaves nothing counted."""
    writer = make_kb(tmp_path, embedder)
    writer.ingest([corpus], embedder, IngestConfig())
    reader = KnowledgeBase.open(tmp_path / "home", "demo")
    before = reader.store.counts()
    assert before == writer.store.counts() and before["documents"] == 3
    write(corpus, "extra.md", "# 附加\n\n附加说明一条。\n")
    writer.ingest([corpus], embedder, IngestConfig())
    assert reader.store.counts()["documents"] == 4
    assert reader.store.counts()["chunks"] > before["chunks"]
    store, doc = writer.store, writer.store.document(str(corpus / "extra.md"))
    store.begin()
    store.delete_document(doc.id)
    assert store.counts()["documents"] == 3  # its own rows, not the cached count
    assert reader.store.counts()["documents"] == 4  # WAL: the last commit
    store.rollback()
    assert store.counts()["documents"] == 4
    reader.close()


def test_a_pinned_read_sees_one_generation(tmp_path, corpus, embedder, monkeypatch):
    """Inside pinned() a thread reads the generation once: another writer's commit shows in
    the next block, the writer's own reads stay fresh, and an answer asks SQLite once."""
    from kbqa.ask import Asker
    from kbqa.config import AskConfig
    from kbqa.prompt import load_prompts
    from kbqa.store.chunks import ChunkStore

    writer = make_kb(tmp_path, embedder)
    writer.ingest([corpus], embedder, IngestConfig())
    reader = KnowledgeBase.open(tmp_path / "home", "demo")
    with reader.store.pinned() as seen:
        assert reader.store.pinned_generation() == seen == writer.store.generation()
        write(corpus, "extra.md", "# 附加\n\n附加说明一条。\n")
        writer.ingest([corpus], embedder, IngestConfig())
        with reader.store.pinned() as inner:
            assert inner == seen  # nested: the outer block's
        assert reader.store.pinned_generation() == seen
        assert reader.store.generation() == writer.store.generation() > seen
        assert reader.store.counts()["documents"] == 4  # counted afresh, kept under `seen`
    assert reader.store.pinned_generation() == writer.store.generation()
    assert len(reader.indexes.dense) == writer.store.counts()["chunks"]

    reads = []
    real = ChunkStore.generation
    monkeypatch.setattr(ChunkStore, "generation", lambda self: reads.append(1) or real(self))
    Asker(reader, embedder, None, load_prompts(), AskConfig()).ask("年假有几天")
    assert len(reads) == 1
    reader.close()


def test_remove_a_document_by_path_tail(tmp_path, corpus, embedder):
    kb = make_kb(tmp_path, embedder)
    kb.ingest([corpus], embedder, IngestConfig())
    source, removed = kb.remove("it/vpn.txt")
    assert source.endswith("vpn.txt") and removed >= 1
    assert all(not h.source.endswith("vpn.txt") for h in kb.search("VPN客户端", 5, embedder))
    assert_consistent(kb)
    with pytest.raises(NotFound, match="kbqa kb show demo"):
        kb.remove("nope.md")
    write(corpus, "b/leave.md", LEAVE + "补充。")
    kb.ingest([corpus], embedder, IngestConfig())
    with pytest.raises(BadInput, match="several documents"):
        kb.remove("leave.md")


def test_failing_files_are_recorded_and_the_batch_goes_on(tmp_path, corpus, embedder):
    write(corpus, "empty.txt", "")
    (corpus / "blob.txt").write_bytes(bytes(range(256)) * 64)
    write(corpus, "photo.xyz", "not a document")
    kb = make_kb(tmp_path, embedder)
    report = kb.ingest([corpus], embedder, IngestConfig())
    failed = {Path(f.path).name: f.error for f in report.files_failed}
    assert set(failed) == {"empty.txt", "blob.txt", "photo.xyz"}
    assert all(str(corpus) in e for e in failed.values()), "errors name the file"
    assert report.files_added == 3
    docs = {Path(d.source).name: d for d in kb.documents()}
    assert docs["empty.txt"].status == "failed" and docs["empty.txt"].error
    assert kb.info()["documents_failed"] == 3
    # A failed file is retried on the next run, once it is fixed.
    write(corpus, "empty.txt", "现在有内容了。")
    report = kb.ingest([corpus], embedder, IngestConfig())
    assert "empty.txt" not in {Path(f.path).name for f in report.files_failed}


def test_a_changed_file_that_now_fails_keeps_its_previous_version(tmp_path, corpus, embedder):
    kb = make_kb(tmp_path, embedder)
    kb.ingest([corpus], embedder, IngestConfig())
    (corpus / "it/vpn.txt").write_bytes(b"\x00\x01\x02" * 100)
    report = kb.ingest([corpus], embedder, IngestConfig())
    assert len(report.files_failed) == 1 and "previously ingested version is kept" in (
        report.files_failed[0].error
    )
    assert any("VPN客户端" in h.text for h in kb.iter_chunks())
    assert_consistent(kb)


def test_bad_paths_names_and_duplicates(tmp_path, corpus, embedder):
    kb = make_kb(tmp_path, embedder)
    with pytest.raises(NotFound, match="missing.md"):
        kb.ingest([corpus / "missing.md"], embedder, IngestConfig())
    for bad in ("a/b", "a\\b", "..", "../x", "x..y", ".hidden", ""):
        with pytest.raises(BadInput, match="not allowed"):
            validate_name(bad)
    leave = corpus / "leave.md"
    report = kb.ingest(
        [leave, leave, corpus / ".." / "docs" / "leave.md"], embedder, IngestConfig()
    )
    assert report.files_seen == 1 and report.files_added == 1


def test_include_and_exclude_globs(tmp_path, corpus, embedder):
    kb = make_kb(tmp_path, embedder)
    report = kb.ingest([corpus], embedder, IngestConfig(include=("*.md",), exclude=("travel*",)))
    assert report.files_seen == 1
    assert [Path(d.source).name for d in kb.documents()] == ["leave.md"]


def test_another_embedding_model_or_chunking_is_a_clear_error(tmp_path, corpus, embedder):
    kb = make_kb(tmp_path, embedder)
    kb.ingest([corpus], embedder, IngestConfig())
    other = HashEmbedder(model_id="other/model")
    with pytest.raises(Conflict, match="test/hash-embedder"):
        kb.search("年假", 3, other)
    with pytest.raises(Conflict, match="other/model"):
        kb.ingest([corpus], other, IngestConfig())
    with pytest.raises(BadInput, match="chunk_size=400"):
        kb.ingest(
            [corpus], embedder, IngestConfig(split=SplitConfig(chunk_size=100, chunk_overlap=0))
        )
    with pytest.raises(BadInput, match="empty"):
        kb.search("  ", 3, embedder)


def test_unknown_kb_names_the_known_ones(tmp_path, embedder):
    make_kb(tmp_path, embedder, "hr")
    with pytest.raises(NotFound, match="known: hr"):
        KnowledgeBase.open(tmp_path / "home", "finance")


def test_stale_indexes_are_rebuilt_by_readers_and_repaired_by_the_next_writer(
    tmp_path, corpus, embedder
):
    kb = make_kb(tmp_path, embedder)
    kb.ingest([corpus / "leave.md"], embedder, IngestConfig())
    # Simulate a writer that committed to SQLite and died before checkpointing the indexes.
    vec = embedder.embed_passages(["新员工培训为期三天"])
    from kbqa.types import Chunk

    kb.store.begin()
    doc = kb.store.upsert_document("/x/train.md", sha256="0", size=1, mtime=0, loader="md",
                                   status="ok", error=None, chunks=1)  # fmt: skip
    kb.store.add_chunks(doc, 0, [Chunk("新员工培训为期三天")], vec)
    kb.store.commit()
    reader = KnowledgeBase.open(tmp_path / "home", "demo")
    assert reader.search("新员工培训", 1, embedder)[0].source == "/x/train.md"
    kb.ingest([corpus], embedder, IngestConfig())
    assert kb.manifest.generation == kb.store.generation()
    assert_consistent(kb)


def test_one_writer_at_a_time(tmp_path, corpus, embedder):
    kb = make_kb(tmp_path, embedder)
    with writer_lock(kb.folder), pytest.raises(Conflict, match="another process is writing"):
        from kbqa.store import lock as kb_module

        with kb_module.writer_lock(kb.folder, timeout=0.1):
            pass


def test_delete_removes_the_folder(tmp_path, corpus, embedder):
    kb = make_kb(tmp_path, embedder)
    kb.ingest([corpus], embedder, IngestConfig())
    kb.delete()
    assert not kb.folder.exists()
    assert list_kbs(tmp_path / "home") == []


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from kbqa.config import IngestConfig, SplitConfig
    from kbqa.kb import KnowledgeBase
    from tests.fakes import HashEmbedder

    class Slow(HashEmbedder):
        def embed_passages(self, texts):
            time.sleep(float(sys.argv[3]))
            print("embedded", flush=True)
            return super().embed_passages(texts)

    emb = Slow()
    emb.batch_size = 1
    kb = KnowledgeBase.open_or_create(Path(sys.argv[1]), "demo", emb, "test", SplitConfig())
    report = kb.ingest([Path(sys.argv[2])], emb, IngestConfig(checkpoint_seconds=0.05))
    print("done", report.files_added, report.files_unchanged, flush=True)
    """
)


def test_sigkill_mid_batch_then_rerun_completes(tmp_path, embedder):
    docs = tmp_path / "docs"
    for i in range(40):
        write(docs, f"doc{i:02d}.txt", f"第{i}号文件。内容编号{i}，用于测试中断后的恢复。\n")
    home = tmp_path / "home"
    script = tmp_path / "ingest.py"
    script.write_text(KILL_SCRIPT.format(root=str(ROOT)))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(home), str(docs), "0.05"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen = 0
    while seen < 4:  # let a few pooled batches (4 files each) commit, then kill
        line = proc.stdout.readline()
        assert line, "the ingest subprocess ended early"
        seen += line.startswith("embedded")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kb = KnowledgeBase.open(home, "demo")
    committed = kb.store.counts()["documents"]
    assert 0 < committed < 40
    assert_consistent(kb)  # readers see whole documents only, every vector with its chunk
    before = {h.chunk_id for h in kb.iter_chunks()}
    result = subprocess.run(
        [sys.executable, str(script), str(home), str(docs), "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    added, unchanged = map(int, result.stdout.split("done")[1].split())
    assert unchanged == committed and added == 40 - committed
    kb = KnowledgeBase.open(home, "demo")
    assert kb.store.counts()["documents"] == 40
    assert before <= {h.chunk_id for h in kb.iter_chunks()}, "nothing from before is lost"
    assert_consistent(kb)
    assert kb.manifest.generation == kb.store.generation()


def test_a_big_file_is_streamed_in_batches_within_one_transaction(tmp_path, embedder):
    embedder.batch_size = 4  # files above 32 chunks take the streaming path
    docs = tmp_path / "docs"
    text = "\n\n".join(
        f"第{i}条：这是一段用于测试流式写入的内容，编号{i}。" * 12 for i in range(120)
    )
    write(docs, "big.txt", text)
    kb = make_kb(tmp_path, embedder)
    report = kb.ingest([docs], embedder, IngestConfig())
    assert report.files_added == 1 and report.chunks_added > 32
    assert kb.store.counts()["chunks"] == report.chunks_added
    assert_consistent(kb)


def test_a_file_failing_mid_stream_leaves_no_partial_chunks(tmp_path, embedder, monkeypatch):
    embedder.batch_size = 4
    docs = tmp_path / "docs"
    write(docs, "big.txt", "内容。\n\n" * 10)
    write(docs, "ok.md", LEAVE)
    import kbqa.ingest.split
    from kbqa.types import Chunk

    real = kbqa.ingest.split.split_documents

    def failing(documents, config):
        documents = list(documents)
        if documents[0].source.endswith("big.txt"):
            for i in range(100):
                yield Chunk(f"第{i}块")
            raise OSError("disk read error")
        yield from real(documents, config)

    monkeypatch.setattr(kbqa.ingest.split, "split_documents", failing)
    kb = make_kb(tmp_path, embedder)
    report = kb.ingest([docs], embedder, IngestConfig())
    assert [Path(f.path).name for f in report.files_failed] == ["big.txt"]
    assert "disk read error" in report.files_failed[0].error
    assert report.files_added == 1
    assert all(h.source.endswith("ok.md") for h in kb.iter_chunks())
    assert_consistent(kb)


def test_ingesting_a_folder_that_holds_the_kb_home_skips_the_indexes(tmp_path, corpus, embedder):
    kb = KnowledgeBase.open_or_create(corpus / "indexes", "demo", embedder, "test", SplitConfig())
    report = kb.ingest([corpus], embedder, IngestConfig())
    assert report.files_seen == 3 and report.files_failed == []
    report = kb.ingest([corpus], embedder, IngestConfig())
    assert report.files_seen == 3 and report.files_unchanged == 3


def test_readers_of_the_writers_kb_see_its_indexes_only_at_checkpoints(tmp_path, corpus, embedder):
    """kb.writer() works on indexes of its own: the same KnowledgeBase's searches keep the last
    published state until the writer checkpoints, and never a half-applied batch."""
    kb = make_kb(tmp_path, embedder)
    kb.ingest([corpus / "leave.md"], embedder, IngestConfig())
    more = write(tmp_path / "more", "vpn.txt", VPN)
    seen_during: list[list[str]] = []

    class Watch:  # IngestProgress: file_done comes after the file's transaction committed
        def start(self, total_files: int) -> None:
            pass

        def file_done(self, path: str, status: str) -> None:
            seen_during.append([h.source for h in kb.search("VPN客户端", 5, embedder)])

        def chunks_done(self, n: int) -> None:
            pass

    with kb.writer() as writer:
        report = writer.ingest([more], embedder, IngestConfig(checkpoint_seconds=3600), Watch())
        assert report.files_added == 1
        assert str(more.resolve()) in [h.source for h in kb.search("VPN客户端", 5, embedder)]
    assert seen_during and all(str(more.resolve()) not in s for s in seen_during)
    assert kb.store.document(str(more.resolve())) is not None  # committed before the checkpoint
    assert not hasattr(kb, "writable")
