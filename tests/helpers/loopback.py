"""A small OpenAI-compatible chat-completions server on loopback, for tests and benchmarks.

It is not a language model: an ``ok`` answer is a deterministic list of words
taken from the prompt. What it is for is the *transport*: it can be told to
answer normally, return 429 with ``Retry-After``, return 500, hang past the
client's timeout, return malformed JSON, or return empty / refusal / overlong
answers, and it records every request (time, messages, whether an API key was
sent) and the largest number of requests it served at once::

    python tests/helpers/loopback.py --port 8011 --delay 0.25

then ``--base-url http://127.0.0.1:8011/v1`` for ``python -m ur4rec_recbole.cli.generate``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable

MODES = ("ok", "429", "500", "hang", "malformed", "empty", "refusal", "long")
_WORD = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """Default token count: words and punctuation marks (a real tokenizer can be passed instead)."""
    return len(_WORD.findall(text))


@dataclass
class SeenRequest:
    """What the server received (the key itself is never stored, only whether one came)."""

    started: float
    finished: float
    mode: str
    model: str
    messages: list
    had_bearer_key: bool


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's default backlog of 5 refuses bursts of connections


class LoopbackLLM:
    """Start with ``with LoopbackLLM(...) as server:``; ``server.base_url`` is the client's URL.

    ``mode`` answers every request unless ``script`` (modes consumed in order,
    one per request) says otherwise; ``delay`` seconds are spent per answer so
    that concurrency is observable; ``hang_seconds`` is how long ``hang`` waits.
    """

    def __init__(self, mode: str = "ok", delay: float = 0.0, script: Iterable[str] = (),
                 retry_after: float = 0.2, hang_seconds: float = 5.0,
                 tokenizer: Callable[[str], int] = count_tokens, port: int = 0) -> None:
        for m in (mode, *script):
            if m not in MODES:
                raise ValueError(f"unknown loopback mode {m!r}; known: {MODES}")
        self.mode, self.delay, self.retry_after, self.hang_seconds = mode, delay, retry_after, hang_seconds
        self.script: deque[str] = deque(script)
        self.tokenizer = tokenizer
        self.requests: list[SeenRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> "LoopbackLLM":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next_mode(self) -> str:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.script.popleft() if self.script else self.mode

    def _answer(self, messages: list) -> str:
        """Deterministic text: the first distinct capitalised words of the prompt, as keywords."""
        prompt = messages[-1]["content"]
        words = list(dict.fromkeys(w for w in re.findall(r"[A-Z][a-z]+", prompt)))[:10]
        digest = hashlib.sha256(prompt.encode()).hexdigest()[:6]
        return ", ".join(words or ["general"]) + f", style {digest}"

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _done(self) -> None:
                """The request stops counting as in flight (once): before its answer goes out, so a client that
                sends its next request on receiving it never sees two in flight."""
                if getattr(self, "_in_flight", False):
                    self._in_flight = False
                    with server._lock:
                        server.in_flight -= 1

            def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
                self._done()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                started = time.time()
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                auth = self.headers.get("Authorization", "")
                mode = server._next_mode()
                self._in_flight = True
                try:
                    self._reply(mode, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to answer
                finally:
                    self._done()
                    with server._lock:
                        server.requests.append(SeenRequest(
                            started, time.time(), mode, body.get("model", ""), body.get("messages", []),
                            auth.startswith("Bearer ") and len(auth) > 7,
                        ))

            def _reply(self, mode: str, body: dict) -> None:
                if mode == "hang":
                    time.sleep(server.hang_seconds)
                    return
                time.sleep(server.delay)
                if mode == "429":
                    self._send(429, b'{"error": {"message": "rate limited", "type": "rate_limit"}}',
                               {"Retry-After": f"{server.retry_after:g}"})
                    return
                if mode == "500":
                    self._send(500, b'{"error": {"message": "internal error"}}')
                    return
                if mode == "malformed":
                    self._send(200, b'{"id": "x", "choices": [{"message": ')
                    return
                messages = body.get("messages", [])
                canned = {"empty": "", "refusal": "I'm sorry, but I can't help with that request.",
                          "long": "word " * 2000}
                text = canned[mode] if mode in canned else server._answer(messages)
                prompt_tokens = sum(server.tokenizer(m.get("content", "")) for m in messages)
                payload = {
                    "id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion",
                    "created": int(time.time()), "model": body.get("model", ""),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": server.tokenizer(text),
                              "total_tokens": prompt_tokens + server.tokenizer(text)},
                }
                self._send(200, json.dumps(payload).encode())

        return Handler


def _tokenizer(name: str) -> Callable[[str], int]:
    """``words`` (default) or a local Hugging Face tokenizer: a folder, or ``smollm2`` (bundled GGUF)."""
    if name == "words":
        return count_tokens
    from ur4rec_recbole.generate.local_lm import load_tokenizer

    tokenizer = load_tokenizer(name)
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--mode", default="ok", choices=MODES)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds spent per answer")
    parser.add_argument("--tokenizer", default="words",
                        help="token counting for 'usage': words, or a local tokenizer (folder, .gguf, smollm2)")
    args = parser.parse_args(argv)
    with LoopbackLLM(args.mode, args.delay, tokenizer=_tokenizer(args.tokenizer), port=args.port) as server:
        print(f"serving on {server.base_url} (mode {args.mode}, delay {args.delay}s); Ctrl-C stops", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
