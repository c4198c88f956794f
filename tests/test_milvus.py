"""Milvus vector store against milvus-lite: parity with FAISS, repair, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from typer.testing import CliRunner  # noqa: E402

from kbqa.config import IngestConfig, SplitConfig, load_settings  # noqa: E402
from kbqa.errors import BadInput, Conflict, ModelError  # noqa: E402
from kbqa.kb import KnowledgeBase, list_kbs  # noqa: E402
from kbqa.store import milvus_client  # noqa: E402
from kbqa.store.faiss_store import FaissStore  # noqa: E402
from kbqa.store.manifest import Manifest  # noqa: E402
from kbqa.store.milvus_client import MilvusUnavailable, collection_name  # noqa: E402
from kbqa.store.milvus_store import MilvusStore  # noqa: E402
from tests.fakes import HashEmbedder  # noqa: E402

DOCS = {
    "leave.md": "# 休假制度\n\n## 年假\n\n员工入职满一年后，每年享有5天带薪年假。满十年的员工每年享有10天年假。\n\n## 病假\n\n病假需提供医院证明，每年10天病假工资照发。\n",
    "travel.md": "# 出差标准\n\n一线城市住宿标准为每晚600元，其他城市每晚400元。出差补贴每天100元。\n",
    "it/vpn.txt": "远程办公需要先连接公司VPN。VPN客户端可在IT门户下载，账号与邮箱相同。\n",
    "it/printer.txt": "打印机在三楼茶水间旁边。彩色打印需要在OA系统申请。\n",
    "faq.md": "# 报销\n\n发票抬头写公司全称。报销单每月25日前提交，财务次月发放。\n",
}
QUERIES = ["年假有几天", "出差住宿标准", "VPN怎么连接", "打印机在哪里", "报销什么时候提交", "病假"]
DEAD_URI = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    # One milvus-lite server for the module: starting one costs about a second.
    return str(tmp_path_factory.mktemp("milvus") / "milvus.db")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    for name, text in DOCS.items():
        (tmp_path / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "docs" / name).write_text(text, encoding="utf-8")
    return tmp_path / "docs"


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder(dim=64)


@pytest.fixture
def name(request) -> str:
    # A KB (and so a collection) per test in the shared milvus-lite file.
    return "t-" + request.node.name.replace("test_", "")[:40]


def make_kb(home: Path, name: str, embedder, uri: str | None = None) -> KnowledgeBase:
    store = "milvus" if uri else "faiss"
    return KnowledgeBase.open_or_create(
        home, name, embedder, "test", SplitConfig(chunk_size=60, chunk_overlap=0), store, uri
    )


def config() -> IngestConfig:
    return IngestConfig(split=SplitConfig(chunk_size=60, chunk_overlap=0))


def collection_ids(kb: KnowledgeBase) -> set[int]:
    dense = kb.indexes.dense
    assert isinstance(dense, MilvusStore)
    return set(np.concatenate([np.zeros(0, np.int64), *dense.ids()]).tolist())


def top(kb: KnowledgeBase, embedder, k: int = 3) -> list[list[tuple[str, str, float]]]:
    out = []
    for q in QUERIES:
        hits = kb.search(q, k, embedder)
        out.append([(Path(h.source).name, h.text, round(h.score, 4)) for h in hits])
    return out


def assert_same(got: list, want: list) -> None:
    """The same hits in the same order, scores within fp16 precision (FAISS flat is fp16)."""
    assert [[hit[:2] for hit in row] for row in got] == [[hit[:2] for hit in row] for row in want]
    scores = np.array([[hit[2] for hit in row] for row in got])
    np.testing.assert_allclose(scores, [[hit[2] for hit in row] for row in want], atol=5e-4)


def test_collection_names_are_valid_and_distinct():
    names = {collection_name(n) for n in ("a-b", "a.b", "a_b", "人事", "人事部")}
    assert len(names) == 5
    assert all(n.startswith("kbqa_") and n.isascii() for n in names)


def test_store_search_matches_faiss_and_drops_vectors_without_a_chunk(uri):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(1, 301, dtype=np.int64) * 7
    faiss_store = FaissStore(32)
    milvus = MilvusStore.open(uri, "kbqa_store_parity", 32, create=True)
    for store in (faiss_store, milvus):
        store.add(ids, vectors)
        store.remove(ids[:50])
    assert len(milvus) == len(faiss_store) == 250
    queries = vectors[40:60]
    f_scores, f_ids = faiss_store.search(queries, 10)
    m_scores, m_ids = milvus.search(queries, 10)
    # FAISS's flat index holds fp16 copies: scores agree to a few 1e-4, so only hits that far
    # apart from their neighbours must keep their rank.
    np.testing.assert_allclose(m_scores, f_scores, atol=5e-4)
    gaps = np.diff(m_scores, axis=1, prepend=np.inf, append=np.nan)
    clear = (np.abs(gaps[:, :-1]) > 1e-3) & (np.abs(gaps[:, 1:]) > 1e-3)  # the 10th: unknown
    np.testing.assert_array_equal(m_ids[clear], f_ids[clear])
    # Ids the chunk store does not hold (a writer's file in flight) never come back.
    milvus.alive = lambda found: found % 2 == 0
    _, m_ids = milvus.search(queries, 10)
    assert (m_ids % 2 == 0).all() and (m_ids >= 0).all()
    milvus.drop()


def test_faiss_and_milvus_kbs_give_the_same_hits_through_removal_and_reingestion(
    tmp_path, corpus, embedder, uri, name
):
    faiss_kb = make_kb(tmp_path / "home", name + "-f", embedder)
    milvus_kb = make_kb(tmp_path / "home", name + "-m", embedder, uri)
    assert milvus_kb.manifest.vector_store == "milvus"
    assert not (milvus_kb.folder / "dense.faiss").exists()
    kbs = (faiss_kb, milvus_kb)
    for kb in kbs:
        kb.ingest([corpus], embedder, config())
    assert_same(top(milvus_kb, embedder), top(faiss_kb, embedder))
    assert top(milvus_kb, embedder)[0][0][0] == "leave.md"

    for kb in kbs:
        kb.remove("it/vpn.txt")
    (corpus / "travel.md").write_text("# 出差标准\n\n出差住宿每晚800元，补贴每天150元。\n", "utf-8")
    reports = [kb.ingest([corpus], embedder, config()) for kb in kbs]
    assert reports[0].to_dict() | {"seconds": 0, "kb": ""} == reports[1].to_dict() | {
        "seconds": 0,
        "kb": "",
    }
    assert reports[1].files_added == 1 and reports[1].files_updated == 1
    assert_same(top(milvus_kb, embedder), top(faiss_kb, embedder))
    assert collection_ids(milvus_kb) == set(milvus_kb.store.chunk_ids().tolist())
    # A fresh reader (another process, an API replica) sees the same through Milvus.
    reader = KnowledgeBase.open(tmp_path / "home", name + "-m")
    assert_same(top(reader, embedder), top(faiss_kb, embedder))


def test_a_crashed_writers_leftovers_are_hidden_from_readers_and_repaired_by_the_next_writer(
    tmp_path, corpus, embedder, uri, name
):
    kb = make_kb(tmp_path / "home", name, embedder, uri)
    kb.ingest([corpus], embedder, config())
    dense = kb.indexes.dense
    truth = set(kb.store.chunk_ids().tolist())
    # As if a writer died: vectors of an uncommitted file upserted, a replaced file's old
    # vector not yet deleted is the same case; a committed vector lost; no checkpoint.
    leave_query = embedder.embed_queries(["年假有几天"])
    dense.add(np.array([10**9, 10**9 + 1]), np.vstack([leave_query, leave_query]))
    lost = min(truth)
    dense.remove(np.array([lost]))
    manifest = Manifest.load(kb.folder)
    manifest.generation -= 1
    manifest.save(kb.folder)

    reader = KnowledgeBase.open(tmp_path / "home", name)
    hits = reader.search("年假有几天", 3, embedder)
    assert len(hits) == 3 and all(h.chunk_id in truth for h in hits)

    report = kb.ingest([corpus], embedder, config())  # nothing changed: only the repair
    assert report.files_unchanged == len(DOCS)
    assert collection_ids(kb) == truth
    assert Manifest.load(kb.folder).generation == kb.store.generation()


def test_a_lost_collection_is_refilled_by_the_next_writer(tmp_path, corpus, embedder, uri, name):
    kb = make_kb(tmp_path / "home", name, embedder, uri)
    kb.ingest([corpus], embedder, config())
    expected = top(kb, embedder)
    kb.indexes.dense.drop()
    with pytest.raises(Conflict, match="kbqa ingest"):
        KnowledgeBase.open(tmp_path / "home", name).search("年假", 3, embedder)
    kb = KnowledgeBase.open(tmp_path / "home", name)
    kb.ingest([corpus], embedder, config())
    assert top(kb, embedder) == expected


def test_milvus_unreachable_when_creating_a_kb_leaves_no_kb(tmp_path, embedder, name):
    with pytest.raises(MilvusUnavailable, match="unreachable") as err:
        make_kb(tmp_path / "home", name, embedder, DEAD_URI)
    assert isinstance(err.value, ModelError)  # stops a batch; 503 at the API
    assert list_kbs(tmp_path / "home") == []


def test_milvus_unreachable_at_ingest_commits_nothing(tmp_path, corpus, embedder, uri, name):
    kb = make_kb(tmp_path / "home", name, embedder, uri)
    kb.ingest([corpus / "leave.md"], embedder, config())
    before = (kb.store.generation(), kb.store.counts(), [d.source for d in kb.documents()])
    manifest = Manifest.load(kb.folder)
    manifest.milvus_uri = DEAD_URI
    manifest.save(kb.folder)
    with pytest.raises(MilvusUnavailable, match=r"127\.0\.0\.1:9"):
        kb.ingest([corpus], embedder, config())
    assert (kb.store.generation(), kb.store.counts(), [d.source for d in kb.documents()]) == before


def test_milvus_failing_mid_batch_stops_it_and_rolls_the_file_back(
    tmp_path, corpus, embedder, uri, name, monkeypatch
):
    kb = make_kb(tmp_path / "home", name, embedder, uri)
    kb.ingest([corpus / "leave.md"], embedder, config())
    before = (kb.store.generation(), kb.store.counts(), collection_ids(kb))
    client = milvus_client._clients[kb.manifest.milvus_uri]

    def down(*args, **kwargs):
        raise ConnectionError("connection reset by peer")

    monkeypatch.setattr(client, "upsert", down)
    with pytest.raises(MilvusUnavailable, match="connection reset"):
        kb.ingest([corpus], embedder, config())
    monkeypatch.undo()
    assert (kb.store.generation(), kb.store.counts(), collection_ids(kb)) == before
    assert kb.ingest([corpus], embedder, config()).files_added == len(DOCS) - 1


def test_a_collection_of_another_dimension_is_a_conflict(tmp_path, embedder, uri, name):
    MilvusStore.open(uri, collection_name(name), 8, create=True)
    with pytest.raises(Conflict, match="dimension 8.*gives 64"):
        make_kb(tmp_path / "home", name, embedder, uri)
    assert list_kbs(tmp_path / "home") == []


def test_a_collection_holding_vectors_of_no_kb_is_not_taken_over(tmp_path, embedder, uri, name):
    other = MilvusStore.open(uri, collection_name(name), 64, create=True)
    other.add(np.array([1]), embedder.embed_passages(["别人的数据"]))
    with pytest.raises(Conflict, match="already holds 1 vectors"):
        make_kb(tmp_path / "home", name, embedder, uri)
    assert len(other) == 1


def test_unknown_vector_store_kind(tmp_path, corpus, embedder, name):
    with pytest.raises(BadInput, match="known: faiss, milvus"):
        KnowledgeBase.open_or_create(tmp_path, name, embedder, "test", SplitConfig(), "qdrant")
    kb = make_kb(tmp_path, name, embedder)
    kb.ingest([corpus], embedder, config())
    manifest = Manifest.load(kb.folder)
    manifest.vector_store = "qdrant"
    manifest.save(kb.folder)
    reader = KnowledgeBase.open(tmp_path, name)
    assert reader.info()["vector_store"] == "qdrant"  # listing still works
    with pytest.raises(BadInput, match="'qdrant'.*upgrade kbqa"):
        reader.search("年假", 3, embedder)


def test_deleting_a_kb_drops_its_collection(tmp_path, corpus, embedder, uri, name):
    kb = make_kb(tmp_path / "home", name, embedder, uri)
    kb.ingest([corpus], embedder, config())
    kb.delete()
    client = milvus_client._clients[str(Path(uri).resolve())]
    assert not client.has_collection(collection_name(name))


def test_cli_creates_a_milvus_kb_and_keeps_its_store(tmp_path, corpus, uri, monkeypatch):
    monkeypatch.setenv("KBQA_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("kbqa.cli.common.embedder_for", lambda spec: HashEmbedder(dim=64))
    runner = CliRunner()

    def run(*args: str, code: int = 0):
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        return result

    from kbqa.cli.app import app

    run("ingest", str(corpus), "--kb", "m", "--store", "milvus", code=2)
    run("ingest", str(corpus), "--kb", "m", "--store", "chroma", "--milvus-uri", uri, code=2)
    dead = run("ingest", str(corpus), "--kb", "m", "--store", "milvus", "--milvus-uri", DEAD_URI, code=1)  # fmt: skip
    assert "unreachable" in dead.output
    run("ingest", str(corpus), "--kb", "m", "--store", "milvus", "--milvus-uri", uri, "--json")
    manifest = json.loads((tmp_path / "home" / "m" / "manifest.json").read_text("utf-8"))
    assert manifest["vector_store"] == "milvus" and manifest["milvus_collection"] == "kbqa_m"
    assert Path(manifest["milvus_uri"]).is_absolute()
    run("ingest", str(corpus), "--kb", "m", "--store", "faiss", code=2)
    out = json.loads(run("search", "年假有几天", "--kb", "m", "--json").stdout)
    assert "5天带薪年假" in out["hits"][0]["text"]


def test_a_cluster_token_comes_from_the_environment_and_never_reaches_a_lite_file(
    tmp_path, monkeypatch
):
    import pymilvus

    seen = []

    class Client:
        def __init__(self, uri, **kwargs):
            seen.append((uri, kwargs.get("token")))

    monkeypatch.setattr(pymilvus, "MilvusClient", Client)
    monkeypatch.setattr(milvus_client, "_clients", {})
    monkeypatch.setattr(milvus_client, "_token", "")
    monkeypatch.setenv("KBQA_MILVUS_TOKEN", "root:Milvus")
    settings = load_settings()  # the edge reads it and hands it down
    assert "root:Milvus" not in repr(settings)  # a SecretStr: not in logs or dumps
    milvus_client.connect("http://milvus.internal:19530")
    milvus_client.connect(str(tmp_path / "lite.db"))
    assert seen == [
        ("http://milvus.internal:19530", "root:Milvus"),
        (str(tmp_path / "lite.db"), ""),
    ]


def test_a_new_token_replaces_cached_server_clients(tmp_path, monkeypatch):
    import pymilvus

    seen = []

    class Client:
        def __init__(self, uri, **kwargs):
            seen.append(kwargs.get("token"))

        def close(self):
            seen.append("closed")

    monkeypatch.setattr(pymilvus, "MilvusClient", Client)
    monkeypatch.setattr(milvus_client, "_clients", {})
    monkeypatch.setattr(milvus_client, "_token", "")
    milvus_client.use_token("a:1")
    first = milvus_client.connect("http://milvus.internal:19530")
    assert milvus_client.connect("http://milvus.internal:19530") is first
    milvus_client.use_token(SecretStr("b:2"))
    milvus_client.connect("http://milvus.internal:19530")
    assert seen == ["a:1", "closed", "b:2"]
