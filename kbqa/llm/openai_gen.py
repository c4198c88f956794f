"""A generator over any OpenAI-compatible ``/v1/chat/completions`` server (vLLM, ...).

The ``openai`` SDK does the HTTP: retries with backoff on connection errors, timeouts, 408/409/
429 and 5xx, and the SSE parsing of streamed answers. This module maps its errors to a
ModelError that names the server and what to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kbqa.errors import ModelError
from kbqa.llm.base import GenerationConfig, History
from kbqa.llm.spec import OpenAISpec

# The SDK refuses to start without a key. A server without auth (vLLM's default) ignores the
# placeholder, and the Authorization header is left out of each request (see _request), so a kbqa server
# with public KBs still sees an anonymous caller rather than a wrong key.
_NO_KEY = "no-key"


def _omit() -> Any:
    import openai

    return openai.Omit()


class OpenAIGenerator:
    """Chat completions over HTTP; failures after ``retries`` become a ModelError."""

    def __init__(self, spec: OpenAISpec, api_key: str | None = None) -> None:
        self.spec = spec
        self.name = f"openai:{spec.model}"
        self.context_window = spec.context_window
        self._api_key = api_key
        self._client: Any = None

    def load(self) -> OpenAIGenerator:
        return self

    def count_tokens(self, text: str) -> int:
        # The server's tokenizer is not here; a CJK character is about one token and other
        # text about four characters a token, so this errs high for Chinese.
        cjk = sum(1 for ch in text if ord(ch) >= 0x2E80)
        return cjk + (len(text) - cjk + 3) // 4

    def _request(self, prompt: str, history: History, config: GenerationConfig) -> dict[str, Any]:
        messages: list[dict[str, str]] = []
        for user, assistant in history:
            messages += [
                {"role": "user", "content": user},
                {"role": "assistant", "content": assistant},
            ]
        messages.append({"role": "user", "content": prompt})
        request: dict[str, Any] = {
            "model": self.spec.model,
            "messages": messages,
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p if config.temperature > 0 else 1.0,
        }
        if config.stop:
            request["stop"] = list(config.stop)
        if not self._api_key:
            request["extra_headers"] = {"Authorization": _omit()}
        if config.repetition_penalty != 1.0:  # a vLLM extension, not in the SDK's signature
            request["extra_body"] = {"repetition_penalty": config.repetition_penalty}
        return request

    def _sdk(self) -> Any:
        if self._client is None:
            import openai

            # Passed explicitly: the SDK would otherwise read OPENAI_API_KEY / OPENAI_BASE_URL
            # from the environment, and settings are read at the edges only.
            self._client = openai.OpenAI(
                api_key=self._api_key or _NO_KEY,
                base_url=self.spec.base_url,
                timeout=self.spec.timeout,
                max_retries=self.spec.retries,
            )
        return self._client

    def _failed(self, e: Exception) -> ModelError:
        """The SDK's error as a ModelError naming the URL, the attempts and what to do."""
        import openai

        url = f"{self.spec.base_url}/chat/completions"
        retried = True
        if isinstance(e, openai.APITimeoutError):
            last = f"no answer within {self.spec.timeout:g} s (timeout)"
        elif isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e
            last = f"cannot connect ({type(cause).__name__}: {cause}); is the server running?"
        elif isinstance(e, openai.APIStatusError):
            status = e.status_code
            retried = status in (408, 409, 429) or status >= 500
            last = f"HTTP {status}: {e.response.text[:300]}"
            if status in (401, 403):
                last += " (check the API key given for this server)"
        else:
            return ModelError(f"{self.spec.base_url} sent no chat completion: {e!r}")
        attempts = self.spec.retries + 1 if retried else 1
        return ModelError(
            f"the OpenAI-compatible server at {url} failed after {attempts} attempt(s): {last}"
        )

    def generate(
        self, prompt: str, history: History = (), config: GenerationConfig = GenerationConfig()
    ) -> str:
        import openai

        try:
            completion = self._sdk().chat.completions.create(
                **self._request(prompt, history, config)
            )
            return completion.choices[0].message.content or ""
        except openai.OpenAIError as e:
            raise self._failed(e) from None
        except (AttributeError, IndexError, TypeError, ValueError) as e:
            raise ModelError(f"{self.spec.base_url} sent no chat completion: {e!r}") from None

    def stream(
        self, prompt: str, history: History = (), config: GenerationConfig = GenerationConfig()
    ) -> Iterator[str]:
        import openai

        try:
            events = self._sdk().chat.completions.create(
                **self._request(prompt, history, config), stream=True
            )
        except openai.OpenAIError as e:
            raise self._failed(e) from None
        try:
            with events:
                for chunk in events:
                    # A server may end with a usage-only chunk that has no choices.
                    delta = chunk.choices[0].delta if chunk.choices else None
                    if delta is not None and delta.content:
                        yield delta.content
        except openai.APITimeoutError:
            raise ModelError(
                f"the server at {self.spec.base_url} stopped sending for {self.spec.timeout:g} s"
            ) from None
        except openai.OpenAIError as e:
            raise ModelError(f"the stream from {self.spec.base_url} broke: {e}") from None
        except (AttributeError, TypeError, ValueError) as e:
            raise ModelError(f"{self.spec.base_url} sent a bad stream event: {e!r}") from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
