"""Anonymous read of KBQA_PUBLIC_KBS while every write needs a key; loopback by address."""

from __future__ import annotations

import io
import socket

import pytest

from kbqa.api.security import is_loopback, public_kbs
from tests.api_fixtures import ADMIN, KEYS, READER, auth, client_for

Q = {"query": "年假"}


@pytest.fixture
def lan(home, embedder):
    with client_for(home, embedder, keys=KEYS, public_kbs="demo") as c:
        yield c


def test_anonymous_callers_read_public_kbs_only(lan):
    assert lan.post("/v1/kbs/demo/search", json=Q).status_code == 200
    r = lan.post("/v1/kbs/demo/ask", json={"question": "年假有几天"})
    assert r.status_code == 200 and r.json()["answer"]
    assert lan.get("/v1/kbs/demo/documents").status_code == 200
    assert [kb["name"] for kb in lan.get("/v1/kbs").json()["kbs"]] == ["demo"]
    assert [m["id"] for m in lan.get("/v1/models").json()["data"]] == ["kbqa/demo"]
    assert lan.post("/", json={"prompt": "年假有几天"}).status_code == 200
    # A KB that is not public asks for a key (401), it does not deny one (403).
    r = lan.post("/v1/kbs/secret/search", json=Q)
    assert r.status_code == 401 and "API key" in r.json()["detail"]
    assert lan.post("/v1/kbs/secret/search", json=Q, headers=auth(ADMIN)).status_code == 200
    # A wrong key is still an error, not a fall-back to anonymous.
    assert lan.post("/v1/kbs/demo/search", json=Q, headers=auth("wrong-key-123")).status_code == 401


def test_every_write_still_needs_a_key(lan):
    files = {"files": ("a.md", io.BytesIO("# 新制度\n\n内容。\n".encode()), "text/markdown")}
    assert lan.post("/v1/kbs/demo/documents", files=files).status_code == 401
    assert lan.delete("/v1/kbs/demo/documents/1").status_code == 401
    assert lan.post("/v1/kbs", json={"name": "x"}).status_code == 401
    assert lan.delete("/v1/kbs/demo").status_code == 401
    # A reader's key is still a reader's: 403 on writes.
    assert lan.delete("/v1/kbs/demo/documents/1", headers=auth(READER)).status_code == 403
    assert lan.get("/v1/kbs/demo").status_code == 200


def test_star_makes_every_kb_public(home, embedder):
    with client_for(home, embedder, keys=KEYS, public_kbs="*") as c:
        assert [kb["name"] for kb in c.get("/v1/kbs").json()["kbs"]] == ["demo", "secret"]
        assert c.post("/v1/kbs", json={"name": "x"}).status_code == 401
    assert public_kbs(" hr, faq ,") == {"hr", "faq"} and public_kbs("") == frozenset()


def test_loopback_is_decided_by_address_not_by_prefix(monkeypatch):
    assert is_loopback("127.0.0.2") and is_loopback("[::1]") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.1.2.3")
    real = socket.getaddrinfo

    def fake(host, *a, **kw):
        table = {"127.evil.example": "203.0.113.5", "lo.example": "127.0.0.1"}
        if host in table:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (table[host], 0))]
        if host == "nowhere.invalid":
            raise socket.gaierror("no such host")
        return real(host, *a, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    assert not is_loopback("127.evil.example")  # was loopback by its "127." prefix
    assert is_loopback("lo.example") and not is_loopback("nowhere.invalid")


def test_serve_beyond_loopback_with_keys_and_public_kbs(monkeypatch, tmp_path):
    import uvicorn
    from typer.testing import CliRunner

    from kbqa.cli.app import app

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append(kw))
    monkeypatch.setenv("KBQA_HOME", str(tmp_path))
    monkeypatch.setenv("KBQA_API_KEYS", "ops-key-0001:admin")
    monkeypatch.setenv("KBQA_PUBLIC_KBS", "faq")
    r = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    assert r.exit_code == 0, r.output
    assert calls[-1]["host"] == "0.0.0.0" and "faq" in r.output
