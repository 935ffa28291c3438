"""The image downloader against a local HTTP server: retries, limits, checks, resume, report; then encoding."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO

import pytest
from convert_fixtures import write_amazon

from ur4rec_recbole.features.download import DownloadOptions, download_images, retry_after

CAP = 20_000  # bytes: the size cap of these tests


def image_bytes(colour=(200, 30, 30), fmt="JPEG", size=24) -> bytes:
    from PIL import Image

    out = BytesIO()
    Image.new("RGB", (size, size), colour).save(out, fmt)
    return out.getvalue()


class ImageServer:
    """A threaded server on 127.0.0.1 whose paths behave as named; it records every request's time."""

    def __init__(self, retry_after_seconds: str = "1", slow_seconds: float = 2.0) -> None:
        self.hits: dict[str, list[float]] = defaultdict(list)
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def send(self, code: int, body: bytes = b"", headers: dict | None = None, length: bool = True):
                try:
                    self.send_response(code)
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    if length:
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout, size cap)
                    pass

            def do_GET(self):
                path = self.path
                server.hits[path].append(time.monotonic())
                count = len(server.hits[path])
                if path.startswith("/good/"):
                    fmt = "PNG" if path.endswith(".png") else "JPEG"
                    self.send(200, image_bytes(fmt=fmt), {"Content-Type": f"image/{fmt.lower()}"})
                elif path == "/gif":
                    self.send(200, image_bytes(fmt="GIF"), {"Content-Type": "image/gif"})
                elif path == "/missing":
                    self.send(404, b"no such image")
                elif path == "/flaky":  # 500, then the image
                    self.send(500, b"oops") if count == 1 else self.send(200, image_bytes((30, 200, 30)))
                elif path == "/limited":  # 429 with Retry-After, then the image
                    if count == 1:
                        self.send(429, b"slow down", {"Retry-After": retry_after_seconds})
                    else:
                        self.send(200, image_bytes((30, 30, 200)))
                elif path == "/slow":
                    server.stop.wait(slow_seconds)
                    self.send(200, image_bytes())
                elif path == "/text":
                    self.send(200, b"<html>not an image</html>", {"Content-Type": "image/jpeg"})
                elif path == "/huge":  # declared too large
                    self.send(200, b"\xff" * (3 * CAP))
                elif path == "/huge-stream":  # no Content-Length: the cap must hold while reading
                    self.send(200, b"\xff" * (3 * CAP), length=False)
                    self.close_connection = True
                elif path == "/drip":  # a byte at a time: never idle for a socket timeout, never done
                    try:
                        self.send_response(200)
                        self.send_header("Content-Length", "100000")
                        self.end_headers()
                        while not server.stop.wait(0.05):
                            self.wfile.write(b"\xff")
                            self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                elif path == "/redirect":
                    self.send(302, b"", {"Location": "/good/target.jpg"})
                elif path == "/to-ftp":  # urllib follows ftp redirects; the downloader must not
                    self.send(302, b"", {"Location": "ftp://127.0.0.1/x.jpg"})
                else:
                    self.send(400, b"unknown test path")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    running = ImageServer()
    yield running
    running.close()


FAST = DownloadOptions(workers=4, rate=0, timeout=0.4, retries=2, backoff=0.01, max_bytes=CAP)


def test_every_case_ends_as_a_file_or_a_reason(server, tmp_path):
    urls = {"good": "/good/a.jpg", "png": "/good/b.png", "gif": "/gif", "missing": "/missing", "flaky": "/flaky",
            "limited": "/limited", "slow": "/slow", "text": "/text", "huge": "/huge", "stream": "/huge-stream",
            "moved": "/redirect", "to_ftp": "/to-ftp", "none": ""}
    urls = {token: server.url + path if path else "" for token, path in urls.items()}
    urls["ftp"] = "ftp://example.com/x.jpg"
    folder = tmp_path / "images"
    report_file = tmp_path / "report.json"
    report = download_images(urls, folder, FAST, report_file, progress=False)

    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["good.jpg", "png.png", "gif.png", "flaky.jpg", "limited.jpg", "moved.jpg"])  # no temp file left
    assert sorted(report.downloaded) == ["flaky", "gif", "good", "limited", "moved", "png"]
    failed = report.failed
    assert set(failed) == {"missing", "slow", "text", "huge", "stream", "to_ftp", "ftp"}
    assert failed["missing"] == "HTTP 404 Not Found"
    assert "timed out" in failed["slow"] and "3 attempts" in failed["slow"] and len(server.hits["/slow"]) == 3
    assert failed["text"].startswith("not a decodable image")
    assert "over the 20,000-byte cap" in failed["huge"] and "over the cap" in failed["stream"]
    assert failed["to_ftp"] == "redirected to a non-HTTP URL ftp://127.0.0.1/x.jpg"
    assert failed["ftp"].startswith("not an http(s) URL")
    assert len(server.hits["/missing"]) == 1 and len(server.hits["/huge"]) == 1  # not retried
    first, second = server.hits["/limited"]
    assert second - first >= 0.95  # Retry-After: 1 honoured
    assert report.with_url == len(urls) - 1 and report.retries >= 4

    saved = json.loads(report_file.read_text())
    assert saved["downloaded"] == 6 and saved["failed"] == dict(sorted(failed.items()))
    from PIL import Image

    with Image.open(folder / "gif.png") as image:  # re-encoded: the encoder reads jpg/png/webp only
        assert image.format == "PNG"

    # resume: files on disk are skipped without a request; failures are tried again
    before = {path: len(times) for path, times in server.hits.items()}
    again = download_images(urls, folder, FAST, progress=False)
    assert again.present == 6 and not again.downloaded
    assert set(again.failed) == set(failed)
    assert len(server.hits["/good/a.jpg"]) == before["/good/a.jpg"] and len(server.hits["/flaky"]) == 2
    assert len(server.hits["/missing"]) == before["/missing"] + 1


def test_per_host_rate_limit_spaces_requests(server, tmp_path):
    urls = {f"i{k}": f"{server.url}/good/{k}.jpg" for k in range(6)}
    options = DownloadOptions(workers=4, rate=10, timeout=2, retries=0, max_bytes=CAP)
    download_images(urls, tmp_path / "images", options, progress=False)
    starts = sorted(t for path, times in server.hits.items() for t in times)
    assert len(starts) == 6
    # 10/s: the six requests are sent 0.1 s apart, so they span >= 0.5 s; arrival times can bunch up
    # on a loaded machine, so one gap is not checked, the span is (less 0.1 s of scheduling slack)
    assert starts[-1] - starts[0] >= 0.4


def test_retry_after_header_forms():
    assert retry_after("3", 60) == 3 and retry_after("600", 60) == 60 and retry_after(None, 60) is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 60) == 0  # a date in the past: no wait
    assert retry_after("soon", 60) is None


def test_converted_amazon_images_download_encode_and_train(server, tmp_path, monkeypatch):
    """convert amazon -> encode --download-images --images -> one epoch with text and image."""
    from conftest import tiny_overrides
    from test_convert import SETTINGS_FROM_YAML

    import run_ur4rec
    from ur4rec_recbole.cli import encode
    from ur4rec_recbole.cli import convert

    reviews, meta = write_amazon(tmp_path / "raw", 2018)
    meta.write_text(meta.read_text().replace("http://127.0.0.1:1/images/", server.url + "/good/")
                    .replace(server.url + "/good/B003.jpg", server.url + "/missing"))
    out = tmp_path / "data"
    convert.main(["amazon", str(reviews), str(meta), "--name", "shop", "--out", str(out)])
    yaml_file = str(out / "shop" / "shop.yaml")
    overrides = {k: v for k, v in tiny_overrides(out, tmp_path).items() if k not in SETTINGS_FROM_YAML}
    image = {"image_model": "ViT-S-32", "image_pretrained": "none", "image_size": 64, "image_batch_size": 16}
    cli = [f"--{k}={v}" for k, v in {**overrides, **image}.items()]
    result = encode.main(["--dataset", "shop", "--config_files", yaml_file, "--download-images", "--images",
                          "--download-rate", "0", *cli])
    assert result["download"]["downloaded"] == 8 and result["download"]["failed"] == {"B003": "HTTP 404 Not Found"}
    assert result["encoded"] == 8 and set(result["missing"]) == {"B003", "B009"}  # B009: no metadata, no URL
    assert "not downloaded" in result["missing"]["B003"]
    results = run_ur4rec.main(["--dataset", "shop", "--config_files", yaml_file, "--modalities", "text,image", *cli])
    assert results["config"]["modalities"] == ["text", "image"] and results["test_result"]


def test_a_server_that_sends_a_byte_at_a_time_is_cut_off_at_the_deadline(server, tmp_path):
    options = DownloadOptions(workers=1, rate=0, timeout=0.3, retries=0, max_bytes=10**6)  # deadline 1.5 s
    started = time.monotonic()
    report = download_images({"drip": server.url + "/drip"}, tmp_path / "images", options, progress=False)
    assert time.monotonic() - started < 4  # was unbounded: each byte came within the read timeout
    assert report.failed["drip"].startswith("slower than 1.5 s for the whole image")
    assert not list((tmp_path / "images").iterdir())


def test_retries_stay_within_the_whole_images_deadline(server, tmp_path):
    options = DownloadOptions(workers=1, rate=0, timeout=0.3, retries=5, backoff=0.01, max_bytes=10**6)
    started = time.monotonic()
    report = download_images({"drip": server.url + "/drip"}, tmp_path / "images", options, progress=False)
    assert time.monotonic() - started < 4  # 6 attempts of 1.5 s each before: the bound is per image
    assert report.failed["drip"].startswith("slower than 1.5 s for the whole image")
    assert len(server.hits["/drip"]) == 1  # the first attempt used up the whole image's time


def closed_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens: every connection is refused


def test_a_dead_host_is_given_up_after_a_few_failures(tmp_path):
    dead = closed_port_url()
    urls = {f"i{k}": f"{dead}/{k}.jpg" for k in range(40)}
    options = DownloadOptions(workers=2, rate=0, timeout=1, retries=4, backoff=0.05, host_failures=3)
    report_file = tmp_path / "report.json"
    started = time.monotonic()
    report = download_images(urls, tmp_path / "images", options, report_file, progress=False)
    assert time.monotonic() - started < 10
    assert set(report.failed) == set(urls) and report.requests <= 3 + options.workers  # was 200 requests
    skipped = [r for r in report.failed.values() if r.startswith("skipped: host 127.0.0.1 was given up after 3")]
    assert len(skipped) >= 35
    saved = json.loads(report_file.read_text())
    assert saved["skipped"] == len(skipped) and "127.0.0.1" in saved["hosts_given_up"]


def test_a_host_that_answers_is_not_given_up(server, tmp_path):
    urls = {f"m{k}": server.url + "/missing" for k in range(6)}  # 404s: the host is up
    options = DownloadOptions(workers=1, rate=0, timeout=1, retries=0, host_failures=2)
    report = download_images(urls, tmp_path / "images", options, progress=False)
    assert set(report.failed.values()) == {"HTTP 404 Not Found"} and not report.hosts_given_up


SIGTERM_SCRIPT = """
import sys
from ur4rec_recbole.features.download import DownloadOptions, download_images
urls = {f"d{k}": sys.argv[1] + "/drip" for k in range(4)}
print("started", flush=True)
download_images(urls, sys.argv[2], DownloadOptions(workers=2, rate=0, timeout=5, retries=0, max_bytes=10**6),
                sys.argv[3], progress=False)
"""


def test_sigterm_writes_the_failure_report(server, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    report_file = tmp_path / "report.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", SIGTERM_SCRIPT, server.url, str(tmp_path / "images"),
                              str(report_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert child.stdout.readline().strip() == b"started"
    waited = time.monotonic()
    while not server.hits["/drip"] and time.monotonic() - waited < 120:  # the downloads are under way
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    started = time.monotonic()
    child.communicate(timeout=60)
    assert time.monotonic() - started < 5  # requests under way are ended, not waited for (deadline 25 s)
    saved = json.loads(report_file.read_text())
    assert saved["interrupted"] is True and saved["downloaded"] == 0
