"""Hostile input to the real control API (``shaper api`` in a subprocess): large bodies are refused
before anything parses them, fast and small, and no error echoes what was sent."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from shaper_pipelines_tests.api.conftest import shaper_env
from shaper_pipelines_tests.hostile.limits import MEGABYTES, SECONDS, server_megabytes
from shaper_pipelines_tests.services.postgres import free_port
from shaper_pipelines_tests.services.processes import end_process

TOKEN = "hostile-api-token-0123456789"
FIFTY_MB = 50 * 1024 * 1024


class Api:
    """``python -m shaper_pipelines.cli api`` on a free loopback port, with its own SHAPER_HOME."""

    def __init__(self, home):
        self.port = free_port()
        self.log = home.parent / "api.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "shaper_pipelines.cli", "api", "--port", str(self.port)],
                                         env=shaper_env(home, SHAPER_API_TOKEN=TOKEN), stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"the API did not answer within 60 s:\n{self.log.read_text()}")

    def peak_megabytes(self) -> float:
        return server_megabytes(self.proc.pid)

    def raw(self, head: str, body_chunks, *, chunked: bool = False) -> tuple[float, bytes, int]:
        """Send ``head`` and then body chunks until the server answers; the seconds from the head to
        the answer, the answer, and how many body bytes went out before it."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        sock.setblocking(True)
        began = time.monotonic()
        sock.sendall(head.encode("latin-1"))
        sent = 0
        answer = b""
        try:
            for chunk in body_chunks:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                data = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk
                try:
                    sock.sendall(data)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(chunk)
            else:
                if chunked:
                    sock.sendall(b"0\r\n\r\n")
            sock.settimeout(30)
            while True:
                try:
                    block = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not block:
                    break
                answer += block
                if b"\r\n\r\n" in answer:
                    head_end = answer.index(b"\r\n\r\n")
                    length = [int(line.split(b":")[1]) for line in answer[:head_end].split(b"\r\n")
                              if line.lower().startswith(b"content-length:")]
                    if length and len(answer) >= head_end + 4 + length[0]:
                        break
            return time.monotonic() - began, answer, sent
        finally:
            sock.close()

    def stop(self) -> None:
        end_process(self.proc)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    server = Api(tmp_path_factory.mktemp("hostile-api") / "shaper_home")
    yield server
    server.stop()


def _chunks(total: int, size: int = 256 * 1024):
    block = b"x" * size
    for _ in range(total // size):
        yield block


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _body(answer: bytes) -> dict:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


def test_a_50_mb_body_with_a_valid_token_is_refused_before_it_is_read(api):
    head = (f"POST /v1/simulations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {FIFTY_MB}\r\n\r\n")
    seconds, answer, sent = api.raw(head, _chunks(FIFTY_MB))
    assert _status(answer) == 413, answer[:300]
    assert "larger than the limit" in _body(answer)["detail"]
    assert len(answer) < 1000 and seconds < SECONDS, (seconds, len(answer))
    assert sent < FIFTY_MB  # answered before the body was all sent
    assert api.peak_megabytes() < MEGABYTES


def test_a_50_mb_chunked_body_is_counted_as_it_streams_and_refused(api):
    head = (f"POST /v1/simulations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    seconds, answer, sent = api.raw(head, _chunks(FIFTY_MB), chunked=True)
    assert _status(answer) == 413, answer[:300]
    assert len(answer) < 1000 and seconds < SECONDS, (seconds, len(answer))
    assert sent < FIFTY_MB / 5
    assert api.peak_megabytes() < MEGABYTES


def test_a_50_mb_body_without_a_token_is_refused(api):
    head = (f"POST /v1/simulations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {FIFTY_MB}\r\n\r\n")
    seconds, answer, _ = api.raw(head, _chunks(FIFTY_MB))
    assert _status(answer) in (401, 413) and seconds < SECONDS and len(answer) < 1000


@pytest.mark.parametrize("length", ["abc", "-5", "1, 2"])
def test_a_content_length_that_is_not_a_number_is_a_400(api, length):
    head = (f"POST /v1/simulations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Length: {length}\r\n\r\n")
    seconds, answer, _ = api.raw(head, [])
    assert answer and 400 <= _status(answer) < 500, answer[:300]


@pytest.mark.parametrize("body", [
    {"profile_ids": "A" * 900_000},  # a string where a list belongs
    {"profile_ids": ["a" * 900_000]},  # an id far over its pattern
    {"profile_ids": ["x"], "k" * 900_000: 1},  # an unknown field with a huge name
    {"profile_ids": [f"bad id {i:06d}" for i in range(55_000)]},  # many errors
])
def test_a_422_on_a_large_invalid_body_is_small_and_does_not_echo_it(api, body):
    data = json.dumps(body).encode()
    assert 800_000 < len(data) < 1024 * 1024
    request = urllib.request.Request(f"http://127.0.0.1:{api.port}/v1/simulations", data=data, method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    began = time.monotonic()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    seconds = time.monotonic() - began
    text = err.value.read()
    assert err.value.code == 422, text[:300]
    assert len(text) < 4000, len(text)
    for letter in b"Aka":  # a name the input gave may be quoted, cut to 60 characters; the input is not
        assert bytes([letter]) * 61 not in text, text[:300]
    detail = json.loads(text)["detail"]
    assert all(set(e) == {"loc", "msg", "type"} for e in detail)
    assert seconds < SECONDS, seconds


def test_an_over_limit_json_body_is_a_413_not_a_parse(api):
    data = json.dumps({"profile_ids": ["x"] * 400_000}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{api.port}/v1/simulations", data=data, method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as exc:
        assert exc.code == 413 and len(exc.read()) < 1000
    except (ConnectionResetError, BrokenPipeError, urllib.error.URLError):
        pass  # answered 413 and closed before urllib finished sending: also a refusal
    else:
        raise AssertionError("accepted")
