"""kbqa.api.hot: search and ask past FastAPI answer exactly as the routes do, or leave it to them."""

from __future__ import annotations

import json

import pytest

from kbqa.api import hot
from tests.api_fixtures import ADMIN, READER, auth

GOOD = [
    ("search", {"query": "年假有几天"}, auth(READER)),
    ("search", {"query": "VPN", "top_k": 2}, {"X-API-Key": READER}),
    ("ask", {"question": "年假有几天"}, auth(READER)),
    (
        "ask",
        {"question": "那出差呢", "history": [["年假有几天", "5天"]], "debug": True},
        auth(ADMIN),
    ),
]
SECRET_ASK = ("ask", {"question": "薪资"}, auth(READER), "secret")  # not the reader's: 403
# Each is answered by the app itself (its dependencies and handlers give the error).
BAD = [
    ("search", {"query": "年假"}, {}),  # no key: 401
    ("search", {"query": "年假"}, auth("wrong-key-123")),  # 401
    ("search", {"query": "年假"}, {"Authorization": "Basic " + READER}),  # not a bearer: 401
    SECRET_ASK,
    ("search", {"query": ""}, auth(READER)),  # 422
    ("search", {"query": "年假", "top_k": "5"}, auth(READER)),  # strict: 422
    ("search", {"query": "年假", "extra": 1}, auth(READER)),  # 422
    ("ask", {"question": "年假", "stream": True}, auth(READER)),  # SSE: the route streams
]


def _post(client, route, body, headers, kb="demo"):
    r = client.post(f"/v1/kbs/{kb}/{route}", json=body, headers=headers)
    drop = {"date", "content-length"}
    return r.status_code, {k: v for k, v in r.headers.items() if k not in drop}, _stable(r)


def _stable(r):
    if r.headers.get("content-type", "").startswith("application/json"):
        data = r.json()
        if isinstance(data, dict):
            data.pop("timings", None)  # milliseconds differ run to run
            if "debug" in data:
                data["debug"] = {k: v for k, v in data["debug"].items() if "ms" not in k}
        return data
    return r.text.split("event: timings")[0]


@pytest.fixture
def taken(monkeypatch):
    """The routes the hot path answered itself."""
    seen: list[str] = []
    answer = hot._answer

    async def spy(scope, match, body):
        payload = await answer(scope, match, body)
        if payload is not None:
            seen.append(match.group(2))
        return payload

    monkeypatch.setattr(hot, "_answer", spy)
    return seen


def test_the_hot_path_answers_good_requests_as_the_routes_do(keyed, taken, monkeypatch):
    fast = [_post(keyed, *case) for case in GOOD]
    assert taken == ["search", "search", "ask", "ask"]
    monkeypatch.setattr(hot, "_hot", lambda scope: None)  # everything through FastAPI
    assert [_post(keyed, *case) for case in GOOD] == fast
    assert taken == ["search", "search", "ask", "ask"]
    status, headers, body = fast[0]
    assert status == 200 and body["hits"] and "content-security-policy" in headers


@pytest.mark.parametrize("case", BAD)
def test_everything_else_is_answered_by_the_app(keyed, taken, monkeypatch, case):
    through_lane = _post(keyed, *case)
    assert taken == []
    monkeypatch.setattr(hot, "_hot", lambda scope: None)
    assert _post(keyed, *case) == through_lane
    assert through_lane[0] in (200, 401, 403, 422)


def test_unknown_kb_bad_json_and_other_bodies_reach_the_app(keyed, taken, monkeypatch):
    r = keyed.post("/v1/kbs/nope/search", json={"query": "x"}, headers=auth(ADMIN))
    assert r.status_code == 404
    r = keyed.post(
        "/v1/kbs/demo/search",
        content=b"{not json",
        headers={**auth(READER), "Content-Type": "application/json"},
    )
    assert r.status_code == 422

    def plain():
        return keyed.post(
            "/v1/kbs/demo/search",
            content=json.dumps({"query": "年假"}),
            headers={**auth(READER), "Content-Type": "text/plain"},
        )

    through_lane = plain()
    assert taken == []
    monkeypatch.setattr(hot, "_hot", lambda scope: None)
    assert (plain().status_code, plain().json()) == (through_lane.status_code, through_lane.json())


def test_an_error_in_the_work_is_answered_by_the_route(keyed, taken, monkeypatch):
    import kbqa.api.hot as module

    async def broken(services, kb, body):
        raise RuntimeError("boom")

    monkeypatch.setitem(module._ROUTES, "search", (module.SearchRequest, broken))
    r = keyed.post("/v1/kbs/demo/search", json={"query": "年假"}, headers=auth(READER))
    assert r.status_code == 200 and r.json()["hits"]  # the route ran it again, unbroken
    assert taken == []
