"""API answers: ask (JSON and SSE), OpenAI client, ChatGLM shape, feedback, the LLM queue."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.api_fixtures import EchoLLM, client_for

ANSWERS = {"refusal_threshold": -1.0}  # HashEmbedder scores are low: never refuse here


def events(text: str) -> list[tuple[str, object]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_ask_json_has_the_cli_shape(client):
    r = client.post("/v1/kbs/demo/ask", json={"question": "年假有几天", "top_k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"question", "answer", "refused", "mode", "sources", "timings"}
    assert body["mode"] == "extractive" and body["answer"]
    assert {"retrieve_ms", "generate_ms"} <= set(body["timings"])
    assert len(body["sources"]) <= 2
    debug = client.post("/v1/kbs/demo/ask", json={"question": "年假有几天", "debug": True})
    assert "threshold" in debug.json()["debug"]


def test_ask_stream_sends_sources_then_tokens_then_timings(home, embedder):
    llm = EchoLLM()
    with client_for(home, embedder, generator=llm, **ANSWERS) as c:
        r = c.post("/v1/kbs/demo/ask", json={"question": "年假有几天", "stream": True})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        got = events(r.text)
    kinds = [k for k, _ in got]
    assert kinds[0] == "sources" and kinds[-2:] == ["timings", "done"]
    assert set(kinds[1:-2]) == {"token"} and len(kinds) == 4 + 3
    assert got[0][1][0]["source"].endswith("leave.md")
    assert "".join(d["text"] for k, d in got if k == "token") == "根据资料：5天"
    done = got[-1][1]
    assert done["mode"] == "generative" and done["answer"] == "根据资料：5天"
    assert done["timings"] == got[-2][1] and llm.calls == 1


def test_ask_stream_bad_input_is_a_status_not_an_event(client):
    r = client.post("/v1/kbs/demo/ask", json={"question": "   ", "stream": True})
    assert r.status_code == 422 and "empty" in r.json()["detail"]


def test_openai_client_non_streaming_and_streaming(home, embedder):
    openai = pytest.importorskip("openai")
    with client_for(home, embedder, generator=EchoLLM(), **ANSWERS) as c:
        oa = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=c)
        out = oa.chat.completions.create(
            model="kbqa/demo",
            messages=[
                {"role": "system", "content": "ignored"},
                {"role": "user", "content": "出差补贴多少"},
                {"role": "assistant", "content": "每天100元。"},
                {"role": "user", "content": "年假有几天"},
            ],
        )
        assert out.choices[0].message.content == "根据资料：5天"
        assert out.choices[0].finish_reason == "stop" and out.usage.total_tokens > 0
        assert out.model_extra["kbqa"]["sources"][0]["source"].endswith("leave.md")
        stream = oa.chat.completions.create(
            model="kbqa/demo", messages=[{"role": "user", "content": "年假有几天"}], stream=True
        )
        chunks = list(stream)
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks)
        assert text == "根据资料：5天" and chunks[-1].choices[0].finish_reason == "stop"
        assert [m.id for m in oa.models.list()] == ["kbqa/demo", "kbqa/secret"]
        with pytest.raises(openai.NotFoundError):
            oa.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.UnprocessableEntityError):
            oa.chat.completions.create(
                model="kbqa/demo", messages=[{"role": "assistant", "content": "x"}]
            )


def test_chatglm_api_shape_answers_from_the_default_kb(client):
    r = client.post("/", json={"prompt": "VPN客户端在哪下载", "history": []})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"response", "history", "status", "time"} and body["status"] == 200
    assert "IT门户" in body["response"]
    assert body["history"] == [["VPN客户端在哪下载", body["response"]]]
    assert client.post("/", json={"history": []}).status_code == 422


def test_feedback_is_appended_as_json_lines(client, home):
    ask = client.post("/v1/kbs/demo/ask", json={"question": "年假有几天"}).json()
    for vote in ("up", "down"):
        r = client.post(
            "/v1/kbs/demo/feedback",
            json={"question": ask["question"], "answer": ask["answer"], "vote": vote,
                  "sources": ask["sources"]},
        )  # fmt: skip
        assert r.status_code == 201 and r.json() == {"kb": "demo", "stored": True}
    rows = [json.loads(x) for x in (home / "demo" / "feedback.jsonl").read_text().splitlines()]
    assert [row["vote"] for row in rows] == ["up", "down"]
    assert rows[0]["question"] == "年假有几天" and rows[0]["sources"] == ask["sources"]
    bad = client.post("/v1/kbs/demo/feedback", json={"question": "q", "answer": "a", "vote": "meh"})
    assert bad.status_code == 422


def test_one_llm_serves_concurrent_requests_one_at_a_time(home, embedder):
    llm = EchoLLM(delay=0.02)
    with client_for(home, embedder, generator=llm, **ANSWERS) as c:

        def ask(i: int) -> int:
            r = c.post(
                "/v1/kbs/demo/ask", json={"question": f"年假有几天{i}", "stream": i % 2 == 0}
            )
            return r.status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(ask, range(8)))
    assert codes == [200] * 8
    assert llm.calls == 8 and llm.max_active == 1


def test_a_full_llm_queue_answers_503(home, embedder):
    llm = EchoLLM(delay=0.2)
    with client_for(home, embedder, generator=llm, llm_queue=1, **ANSWERS) as c:

        def ask(i: int) -> int:
            return c.post("/v1/kbs/demo/ask", json={"question": f"年假{i}"}).status_code

        with ThreadPoolExecutor(6) as pool:
            codes = sorted(pool.map(ask, range(6)))
    assert 200 in codes and 503 in codes and set(codes) <= {200, 503}


def test_the_server_reads_the_dictionary_at_start_up(home, embedder):
    """The first question in another language does not wait for CC-CEDICT (kbqa.retrieval.bridge)."""
    from kbqa.retrieval.bridge import dictionary

    dictionary.cache_clear()
    with client_for(home, embedder) as c:
        assert dictionary.cache_info().currsize == 1
        r = c.post("/v1/kbs/demo/ask", json={"question": "How many days of annual leave?"})
        assert r.status_code == 200 and dictionary.cache_info().misses == 1
