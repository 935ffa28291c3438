"""Item images fetched from the URLs in ``item_image_field`` into ``<data_path>/images/<token>.<ext>``.

What the image encoder (``features.images``) then reads as it reads any
image folder. Standard library only (``urllib`` in ``workers`` threads):

- **politeness**: at most ``rate`` requests per second to each host; a 429 or
  503 ``Retry-After`` (seconds or an HTTP date, capped at ``max_wait``) holds
  back every worker's next request to that host;
- **retries**: 429, 5xx, timeouts and dropped connections are retried up to
  ``retries`` times with exponential backoff and jitter (or after exactly the
  server's ``Retry-After``); 404 and other 4xx fail at once;
- **limits**: bodies over ``max_bytes`` (by ``Content-Length`` or while
  reading) fail; each attempt is bounded by ``timeout`` per connect or read,
  and each image, its retries and back-offs included, by ``5 * timeout`` of
  wall-clock time in all, enforced by a watchdog that closes the connection
  (a server that sends one byte at a time cannot stretch it); only ``http``/``https`` URLs and redirects are followed;
- **dead hosts**: after ``host_failures`` failed requests in a row to one host
  (connection errors, timeouts, 5xx), the host is given up: its remaining
  images are reported as skipped, with the reason, so a dead host costs
  seconds, not hours;
- **checks**: the bytes must decode as an image (PIL); JPEG, PNG and WebP are
  kept as they are, anything else is re-encoded as PNG;
- **resume**: items that already have ``images/<token>.<ext>`` are skipped, and
  a file appears under its final name only once complete (temp file, then
  rename), so a stopped run leaves nothing half-written;
- **report**: ``<dataset>.image_download.json`` next to the atomic files, with
  the counts and every failure with its reason, also when the run is stopped
  by Ctrl-C or SIGTERM (``interrupted: true``).
"""

from __future__ import annotations

import email.utils
import http.client
import os
import random
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from io import BytesIO
from pathlib import Path
from time import monotonic
from typing import Mapping
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import HTTPHandler, HTTPRedirectHandler, HTTPSHandler, OpenerDirector, Request, build_opener

from tqdm import tqdm

from ur4rec_recbole.io import write_bytes, write_json

USER_AGENT = "ur4rec-recbole/0.1 (item image downloader)"
KEPT_FORMATS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp"}  # PIL format -> suffix
READ_BLOCK = 1 << 16


def is_url(value: str) -> bool:
    """Whether an ``item_image_field`` value is a web address to fetch (else a path in the dataset folder)."""
    return value.startswith(("http://", "https://"))


@dataclass
class DownloadOptions:
    """Limits of one download run (command-line flags of ``encode --download-images``)."""

    workers: int = 8  # concurrent downloads
    rate: float = 5.0  # requests per second to one host (0: no limit)
    timeout: float = 20.0  # seconds per connect/read; 5x this for a whole download
    max_bytes: int = 10 << 20  # size cap of one image
    retries: int = 4  # extra attempts after 429/5xx/timeouts/dropped connections
    backoff: float = 1.0  # first retry delay in seconds, doubled each time (with jitter)
    max_wait: float = 300.0  # longest Retry-After honoured
    host_failures: int = 5  # failed requests in a row after which a host is given up (0: never)


@dataclass
class DownloadReport:
    """What a download run did; written as JSON next to the atomic files."""

    items: int = 0  # rows of the .item file
    with_url: int = 0
    present: int = 0  # already downloaded (skipped)
    downloaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # token -> reason
    hosts_given_up: dict[str, str] = field(default_factory=dict)  # host -> why
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    def as_json(self) -> dict:
        return {"items": self.items, "with_url": self.with_url, "already_present": self.present,
                "downloaded": len(self.downloaded), "failed_count": len(self.failed), "requests": self.requests,
                "retries": self.retries, "seconds": round(self.seconds, 3), "interrupted": self.interrupted,
                "skipped": sum(reason.startswith(SKIPPED) for reason in self.failed.values()),
                "hosts_given_up": dict(sorted(self.hosts_given_up.items())),
                "failed": dict(sorted(self.failed.items()))}


SKIPPED = "skipped: "  # the start of the reason of an image that was never requested (its host was given up)


class _Deadline:
    """A wall-clock bound on one request: when it expires, the request's sockets are shut down.

    Socket timeouts bound each wait, not their sum: a server that sends a
    byte every half second keeps a read going for ever. Shutting the socket
    down ends whatever the request is blocked in (connect, headers, body).
    """

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.timer = threading.Timer(seconds, self._expire)
        self.timer.daemon = True

    def watch(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)

    def _expire(self) -> None:
        with self.lock:
            self.expired = True
            sockets = list(self.sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed
        pass


_current = threading.local()  # the _Deadline of the request this thread is making


def _watch(sock) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.watch(sock)


class _WatchedHTTPConnection(http.client.HTTPConnection):
    def connect(self):
        super().connect()
        _watch(self.sock)


class _WatchedHTTPSConnection(http.client.HTTPSConnection):
    def connect(self):
        super().connect()
        _watch(self.sock)


class _WatchedHTTPHandler(HTTPHandler):
    def http_open(self, req):
        return self.do_open(_WatchedHTTPConnection, req)


class _WatchedHTTPSHandler(HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_WatchedHTTPSConnection, req, context=self._context)


class DownloadFailed(Exception):
    """This image cannot be had; the message is the reason in the report."""


class _Retry(Exception):
    """A failure worth another attempt (429, 5xx, timeout, dropped connection)."""

    def __init__(self, reason: str, retry_after: float | None = None, rate_limited: bool = False) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.rate_limited = rate_limited  # 429: the host is up, only busy


class HostLimiter:
    """At most ``rate`` request starts per second per host; ``defer`` holds a host back (Retry-After)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.lock = threading.Lock()
        self.next_start: dict[str, float] = {}

    def wait(self, host: str, stop: threading.Event) -> None:
        with self.lock:
            now = monotonic()
            start = max(now, self.next_start.get(host, now))
            self.next_start[host] = start + self.interval
        if start > now and stop.wait(start - now):
            raise DownloadFailed("interrupted")

    def defer(self, host: str, seconds: float) -> None:
        with self.lock:
            self.next_start[host] = max(self.next_start.get(host, 0.0), monotonic() + seconds)


class _HttpRedirectsOnly(HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme not in ("http", "https"):
            raise DownloadFailed(f"redirected to a non-HTTP URL {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def retry_after(value: str | None, cap: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), within ``[0, cap]``."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return min(max((moment - datetime.now(timezone.utc)).total_seconds(), 0.0), cap)


def as_image_file(data: bytes) -> tuple[bytes, str]:
    """``(bytes, suffix)`` to store: the bytes as fetched (JPEG/PNG/WebP) or re-encoded as PNG."""
    from PIL import Image

    try:
        with Image.open(BytesIO(data)) as image:
            image.load()  # a full decode: truncated files fail here, not while encoding
            if image.format in KEPT_FORMATS:
                return data, KEPT_FORMATS[image.format]
            converted = BytesIO()
            image.convert("RGBA" if "A" in image.getbands() else "RGB").save(converted, "PNG")
            return converted.getvalue(), ".png"
    except Exception as err:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise DownloadFailed(f"not a decodable image ({type(err).__name__}: {err})") from None


class Downloader:
    """Fetches one URL with retries, host limits and the size cap; counts requests and retries."""

    def __init__(self, options: DownloadOptions, stop: threading.Event) -> None:
        self.options = options
        self.stop = stop
        self.limiter = HostLimiter(options.rate)
        self.opener: OpenerDirector = build_opener(_HttpRedirectsOnly, _WatchedHTTPHandler, _WatchedHTTPSHandler)
        self.lock = threading.Lock()
        self.requests = 0
        self.retries = 0
        self.failures_in_a_row: dict[str, int] = {}  # host -> failed requests since its last answer
        self.given_up: dict[str, str] = {}  # host -> why
        self.active: set[_Deadline] = set()  # the requests under way

    def abort(self) -> None:
        """End every request under way now (Ctrl-C, SIGTERM)."""
        with self.lock:
            active = list(self.active)
        for deadline in active:
            deadline._expire()

    def _host_failed(self, host: str, reason: str) -> None:
        with self.lock:
            count = self.failures_in_a_row[host] = self.failures_in_a_row.get(host, 0) + 1
            limit = self.options.host_failures
            if limit and count >= limit and host not in self.given_up:
                self.given_up[host] = f"{count} failed requests in a row (last: {reason})"

    def _check_host(self, host: str) -> None:
        with self.lock:
            why = self.given_up.get(host)
        if why is not None:
            raise DownloadFailed(f"{SKIPPED}host {host} was given up after {why}; run again later to fetch it")

    def fetch(self, url: str) -> bytes:
        if not is_url(url):
            raise DownloadFailed(f"not an http(s) URL: {url[:200]}")
        host = urlsplit(url).hostname or ""
        options = self.options
        total = 5 * options.timeout
        ends = time.monotonic() + total  # the whole image: every attempt and back-off within it
        for attempt in range(options.retries + 1):
            self._check_host(host)
            self.limiter.wait(host, self.stop)
            self._check_host(host)
            left = ends - time.monotonic()
            if left <= 0:
                raise DownloadFailed(f"slower than {total:g} s for the whole image (gave up after {attempt} attempts)")
            with self.lock:
                self.requests += 1
            try:
                data = self._get(url, left, total)
            except _Retry as err:
                if not err.rate_limited:
                    self._host_failed(host, str(err))
                if attempt == options.retries:
                    raise DownloadFailed(f"{err} (gave up after {attempt + 1} attempts)") from None
                if err.retry_after is not None:
                    delay = err.retry_after
                    self.limiter.defer(host, delay)
                else:
                    delay = options.backoff * 2 ** attempt * (0.5 + random.random())
                delay = min(delay, max(0.0, ends - time.monotonic()))  # the next attempt still within the bound
                with self.lock:
                    self.retries += 1
                if self.stop.wait(delay):
                    raise DownloadFailed("interrupted") from None
            except DownloadFailed:
                with self.lock:
                    self.failures_in_a_row[host] = 0  # the host answered (404, too large, ...)
                raise
            else:
                with self.lock:
                    self.failures_in_a_row[host] = 0
                return data
        raise AssertionError("unreachable")

    def _get(self, url: str, seconds: float, total: float) -> bytes:
        """One attempt, within ``timeout`` per connect or read and the ``seconds`` left of the image's ``total``
        (:class:`_Deadline`)."""
        deadline = _current.deadline = _Deadline(seconds)
        with self.lock:
            self.active.add(deadline)
        deadline.timer.start()
        try:
            data = self._request(url)
        except (_Retry, DownloadFailed, OSError, http.client.HTTPException) as err:
            if deadline.expired:
                raise _Retry(f"slower than {total:g} s for the whole image") from None
            if isinstance(err, (_Retry, DownloadFailed)):
                raise
            raise _Retry(f"connection dropped: {type(err).__name__}: {err}") from None
        finally:
            deadline.timer.cancel()
            _current.deadline = None
            with self.lock:
                self.active.discard(deadline)
        if deadline.expired:  # the socket was shut while the last bytes came in: the body may be cut short
            raise _Retry(f"slower than {total:g} s for the whole image")
        return data

    def _request(self, url: str) -> bytes:
        options = self.options
        request = Request(url, headers={"User-Agent": USER_AGENT, "Accept": "image/*"})
        try:
            with self.opener.open(request, timeout=options.timeout) as response:
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > options.max_bytes:
                    raise DownloadFailed(f"{int(length):,} bytes, over the {options.max_bytes:,}-byte cap")
                body = bytearray()
                while block := response.read1(READ_BLOCK):  # what has arrived: the watchdog can end a slow body
                    body += block
                    if len(body) > options.max_bytes:
                        raise DownloadFailed(f"more than {options.max_bytes:,} bytes, over the cap")
                if length and length.isdigit() and len(body) < int(length):
                    raise _Retry(f"connection dropped after {len(body):,} of {int(length):,} bytes")
                return bytes(body)
        except HTTPError as err:
            if err.code == 429 or err.code >= 500:
                raise _Retry(f"HTTP {err.code} {err.reason}",
                             retry_after(err.headers.get("Retry-After"), options.max_wait),
                             rate_limited=err.code == 429) from None
            raise DownloadFailed(f"HTTP {err.code} {err.reason}") from None
        except (TimeoutError, socket.timeout):
            raise _Retry(f"timed out after {options.timeout:g} s") from None
        except URLError as err:
            if isinstance(err.reason, (TimeoutError, socket.timeout)):
                raise _Retry(f"timed out after {options.timeout:g} s") from None
            raise _Retry(f"connection failed: {err.reason}") from None
        except (http.client.HTTPException, ConnectionError) as err:
            raise _Retry(f"connection dropped: {type(err).__name__}: {err}") from None


def _safe_file_name(token: str) -> bool:
    return bool(token) and not token.startswith(".") and "/" not in token and os.sep not in token and "\0" not in token


def download_images(urls: Mapping[str, str], folder: str | os.PathLike, options: DownloadOptions | None = None,
                    report_file: str | os.PathLike | None = None, progress: bool = True) -> DownloadReport:
    """Fetch ``{token: url}`` into ``folder/<token>.<ext>``, skipping tokens that already have a file there.

    ``report_file`` gets the report as JSON, also when the run is interrupted (``interrupted: true``).
    """
    from ur4rec_recbole.features.images import downloaded_image  # here: the options stay importable without torch

    options = options or DownloadOptions()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    listing = {p.name: p for p in folder.iterdir()}
    report = DownloadReport(items=len(urls))
    todo: list[tuple[str, str]] = []
    for token, url in urls.items():
        if not url.strip():
            continue
        report.with_url += 1
        if downloaded_image(folder, token, listing) is not None:
            report.present += 1
        elif not _safe_file_name(token):
            report.failed[token] = "the item token cannot be a file name (it starts with '.' or holds '/')"
        else:
            todo.append((token, url.strip()))

    stop = threading.Event()
    downloader = Downloader(options, stop)
    pending = iter(todo)
    lock = threading.Lock()
    bar = tqdm(total=len(todo), desc="downloading item images", unit="img", disable=not progress or None)

    def work() -> None:
        while not stop.is_set():
            with lock:
                job = next(pending, None)
            if job is None:
                return
            token, url = job
            try:
                data, suffix = as_image_file(downloader.fetch(url))
                write_bytes(folder / f"{token}{suffix}", data)
                failure = None
            except DownloadFailed as err:
                failure = str(err)
            except OSError as err:  # the image folder cannot be written: every item would fail the same way
                failure = f"cannot write {folder}: {err}"
            with lock:
                if failure is None:
                    report.downloaded.append(token)
                else:
                    report.failed[token] = failure
                bar.update(1)
                bar.set_postfix(failed=len(report.failed), refresh=False)

    started = monotonic()
    threads = [threading.Thread(target=work, name=f"image-download-{i}", daemon=True)
               for i in range(max(1, min(options.workers, len(todo))))]
    previous = _stop_on_sigterm()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    except KeyboardInterrupt:
        report.interrupted = True
        stop.set()
        downloader.abort()
        for thread in threads:
            thread.join()
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        bar.close()
        report.seconds = monotonic() - started
        report.requests, report.retries = downloader.requests, downloader.retries
        report.hosts_given_up = dict(downloader.given_up)
        if report_file is not None:
            write_json(report_file, report.as_json())
    return report


def _stop_on_sigterm():
    """Make SIGTERM stop the downloads as Ctrl-C does (the report is still written); return the old handler.

    Only the main thread may set signal handlers; elsewhere nothing changes (None).
    """
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    return signal.signal(signal.SIGTERM, interrupt)


def download_report_path(data_path: str | os.PathLike, dataset: str) -> Path:
    return Path(data_path) / f"{dataset}.image_download.json"


def download_item_images(config, options: DownloadOptions | None = None) -> DownloadReport:
    """Fetch the images of ``config``'s dataset named by ``item_image_field`` URLs; write the report."""
    from ur4rec_recbole.features.images import IMAGE_FOLDER, read_item_column

    field_name = config["item_image_field"]
    if not field_name:
        raise ValueError("item_image_field is not set: name the .item column that holds the image URLs "
                         "(the converters write image_url and set it in <name>.yaml)")
    data_path = Path(config["data_path"])
    urls = read_item_column(data_path, config["dataset"], config["ITEM_ID_FIELD"], field_name,
                            config["field_separator"], config["encoding"])
    return download_images(urls, data_path / IMAGE_FOLDER, options, download_report_path(data_path, config["dataset"]),
                           progress=config["show_progress"] is not False)
