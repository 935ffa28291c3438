"""Run many prompts through a completer: cache, concurrency, retries, budgets, answer checks.

Every answer that passes :func:`check_answer` is committed to the
:class:`AnswerCache` the moment it arrives, so an interrupted run loses
nothing it finished and a rerun makes no call for what is cached.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from logging import getLogger

from tqdm import tqdm

from ur4rec_recbole.generate.answer_cache import AnswerCache, cache_key
from ur4rec_recbole.generate.completers import Completer, Fatal, Rejected, Transient
from ur4rec_recbole.generate.prompts import Prompt

_REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry, (but )?i|i can'?not|i can'?t|i'?m unable|i am unable|i won'?t|"
    r"as an ai|i'?m not able|i am not able)", re.IGNORECASE)


@dataclass
class GenerationOptions:
    """How prompts are sent; the CLI flags of ``python -m ur4rec_recbole.cli.generate`` map onto these."""

    backend: str
    llm_model: str
    base_url: str | None = None  # any OpenAI-compatible server; None: api.openai.com
    concurrency: int = 8  # requests in flight at once
    request_timeout: float = 60.0  # seconds per request
    max_retries: int = 5  # retries of a request after 429 / 5xx / timeout / malformed response
    bad_answer_retries: int = 2  # new requests after an empty, overlong, refusal-like or non-text answer
    backoff_base: float = 1.0  # first backoff in seconds, doubled per retry, with jitter
    backoff_cap: float = 60.0  # longest backoff in seconds
    max_requests: int | None = None  # budget: requests sent (retries included)
    max_tokens_total: int | None = None  # budget: prompt + completion tokens reported by the backend
    max_consecutive_failures: int = 50  # this many failed prompts in a row stop the run
    temperature: float = 0.2
    llm_device: str | None = None  # transformers backend: cuda / cpu; None: cuda when available
    source: str | None = None  # text_source name of the written files; None: the backend name
    show_progress: bool = True

    @property
    def text_source(self) -> str:
        return self.source or self.backend


@dataclass
class GenerationSummary:
    """What a generation run did; ``stopped`` says why it ended early (budget), if it did."""

    prompts: int = 0
    cached: int = 0
    generated: int = 0
    failed: int = 0
    pending: int = 0  # not attempted because the budget ran out
    calls: int = 0  # requests sent, retries included
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    stopped: str | None = None
    failure_reasons: Counter = field(default_factory=Counter)
    fallbacks: int = 0  # texts written from the template because the LLM failed

    @property
    def texts_per_second(self) -> float:
        return self.generated / self.seconds if self.seconds > 0 else 0.0

    def report(self) -> str:
        lines = [
            f"prompts {self.prompts}: {self.cached} cached, {self.generated} generated, {self.failed} failed"
            + (f", {self.pending} pending" if self.pending else ""),
            f"calls {self.calls} (retries {self.retries}); tokens: prompt {self.prompt_tokens}, "
            f"completion {self.completion_tokens}; {self.seconds:.1f}s, {self.texts_per_second:.2f} texts/s",
        ]
        if self.failure_reasons:
            lines.append("failures: " + "; ".join(f"{r} x{n}" for r, n in self.failure_reasons.most_common()))
        if self.fallbacks:
            lines.append(f"{self.fallbacks} failed texts fall back to the template text")
        if self.stopped:
            lines.append(f"stopped early: {self.stopped}; the answers so far are cached, rerun to continue")
        return "\n".join(lines)


def check_answer(text: str | None, max_chars: int) -> str | None:
    """Why an answer is unusable (``None`` if it is fine)."""
    if not isinstance(text, str):
        return "non-text answer"
    stripped = text.strip()
    if not stripped:
        return "empty answer"
    if len(stripped) > max_chars:
        return f"too long (> {max_chars} characters)"
    if _REFUSAL.match(stripped):
        return "refusal-like answer"
    letters = sum(ch.isalpha() for ch in stripped)
    if letters < 0.5 * len(stripped.replace(" ", "")):
        return "non-text answer (mostly symbols)"
    return None


class _Budget(Exception):
    pass


class PromptRunner:
    """Sends the uncached prompts with ``options.concurrency`` in flight; one instance per run."""

    def __init__(self, completer: Completer, cache: AnswerCache, options: GenerationOptions) -> None:
        self.completer, self.cache, self.options = completer, cache, options
        self.summary = GenerationSummary()
        self.answers: dict[tuple, str] = {}  # Prompt.ident (kind, token, cutoff) -> text
        self.failures: dict[tuple, tuple[str, int]] = {}  # Prompt.ident -> (reason, attempts)
        self._stop: str | None = None
        self._consecutive_failures = 0
        self._last_reason = ""

    def key(self, prompt: Prompt) -> str:
        return cache_key(self.completer.name, self.completer.model, prompt.version, prompt.text_hash)

    async def run(self, prompts: list[Prompt]) -> GenerationSummary:
        start = time.perf_counter()
        summary = self.summary
        summary.prompts = len(prompts)
        todo = []
        for prompt in prompts:
            hit = self.cache.get(self.key(prompt))
            if hit is None:
                todo.append(prompt)
            else:
                self.answers[prompt.ident] = hit.text
        summary.cached = len(prompts) - len(todo)
        getLogger().info(f"{summary.cached} of {len(prompts)} answers cached; {len(todo)} to generate")
        slots = asyncio.Semaphore(max(1, min(self.options.concurrency, self.completer.concurrency or 1)))
        with tqdm(total=len(prompts), initial=summary.cached, desc=f"{self.completer.name} texts",
                  unit="text", disable=not self.options.show_progress, dynamic_ncols=True) as bar:
            async def one(prompt: Prompt) -> None:
                async with slots:
                    await self._one(prompt)
                bar.update(1)
                bar.set_postfix(calls=summary.calls, failed=summary.failed, refresh=False)

            tasks = [asyncio.create_task(one(p)) for p in todo]
            try:
                if tasks:
                    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                    for task in done:
                        if task.exception() is not None:
                            raise task.exception()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await self.completer.aclose()
        summary.pending = len(prompts) - summary.cached - summary.generated - summary.failed
        summary.stopped = self._stop
        summary.seconds = time.perf_counter() - start
        return summary

    def _spend(self) -> None:
        """Count one request against the budget, or stop cleanly when the budget is spent."""
        o, s = self.options, self.summary
        if self._stop is None and o.max_requests is not None and s.calls >= o.max_requests:
            self._stop = f"request budget of {o.max_requests} reached"
        if self._stop is None and o.max_tokens_total is not None and \
                s.prompt_tokens + s.completion_tokens >= o.max_tokens_total:
            self._stop = f"token budget of {o.max_tokens_total} reached"
        if self._stop is not None:
            raise _Budget
        s.calls += 1

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:  # the server said when: honour it
            return retry_after
        o = self.options
        return min(o.backoff_cap, o.backoff_base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    async def _one(self, prompt: Prompt) -> None:
        o, s = self.options, self.summary
        transient = bad = 0
        while True:
            try:
                self._spend()
            except _Budget:
                return
            if transient or bad:
                s.retries += 1
            try:
                reply = await self.completer.complete(prompt, o.temperature)
            except Transient as err:
                transient += 1
                if transient > o.max_retries:
                    if err.unreachable:
                        raise Fatal(f"{err.reason} (gave up after {transient} attempts); is the server "
                                    f"running and is --base-url right?") from None
                    return self._failed(prompt, err.reason, transient + bad)
                await asyncio.sleep(self._backoff(transient, err.retry_after))
                continue
            except Rejected as err:
                return self._failed(prompt, str(err), transient + bad + 1)
            s.prompt_tokens += reply.prompt_tokens
            s.completion_tokens += reply.completion_tokens
            reason = check_answer(reply.text, prompt.max_chars)
            if reason is None:
                text = reply.text.strip()
                self.cache.put(self.key(prompt), self.completer.name, self.completer.model, prompt.version,
                               prompt.text_hash, text, reply.prompt_tokens, reply.completion_tokens)
                self.answers[prompt.ident] = text
                s.generated += 1
                self._consecutive_failures = 0
                return
            bad += 1
            if bad > o.bad_answer_retries:
                return self._failed(prompt, reason, transient + bad)

    def _failed(self, prompt: Prompt, reason: str, attempts: int) -> None:
        s = self.summary
        s.failed += 1
        s.failure_reasons[reason] += 1
        self.failures[prompt.ident] = (reason, attempts)
        self.cache.fail(self.key(prompt), reason, attempts)
        self._consecutive_failures += 1
        if self._consecutive_failures >= self.options.max_consecutive_failures:
            raise Fatal(f"the last {self._consecutive_failures} prompts all failed (last: {reason}); "
                        f"stopping. Check the server and the model")
