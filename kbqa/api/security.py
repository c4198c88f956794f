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

With keys, ``KBQA_PUBLIC_KBS=hr,faq`` (or ``*``) lets callers without a key read (search, ask,
list documents) those KBs; every write and all KB management still need a key. That is the
company-LAN set-up: employees ask from the page, an admin with a key manages documents.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import socket
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
    anonymous: bool = False  # no key was sent: a write must ask for one (401), not deny (403)
    read: frozenset[str] = field(default_factory=frozenset)
    write: frozenset[str] = field(default_factory=frozenset)

    def can_read(self, kb: str) -> bool:
        return self.admin or bool({kb, "*"} & (self.read | self.write))

    def can_write(self, kb: str) -> bool:
        return self.admin or bool({kb, "*"} & self.write)


OPEN = Principal(name="open", admin=True)


def public_kbs(text: str | None) -> frozenset[str]:
    """KB names from ``KBQA_PUBLIC_KBS``: ``"hr, faq"`` -> {"hr", "faq"}; ``"*"`` is every KB."""
    return frozenset(n.strip() for n in (text or "").split(",") if n.strip())


def anonymous(public: frozenset[str]) -> Principal:
    """The caller without a key: reads the public KBs, nothing else."""
    return Principal(name="anonymous", anonymous=True, read=public)


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


def is_loopback(host: str) -> bool:
    """Whether ``host`` only ever reaches this machine: an IP is parsed, a name resolved.

    ``127.example.com`` is not loopback because of its prefix; ``localhost`` is, if every
    address it resolves to is. A name that does not resolve is not (uvicorn fails on it anyway).
    """
    host = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0].split("%")[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)
