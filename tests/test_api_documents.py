"""API documents: upload -> background job -> searchable; limits, types, hostile file names."""

from __future__ import annotations

import io

from kbqa.api.uploads import safe_name
from tests.api_fixtures import client_for, wait_job

HOLIDAY = "# 节假日安排\n\n春节放假七天，除夕当天下午提前下班。中秋节放假一天。\n"


def upload(client, name: str, data: bytes, kb: str = "demo", **kw):
    return client.post(
        f"/v1/kbs/{kb}/documents", files=[("files", (name, io.BytesIO(data), "text/plain"))], **kw
    )


def test_upload_runs_a_job_then_the_document_is_searchable(client, home):
    r = client.post(
        "/v1/kbs/demo/documents",
        files=[
            ("files", ("节假日.md", io.BytesIO(HOLIDAY.encode()), "text/markdown")),
            ("files", ("empty.txt", io.BytesIO(b"   "), "text/plain")),
        ],
    )
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["kb"] == "demo" and job["status"] in ("queued", "running", "done")
    assert job["files"] == ["节假日.md", "empty.txt"] and job["files_total"] == 2
    job = wait_job(client, job["id"])
    assert job["status"] == "done" and job["files_done"] == 2 and job["chunks"] >= 1
    report = job["report"]
    assert report["files_added"] == 1 and len(report["files_failed"]) == 1
    assert "no text" in report["files_failed"][0]["error"]
    assert (home / "demo" / "uploads" / "节假日.md").read_text(encoding="utf-8") == HOLIDAY
    hits = client.post("/v1/kbs/demo/search", json={"query": "春节放假几天"}).json()["hits"]
    assert hits[0]["source"].endswith("节假日.md")

    docs = client.get("/v1/kbs/demo/documents").json()["documents"]
    holiday = next(d for d in docs if d["source"].endswith("节假日.md"))
    assert holiday["status"] == "ok" and holiday["chunks"] >= 1
    r = client.delete(f"/v1/kbs/demo/documents/{holiday['id']}")
    assert r.status_code == 200 and r.json()["chunks_removed"] == holiday["chunks"]
    assert not (home / "demo" / "uploads" / "节假日.md").exists()
    hits = client.post("/v1/kbs/demo/search", json={"query": "春节放假几天"}).json()["hits"]
    assert all(not h["source"].endswith("节假日.md") for h in hits)


def test_upload_limits_and_types(home, embedder):
    with client_for(home, embedder, max_upload_mb=0.01, max_upload_files=2) as c:
        r = upload(c, "big.txt", "年假".encode() * 4000)  # 24 KB > 10 KB
        assert r.status_code == 413 and "KBQA_MAX_UPLOAD_MB" in r.json()["detail"]
        assert not (home / "demo" / "uploads" / "big.txt").exists()
        files = [("files", (f"{i}.txt", io.BytesIO(b"x"), "text/plain")) for i in range(3)]
        r = c.post("/v1/kbs/demo/documents", files=files)
        assert r.status_code == 413 and "KBQA_MAX_UPLOAD_FILES" in r.json()["detail"]
        r = upload(c, "tool.exe", b"MZ")
        assert r.status_code == 415 and ".exe" in r.json()["detail"]
        assert upload(c, "noext", b"x").status_code == 415
        assert upload(c, "a.md", b"x", kb="nope").status_code == 404
        assert c.post("/v1/kbs/demo/documents").status_code == 422  # no files at all


def test_hostile_file_names_stay_in_the_upload_folder(client, home, tmp_path):
    r = upload(client, "../../etc/passwd", b"root:x:0:0")
    assert r.status_code == 415  # 'passwd' has no supported suffix: nothing is written
    r = upload(client, "../../../../evil.md", "# 坏\n\n内容在这里。\n".encode())
    assert r.status_code == 202
    assert r.json()["files"] == ["evil.md"]
    assert wait_job(client, r.json()["id"])["status"] == "done"
    assert (home / "demo" / "uploads" / "evil.md").is_file()
    assert not (tmp_path / "evil.md").exists() and not (home / "evil.md").exists()
    assert safe_name("..\\..\\windows\\win.ini") == "win.ini"
    assert safe_name("/etc/passwd") == "passwd"
    assert safe_name("....") == "upload"
    assert safe_name(".bashrc.md") == "bashrc.md"
    assert safe_name("a\x00b\n.md") == "ab.md"
    assert safe_name("年假 制度(2024).md") == "年假 制度(2024).md"
    long = safe_name("长" * 300 + ".docx")
    assert len(long) <= 120 and long.endswith(".docx")


def test_same_name_again_replaces_the_document(client):
    first = upload(client, "policy.md", "# 规定\n\n迟到三次扣款五十元。\n".encode())
    assert wait_job(client, first.json()["id"])["report"]["files_added"] == 1
    second = upload(client, "policy.md", "# 规定\n\n迟到三次扣款一百元。\n".encode())
    report = wait_job(client, second.json()["id"])["report"]
    assert report["files_updated"] == 1 and report["chunks_removed"] >= 1
    hits = client.post("/v1/kbs/demo/search", json={"query": "迟到扣款"}).json()["hits"]
    assert "一百元" in hits[0]["text"]


def test_uploads_a_stopped_server_never_ingested_are_ingested_at_start(home, embedder):
    # An acknowledged upload whose job died with the server: the file is in uploads/, not in
    # the store. One already ingested (the empty file, recorded as failed) is not redone.
    with client_for(home, embedder) as c:
        job = upload(c, "empty.txt", b"  ").json()
        assert wait_job(c, job["id"])["report"]["files_failed"]
    folder = home / "demo" / "uploads"
    (folder / "节假日.md").write_text(HOLIDAY, encoding="utf-8")
    (folder / ".part-123").write_bytes(b"cut off mid-copy")

    with client_for(home, embedder) as c:
        jobs = c.app.state.services.jobs.jobs()
        assert [j.files for j in jobs] == [["节假日.md"]]
        assert wait_job(c, jobs[0].id)["status"] == "done"
        hits = c.post("/v1/kbs/demo/search", json={"query": "春节放假几天"}).json()["hits"]
        assert hits[0]["source"].endswith("节假日.md")
    with client_for(home, embedder) as c:
        assert c.app.state.services.jobs.jobs() == []  # nothing left to resume
