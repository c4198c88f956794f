"""Client conventions: OpenAI errors/sampling/system/usage, ChatGLM api.py requests as sent."""

from __future__ import annotations

import json

import pytest

from kbqa.llm.base import GenerationConfig, cut_at_stop
from tests.api_fixtures import KEYS, EchoLLM, client_for

ANSWERS = {"refusal_threshold": -1.0}  # HashEmbedder scores are low: never refuse here


class RecordingLLM(EchoLLM):
    """EchoLLM that keeps the prompt and GenerationConfig of each call."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, GenerationConfig]] = []

    def stream(self, prompt, history=(), config=None):
        self.seen.append((prompt, config))
        yield from super().stream(prompt, history, config)


def test_openai_sdk_shows_kbqas_error_text(home, embedder):
    openai = pytest.importorskip("openai")
    with client_for(home, embedder, keys=KEYS) as c:
        oa = openai.OpenAI(base_url="http://testserver/v1", api_key="admin-key-0001", http_client=c)
        with pytest.raises(openai.NotFoundError) as e:
            oa.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])
        assert "use 'kbqa/<kb>'" in str(e.value) and e.value.code == "model_not_found"
        with pytest.raises(openai.NotFoundError) as e:
            oa.chat.completions.create(
                model="kbqa/nope", messages=[{"role": "user", "content": "x"}]
            )
        assert "nope" in str(e.value)
        with pytest.raises(openai.UnprocessableEntityError) as e:
            oa.chat.completions.create(model="kbqa/demo", messages=[{"role": "assistant", "content": "x"}])  # fmt: skip
        assert "must end with a non-empty user message" in str(e.value)
        with pytest.raises(openai.UnprocessableEntityError) as e:
            oa.chat.completions.create(
                model="kbqa/demo", messages=[{"role": "user", "content": "x"}], temperature=5
            )
        assert "temperature" in str(e.value)
        bad = openai.OpenAI(base_url="http://testserver/v1", api_key="wrong-key-123", http_client=c)
        with pytest.raises(openai.AuthenticationError) as e:
            bad.models.list()
        assert "not valid" in str(e.value) and e.value.type == "invalid_request_error"
    # Elsewhere the errors keep kbqa's {"detail": ...} shape.
    assert c.post("/v1/kbs/demo/search", json={}).json().keys() == {"detail"}


def test_openai_sampling_system_and_usage_reach_the_generator(home, embedder):
    llm = RecordingLLM()
    with client_for(home, embedder, generator=llm, max_new_tokens=300, **ANSWERS) as c:
        body = {
            "model": "kbqa/demo",
            "messages": [
                {"role": "system", "content": "请用英文回答。"},
                {"role": "user", "content": "年假有几天"},
            ],
            "temperature": 0.7, "top_p": 0.5, "max_tokens": 1000, "stop": ["：5"],
        }  # fmt: skip
        out = c.post("/v1/chat/completions", json=body).json()
        prompt, config = llm.seen[-1]
        assert prompt.startswith("请用英文回答。\n\n已知信息")
        assert (config.temperature, config.top_p, config.stop) == (0.7, 0.5, ("：5",))
        assert config.max_new_tokens == 300  # never beyond the server's KBQA_MAX_NEW_TOKENS
        assert out["choices"][0]["message"]["content"] == "根据资料"  # cut before the stop
        usage = out["usage"]
        assert usage["prompt_tokens"] >= len("请用英文回答。年假有几天")
        assert usage["completion_tokens"] == 4
        assert usage["total_tokens"] == usage["prompt_tokens"] + 4
        # Streamed, the stop string cuts the stream too.
        r = c.post("/v1/chat/completions", json={**body, "stream": True, "stop": "资料"})
        text = "".join(
            json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            for line in r.text.splitlines()
            if line.startswith("data: {")
        )
        assert text == "根据"
        # Streamed usage, when stream_options asks for it (the SDK's include_usage).
        r = c.post(
            "/v1/chat/completions",
            json={**body, "stream": True, "stream_options": {"include_usage": True}},
        )
        last = [json.loads(x[6:]) for x in r.text.splitlines() if x.startswith("data: {")][-1]
        assert last["choices"] == [] and last["usage"]["completion_tokens"] == 4
        # No sampling fields: the server's defaults (greedy, KBQA_MAX_NEW_TOKENS).
        c.post(
            "/v1/chat/completions", json={"model": "kbqa/demo", "messages": body["messages"][1:]}
        )
        prompt, config = llm.seen[-1]
        assert prompt.startswith("已知信息") and config.temperature == 0 and not config.stop
        assert (
            c.post("/v1/chat/completions", json={**body, "stop": list("abcde")}).status_code == 422
        )


def test_cut_at_stop_across_pieces():
    assert "".join(cut_at_stop(["ab", "c|", "d"], ["c|d"])) == "ab"
    assert "".join(cut_at_stop(["ab", "cd"], ["x"])) == "abcd"
    assert list(cut_at_stop(["stop"], ["st"])) == []
    assert "".join(cut_at_stop(["abc"], [])) == "abc"


def test_chatglm_body_without_content_type_sampling_and_kb(home, embedder):
    llm = RecordingLLM()
    with client_for(home, embedder, generator=llm, **ANSWERS) as c:
        raw = json.dumps({"prompt": "年假有几天", "history": [], "max_length": 64,
                          "top_p": 0.7, "temperature": 0.95}, ensure_ascii=False)  # fmt: skip
        # As curl -d sends it: application/x-www-form-urlencoded, body JSON all the same.
        r = c.post(
            "/", content=raw.encode(), headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["response"] == "根据资料：5天"
        _, config = llm.seen[-1]
        assert (config.max_new_tokens, config.top_p, config.temperature) == (64, 0.7, 0.95)
        r = c.post("/", content=json.dumps({"prompt": "薪资哪天发", "kb": "secret"}).encode())
        assert r.status_code == 200 and "薪资" in llm.seen[-1][0]
        assert c.post("/", content=b"{not json").status_code == 422
        assert c.post("/", json={"prompt": "x", "kb": "nope"}).status_code == 404
        assert c.post("/", json={"prompt": "x", "top_p": 0}).status_code == 422
