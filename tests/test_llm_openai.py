"""The OpenAI-compatible generator against a local server started by the test."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kbqa.errors import ModelError
from kbqa.llm import GenerationConfig, load_generator

ANSWER = ["年假", "是每年", "十五天。"]


class FakeVLLM(BaseHTTPRequestHandler):
    """Answers /v1/chat/completions; ``server.plan`` lists behaviours for the next requests."""

    def log_message(self, *args):  # keep test output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        self.server.auth.append(self.headers.get("Authorization"))
        plan = self.server.plan.pop(0) if self.server.plan else "ok"
        if plan == "sleep":
            time.sleep(1.0)
        if plan == "500":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"overloaded")
            return
        if plan == "400":
            self.send_response(400)
            self.end_headers()
            self.wfile.write(b"unknown model")
            return
        self.send_response(200)
        if not body.get("stream"):
            data = {"choices": [{"message": {"role": "assistant", "content": "".join(ANSWER)}}]}
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(data).encode())
            return
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in ANSWER:
            event = {"choices": [{"delta": {"content": piece}}]}
            self.wfile.write(f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode())
            if plan == "stall":  # the answer has begun, then nothing more comes
                self.wfile.flush()
                time.sleep(1.0)
                return
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeVLLM)
    srv.requests, srv.plan, srv.auth = [], [], []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def url(srv) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/v1"


def test_generate_and_stream(server):
    gen = load_generator(f"openai:{url(server)}?model=glm-4&retries=0", api_key="sk-test")
    config = GenerationConfig(max_new_tokens=64)
    assert gen.generate("年假有几天？", [("你好", "您好")], config) == "年假是每年十五天。"
    assert list(gen.stream("年假有几天？", (), config)) == ANSWER
    sent = server.requests[0]
    assert sent["model"] == "glm-4" and sent["max_tokens"] == 64 and sent["temperature"] == 0
    assert sent["messages"] == [
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "您好"},
        {"role": "user", "content": "年假有几天？"},
    ]


def test_retries_a_failing_server(server):
    server.plan = ["500", "ok"]
    gen = load_generator(f"openai:{url(server)}?model=m&retries=1")
    assert gen.generate("q") == "年假是每年十五天。" and len(server.requests) == 2


def test_server_error_after_retries(server):
    server.plan = ["500", "500"]
    gen = load_generator(f"openai:{url(server)}?model=m&retries=1")
    with pytest.raises(ModelError, match="failed after 2 attempt.*HTTP 500: overloaded"):
        gen.generate("q")


def test_timeout(server):
    server.plan = ["sleep"]
    gen = load_generator(f"openai:{url(server)}?model=m&retries=0&timeout=0.2")
    with pytest.raises(ModelError, match="timeout"):
        list(gen.stream("q"))


def test_server_down():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gen = load_generator(f"openai:http://127.0.0.1:{port}/v1?model=m&retries=1")
    with pytest.raises(ModelError, match="cannot connect.*is the server running"):
        gen.generate("q")


def test_sends_the_key_only_when_given(server):
    load_generator(f"openai:{url(server)}?model=m&retries=0", api_key="sk-test").generate("q")
    load_generator(f"openai:{url(server)}?model=m&retries=0").generate("q")
    assert server.auth == ["Bearer sk-test", None]


def test_client_error_is_not_retried(server):
    server.plan = ["400", "ok"]
    gen = load_generator(f"openai:{url(server)}?model=m&retries=2")
    with pytest.raises(ModelError, match="failed after 1 attempt.*HTTP 400: unknown model"):
        gen.generate("q")
    assert len(server.requests) == 1


def test_stream_that_stalls_after_it_began(server):
    server.plan = ["stall"]
    gen = load_generator(f"openai:{url(server)}?model=m&retries=0&timeout=0.3")
    pieces = []
    with pytest.raises(ModelError, match="stopped sending for 0.3 s"):
        for piece in gen.stream("q"):
            pieces.append(piece)
    assert pieces == ANSWER[:1]
