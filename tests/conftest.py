"""Fixtures shared by the test files (pytest finds them here; no test module imports them).

The fake embedder, the small HR corpus written into files, the sample documents, tiny models
built once per session (read only: a test that changes a model builds its own), the `kbqa`
command line on a tmp home, the API's tmp home and clients, and one live server on a free port.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.corpus import LEAVE, TRAVEL, VPN, write
from tests.fakes import HashEmbedder

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "ingest"  # the sample company FAQ shipped in the repository


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """docs/ with leave.md, travel.md and it/vpn.txt."""
    docs = tmp_path / "docs"
    write(docs, "leave.md", LEAVE)
    write(docs, "travel.md", TRAVEL)
    write(docs, "it/vpn.txt", VPN)
    return docs


@pytest.fixture
def sample_docs(tmp_path: Path) -> Path:
    """A copy of the repository's ingest/ folder that a test may change."""
    return Path(shutil.copytree(SAMPLE, tmp_path / "docs"))


# -- tiny models, once per session ------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random sentence-transformers directory (no e5 in its name: no prefixes)."""
    from tests.tiny_models import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("models") / "tiny-st")


@pytest.fixture(scope="session")
def glm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random 2-layer GLM with its tokenizer, as transformers saves one."""
    from tests.tiny_models import build_tiny_glm

    return build_tiny_glm(tmp_path_factory.mktemp("models") / "glm")


# -- the command line -------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch):
    """``cli(*args, code=0)``: `kbqa ARGS` on a tmp home with the tiny model; the result."""
    from kbqa.cli.app import app

    monkeypatch.setenv("KBQA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KBQA_EMBEDDING_MODEL", str(tiny_model))
    runner = CliRunner()

    def run(*args: str, code: int = 0, **kw):
        result = runner.invoke(app, list(args), **kw)
        assert result.exit_code == code, (result.stdout, result.stderr)
        return result

    return run


# -- the API ----------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, embedder) -> Path:
    """A KB home with `demo` (leave, travel, vpn) and `secret` (salary)."""
    from tests.api_fixtures import build_kb

    home = tmp_path / "home"
    build_kb(home, "demo", embedder, {"leave.md": LEAVE, "travel.md": TRAVEL, "vpn.txt": VPN})
    build_kb(home, "secret", embedder, {"salary.md": "# 薪资\n\n薪资每月10日发放。\n"})
    return home


@pytest.fixture
def client(home, embedder):
    from tests.api_fixtures import client_for

    with client_for(home, embedder) as c:
        yield c


@pytest.fixture
def keyed(home, embedder):
    from tests.api_fixtures import KEYS, client_for

    with client_for(home, embedder, keys=KEYS) as c:
        yield c


@pytest.fixture
def live_server() -> Iterator[Callable[..., str]]:
    """``live_server(app)``: the app served by uvicorn on a free port in a thread; its URL.

    Every server started is stopped when the test ends.
    """
    import uvicorn

    stops: list[Callable[[], None]] = []

    def start(app) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"

        def stop() -> None:
            server.should_exit = True
            thread.join(10)

        stops.append(stop)
        return f"http://127.0.0.1:{port}"

    yield start
    for stop in stops:
        stop()
