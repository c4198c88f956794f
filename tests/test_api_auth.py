"""API keys: 401 without a valid key, 403 outside a key's scopes, admin for KB management."""

from __future__ import annotations

import io
import json

import pytest

from kbqa.api.security import KeyRing, is_loopback
from kbqa.config import Settings
from kbqa.errors import BadInput
from tests.api_fixtures import ADMIN, EDITOR, READER, auth

Q = {"query": "年假"}


def test_missing_or_wrong_key_is_401(keyed):
    r = keyed.post("/v1/kbs/demo/search", json=Q)
    assert r.status_code == 401 and "API key" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    assert (
        keyed.post("/v1/kbs/demo/search", json=Q, headers=auth("wrong-key-123")).status_code == 401
    )
    assert keyed.get("/v1/kbs").status_code == 401
    # Health, the page and the docs need no key.
    assert keyed.get("/health").json()["auth"] is True
    assert keyed.get("/").status_code == 200 and keyed.get("/openapi.json").status_code == 200


def test_reader_reads_its_kb_only(keyed):
    ok = keyed.post("/v1/kbs/demo/search", json=Q, headers=auth(READER))
    assert ok.status_code == 200
    by_header = keyed.post("/v1/kbs/demo/search", json=Q, headers={"X-API-Key": READER})
    assert by_header.status_code == 200
    r = keyed.post("/v1/kbs/secret/search", json=Q, headers=auth(READER))
    assert r.status_code == 403 and "secret" in r.json()["detail"]
    assert (
        keyed.post("/v1/kbs/secret/ask", json={"question": "x"}, headers=auth(READER)).status_code
        == 403
    )
    # 403 before 404: a key learns nothing about KBs it may not read.
    assert keyed.post("/v1/kbs/nope/search", json=Q, headers=auth(READER)).status_code == 403
    names = [kb["name"] for kb in keyed.get("/v1/kbs", headers=auth(READER)).json()["kbs"]]
    assert names == ["demo"]
    models = keyed.get("/v1/models", headers=auth(READER)).json()["data"]
    assert [m["id"] for m in models] == ["kbqa/demo"]


def test_writes_need_write_scope_and_management_needs_admin(keyed):
    files = {"files": ("a.md", io.BytesIO("# 新制度\n\n内容。\n".encode()), "text/markdown")}
    r = keyed.post("/v1/kbs/demo/documents", files=files, headers=auth(READER))
    assert r.status_code == 403
    files["files"][1].seek(0)
    r = keyed.post("/v1/kbs/demo/documents", files=files, headers=auth(EDITOR))
    assert r.status_code == 202, r.text
    assert keyed.post("/v1/kbs", json={"name": "x"}, headers=auth(EDITOR)).status_code == 403
    assert keyed.delete("/v1/kbs/demo", headers=auth(EDITOR)).status_code == 403
    assert keyed.post("/v1/kbs", json={"name": "x"}, headers=auth(ADMIN)).status_code == 201
    assert keyed.delete("/v1/kbs/x", headers=auth(ADMIN)).status_code == 200
    # The job of a KB is visible to its readers only.
    job = r.json()["id"]
    assert keyed.get(f"/v1/jobs/{job}", headers=auth(READER)).status_code == 200
    assert keyed.get(f"/v1/jobs/{job}").status_code == 401


def test_key_formats(tmp_path):
    ring = KeyRing.from_texts([("adminkey1:admin, hrbot-key:read=hr+faq:write=faq", "env")])
    admin, bot = ring.lookup("adminkey1"), ring.lookup("hrbot-key")
    assert admin.admin and not bot.admin
    assert bot.can_read("hr") and bot.can_read("faq") and not bot.can_read("it")
    assert bot.can_write("faq") and not bot.can_write("hr")
    star = KeyRing.from_texts([(json.dumps({"all-reader": {"read": ["*"]}}), "env")])
    assert star.lookup("all-reader").can_read("anything")
    assert ring.lookup("nope") is None and not KeyRing({}).enabled
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps({"file-key-01": {"write": ["hr"]}}))
    ring = KeyRing.from_settings(Settings(api_keys="envkey-01:admin", api_keys_file=keys_file))
    assert ring.lookup("envkey-01").admin and ring.lookup("file-key-01").can_write("hr")
    for bad in ("short:admin", "key-without-scope", "longenough:read", "longenough:root", "{"):
        with pytest.raises(BadInput):
            KeyRing.from_texts([(bad, "env")])


def test_loopback_hosts():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")


def test_serve_refuses_an_open_server_beyond_loopback(monkeypatch, tmp_path):
    import uvicorn
    from typer.testing import CliRunner

    from kbqa.cli.app import app

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append(kw))
    monkeypatch.setenv("KBQA_HOME", str(tmp_path))
    monkeypatch.delenv("KBQA_API_KEYS", raising=False)
    monkeypatch.delenv("KBQA_API_KEYS_FILE", raising=False)
    runner = CliRunner()
    r = runner.invoke(app, ["serve", "--host", "0.0.0.0"])
    assert r.exit_code == 2 and "--allow-insecure" in r.output and not calls
    r = runner.invoke(app, ["serve"])
    assert r.exit_code == 0 and "127.0.0.1 only" in r.output
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["factory"] is True
    r = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--allow-insecure"])
    assert r.exit_code == 0 and "WITHOUT AUTHENTICATION" in r.output
    monkeypatch.setenv("KBQA_API_KEYS", "ops-key-0001:admin")
    r = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--port", "9000"])
    assert r.exit_code == 0 and calls[-1]["host"] == "0.0.0.0" and calls[-1]["port"] == 9000
    monkeypatch.setenv("KBQA_REFUSAL_THRESHOLD", "5")
    n = len(calls)
    r = runner.invoke(app, ["serve"])
    assert r.exit_code == 2 and "refusal_threshold" in r.output and len(calls) == n
