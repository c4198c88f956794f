"""API keys: which KBs a key may read or write, and which keys may manage KBs (admin).

Keys come from ``KBQA_API_KEYS`` and/or the JSON file ``KBQA_API_KEYS_FILE``.

``KBQA_API_KEYS`` is either that JSON or a short form: entries separated by commas, each
``KEY:SCOPE[:SCOPE...]`` where SCOPE is ``admin``, ``read=KB+KB`` or ``write=KB+KB`` (``*`` is
every KB; write implies read). Example::

    KBQA_API_KEYS="s3cret-admin:admin,hr-bot:read=hr+faq,hr-editor:write=hr"

The JSON (env or file) maps a key to its scopes::

    {"hr-bot": {"read": ["hr", "faq"]}, "ops": {"admin": true}, "ed": {"write": ["hr"]}}

No keys configured means an open server: every caller is admin. ``kbqa serve`` then binds to
127.0.0.1 only, unless told otherwise.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kbqa.config import Settings
from kbqa.errors import BadInput


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's scopes (or everything, on an open server)."""

    name: str
    admin: bool = False
    read: frozenset[str] = field(default_factory=frozenset)
    write: frozenset[str] = field(default_factory=frozenset)

    def can_read(self, kb: str) -> bool:
        return self.admin or bool({kb, "*"} & (self.read | self.write))

    def can_write(self, kb: str) -> bool:
        return self.admin or bool({kb, "*"} & self.write)


OPEN = Principal(name="open", admin=True)


def _scopes(key: str, spec: dict) -> Principal:
    if not isinstance(spec, dict):
        raise BadInput(f"API key {key[:4]}...: its scopes must be an object like {{'read': [...]}}")
    unknown = set(spec) - {"admin", "read", "write", "name"}
    if unknown:
        raise BadInput(f"API key {key[:4]}...: unknown scope(s) {sorted(unknown)}")

    def names(value) -> frozenset[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadInput(f"API key {key[:4]}...: read/write must list KB names")
        return frozenset(value)

    return Principal(
        name=str(spec.get("name") or f"key {key[:4]}..."),
        admin=bool(spec.get("admin", False)),
        read=names(spec.get("read", [])),
        write=names(spec.get("write", [])),
    )


def _short_form(text: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        key, _, rest = entry.partition(":")
        if not key or not rest:
            raise BadInput(
                f"KBQA_API_KEYS entry {entry[:8]!r}...: write KEY:admin, KEY:read=KB+KB or "
                "KEY:write=KB (entries separated by commas)"
            )
        spec: dict = {}
        for scope in rest.split(":"):
            kind, _, kbs = scope.partition("=")
            if kind == "admin" and not kbs:
                spec["admin"] = True
            elif kind in ("read", "write") and kbs:
                spec.setdefault(kind, []).extend(k for k in kbs.split("+") if k)
            else:
                raise BadInput(
                    f"KBQA_API_KEYS: unknown scope {scope!r}; use admin, read=KB+KB or write=KB+KB"
                )
        out[key] = spec
    return out


def _parse(text: str, where: str) -> dict[str, dict]:
    text = text.strip()
    if not text.startswith("{"):
        return _short_form(text)
    try:
        data = json.loads(text)
    except ValueError as e:
        raise BadInput(f"{where} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise BadInput(f"{where} must be a JSON object mapping each key to its scopes")
    return data


@dataclass(frozen=True)
class KeyRing:
    """The configured keys; empty means an open server."""

    keys: dict[str, Principal]

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def lookup(self, presented: str) -> Principal | None:
        # Compare against every key in constant time, so timing does not reveal a prefix.
        found = None
        for key, principal in self.keys.items():
            if hmac.compare_digest(key.encode(), presented.encode()):
                found = principal
        return found

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        sources: list[tuple[str, str]] = []
        if settings.api_keys and settings.api_keys.strip():
            sources.append((settings.api_keys, "KBQA_API_KEYS"))
        if settings.api_keys_file is not None:
            path = Path(settings.api_keys_file)
            try:
                sources.append((path.read_text(encoding="utf-8"), f"keys file {path}"))
            except OSError as e:
                raise BadInput(f"KBQA_API_KEYS_FILE: cannot read {path} ({e.strerror})") from e
        return cls.from_texts(sources)

    @classmethod
    def from_texts(cls, sources: Iterable[tuple[str, str]]) -> KeyRing:
        keys: dict[str, Principal] = {}
        for text, where in sources:
            for key, spec in _parse(text, where).items():
                if len(key) < 8:
                    raise BadInput(f"{where}: API keys must be at least 8 characters long")
                keys[key] = _scopes(key, spec)
        return cls(keys)


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")
