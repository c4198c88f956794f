"""API: health, KB management, search, and the 4xx answers to bad input."""

from __future__ import annotations

from tests.api_fixtures import client_for


def test_health_and_openapi(client):
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert health["embedding_model"] == "test/hash-embedder"
    assert health["auth"] is False and health["llm"] is None
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/kbs", "/v1/kbs/{kb}", "/v1/kbs/{kb}/documents", "/v1/kbs/{kb}/documents/{doc_id}",
        "/v1/jobs/{job_id}", "/v1/kbs/{kb}/search", "/v1/kbs/{kb}/ask",
        "/v1/chat/completions", "/", "/health",
    ):  # fmt: skip
        assert path in paths, path
    assert "post" in paths["/"] and client.get("/docs").status_code == 200


def test_list_create_delete_kbs(client):
    names = [kb["name"] for kb in client.get("/v1/kbs").json()["kbs"]]
    assert names == ["demo", "secret"]
    assert all("folder" not in kb for kb in client.get("/v1/kbs").json()["kbs"])
    r = client.post("/v1/kbs", json={"name": "hr", "chunk_size": 300})
    assert r.status_code == 201, r.text
    assert (r.json()["name"], r.json()["chunk_size"], r.json()["chunks"]) == ("hr", 300, 0)
    assert client.post("/v1/kbs", json={"name": "hr"}).status_code == 409
    assert client.get("/v1/kbs/hr").json()["embedding_model"] == "test/hash-embedder"
    r = client.delete("/v1/kbs/hr")
    assert r.status_code == 200 and r.json() == {"kb": "hr", "deleted": True}
    assert client.get("/v1/kbs/hr").status_code == 404
    assert client.delete("/v1/kbs/hr").status_code == 404


def test_search_returns_the_cli_shape(client):
    r = client.post("/v1/kbs/demo/search", json={"query": "年假有几天", "top_k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == "年假有几天" and 1 <= len(body["hits"]) <= 2
    hit = body["hits"][0]
    assert set(hit) == {"chunk_id", "doc_id", "source", "text", "score", "metadata"}
    assert hit["source"].endswith("leave.md") and "5天带薪年假" in hit["text"]
    assert -1.0 <= hit["score"] <= 1.0001


def test_bad_input_gets_4xx_json(client):
    def post(path, **kw):
        r = client.post(path, **kw)
        assert r.headers["content-type"].startswith("application/json")
        assert "detail" in r.json()
        return r.status_code

    search = "/v1/kbs/demo/search"
    headers = {"Content-Type": "application/json"}
    assert post(search, content=b'{"query": "x", ', headers=headers) == 422  # malformed JSON
    assert post(search, json={"query": ["not", "a", "string"]}) == 422  # wrong type
    assert post(search, json={"query": "x", "top_k": "many"}) == 422
    assert post(search, json={"query": "x", "top_k": 0}) == 422  # top_k out of range
    assert post(search, json={"query": "x", "top_k": 101}) == 422
    assert post(search, json={"query": ""}) == 422
    assert post(search, json={"query": "x", "unknown": 1}) == 422
    assert post("/v1/kbs/nope/search", json={"query": "x"}) == 404  # unknown KB
    assert post("/v1/kbs/..%2F..%2Fetc/search", json={"query": "x"}) in (404, 422)
    assert post("/v1/kbs/a%20b/search", json={"query": "x"}) == 422  # not a KB name
    assert post("/v1/kbs/demo/ask", json={"question": "x", "top_k": -1}) == 422
    assert post("/v1/kbs/demo/ask", json={"question": "x", "history": "no"}) == 422
    assert post("/v1/kbs", json={"name": "../x"}) == 422
    assert client.get("/v1/jobs/unknown").status_code == 404
    assert client.delete("/v1/kbs/demo/documents/999999").status_code == 404


def test_request_body_limit(home, embedder):
    with client_for(home, embedder, max_body_kb=1) as c:
        r = c.post("/v1/kbs/demo/search", json={"query": "年" * 3000})
        assert r.status_code == 413 and "KBQA_MAX_BODY_KB" in r.json()["detail"]
        # Without a Content-Length the limit is enforced on the stream itself.
        chunks = (b'{"query": "' + b"a" * 600, b"a" * 600 + b'"}')
        r = c.post(
            "/v1/kbs/demo/search",
            content=iter(chunks),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 413


def test_cors_only_for_configured_origins(home, embedder):
    origin = {"Origin": "https://intranet.example.com"}
    with client_for(home, embedder, cors_origins="https://intranet.example.com") as c:
        r = c.options(
            "/v1/kbs/demo/search",
            headers={**origin, "Access-Control-Request-Method": "POST"},
        )
        assert r.headers["access-control-allow-origin"] == origin["Origin"]
    with client_for(home, embedder) as c:
        r = c.get("/health", headers=origin)
        assert "access-control-allow-origin" not in r.headers


def test_a_bad_setting_stops_the_start_up_with_its_message(home, embedder):
    import pytest

    from kbqa.errors import BadInput

    with (
        pytest.raises(BadInput, match="refusal_threshold"),
        client_for(home, embedder, refusal_threshold=5.0),
    ):
        pass
