"""The hostile corpus for the load agent (issue 12): each case against a real ``shaper agent``
process, asserting a clear 4xx with a JSON error within 2 s, the agent's peak memory under 500 MB
(its own VmHWM), and no load left running."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shaper_pipelines_tests.agent.test_agent_safety import wait_for
from shaper_pipelines_tests.hostile.limits import MEGABYTES, SECONDS, server_megabytes
from shaper_pipelines_tests.services.http_target import http_target, served
from shaper_pipelines_tests.services.postgres import free_port
from shaper_pipelines_tests.services.processes import end_process

TOKEN = "hostile-token-123"


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (Locust's master and the workers it forked)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


class Agent:
    """A real agent process; stderr goes to a file (a pipe nobody reads could fill and block it)."""

    def __init__(self, tmp_path: Path, *extra: str):
        self.port = free_port()
        self.work_dir = tmp_path / "agent-work"
        self.log = open(tmp_path / "agent.err", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shaper_pipelines.cli", "agent", "--port", str(self.port), "--max-cores", "1",
             "--max-memory-mib", "256", "--max-duration", "120s", "--work-dir", str(self.work_dir), *extra],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env={**os.environ, "SHAPER_AGENT_TOKEN": TOKEN})
        line = self.proc.stdout.readline()
        assert "listening" in line, (tmp_path / "agent.err").read_text()

    def call(self, method: str, path: str, body=None, token: str | None = TOKEN, timeout: float = 10):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode())
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                text = r.read().decode()
                return r.status, (json.loads(text) if r.headers.get_content_type() == "application/json" else text)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read().decode())

    def raw(self, request: bytes, timeout: float = 5) -> tuple[int, bytes]:
        """Send ``request`` as it is and read the whole answer: (status, body)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(request)
            return read_response(s)

    def peak_mb(self) -> float:
        return server_megabytes(self.proc.pid)

    def threads(self) -> int:
        return len(list(Path(f"/proc/{self.proc.pid}/task").iterdir()))

    def stop(self):
        end_process(self.proc, timeout=5)
        self.log.close()


def read_response(s: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed without a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = next((int(v) for k, _, v in (ln.partition(b":") for ln in lines[1:])
                   if k.strip().lower() == b"content-length"), None)
    while length is None or len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, body


def profile(resource: str, level: float, duration: str = "30s", pid: str | None = None) -> dict:
    return {"profile_id": pid or f"h-{resource}", "resource_type": resource, "duration": duration,
            "load_pattern": {"kind": "constant", "level": level}}


def refused(agent: Agent, status: int, send, mentions: str | None = None) -> dict:
    """``send()`` answers ``status`` with a JSON error within SECONDS, the agent under MEGABYTES."""
    started = time.monotonic()
    got, body = send()
    elapsed = time.monotonic() - started
    if isinstance(body, bytes):
        body = json.loads(body)
    assert got == status, (got, body)
    assert isinstance(body, dict) and body.get("error"), body
    if mentions:
        assert mentions in body["error"], body
    assert elapsed <= SECONDS, f"{elapsed:.2f} s"
    assert agent.peak_mb() <= MEGABYTES, f"{agent.peak_mb():.0f} MB"
    assert agent.proc.poll() is None
    print(f"{got} in {elapsed:.3f} s, agent peak {agent.peak_mb():.0f} MB: {body['error'][:80]}")
    return {"status": got, "seconds": elapsed, "peak_mb": agent.peak_mb()}


@pytest.fixture
def agent(tmp_path):
    a = Agent(tmp_path, "--dead-man", "30s", "--request-timeout", "3s")
    yield a
    a.stop()


@pytest.fixture
def target():
    with http_target() as url:
        yield url


def locust_master(agent: Agent, run_id: str) -> int:
    """The Locust master's pid, once the run's generator has started it."""
    wait_for(lambda: agent.call("GET", f"/runs/{run_id}")[1]["pids"], 30, "Locust started")
    return agent.call("GET", f"/runs/{run_id}")[1]["pids"][0]


# -- refused early and cheaply ------------------------------------------------------------------


def test_a_400_day_profile_is_refused_before_it_is_rendered(agent):
    refused(agent, 422, lambda: agent.call("POST", "/runs", {"profile": profile("cpu", 0.1, "400d")}), "duration")
    assert agent.call("GET", "/runs")[1] == []


def test_no_token_wrong_target_and_over_cap_intensity_are_refused(agent):
    cpu = profile("cpu", 0.5)
    refused(agent, 401, lambda: agent.call("POST", "/runs", {"profile": cpu}, token=None))
    refused(agent, 401, lambda: agent.call("GET", "/metrics", token=None))
    refused(agent, 403, lambda: agent.call("POST", "/runs", {"profile": cpu, "target_resource":
                                                               "http://198.51.100.7:8080/"}), "allow-list")
    refused(agent, 422, lambda: agent.call("POST", "/runs", {"profile": cpu, "intensity": 3}), "cap")
    assert agent.call("GET", "/runs")[1] == []


# -- malformed requests: a 4xx, never a dropped connection or a traceback ---------------------


def test_a_non_ascii_token_is_a_401(agent):
    request = ("GET /runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tökén✓\r\n\r\n").encode()
    refused(agent, 401, lambda: agent.raw(request))


def test_a_content_length_that_is_not_a_number_is_a_400(agent):
    request = (f"POST /runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
               "Content-Length: abc\r\n\r\n{}").encode()
    started = time.monotonic()
    status, _ = agent.raw(request)  # refused by h11 itself, before the app: a plain-text 400
    assert status == 400 and time.monotonic() - started <= SECONDS
    assert agent.proc.poll() is None and agent.call("GET", "/runs")[0] == 200


def test_json_nested_100k_deep_is_a_400(agent):
    deep = b"[" * 100_000 + b"]" * 100_000
    request = (f"POST /runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(deep)}\r\n\r\n").encode() + deep
    refused(agent, 400, lambda: agent.raw(request), "nests deeper")
    moderately_deep = {"profile": {"x": json.loads("[" * 200 + "]" * 200)}}
    refused(agent, 400, lambda: agent.call("POST", "/runs", moderately_deep), "nests deeper")


def test_invalid_json_is_a_400(agent):
    request = (f"PATCH /runs/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
               "Content-Length: 9\r\n\r\n{not json").encode()
    refused(agent, 400, lambda: agent.raw(request), "not JSON")


def test_a_50_mb_body_is_a_413_without_being_read_into_memory(agent):
    size = 50 * 1024 * 1024

    def send():
        with socket.create_connection(("127.0.0.1", agent.port), timeout=10) as s:
            s.sendall((f"POST /runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n").encode())
            # The answer comes from the declared length, before the body: a sender that reads
            # while it sends gets it; the rest of the body is discarded by the server.
            sender = threading.Thread(target=lambda: _send_quietly(s, b"x" * size), daemon=True)
            sender.start()
            return read_response(s)

    outcome = refused(agent, 413, send, "larger than")
    assert outcome["peak_mb"] <= MEGABYTES


def test_a_chunked_body_past_the_limit_is_a_413_as_it_streams(agent):
    # No Content-Length to refuse from: the limit is counted as the chunks arrive.
    chunk = b"x" * (256 * 1024)

    def send():
        with socket.create_connection(("127.0.0.1", agent.port), timeout=10) as s:
            s.sendall((f"POST /runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                       "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
            body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8)) + b"0\r\n\r\n"
            threading.Thread(target=lambda: _send_quietly(s, body), daemon=True).start()
            return read_response(s)

    outcome = refused(agent, 413, send, "larger than")
    assert outcome["peak_mb"] <= MEGABYTES


def _send_quietly(s: socket.socket, data: bytes) -> None:
    try:
        s.sendall(data)
    except OSError:  # the server may close once it has answered
        pass


# -- many clients --------------------------------------------------------------------------------


def test_50_simultaneous_posts_are_all_answered(agent):
    """Each gets an answer: one run starts, the other 49 are told one is active (no resets)."""
    def post(_):
        try:
            return agent.call("POST", "/runs", {"profile": profile("cpu", 0.2, "5s")}, timeout=30)[0]
        except OSError as exc:
            return repr(exc)

    started = time.monotonic()
    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(post, range(50)))
    print(f"50 POSTs answered in {time.monotonic() - started:.2f} s, agent peak {agent.peak_mb():.0f} MB")
    assert sorted(statuses, key=str) == [201] + [409] * 49, statuses
    assert agent.peak_mb() <= MEGABYTES
    agent.call("POST", "/stop-all")


def test_1000_idle_sockets_neither_hold_threads_nor_lock_out_the_controller(agent):
    threads_before = agent.threads()
    idle = [socket.create_connection(("127.0.0.1", agent.port), timeout=10) for _ in range(1000)]
    try:
        idle[0].sendall(b"GET /runs HTTP/1.1\r\n")  # and one slowloris: half a request head
        started = time.monotonic()
        assert agent.call("GET", "/runs")[0] == 200  # the controller still gets through
        answered = time.monotonic() - started
        assert answered <= SECONDS
        print(f"controller answered in {answered:.3f} s with 1,000 idle sockets open; agent threads "
              f"{threads_before} -> {agent.threads()}, peak {agent.peak_mb():.0f} MB")
        assert agent.threads() <= threads_before + 10  # no thread per connection
        assert agent.peak_mb() <= MEGABYTES

        def closed(s: socket.socket) -> bool:
            s.settimeout(10)
            try:
                return s.recv(1) == b""
            except ConnectionResetError:
                return True

        # --request-timeout 3s: the server closes every one of them, the slowloris too.
        started = time.monotonic()
        assert all(closed(s) for s in idle)
        print(f"all 1,000 closed by the agent {time.monotonic() - started:.2f} s later")
        assert time.monotonic() - started <= 3 + 5
    finally:
        for s in idle:
            s.close()
    assert agent.call("GET", "/runs")[0] == 200


# -- no load left running ------------------------------------------------------------------------


def test_kill_9_with_locust_processes_takes_every_load_process_with_it(tmp_path, target):
    agent = Agent(tmp_path, "--locust-processes", "2", "--max-rps", "1000")
    master = None
    try:
        status, run = agent.call("POST", "/runs", {"target_resource": f"{target}/",
                                                   "profile": profile("network_io", 50, "60s")})
        assert status == 201, run
        master = locust_master(agent, run["id"])
        # Master and two forked workers, sending requests.
        wait_for(lambda: len(group_members(master)) == 3 and served(target) > 20, 30, "Locust under way")
        os.kill(agent.proc.pid, signal.SIGKILL)  # no chance to clean up: the kernel must do it
        agent.proc.wait()
        elapsed = wait_for(lambda: not group_members(master), 5, "every Locust process gone")
        time.sleep(0.5)  # requests already in flight land
        before = served(target)
        time.sleep(1.5)
        assert served(target) == before, "the target still receives requests"
        print(f"load processes gone {elapsed:.2f} s after kill -9")
    finally:
        agent.stop()
        if master:  # a failed run of this test must not leave its load behind either
            for pid in group_members(master):
                os.kill(pid, signal.SIGKILL)


def test_sigterm_stops_load_within_two_seconds_and_removes_its_work_dir(tmp_path, target):
    agent = Agent(tmp_path, "--locust-processes", "2")
    try:
        assert agent.call("POST", "/runs", {"profile": profile("cpu", 0.5)})[0] == 201
        status, run = agent.call("POST", "/runs", {"target_resource": f"{target}/",
                                                   "profile": profile("network_io", 20)})
        assert status == 201, run
        master = locust_master(agent, run["id"])
        wait_for(lambda: len(group_members(master)) == 3, 30, "Locust under way")
        children = {p for r in agent.call("GET", "/runs")[1] for p in r["pids"]}
        agent.proc.send_signal(signal.SIGTERM)
        elapsed = wait_for(lambda: agent.proc.poll() is not None and not any(alive(p) for p in children)
                           and not group_members(master), 2.5, "agent and load gone")
        assert agent.proc.returncode == 0 and elapsed <= 2.5
        assert not agent.work_dir.exists()  # it did not exist before the agent: a clean stop removes it
    finally:
        agent.stop()


def test_the_default_temp_work_dir_is_removed_on_a_clean_stop(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "shaper_pipelines.cli", "agent", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "SHAPER_AGENT_TOKEN": TOKEN, "TMPDIR": str(temp)})
    try:
        assert "listening" in proc.stdout.readline()
        assert [p.name for p in temp.iterdir()][0].startswith("shaper-agent-")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert list(temp.iterdir()) == []
    finally:
        end_process(proc)


def test_the_dead_man_fires_while_prometheus_scrapes_with_the_token(tmp_path):
    agent = Agent(tmp_path, "--dead-man", "2s")
    try:
        status, run = agent.call("POST", "/runs", {"profile": profile("cpu", 0.3)})
        assert status == 201
        # Scraping and reading, as Prometheus and a dashboard do, for longer than the dead-man.
        stop_at = time.monotonic() + 4.5
        while time.monotonic() < stop_at:
            assert agent.call("GET", "/metrics")[0] == 200
            agent.call("GET", f"/runs/{run['id']}")
            time.sleep(0.2)
        body = agent.call("GET", f"/runs/{run['id']}")[1]
        assert body["status"] == "stopped" and body["reason"].startswith("dead-man"), body
        assert not any(alive(p) for p in body["pids"])
        # A heartbeat, on the other hand, keeps a run going.
        status, run = agent.call("POST", "/runs", {"profile": profile("cpu", 0.3)})
        assert status == 201
        stop_at = time.monotonic() + 4.5
        while time.monotonic() < stop_at:
            assert agent.call("POST", "/heartbeat")[0] == 200
            time.sleep(0.5)
        assert agent.call("GET", f"/runs/{run['id']}")[1]["status"] == "running"
        agent.call("POST", "/stop-all")
    finally:
        agent.stop()
