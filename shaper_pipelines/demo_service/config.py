"""What one demo service is: its mode, its workers, the work per request, its queue, where it
listens. Checked here, once, for the command line and for ``start_demo_service`` alike."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import asdict, dataclass

MODES = ("cpu", "pool")


class ConfigError(ValueError):
    """A configuration the demo service refuses, with the reason in words."""


def loopback_host(host: str) -> str:
    """``host`` if it is a loopback address (``localhost`` reads as 127.0.0.1); otherwise refused.

    The service answers anyone without a token and burns CPU on request: on any other address it
    would be a way to load the machine from the network."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"refusing to listen on {host!r}: the demo service listens on a loopback address "
                          "only (127.0.0.1 or ::1)") from None
    if not address.is_loopback:
        raise ConfigError(f"refusing to listen on {host}: the demo service listens on a loopback address only "
                          "(127.0.0.1 or ::1)")
    return host


@dataclass(frozen=True)
class ServiceConfig:
    mode: str = "pool"
    workers: int = 4
    work_ms: float = 5.0  # per request: CPU milliseconds ("cpu") or milliseconds holding a worker ("pool")
    queue: int = 16  # requests waiting for a worker; one more is answered 503 at once
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port, reported on stdout

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"mode {self.mode!r}: one of {', '.join(MODES)}")
        if not 1 <= self.workers <= 256:
            raise ConfigError(f"workers {self.workers}: between 1 and 256")
        if not 0 < self.work_ms <= 60_000:
            raise ConfigError(f"work-ms {self.work_ms}: more than 0, at most 60000")
        if not 0 <= self.queue <= 100_000:
            raise ConfigError(f"queue {self.queue}: between 0 and 100000")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port}: between 0 and 65535")
        object.__setattr__(self, "host", loopback_host(self.host))

    @property
    def work_s(self) -> float:
        return self.work_ms / 1000.0

    @property
    def capacity_rps(self) -> float:
        """Requests per second the service serves at most: each worker finishes one request every
        ``work_ms``. In "cpu" mode only while ``workers`` cores are free for it."""
        return self.workers / self.work_s

    def as_dict(self) -> dict:
        # The cores this process may run on, beside the capacity: in "cpu" mode the capacity holds
        # only while there are at least ``workers`` of them (and free).
        return {**asdict(self), "capacity_rps": self.capacity_rps, "cores": len(os.sched_getaffinity(0))}
