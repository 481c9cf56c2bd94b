"""A throwaway PostgreSQL cluster for tests: the machine's initdb and pg_ctl, a temporary
directory, a free loopback port, trust authentication, and gone afterwards.

initdb refuses to run as root, so as root the cluster belongs to ``nobody``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _find(binary: str) -> str:
    found = shutil.which(binary)
    if found:
        return found
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / binary).exists():
            return str(root / binary)
    raise RuntimeError(f"{binary} not found: install PostgreSQL's server binaries (Debian: postgresql)")


@dataclass
class PostgresServer:
    directory: Path
    port: int
    user: str = "postgres"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        import sqlalchemy as sa

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)

    def stop(self) -> None:
        _as_owner([_find("pg_ctl"), "-D", str(self.directory / "data"), "-m", "immediate", "-w", "stop"],
                  check=False)
        shutil.rmtree(self.directory, ignore_errors=True)


def _as_owner(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "nobody", "--", *cmd]
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def start_postgres(timeout: float = 60.0) -> PostgresServer:
    directory = Path(tempfile.mkdtemp(prefix="shaper-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "nobody", "nogroup")
    port = free_port()
    server = PostgresServer(directory=directory, port=port)
    data = directory / "data"
    try:
        _as_owner([_find("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={directory} -c fsync=off"
        _as_owner([_find("pg_ctl"), "-D", str(data), "-o", options, "-l", str(directory / "log"), "-w", "-t",
                   str(int(timeout)), "start"])
    except subprocess.CalledProcessError as exc:
        log = (directory / "log").read_text() if (directory / "log").exists() else ""
        shutil.rmtree(directory, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr}\n{log}") from exc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError("PostgreSQL did not accept connections in time")
