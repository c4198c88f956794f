"""While a large upload is ingested, search and ask answer from the last committed state."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.api_fixtures import EchoLLM, client_for, wait_job
from tests.fakes import HashEmbedder


class GatedEmbedder(HashEmbedder):
    """Holds ingestion at its second passage batch until released; queries never wait.

    By then the first batch of a large file sits in the writer's open transaction and in the
    writer's in-memory indexes: exactly the state readers must not see.
    """

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.armed_calls = 0
        self.inside = threading.Event()
        self.release = threading.Event()

    def embed_passages(self, texts):
        if self.armed:
            self.armed_calls += 1
        if self.armed_calls == 2:
            self.inside.set()
            assert self.release.wait(30), "the test never released the ingestion"
        return super().embed_passages(texts)

    def embed_queries(self, texts):
        return np.stack([self._one(t) for t in texts])


@pytest.fixture
def embedder() -> GatedEmbedder:
    return GatedEmbedder()


def big_document(paragraphs: int = 400) -> bytes:
    body = "\n\n".join(
        f"## 第{i}条 仓库管理规定\n\n第{i}号仓库的货架编号为K{i}，盘点周期为每月一次，"
        f"负责人需在系统中登记出入库记录并保存纸质凭证{i}份。" * 3
        for i in range(paragraphs)
    )
    return ("# 仓库管理手册\n\n" + body).encode()


def test_search_and_ask_keep_answering_during_a_large_ingest(home, embedder):
    with client_for(home, embedder) as c:
        before_search = c.post("/v1/kbs/demo/search", json={"query": "年假有几天"}).json()
        before_ask = c.post("/v1/kbs/demo/ask", json={"question": "年假有几天"}).json()
        chunks_before = c.get("/v1/kbs/demo").json()["chunks"]

        embedder.armed = True
        files = [("files", ("仓库手册.md", io.BytesIO(big_document()), "text/markdown"))]
        job = c.post("/v1/kbs/demo/documents", files=files).json()
        assert embedder.inside.wait(30), "ingestion never reached its second batch"
        assert c.get(f"/v1/jobs/{job['id']}").json()["status"] == "running"

        def search(_):
            started = time.perf_counter()
            r = c.post("/v1/kbs/demo/search", json={"query": "年假有几天"})
            return r.status_code, r.json(), time.perf_counter() - started

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(search, range(20)))
        assert all(code == 200 for code, _, _ in results)
        assert all(body == before_search for _, body, _ in results)
        assert max(seconds for _, _, seconds in results) < 5.0  # not waiting for the writer
        warehouse = c.post("/v1/kbs/demo/search", json={"query": "仓库货架编号盘点"}).json()
        assert all("仓库" not in h["source"] for h in warehouse["hits"])
        during_ask = c.post("/v1/kbs/demo/ask", json={"question": "年假有几天"}).json()
        assert during_ask["answer"] == before_ask["answer"]
        assert during_ask["sources"] == before_ask["sources"]
        assert c.get("/v1/kbs/demo").json()["chunks"] == chunks_before

        embedder.release.set()
        done = wait_job(c, job["id"], timeout=60)
        assert done["status"] == "done", done
        assert done["report"]["chunks_added"] > 256  # large enough to be streamed in batches
        after = c.post("/v1/kbs/demo/search", json={"query": "仓库货架编号盘点"}).json()
        assert after["hits"][0]["source"].endswith("仓库手册.md")
        total = c.get("/v1/kbs/demo").json()["chunks"]
        assert total == chunks_before + done["report"]["chunks_added"]


class GatedLLM(EchoLLM):
    """Holds every generation until released: an LLM busy with long answers."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def stream(self, prompt, history=(), config=None):
        self.entered.set()
        assert self.release.wait(30), "the test never released the LLM"
        yield from super().stream(prompt, history, config)


def test_searches_are_not_held_up_by_answers_waiting_for_the_llm(home):
    # One query thread: if answers that wait for the LLM took it, searches would wait too.
    llm = GatedLLM()
    with (
        client_for(
            home, HashEmbedder(), generator=llm, query_threads=1, refusal_threshold=-1.0
        ) as c,
        ThreadPoolExecutor(3) as pool,
    ):
        try:
            asks = [
                pool.submit(c.post, "/v1/kbs/demo/ask", json={"question": "年假有几天"})
                for _ in range(2)
            ]
            assert llm.entered.wait(30)
            search = pool.submit(c.post, "/v1/kbs/demo/search", json={"query": "年假有几天"})
            assert search.result(timeout=20).status_code == 200
            assert not any(a.done() for a in asks)  # the answers are still generating
        finally:
            llm.release.set()
        assert all(a.result(timeout=30).json()["mode"] == "generative" for a in asks)


def test_fastapi_telemetry_is_off_unless_fastapi_is_told_to_configure_it(monkeypatch) -> None:
    from kbqa.api.app import _telemetry

    monkeypatch.delenv("FASTAPI_OTEL_AUTO_CONFIGURE", raising=False)
    assert _telemetry() == {
        "tracing": False, "metrics": False, "logs": False, "operation_spans": False
    }  # fmt: skip
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
    assert _telemetry() is None  # FastAPI's defaults: it sets the providers up itself
