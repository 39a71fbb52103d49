"""The admin listener: /metrics (Prometheus text format), /healthz and /readyz."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

from .listener import Listener
from .metrics import Registry


def stop_on_signals(stop: asyncio.Event | None = None) -> asyncio.Event:
    """An event SIGTERM and SIGINT set: how `shadowctl router|recorder|collector` learn to shut down."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread, Windows
            loop.add_signal_handler(sig, stop.set)
    return stop


CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class AdminServer(Listener):
    def __init__(self, registry: Registry, ready: Callable[[], bool]) -> None:
        super().__init__()
        self.registry = registry
        self.ready = ready

    async def metrics_text(self) -> str:
        """The /metrics exposition: this process's registry (workers.ParentAdmin merges its workers')."""
        return self.registry.render()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            parts = head.split(b"\r\n", 1)[0].split()
            path = parts[1].split(b"?", 1)[0] if len(parts) >= 2 else b""
            if path == b"/metrics":
                status, body, ctype = b"200 OK", (await self.metrics_text()).encode(), CONTENT_TYPE
            elif path == b"/healthz":
                status, body, ctype = b"200 OK", b"ok\n", b"text/plain"
            elif path == b"/readyz":
                ok = self.ready()
                status = b"200 OK" if ok else b"503 Service Unavailable"
                body, ctype = (b"ready\n" if ok else b"not ready\n"), b"text/plain"
            else:
                status, body, ctype = b"404 Not Found", b"not found\n", b"text/plain"
            writer.write(
                b"HTTP/1.1 %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                % (status, ctype, len(body))
                + body
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            writer.close()
