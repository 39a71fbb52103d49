"""Serve one model version over HTTP/1.1 with JSON: `python -m shadow_demo.serve --version v2`.

POST any path with a request body from world.User.request -> {"prediction", "score", "model"};
an exception inside the model is answered 500 {"error": "KeyError: 'purchase_history'"}, as most
model servers do. GET /healthz answers 200 once the model is trained.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

from .models import VERSIONS, Model, offline_dataset, train

MAX_BODY = 1 << 20


async def answer(model: Model, method: bytes, body: bytes) -> tuple[int, dict]:
    if method == b"GET":
        return 200, {"status": "ok", "model": model.name}
    try:
        request = json.loads(body)
        await asyncio.sleep(model.version.lookup_seconds(request))  # the feature-store round trips
        return 200, model.predict(request)
    except Exception as error:  # a model bug must become an answer, not a dropped connection
        return 500, {"error": f"{type(error).__name__}: {error}"}


async def serve_connection(model: Model, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.split(b"\r\n")
            method = request_line.split(b" ", 1)[0]
            length, close = 0, False
            for line in header_lines:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
            if length > MAX_BODY:
                break
            body = await reader.readexactly(length) if length else b""
            status, document = await answer(model, method, body)
            payload = json.dumps(document).encode()
            reason = b"OK" if status == 200 else b"Internal Server Error"
            writer.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (status, reason, len(payload), payload)
            )
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main(version: str, host: str, port: int, seed: int) -> None:
    model = train(VERSIONS[version], offline_dataset(12000, seed)[: 12000 * 4 // 5])
    server = await asyncio.start_server(lambda r, w: serve_connection(model, r, w), host, port, backlog=1024)
    print(f"listening {server.sockets[0].getsockname()[1]} model {version}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def run() -> None:
    parser = argparse.ArgumentParser(prog="python -m shadow_demo.serve")
    parser.add_argument("--version", choices=sorted(VERSIONS), required=True)
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any free one, printed)")
    parser.add_argument("--seed", type=int, default=11, help="offline training data seed")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(main(args.version, host or "127.0.0.1", int(port), args.seed))
    sys.exit(0)


if __name__ == "__main__":
    run()
