"""One task per server that closes client connections past their deadlines and prunes idle
upstream connections: no timer per request."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import ProxyServer

log = logging.getLogger(__name__)


class Reaper:
    """Closes the connections whose deadline passed, checking a few times per shortest timeout,
    and the upstream connections idle for longer than their pool keeps them.

    Connections set their deadlines from `now`, which this task advances on each round: a coarse
    clock, so a request costs no clock reads; timeouts hold to within one round (at most 1 s).
    """

    def __init__(self, proxy: ProxyServer) -> None:
        config = proxy.config
        self.connections = proxy.connections
        self.metrics = proxy.metrics
        self.pools = proxy.pools  # read at each round: the subclass adds its pools after this is made
        self.header_timeout, self.body_timeout, self.idle_timeout = (
            config.header_timeout, config.body_timeout, config.idle_timeout,
        )  # fmt: skip
        self.round = min(1.0, max(0.05, min(self.header_timeout, self.body_timeout, self.idle_timeout) / 4))
        self.now = 0.0
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.now = loop.time()
        self.task = loop.create_task(self._run())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.round)
            self.now = now = loop.time()
            self.metrics.connections.set(value=len(self.connections))
            for pool in self.pools():
                pool.prune()
            expired = [conn for conn in self.connections if conn.deadline <= now]
            for conn in expired:
                try:
                    conn.expire()
                except Exception:
                    log.exception("error while closing a timed-out connection")
