"""JSON bodies of search and answer responses, encoded by orjson."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class FastJSON(JSONResponse):
    """The bytes Starlette's JSONResponse writes (compact, UTF-8, nothing escaped), from
    orjson: the stdlib encoder was ~2% of the server's interpreter-lock time under load
    (docs/benchmarks.md, issue 14). Errors keep their own ASCII-escaped bodies (api.errors)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
