"""API reliability (issue 16): deletes stay deleted, limits while streaming, no 500 on odd input."""

from __future__ import annotations

import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.api_fixtures import build_kb, client_for, wait_job
from tests.corpus import LEAVE
from tests.fakes import HashEmbedder

HOLIDAY = "# 节假日安排\n\n春节放假七天，除夕当天下午提前下班。中秋节放假一天。\n"


def upload(client, name: str, data: bytes, kb: str = "demo", **kw):
    return client.post(
        f"/v1/kbs/{kb}/documents", files=[("files", (name, io.BytesIO(data), "text/plain"))], **kw
    )


def doc_named(client, name: str, kb: str = "demo") -> dict | None:
    docs = client.get(f"/v1/kbs/{kb}/documents").json()["documents"]
    return next((d for d in docs if d["source"].endswith(name)), None)


# -- 1: a document deleted over REST does not come back ---------------------------------------


@pytest.mark.parametrize("how", ["relative", "symlink"])
def test_a_deleted_upload_stays_deleted_after_a_restart(home, embedder, tmp_path, how, monkeypatch):
    if how == "relative":  # the default KBQA_HOME=indexes is relative to the working folder
        monkeypatch.chdir(home.parent)
        where = Path(home.name)
    else:
        where = tmp_path / "linked-home"
        where.symlink_to(home)
    with client_for(where, embedder) as c:
        job = upload(c, "节假日.md", HOLIDAY.encode()).json()
        assert wait_job(c, job["id"])["status"] == "done"
        doc = doc_named(c, "节假日.md")
        assert c.delete(f"/v1/kbs/demo/documents/{doc['id']}").status_code == 200
    assert not (home / "demo" / "uploads" / "节假日.md").exists()
    with client_for(where, embedder) as c:
        assert c.app.state.services.jobs.jobs() == []  # nothing re-queued
        assert doc_named(c, "节假日.md") is None


def test_an_identical_reupload_is_not_queued_again_at_every_start(home, embedder):
    with client_for(home, embedder) as c:
        for expected in ("files_added", "files_unchanged"):
            job = upload(c, "policy.md", HOLIDAY.encode()).json()
            assert wait_job(c, job["id"])["report"][expected] == 1
    with client_for(home, embedder) as c:
        assert c.app.state.services.jobs.jobs() == []


# -- 6 and 11: odd input is a 4xx, never a 500; strict types at the HTTP edge ---------------------


def test_a_300_character_cjk_upload_name_is_capped_by_bytes(client, home):
    r = upload(client, "长" * 300 + ".md", "# 长\n\n年假五天。\n".encode())
    assert r.status_code == 202, r.text
    [name] = r.json()["files"]
    assert name.endswith(".md") and len(name.encode("utf-8")) <= 255
    assert wait_job(client, r.json()["id"])["status"] == "done"
    assert (home / "demo" / "uploads" / name).is_file()


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/v1/kbs/demo/search", '{"query": "\\ud800"}'),
        ("/v1/kbs/demo/search", '{"query": "\\udc00x", "top_k": "bad"}'),
        ("/v1/kbs/demo/ask", '{"question": "\\udfff"}'),
        ("/v1/kbs/demo/search", '{"query": "年假", "top_k": "5"}'),
        ("/v1/kbs/demo/search", '{"query": "年假", "top_k": true}'),
        ("/v1/kbs/demo/search", '{"query": "年假", "top_k": 5.0}'),
        ("/v1/kbs/demo/ask", '{"question": "年假", "stream": 1}'),
        ("/v1/kbs/demo/ask", '{"question": "年假", "stream": "true"}'),
    ],
)
def test_lone_surrogates_and_coercible_types_are_422(client, url, body):
    r = client.post(url, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


def test_strict_types_still_take_the_right_ones(client):
    r = client.post("/v1/kbs/demo/search", json={"query": "年假", "top_k": 2})
    assert r.status_code == 200 and len(r.json()["hits"]) <= 2
    r = client.post("/v1/kbs/demo/ask", json={"question": "年假有几天", "stream": False})
    assert r.status_code == 200


# -- 5: deleting a KB while searches are in flight ----------------------------------------------


class HeldQueries(HashEmbedder):
    """Holds a query between its KB lookup and its first SQLite read, until released."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = threading.Event()
        self.inside = threading.Event()
        self.release = threading.Event()

    def embed_queries(self, texts):
        if self.hold.is_set():
            self.inside.set()
            assert self.release.wait(30)
        return super().embed_queries(texts)


def test_deleting_a_kb_lets_in_flight_searches_finish(tmp_path):
    embedder = HeldQueries()
    home = tmp_path / "home"
    build_kb(home, "demo", embedder, {"leave.md": LEAVE})
    with client_for(home, embedder) as c, ThreadPoolExecutor(4) as pool:
        assert c.post("/v1/kbs/demo/search", json={"query": "年假"}).status_code == 200
        embedder.hold.set()
        searches = [
            pool.submit(c.post, "/v1/kbs/demo/search", json={"query": "年假有几天"})
            for _ in range(3)
        ]
        assert embedder.inside.wait(10)
        assert c.delete("/v1/kbs/demo").status_code == 200
        embedder.release.set()
        statuses = [f.result(timeout=30).status_code for f in searches]
        assert set(statuses) <= {200, 404, 409}, statuses
        assert c.post("/v1/kbs/demo/search", json={"query": "年假"}).status_code == 404


# -- 7: another writer on the same home delays an accepted upload, never drops it ----------------


def test_an_upload_waits_for_another_writers_lock(home, embedder, monkeypatch):
    import kbqa.api.routes_documents as routes
    import kbqa.kb

    monkeypatch.setattr(
        kbqa.store.lock.writer_lock.__wrapped__, "__defaults__", (0.2,)
    )  # fail fast
    monkeypatch.setattr(routes, "LOCK_RETRY_SECONDS", 0.05, raising=False)
    with client_for(home, embedder) as c:
        with kbqa.store.lock.writer_lock(
            home / "demo"
        ):  # a second server ingesting into the same KB
            r = upload(c, "节假日.md", HOLIDAY.encode())
            assert r.status_code == 202
            time.sleep(1.0)
            assert c.get(f"/v1/jobs/{r.json()['id']}").json()["status"] in ("queued", "running")
        job = wait_job(c, r.json()["id"])
        assert job["status"] == "done" and job["report"]["files_added"] == 1, job


# -- 2: one KB's job never blocks another's; jobs can be cancelled ----------------------------


class SlowFiles(HashEmbedder):
    """Embedding of any passage holding '慢' waits until released; everything else is instant."""

    batch_size = 1  # ingestion pools POOL_BATCHES batches: a file of SLOW fills a pool alone

    def __init__(self) -> None:
        super().__init__()
        self.inside = threading.Event()
        self.release = threading.Event()

    def embed_passages(self, texts):
        if any("慢" in t for t in texts):
            self.inside.set()
            assert self.release.wait(30), "the test never released the slow file"
        return super().embed_passages(texts)


@pytest.fixture
def slow(tmp_path):
    embedder = SlowFiles()
    home = tmp_path / "home"
    build_kb(home, "demo", embedder, {"leave.md": LEAVE})
    build_kb(home, "other", embedder, {"vpn.md": "# VPN\n\n远程办公需要先连接公司VPN。\n"})
    with client_for(home, embedder) as c:
        yield c, embedder, home
        embedder.release.set()


def upload_many(client, kb: str, names: dict[str, str]):
    files = [("files", (n, io.BytesIO(t.encode()), "text/markdown")) for n, t in names.items()]
    r = client.post(f"/v1/kbs/{kb}/documents", files=files)
    assert r.status_code == 202, r.text
    return r.json()


def test_a_slow_job_in_one_kb_does_not_hold_up_another_kb(slow):
    c, embedder, _ = slow
    stuck = upload_many(c, "demo", {"slow.md": "# 慢\n\n一个很慢的文件。\n"})
    assert embedder.inside.wait(10)
    other = upload_many(c, "other", {"holiday.md": HOLIDAY})
    assert wait_job(c, other["id"], timeout=10)["status"] == "done"
    assert c.get(f"/v1/jobs/{stuck['id']}").json()["status"] == "running"
    embedder.release.set()
    assert wait_job(c, stuck["id"])["status"] == "done"


# Enough chunks to fill an embedding pool on its own (kbqa.ingest.batch.POOL_BATCHES x batch_size 1), so
# the pool in flight when a job is cancelled holds this file alone.
SLOW = "# 慢\n\n" + "这个文件很慢。" * 250 + "\n"


def test_cancel_a_running_and_a_queued_job(slow):
    c, embedder, home = slow
    running = upload_many(
        c, "demo", {"slow.md": SLOW, "a.md": HOLIDAY, "b.md": "# 乙\n\n乙文件。\n"}
    )
    assert embedder.inside.wait(10)
    queued = upload_many(c, "demo", {"c.md": "# 丙\n\n丙文件。\n"})
    r = c.delete(f"/v1/jobs/{queued['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert c.delete(f"/v1/jobs/{running['id']}").status_code == 200
    embedder.release.set()
    job = wait_job(c, running["id"])
    assert job["status"] == "cancelled" and "cancelled" in job["error"]
    assert job["report"]["files_added"] == 1  # the file in flight was committed, then it stopped
    assert wait_job(c, queued["id"])["status"] == "cancelled"
    uploads = home / "demo" / "uploads"
    assert sorted(p.name for p in uploads.iterdir()) == ["slow.md"]  # the rest dropped
    assert c.delete(f"/v1/jobs/{running['id']}").status_code == 409  # finished
    assert c.delete("/v1/jobs/nope").status_code == 404
    assert doc_named(c, "a.md") is None and doc_named(c, "slow.md") is not None


def test_a_cancelled_job_is_not_resumed_at_restart(slow, tmp_path):
    c, embedder, home = slow
    running = upload_many(c, "demo", {"slow.md": SLOW, "a.md": HOLIDAY})
    assert embedder.inside.wait(10)
    c.delete(f"/v1/jobs/{running['id']}")
    embedder.release.set()
    assert wait_job(c, running["id"])["status"] == "cancelled"
    with client_for(home, embedder) as again:
        assert again.app.state.services.jobs.jobs() == []


# -- 3: upload limits hold while the body streams in ----------------------------------------------


def multipart(files: dict[str, bytes], boundary: str = "kbqaBoundary7") -> bytes:
    out = b""
    for name, data in files.items():
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
                "Content-Type: text/plain\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()


def stream_upload(client, body: bytes, chunk: int = 64 * 1024) -> tuple[int, dict, int]:
    """POST ``body`` to the app in chunks, as a socket delivers it; returns (status, json, bytes read)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/kbs/demo/documents", "raw_path": b"/v1/kbs/demo/documents",
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1), "server": ("t", 80),
        "headers": [(b"host", b"t"), (b"content-type", b"multipart/form-data; boundary=kbqaBoundary7")],
    }  # fmt: skip
    read, sent = 0, []

    async def receive():
        nonlocal read
        data = body[read : read + chunk]
        read += len(data)
        return {"type": "http.request", "body": data, "more_body": read < len(body)}

    async def send(message):
        sent.append(message)

    client.portal.call(client.app, scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    text = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(text), read


def test_an_oversize_file_is_refused_before_its_body_is_read(home, embedder):
    with client_for(home, embedder, max_upload_mb=1) as c:
        body = multipart({"big.txt": b"x" * (20 * 2**20)})
        status, detail, read = stream_upload(c, body)
        assert status == 413 and "KBQA_MAX_UPLOAD_MB" in detail["detail"]
        assert read < 2 * 2**20, f"read {read / 2**20:.1f} MB of a 20 MB body before refusing"
        assert not list((home / "demo").glob("uploads/*"))
        # Small files in the same request framing still go through.
        status, job, _ = stream_upload(c, multipart({"ok.md": HOLIDAY.encode()}))
        assert status == 202 and wait_job(c, job["id"])["status"] == "done"


def test_the_total_of_one_upload_request_is_capped(home, embedder):
    with client_for(home, embedder, max_upload_mb=1, max_upload_total_mb=1.5) as c:
        files = {f"{i}.txt": "年假".encode() * 100_000 for i in range(3)}  # 3 x 0.6 MB
        status, detail, read = stream_upload(c, multipart(files))
        assert status == 413 and "KBQA_MAX_UPLOAD_TOTAL_MB" in detail["detail"]
        assert read < 1.7 * 2**20


def test_concurrent_uploads_are_capped(home, embedder, monkeypatch):
    import kbqa.api.limits
    import kbqa.api.uploads

    monkeypatch.setattr(kbqa.api.limits, "UPLOAD_WAIT_SECONDS", 0.5)
    inside, release = threading.Event(), threading.Event()
    real_save = kbqa.api.uploads.save

    def held_save(*args):
        inside.set()
        assert release.wait(30)
        return real_save(*args)

    monkeypatch.setattr(kbqa.api.uploads, "save", held_save)
    with client_for(home, embedder, max_concurrent_uploads=1) as c, ThreadPoolExecutor(2) as pool:
        first = pool.submit(upload, c, "a.md", HOLIDAY.encode())
        assert inside.wait(10)
        second = upload(c, "b.md", HOLIDAY.encode())
        assert second.status_code == 503 and "KBQA_MAX_CONCURRENT_UPLOADS" in second.text
        assert second.headers["retry-after"]
        # Other requests are not held up by the upload in progress.
        assert c.post("/v1/kbs/demo/search", json={"query": "年假"}).status_code == 200
        release.set()
        assert first.result(timeout=30).status_code == 202
        assert upload(c, "b.md", HOLIDAY.encode()).status_code == 202


def test_an_uploaded_docx_bomb_fails_fast_and_is_not_resumed(home, embedder, tmp_path):
    from tests.test_loader_limits import make_docx

    bomb = make_docx(tmp_path / "bomb.docx", "<w:p/>" * 5_000_000).read_bytes()  # ~80 KB
    with client_for(home, embedder, max_paragraphs=100_000) as c:
        r = upload(c, "bomb.docx", bomb)
        job = wait_job(c, r.json()["id"], timeout=30)
        [failed] = job["report"]["files_failed"]
        assert "bomb.docx" in failed["error"] and "KBQA_MAX_PARAGRAPHS" in failed["error"]
    with client_for(home, embedder) as c:
        assert c.app.state.services.jobs.jobs() == []  # its failure is recorded: not redone


def test_search_and_answer_bodies_are_the_bytes_starlette_would_write(client):
    from fastapi.responses import JSONResponse

    from kbqa.api.responses import FastJSON

    body = {"query": '年假\n"几天"', "hits": [{"score": 0.1 + 0.2, "rank": 1, "x": None}]}
    assert FastJSON(body).body == JSONResponse(body).body
    r = client.post("/v1/kbs/demo/search", json={"query": "年假", "top_k": 2})
    assert r.headers["content-type"] == "application/json"
    assert r.content == JSONResponse(r.json()).body
