"""Which files a batch ingests: folders walked recursively, globs applied, duplicates dropped."""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from kbqa.errors import NotFound


def collect_files(
    paths: Sequence[Path],
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    skip_under: Path | None = None,
    broken: list[tuple[str, str]] | None = None,
) -> list[Path]:
    """Resolved files under ``paths`` in a stable order, each once; hidden files are skipped.

    A glob matches a file's name or its path relative to the folder it was found in, so both
    ``*.md`` and ``policies/*.md`` work. Files a folder walk finds below ``skip_under`` (the KB
    home) are not taken, so `kbqa ingest .` does not swallow the indexes themselves; a file named
    explicitly is (the API keeps uploads in the KB's folder). Dangling links and link loops a
    walk finds are appended to ``broken`` as (path, error), so a batch can report them.
    """
    skip = skip_under.resolve() if skip_under is not None else None
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise NotFound(f"path does not exist: {', '.join(missing)}; check the spelling")
    include, exclude = tuple(include), tuple(exclude)
    seen: set[Path] = set()
    out: list[Path] = []
    for root in paths:
        walked = not root.is_file()
        if root.is_file():
            candidates = [(root, root.name)]
        else:
            candidates = []
            for p in sorted(root.rglob("*")):
                if _hidden(p.relative_to(root)):
                    continue
                if p.is_file():
                    candidates.append((p, p.relative_to(root).as_posix()))
                elif broken is not None and p.is_symlink():
                    problem = _broken_link(p)
                    if problem:
                        broken.append((str(p), problem))
        for path, rel in candidates:
            if include and not _matches(path.name, rel, include):
                continue
            if exclude and _matches(path.name, rel, exclude):
                continue
            resolved = path.resolve()
            if skip is not None and walked and resolved.is_relative_to(skip):
                continue
            if resolved not in seen:
                seen.add(resolved)
                out.append(resolved)
    return out


def _broken_link(path: Path) -> str | None:
    """Why a symbolic link cannot be followed (missing target, loop), or None if it can."""
    try:
        path.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            return f"{path}: symbolic link loop; fix or remove the link"
        target = os.readlink(path)
        return f"{path}: symbolic link to a missing target ({target}); fix or remove the link"
    return None


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _matches(name: str, rel: str, globs: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(name, g) or fnmatch.fnmatch(rel, g) for g in globs)


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(block):
            h.update(data)
    return h.hexdigest()
