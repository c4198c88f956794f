"""Property-based run of every operation in the OpenAPI schema: no input gives a 5xx."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

from fastapi.testclient import TestClient  # noqa: E402

from kbqa.api.app import create_app  # noqa: E402
from kbqa.config import Settings  # noqa: E402
from tests.api_fixtures import build_kb  # noqa: E402
from tests.corpus import LEAVE, TRAVEL, VPN  # noqa: E402
from tests.fakes import HashEmbedder  # noqa: E402

pytestmark = pytest.mark.slow


# The app is built at import (cheap: nothing loads before the lifespan); the KB and the
# lifespan come from the fixture, only when the test runs.
HOME = Path(tempfile.mkdtemp(prefix="kbqa-schemathesis-")) / "home"
EMBEDDER = HashEmbedder()
APP = create_app(
    Settings(home=HOME, max_upload_mb=1.0), embedder=EMBEDDER, generator=None, keys=None
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def running_app():
    build_kb(HOME, "demo", EMBEDDER, {"leave.md": LEAVE, "travel.md": TRAVEL, "vpn.txt": VPN})
    with TestClient(APP):  # the lifespan: services stay up for every generated case
        yield
    shutil.rmtree(HOME.parent, ignore_errors=True)


@schema.parametrize()
@hypothesis.settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_no_input_gives_a_server_error(case):
    from schemathesis.checks import not_a_server_error

    case.call_and_validate(checks=[not_a_server_error])
