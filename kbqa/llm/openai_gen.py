"""A generator over any OpenAI-compatible ``/v1/chat/completions`` server (vLLM, ...)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from kbqa.errors import ModelError
from kbqa.llm.base import GenerationConfig, History
from kbqa.llm.spec import OpenAISpec

_RETRY_STATUS = {429, 500, 502, 503, 504}


class OpenAIGenerator:
    """Chat completions over HTTP; failures after ``retries`` become a ModelError."""

    def __init__(self, spec: OpenAISpec, api_key: str | None = None) -> None:
        self.spec = spec
        self.name = f"openai:{spec.model}"
        self.context_window = spec.context_window
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client: Any = None

    def load(self) -> OpenAIGenerator:
        return self

    def count_tokens(self, text: str) -> int:
        # The server's tokenizer is not here; a CJK character is about one token and other
        # text about four characters a token, so this errs high for Chinese.
        cjk = sum(1 for ch in text if ord(ch) >= 0x2E80)
        return cjk + (len(text) - cjk + 3) // 4

    def _payload(self, prompt: str, history: History, config: GenerationConfig, stream: bool):
        messages: list[dict[str, str]] = []
        for user, assistant in history:
            messages += [
                {"role": "user", "content": user},
                {"role": "assistant", "content": assistant},
            ]
        messages.append({"role": "user", "content": prompt})
        body: dict[str, Any] = {
            "model": self.spec.model,
            "messages": messages,
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p if config.temperature > 0 else 1.0,
            "stream": stream,
        }
        if config.stop:
            body["stop"] = list(config.stop)
        if config.repetition_penalty != 1.0:
            body["repetition_penalty"] = config.repetition_penalty  # a vLLM extension
        return body

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.Client(
                base_url=self.spec.base_url, timeout=self.spec.timeout, headers=self._headers
            )
        return self._client

    def _open(self, body: dict[str, Any]) -> Any:
        """Send the request, retrying transient failures; return an open streaming response."""
        import httpx

        url = f"{self.spec.base_url}/chat/completions"
        last = ""
        for attempt in range(self.spec.retries + 1):
            if attempt:
                time.sleep(min(0.5 * 2 ** (attempt - 1), 4.0))
            try:
                request = self._http().build_request("POST", "/chat/completions", json=body)
                response = self._http().send(request, stream=True)
            except httpx.TimeoutException:
                last = f"no answer within {self.spec.timeout:g} s (timeout)"
                continue
            except httpx.TransportError as e:
                last = f"cannot connect ({type(e).__name__}: {e}); is the server running?"
                continue
            if response.status_code == 200:
                return response
            detail = response.read().decode("utf-8", "replace")[:300]
            response.close()
            last = f"HTTP {response.status_code}: {detail}"
            if response.status_code not in _RETRY_STATUS:
                break
        raise ModelError(
            f"the OpenAI-compatible server at {url} failed after {attempt + 1} attempt(s): {last}"
        )

    def generate(
        self, prompt: str, history: History = (), config: GenerationConfig = GenerationConfig()
    ) -> str:
        response = self._open(self._payload(prompt, history, config, stream=False))
        try:
            data = json.loads(response.read())
            return data["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise ModelError(f"{self.spec.base_url} sent no chat completion: {e!r}") from None
        finally:
            response.close()

    def stream(
        self, prompt: str, history: History = (), config: GenerationConfig = GenerationConfig()
    ) -> Iterator[str]:
        import httpx

        response = self._open(self._payload(prompt, history, config, stream=True))
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    delta = json.loads(data)["choices"][0].get("delta", {})
                except (ValueError, KeyError, IndexError) as e:
                    raise ModelError(
                        f"{self.spec.base_url} sent a bad stream event: {e!r}"
                    ) from None
                if delta.get("content"):
                    yield delta["content"]
        except httpx.TimeoutException:
            raise ModelError(
                f"the server at {self.spec.base_url} stopped sending for {self.spec.timeout:g} s"
            ) from None
        except httpx.TransportError as e:
            raise ModelError(f"the stream from {self.spec.base_url} broke: {e}") from None
        finally:
            response.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
