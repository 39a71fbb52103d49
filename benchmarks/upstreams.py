"""Upstreams for `make bench-router`: an nginx primary, candidates with chosen behaviour, nginx proxies.

The primary is nginx itself answering `{"prediction": 1}` from its config (one worker, far
faster than anything put in front of it). Candidates are a small asyncio HTTP/1.1 server
(uvloop when importable), one process per behaviour:

  fast    answers 200 `{"prediction": 1}` at once
  delay   answers the same after --delay-ms
  error   answers 500 `{"error": "KeyError: 'purchase_history'"}`
  reset   reads the request, then resets the connection (SO_LINGER 0) without answering
  hang    accepts, reads, never answers (closes only when the peer does)

    python -m benchmarks.upstreams candidate --port 9001 --behaviour delay --delay-ms 200

The nginx helpers write a config into a private prefix directory (pid, error log and temp
paths inside it), so nothing outside that directory is read or written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import struct
import sys
from pathlib import Path

BEHAVIOURS = ("fast", "delay", "error", "reset", "hang")
PREDICTION = b'{"prediction": 1}'
ERROR_BODY = b'{"error": "KeyError: \'purchase_history\'"}'
MAX_HEAD = 64 * 1024


def _response(status: str, body: bytes, close: bool) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
    ).encode() + body


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> None:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # trailers, up to the empty line
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return
            await reader.readexactly(size + 2)
    length = int(headers.get("content-length", "0") or 0)
    if length:
        await reader.readexactly(length)


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    version = lines[0].rsplit(" ", 1)[-1] if lines else "HTTP/1.1"
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return version, headers


def make_handler(behaviour: str, delay: float):
    ok = {False: _response("200 OK", PREDICTION, False), True: _response("200 OK", PREDICTION, True)}
    err = {
        False: _response("500 Internal Server Error", ERROR_BODY, False),
        True: _response("500 Internal Server Error", ERROR_BODY, True),
    }

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return  # the peer closed between requests
                version, headers = _parse_head(head)
                await _read_body(reader, headers)
                if behaviour == "hang":
                    while await reader.read(65536):
                        pass
                    return
                if behaviour == "reset":
                    sock = writer.get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                connection = headers.get("connection", "").lower()
                close = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")
                if behaviour == "delay":
                    await asyncio.sleep(delay)
                writer.write((err if behaviour == "error" else ok)[close])
                await writer.drain()
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    return handle


async def serve(host: str, port: int, behaviour: str, delay: float) -> None:
    server = await asyncio.start_server(
        make_handler(behaviour, delay), host, port, backlog=4096, limit=MAX_HEAD, reuse_address=True
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def candidate_argv(port: int, behaviour: str, delay_ms: float = 0.0, host: str = "127.0.0.1") -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmarks.upstreams",
        "candidate",
        "--host",
        host,
        "--port",
        str(port),
        "--behaviour",
        behaviour,
        "--delay-ms",
        str(delay_ms),
    ]


# ---- nginx ------------------------------------------------------------------------------

_NGINX_HEAD = """\
worker_processes 1;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
"""


def nginx_primary_conf(prefix: Path, port: int) -> str:
    """nginx answering every request with 200 {"prediction": 1}."""
    return (
        _NGINX_HEAD.format(prefix=prefix)
        + f"""\
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        default_type application/json;
        location / {{ return 200 '{PREDICTION.decode()}'; }}
    }}
}}
"""
    )


def nginx_proxy_conf(prefix: Path, port: int, primary_port: int, candidate_port: int | None) -> str:
    """nginx proxying to the primary (keepalive upstream); with a candidate, `mirror` copies each request to it."""
    mirror = ""
    mirror_location = ""
    candidate_upstream = ""
    if candidate_port is not None:
        mirror = "mirror /__mirror;\n            mirror_request_body on;"
        candidate_upstream = (
            f"upstream candidate {{ server 127.0.0.1:{candidate_port}; keepalive 64; keepalive_requests 10000000; }}"
        )
        mirror_location = """\
        location = /__mirror {
            internal;
            proxy_pass http://candidate$request_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;
            proxy_send_timeout 2s;
            proxy_read_timeout 2s;
        }
"""
    return (
        _NGINX_HEAD.format(prefix=prefix)
        + f"""\
    upstream primary {{ server 127.0.0.1:{primary_port}; keepalive 64; keepalive_requests 10000000; }}
    {candidate_upstream}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            {mirror}
            proxy_pass http://primary;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
{mirror_location}    }}
}}
"""
    )


def nginx_argv(prefix: Path, conf_text: str, nginx: str = "nginx") -> list[str]:
    """Write the config into PREFIX and return the command that runs it in the foreground."""
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(conf_text)
    return [
        nginx,
        "-p",
        f"{prefix}/",
        "-e",
        str(prefix / "error.log"),
        "-c",
        str(conf),
        "-g",
        f"daemon off; pid {prefix}/nginx.pid;",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.upstreams", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cand = sub.add_parser("candidate", help="run a candidate with the given behaviour")
    cand.add_argument("--host", default="127.0.0.1")
    cand.add_argument("--port", type=int, required=True)
    cand.add_argument("--behaviour", choices=BEHAVIOURS, default="fast")
    cand.add_argument("--delay-ms", type=float, default=0.0, help="for --behaviour delay")
    args = parser.parse_args(argv)
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    if os.environ.get("BENCH_UPSTREAM_VERBOSE"):
        print(f"candidate {args.behaviour} on {args.host}:{args.port}", file=sys.stderr)
    asyncio.run(serve(args.host, args.port, args.behaviour, args.delay_ms / 1000.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
