"""Parse an LLM spec string (``transformers:/dir?quant=nf4`` / ``openai:http://h/v1?model=m``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from kbqa.errors import BadInput
from kbqa.llm.chatglm.detect import FORMATS

QUANT_MODES = ("nf4", "int8")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_EXAMPLES = (
    "transformers:/path/to/model[?quant=nf4|int8&adapter=/path&format=chatglm3"
    "&trust_remote_code=1], "
    "openai:http://host:port/v1?model=NAME"
)


@dataclass(frozen=True)
class TransformersSpec:
    """A local model directory run in-process through transformers."""

    path: Path
    quant: str | None = None  # None: the checkpoint's own dtype
    adapter: Path | None = None
    trust_remote_code: bool = False  # other models only: the ChatGLM family loads natively
    device: str | None = None  # None: cuda when available, else cpu
    context_window: int | None = None  # None: read from the model config
    # None: told from config.json; set it where that cannot tell (a renamed ChatGLM3 folder).
    format: str | None = None

    def __post_init__(self) -> None:
        if not str(self.path):
            raise BadInput("the transformers spec needs a model directory: " + _EXAMPLES)
        if self.quant is not None and self.quant not in QUANT_MODES:
            raise BadInput(f"quant must be one of {list(QUANT_MODES)}, got {self.quant!r}")
        if self.format is not None and self.format not in FORMATS:
            raise BadInput(f"format must be one of {list(FORMATS)}, got {self.format!r}")
        if self.device is not None and self.device.split(":")[0] not in ("cpu", "cuda"):
            raise BadInput(f"device must be cpu, cuda or cuda:N, got {self.device!r}")
        if self.context_window is not None and self.context_window <= 0:
            raise BadInput(f"context_window must be greater than 0, got {self.context_window}")


@dataclass(frozen=True)
class OpenAISpec:
    """A server speaking the OpenAI ``/v1/chat/completions`` API (vLLM, ...)."""

    base_url: str
    model: str
    timeout: float = 60.0  # seconds per request
    retries: int = 2  # extra attempts on connection errors, timeouts and 5xx/429
    context_window: int = 8192

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BadInput(f"the openai spec needs an http(s) URL, got {self.base_url!r}")
        if not self.model:
            raise BadInput("the openai spec needs ?model=NAME (the name the server serves)")
        if self.timeout <= 0:
            raise BadInput(f"timeout must be greater than 0, got {self.timeout}")
        if self.retries < 0:
            raise BadInput(f"retries must be at least 0, got {self.retries}")
        if self.context_window <= 0:
            raise BadInput(f"context_window must be greater than 0, got {self.context_window}")


LLMSpec = TransformersSpec | OpenAISpec


def _query(text: str, allowed: tuple[str, ...], spec: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError:
        raise BadInput(
            f"LLM spec {spec!r}: cannot parse options {text!r}; use key=value&..."
        ) from None
    out: dict[str, str] = {}
    for key, value in pairs:
        if key not in allowed:
            raise BadInput(f"LLM spec {spec!r}: unknown option {key!r}; known: {list(allowed)}")
        if key in out:
            raise BadInput(f"LLM spec {spec!r}: option {key!r} given twice")
        out[key] = value
    return out


def _number(opts: dict[str, str], key: str, kind: type, spec: str):
    if key not in opts:
        return None
    try:
        return kind(opts[key])
    except ValueError:
        raise BadInput(
            f"LLM spec {spec!r}: {key} must be a {kind.__name__}, got {opts[key]!r}"
        ) from None


def _flag(opts: dict[str, str], key: str, spec: str) -> bool:
    value = opts.get(key, "0").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadInput(f"LLM spec {spec!r}: {key} must be 1 or 0, got {opts[key]!r}")


def parse_spec(spec: str) -> LLMSpec:
    """Parse a spec; BadInput names the part that is wrong.

    Example: ``parse_spec("transformers:/m?quant=nf4").quant == "nf4"``.
    """
    kind, sep, rest = spec.strip().partition(":")
    if not sep or kind not in ("transformers", "openai"):
        raise BadInput(f"LLM spec {spec!r} does not parse; use one of: {_EXAMPLES}")
    # A path or URL rarely holds '?', so the first one starts the options.
    target, _, query = rest.partition("?")
    if kind == "transformers":
        opts = _query(
            query,
            ("quant", "adapter", "trust_remote_code", "device", "context_window", "format"),
            spec,
        )
        if not target:
            raise BadInput(f"LLM spec {spec!r} names no model directory; use {_EXAMPLES}")
        return TransformersSpec(
            path=Path(target).expanduser(),
            quant=opts.get("quant") or None,
            adapter=Path(opts["adapter"]).expanduser() if opts.get("adapter") else None,
            trust_remote_code=_flag(opts, "trust_remote_code", spec),
            device=opts.get("device") or None,
            context_window=_number(opts, "context_window", int, spec),
            format=opts.get("format") or None,
        )
    opts = _query(query, ("model", "timeout", "retries", "context_window"), spec)
    kwargs = {
        k: v
        for k, v in (
            ("timeout", _number(opts, "timeout", float, spec)),
            ("retries", _number(opts, "retries", int, spec)),
            ("context_window", _number(opts, "context_window", int, spec)),
        )
        if v is not None
    }
    return OpenAISpec(base_url=target.rstrip("/"), model=opts.get("model", ""), **kwargs)
