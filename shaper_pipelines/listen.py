"""The listening socket the agent and the demo service hand to uvicorn."""

from __future__ import annotations

import socket

BACKLOG = 2048  # the stdlib server's 5 reset the 6th of 50 simultaneous POSTs


def listening_socket(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """Bound and listening before the process says where it listens, so a client that reads that
    can connect at once. Not inherited: child processes (load generators, worker pools) must not
    hold the port open after their parent is gone."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(False)
    return sock
