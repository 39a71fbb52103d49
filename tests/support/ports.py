"""A free loopback port, for the tests' and benchmarks' own servers."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it; another process could take it before use)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
