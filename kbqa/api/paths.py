"""Source paths as clients see them: relative, never the server's absolute folders.

An ingested file's source is its absolute path on the server (the CLI's users want that);
over HTTP it becomes the path below the KB's common document folder, or ``uploads/NAME``.
"""

from __future__ import annotations

import os
from typing import Any

UPLOADS = "uploads"
_KEYS = {"source", "path", "same_as"}


def _root(kb: Any) -> str:
    """The deepest folder holding every non-uploaded document, cached per KB generation."""
    generation = kb.store.pinned_generation()
    cached = getattr(kb, "_kbqa_public_root", None)
    if cached and cached[0] == generation:
        return cached[1]
    uploads = str(kb.folder / UPLOADS)
    dirs = {os.path.dirname(d.source) for d in kb.documents() if not d.source.startswith(uploads)}
    try:
        root = os.path.commonpath(sorted(dirs)) if dirs else ""
    except ValueError:  # mixed drives or relative and absolute paths
        root = ""
    kb._kbqa_public_root = (generation, root)
    return root


def public_source(kb: Any, source: str, root: str | None = None) -> str:
    """``/srv/docs/hr/leave.md`` -> ``hr/leave.md`` (KB docs under /srv/docs); uploads as
    ``uploads/NAME``; anything else as its file name. ``root``: ``_root(kb)`` if known."""
    return _public_source(source, _uploads(kb), _root(kb) if root is None else root)


def _uploads(kb: Any) -> str:
    return str(kb.folder / UPLOADS) + os.sep


def _public_source(source: str, uploads: str, root: str) -> str:
    if source.startswith(uploads):
        return f"{UPLOADS}/{source[len(uploads) :]}"
    root = root.rstrip(os.sep)
    if root and source.startswith(root + os.sep):
        return source[len(root) + 1 :].replace(os.sep, "/")
    if not os.path.isabs(source):
        return source
    return os.path.basename(source)


def public_text(kb: Any, text: str, root: str | None = None) -> str:
    """An error message with the server's folders cut out of the paths it names."""
    return _public_text(text, _uploads(kb), _root(kb) if root is None else root)


def _public_text(text: str, uploads: str, root: str) -> str:
    text = text.replace(uploads, f"{UPLOADS}/")
    root = root.rstrip(os.sep)
    return text.replace(root + os.sep, "") if root else text


def public(kb: Any, data: Any) -> Any:
    """``data`` (dicts and lists, as sent) with every source/path/same_as made public, and the
    paths inside error messages too."""
    # The two prefixes once per response, not once per source (pathlib's joins showed in
    # the server's profile).
    return _public(data, _uploads(kb), _root(kb))


def _public(data: Any, uploads: str, root: str) -> Any:
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if k in _KEYS and isinstance(v, str):
                out[k] = _public_source(v, uploads, root)
            elif k == "error" and isinstance(v, str):
                out[k] = _public_text(v, uploads, root)
            elif isinstance(v, dict | list):
                out[k] = _public(v, uploads, root)
            else:
                out[k] = v
        return out
    if isinstance(data, list):
        return [_public(v, uploads, root) for v in data]
    return data
