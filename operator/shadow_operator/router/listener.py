"""A TCP listener on the event loop: what the collector's record server and every admin server share."""

from __future__ import annotations

import asyncio
import contextlib


class Listener:
    """Serves each connection with `_connection`; `start` binds, `stop` stops accepting.

    `head_limit` bounds what one `readuntil` may buffer (asyncio's default is 64 KiB);
    `close_timeout` is how long `stop` waits for the server to close before going on.
    """

    head_limit = 64 * 1024
    close_timeout = 1.0

    def __init__(self) -> None:
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port; the port bound (port 0 picks a free one)."""
        self.server = await asyncio.start_server(self._connection, host, port, limit=self.head_limit)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), self.close_timeout)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError
