"""Endpoints of the chat page: suggestions, passage in context, original file, feedback review;
relative source paths, security headers, offline docs, duplicate uploads."""

from __future__ import annotations

import io

from tests.api_fixtures import ADMIN, EDITOR, KEYS, READER, auth, build_kb, client_for, wait_job


def test_sources_are_relative_everywhere(client, home):
    hits = client.post("/v1/kbs/demo/search", json={"query": "年假"}).json()["hits"]
    assert hits and all(not h["source"].startswith("/") for h in hits)
    assert {h["source"] for h in hits} <= {"leave.md", "travel.md", "vpn.txt"}
    answer = client.post("/v1/kbs/demo/ask", json={"question": "年假有几天"}).json()
    assert all(not s["source"].startswith("/") for s in answer["sources"])
    docs = client.get("/v1/kbs/demo/documents").json()["documents"]
    assert sorted(d["source"] for d in docs) == ["leave.md", "travel.md", "vpn.txt"]
    assert (
        str(home)
        not in client.post("/v1/kbs/demo/ask", json={"question": "年假", "stream": True}).text
    )
    files = {
        "files": (
            "新.md",
            io.BytesIO("# 新制度\n\n值班补贴每天200元。\n".encode()),
            "text/markdown",
        )
    }
    job = wait_job(client, client.post("/v1/kbs/demo/documents", files=files).json()["id"])
    assert job["status"] == "done", job
    docs = client.get("/v1/kbs/demo/documents").json()["documents"]
    assert "uploads/新.md" in [d["source"] for d in docs]
    # A failed file's error names it without the server's folders.
    files = {"files": ("空.txt", io.BytesIO(b"   \n"), "text/plain")}
    job = wait_job(client, client.post("/v1/kbs/demo/documents", files=files).json()["id"])
    (failed,) = job["report"]["files_failed"]
    assert failed["path"] == "uploads/空.txt" and failed["error"].startswith("uploads/空.txt: ")
    (row,) = [d for d in client.get("/v1/kbs/demo/documents").json()["documents"] if d["error"]]
    assert str(home) not in row["error"] and "uploads/空.txt" in row["error"]


def test_a_file_given_to_the_cli_and_uploaded_is_a_duplicate(client, home):
    text = (home.parent / "src-demo" / "vpn.txt").read_bytes()
    files = {"files": ("vpn-copy.txt", io.BytesIO(text), "text/plain")}
    job = wait_job(client, client.post("/v1/kbs/demo/documents", files=files).json()["id"])
    report = job["report"]
    assert report["files_added"] == 0 and report["chunks_added"] == 0
    assert report["files_duplicate"] == [{"path": "uploads/vpn-copy.txt", "same_as": "vpn.txt"}]
    assert len(client.get("/v1/kbs/demo/documents").json()["documents"]) == 3


def test_suggestions_come_from_the_kb(home, embedder):
    build_kb(
        home, "faq", embedder, {"faq.csv": "问题,答案\n年假有几天？,5天。\n怎么报销？,填报销单。\n"}
    )
    with client_for(home, embedder) as c:
        got = c.get("/v1/kbs/faq/suggestions?n=5").json()["suggestions"]
        assert sorted(got) == ["年假有几天？", "怎么报销？"]
        # No Q/A rows: questions about its headings.
        assert "年假有哪些规定？" in c.get("/v1/kbs/demo/suggestions?n=20").json()["suggestions"]
        assert c.get("/v1/kbs/nope/suggestions").status_code == 404


def test_passage_in_context_and_the_original_file(home, embedder):
    long = "\n\n".join(f"第{i}条：" + "规定内容。" * 30 for i in range(1, 6))
    build_kb(home, "rules", embedder, {"rules.md": long})
    with client_for(home, embedder, keys=KEYS, public_kbs="rules") as c:
        hit = c.post("/v1/kbs/rules/search", json={"query": "第1条"}).json()["hits"][0]
        whole = c.get(f"/v1/kbs/rules/chunks/{hit['chunk_id']}/context?window=5").json()
        texts = [*whole["before"], whole["text"], *whole["after"]]
        assert len(texts) >= 3 and all(t[:20] in long for t in texts)
        # The middle chunk of the document, with one neighbour either side.
        ids = sorted(range(hit["chunk_id"] - len(whole["before"]), hit["chunk_id"] + len(texts)))
        mid = ids[len(texts) // 2]
        ctx = c.get(f"/v1/kbs/rules/chunks/{mid}/context").json()
        assert len(ctx["before"]) == 1 and len(ctx["after"]) == 1 and ctx["text"] in texts
        assert ctx["source"] == "rules.md" and ctx["doc_id"] == hit["doc_id"]
        assert c.get("/v1/kbs/rules/chunks/999999/context").status_code == 404
        r = c.get(f"/v1/kbs/rules/documents/{hit['doc_id']}/file")
        assert r.status_code == 200 and r.content.decode() == long
        assert "rules.md" in r.headers["content-disposition"]
        # Auth is checked: another KB's file needs a key that may read it.
        sid = c.get("/v1/kbs/secret/documents", headers=auth(ADMIN)).json()["documents"][0]["id"]
        assert c.get(f"/v1/kbs/secret/documents/{sid}/file").status_code == 401
        assert (
            c.get(f"/v1/kbs/secret/documents/{sid}/file", headers=auth(READER)).status_code == 403
        )
        assert c.get(f"/v1/kbs/secret/documents/{sid}/file", headers=auth(ADMIN)).status_code == 200
        assert c.get("/v1/kbs/rules/documents/424242/file").status_code == 404


def test_feedback_review_needs_a_writer(home, embedder):
    with client_for(home, embedder, keys=KEYS, public_kbs="demo") as c:
        for vote in ("up", "down", "down"):
            body = {"question": "年假几天", "answer": "5天", "vote": vote}
            assert c.post("/v1/kbs/demo/feedback", json=body).status_code == 201  # anonymous
        assert c.get("/v1/kbs/demo/feedback").status_code == 401
        assert c.get("/v1/kbs/demo/feedback", headers=auth(READER)).status_code == 403
        got = c.get("/v1/kbs/demo/feedback", headers=auth(EDITOR)).json()
        assert (got["total"], got["up"], got["down"]) == (3, 1, 2)
        assert "key" not in got["records"][0]
        down = c.get("/v1/kbs/demo/feedback?vote=down", headers=auth(ADMIN)).json()
        assert down["total"] == 2 and {r["vote"] for r in down["records"]} == {"down"}


def test_security_headers_and_offline_docs(client):
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert (
        "cdn.jsdelivr" not in docs.text
        and "unsafe-inline" in docs.headers["content-security-policy"]
    )
    redoc = client.get("/redoc")
    assert "/docs-assets/redoc.standalone.js" in redoc.text and "fonts.googleapis" not in redoc.text
    js = client.get("/docs-assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    assert client.get("/docs-assets/redoc.standalone.js").status_code == 200
