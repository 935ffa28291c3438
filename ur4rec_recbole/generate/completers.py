"""Chat completers: send one prompt, return one answer, classify what went wrong.

``openai``: the official client against any server speaking the
chat-completions API (OpenAI, vLLM, Ollama, llama.cpp, LM Studio, ...).
``transformers``: a local causal LM (see :mod:`ur4rec_recbole.generate.local_lm`).

Errors are mapped to three kinds that the generator treats differently:
:class:`Transient` (retry with backoff: 429, 5xx, timeouts, malformed
responses, dropped connections), :class:`Rejected` (this prompt cannot
succeed: other 4xx) and :class:`Fatal` (nothing can succeed: unreachable
server, bad key, unknown model) which stops the run with one clear message.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Callable, Protocol

from ur4rec_recbole.errors import require
from ur4rec_recbole.generate.prompts import Prompt


@dataclass(frozen=True)
class Completion:
    text: str | None  # None: the server sent no text (e.g. a tool call)
    prompt_tokens: int
    completion_tokens: int


class Transient(Exception):
    """Worth retrying; ``retry_after`` is the server's ``Retry-After`` in seconds, if it sent one."""

    def __init__(self, reason: str, retry_after: float | None = None, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.retry_after, self.unreachable = reason, retry_after, unreachable


class Rejected(Exception):
    """The server refused this prompt (a 4xx other than 401/403/404/429)."""


class Fatal(Exception):
    """No request can succeed; the message says what to fix."""


class Completer(Protocol):
    name: str  # backend name: part of the cache key and the provenance
    model: str
    concurrency: int  # requests worth having in flight at once

    async def complete(self, prompt: Prompt, temperature: float) -> Completion: ...

    async def aclose(self) -> None: ...


def _retry_after(headers) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form; HTTP dates are rare for APIs)."""
    value = headers.get("retry-after") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class OpenAICompleter:
    """Chat completions through the official ``openai`` client.

    The key is read from ``OPENAI_API_KEY`` by the client itself and never
    stored, logged or put into a message here. The client's own retries are
    off: retries, backoff and budgets belong to the generator.
    """

    name = "openai"

    def __init__(self, model: str, base_url: str | None, timeout: float, concurrency: int) -> None:
        self._openai = openai = require("openai", "llm", "--backend openai")
        self.model, self.base_url, self.concurrency = model, base_url, concurrency
        self._where = base_url or "the OpenAI API"
        # a local server needs no key, but the client insists on one: a placeholder is sent then
        key = os.environ.get("OPENAI_API_KEY") or ("unused" if base_url else None)
        if key is None:
            raise Fatal("OPENAI_API_KEY is not set; export it (it is never printed or stored), "
                        "or point --base-url at a local server")
        self._client = openai.AsyncOpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)

    async def complete(self, prompt: Prompt, temperature: float) -> Completion:
        openai = self._openai
        try:
            response = await self._client.chat.completions.create(
                model=self.model, messages=prompt.as_openai(), max_tokens=prompt.max_tokens,
                temperature=temperature,
            )
        except openai.APITimeoutError:
            raise Transient("request timed out") from None
        except openai.APIConnectionError as err:
            raise Transient(f"cannot connect to {self._where}: {err.__cause__ or err}", unreachable=True) from None
        except openai.AuthenticationError:
            raise Fatal(f"{self._where} rejected the API key (HTTP 401); check OPENAI_API_KEY") from None
        except openai.PermissionDeniedError:
            raise Fatal(f"{self._where} denied access (HTTP 403) for model {self.model!r}") from None
        except openai.NotFoundError:
            raise Fatal(f"{self._where} does not know model {self.model!r} or has no chat-completions "
                        f"endpoint (HTTP 404); check --llm-model and --base-url (it usually ends in /v1)") from None
        except openai.RateLimitError as err:
            raise Transient("HTTP 429 (rate limited)", _retry_after(err.response.headers)) from None
        except openai.APIStatusError as err:
            if err.status_code >= 500:
                raise Transient(f"HTTP {err.status_code}", _retry_after(err.response.headers)) from None
            raise Rejected(f"HTTP {err.status_code}: {_short(err.message)}") from None
        except (openai.APIResponseValidationError, ValueError) as err:  # malformed JSON / schema
            raise Transient(f"malformed response ({type(err).__name__})") from None
        if not getattr(response, "choices", None):
            raise Transient("malformed response (no choices)")
        usage = response.usage
        content = response.choices[0].message.content
        return Completion(
            content if isinstance(content, str) else None,
            getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0,
        )

    async def aclose(self) -> None:
        await self._client.close()


class TransformersCompleter:
    """A local causal LM run by ``transformers`` in a worker thread, so the event loop stays free."""

    name = "transformers"
    concurrency = 1  # one model, one forward pass at a time (the runner caps requests in flight by this)

    def __init__(self, model: str, device: str | None) -> None:
        from ur4rec_recbole.generate.local_lm import LocalLM

        self.model = model
        self._lm = LocalLM(model, device)

    async def complete(self, prompt: Prompt, temperature: float) -> Completion:
        text, n_prompt, n_new = await asyncio.to_thread(
            self._lm.generate, prompt.as_openai(), prompt.max_tokens, temperature
        )
        return Completion(text, n_prompt, n_new)

    async def aclose(self) -> None:
        pass


def _short(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[:limit] + "..."


def _openai(options) -> OpenAICompleter:
    return OpenAICompleter(options.llm_model, options.base_url, options.request_timeout, options.concurrency)


def _transformers(options) -> TransformersCompleter:
    return TransformersCompleter(options.llm_model, options.llm_device)


# backend name -> factory taking the generation options
COMPLETERS: dict[str, Callable[..., Completer]] = {"openai": _openai, "transformers": _transformers}
