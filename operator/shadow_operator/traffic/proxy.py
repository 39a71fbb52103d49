"""The router: an asyncio Protocol server (httptools) in front of the primary, mirroring a share
of requests to the candidate; and the recorder, the same server in front of one upstream.

The primary's answer is written to the client as soon as it arrives; the candidate's copy runs
in its own task with its own timeout and pool, bounded by maxInFlight (beyond it: dropped and
counted, never queued). Records and metrics are built after the client has its answer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import zlib
from dataclasses import dataclass, field

import httptools

from ..records import (
    CONNECTION_ERROR,
    TIMEOUT,
    SideResult,
    one_sided_record,
    outcome_for_status,
    pair_record,
)
from .breaker import CircuitBreaker
from .config import RouterConfig
from .extract import UNPARSEABLE, Extractor, parse_body
from .metrics import ShadowMetrics
from .sink import RecordSink
from .upstream import Headers, UpstreamError, UpstreamPool, UpstreamResponse

log = logging.getLogger(__name__)

HOP_BY_HOP = {
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer", b"upgrade",
    b"content-length", b"expect",
}  # fmt: skip
MAX_HEADER_BYTES = 64 * 1024
MAX_BUFFERED_BODY = 256 * 1024 * 1024  # past this a request is refused (413): bodies are buffered
SHADOW_HEADER = (b"x-shadow-request", b"true")


def mirrored(request_id: str, percent: float) -> bool:
    """Deterministic sampling: the same id is always in or out of the mirrored share."""
    return zlib.crc32(request_id.encode()) % 10000 < round(percent * 100)


def _strip(headers: Headers) -> Headers:
    named = {n.strip().lower() for name, v in headers if name.lower() == b"connection" for n in v.split(b",")}
    return [(n, v) for n, v in headers if (lowered := n.lower()) not in HOP_BY_HOP and lowered not in named]


# uuid4's version and variant bits, set on random.getrandbits instead of os.urandom: a request id
# needs to be unique, not unguessable, and this saves a syscall and a UUID object per request.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def _new_request_id() -> str:
    """What uuid.uuid4().hex returns: 32 hex digits of a random version-4 UUID."""
    return "%032x" % (random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)


@dataclass
class Request:
    method: bytes
    target: bytes
    headers: Headers
    body: bytes
    keep_alive: bool
    streamed: bool  # chunked on the wire: primary only


@dataclass
class Primary:
    """The primary's answer as the pair task needs it."""

    result: SideResult
    segments: dict[str, str]
    features: dict[str, bool]
    labels: list[str]
    ts: float
    received: float
    scrub: list[str] = field(default_factory=list)


class _Pair:
    """The two halves of one mirrored request. Whichever side is accounted second writes the record:
    nobody waits for the other (no future, no timeout), and a primary that never answers (the
    request failed in the router) leaves no record."""

    __slots__ = ("candidate", "primary")

    def __init__(self) -> None:
        self.primary: Primary | None = None
        self.candidate: tuple[UpstreamResponse | None, str, str | None, float] | None = None


class ShadowProxy:
    def __init__(self, config: RouterConfig, metrics: ShadowMetrics, sink: RecordSink, recorder: bool = False) -> None:
        self.config = config
        self.metrics = metrics
        self.sink = sink
        self.recorder = recorder
        self.role = config.role if recorder else "primary"
        self.extractor = Extractor(config.recording)
        self.id_header = config.recording.request_id_header.lower().encode()
        self.primary = UpstreamPool(config.primary, max_idle=256)
        self.candidate = (
            UpstreamPool(config.candidate, max_idle=config.traffic.max_in_flight, max_response_bytes=16 << 20)
            if config.candidate and not recorder
            else None
        )
        self.percent = config.traffic.mirror_percent if self.candidate else 0.0
        self.in_flight = 0
        self.breaker = CircuitBreaker()
        self.tasks: set[asyncio.Task] = set()
        self.connections: set[_ClientConnection] = set()
        self.server: asyncio.AbstractServer | None = None
        self.stopping = False

    # --- lifecycle ---

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _ClientConnection(self), host, port, backlog=1024)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self, grace: float = 30.0) -> None:
        """Stop accepting, let in-flight primaries finish, wait for pending copies, close pools."""
        self.stopping = True
        if self.server is not None:
            self.server.close()
        for conn in list(self.connections):
            conn.close_when_idle()
        deadline = time.monotonic() + grace
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.transport.close()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=self.config.candidate_timeout + 1)
        await self.primary.aclose()
        if self.candidate is not None:
            await self.candidate.aclose()

    # --- one request ---

    async def handle(self, req: Request) -> tuple[bytes, object]:
        """The bytes to write back and a closure that accounts for the request afterwards."""
        request_id = None
        for name, value in req.headers:
            if name.lower() == self.id_header:
                request_id = value.decode("latin-1")
                break
        headers = _strip(req.headers)
        if request_id is None:
            request_id = _new_request_id()
            headers.append((self.config.recording.request_id_header.encode(), request_id.encode()))

        pair: _Pair | None = None
        if self.candidate is not None:
            if not mirrored(request_id, self.percent):
                self.metrics.mirror.inc("not_sampled")
            elif req.streamed or len(req.body) > self.config.traffic.max_body_bytes:
                self.metrics.mirror.inc("skipped_large_body")
            elif self.in_flight >= self.config.traffic.max_in_flight:
                self.metrics.mirror.inc("dropped")
            elif not self.breaker.allow():
                self.metrics.mirror.inc("circuit_open")
            else:
                self.metrics.mirror.inc("sampled")
                pair = _Pair()
                self._spawn(self._shadow(req, headers, request_id, pair))

        started = time.perf_counter()
        try:
            # asyncio.timeout, not wait_for: wait_for wraps the request in a task of its own
            async with asyncio.timeout(self.config.primary_timeout):
                response = await self.primary.request(req.method, req.target, headers, req.body)
            outcome, error = outcome_for_status(response.status), None
        except TimeoutError:
            response, outcome, error = None, TIMEOUT, "timeout"
        except UpstreamError as failure:
            response, outcome, error = None, CONNECTION_ERROR, str(failure)[:200]
        latency = time.perf_counter() - started
        if response is None:
            status = 504 if outcome == TIMEOUT else 502
            wire = _simple(status, b"upstream " + outcome.encode() + b"\n", req.keep_alive)
        else:
            wire = _serialize(response, req)

        def account() -> None:
            self._account_primary(req, request_id, response, outcome, error, latency, pair)

        return wire, account

    def _account_primary(self, req, request_id, response, outcome, error, latency, pair) -> None:
        ex = self.extractor
        needs_pair = pair is not None or self.recorder
        # The request body only feeds segments, features, the event time and the redacted values.
        needs_request = ex.needs_request or (needs_pair and ex.redact)
        request_doc = parse_body(req.body) if needs_request and not req.streamed else UNPARSEABLE
        body = response.body if response is not None else b""
        response_doc = parse_body(body) if (needs_pair or ex.needs_response) else UNPARSEABLE
        facts = ex.request_facts(request_doc, response_doc)
        labels = self.metrics.segment_labels(facts.segments)
        self.metrics.answered(self.role, labels, outcome, latency)
        self.metrics.features(self.role, facts.features)
        if not needs_pair:
            return
        scrub = ex.redacted_values(request_doc) if ex.redact else []
        status = response.status if response is not None else None
        result = SideResult(
            outcome=outcome,
            latency_ms=round(latency * 1000, 3),
            status=status,
            prediction=ex.prediction(response_doc) if outcome == "ok" else None,
            error=error if response is None else ex.error_text(status, body, response_doc, scrub),
        )
        if self.recorder:
            record = one_sided_record(
                self.config.shadow, request_id, facts.ts, self.role, facts.segments, facts.features, result,
                candidate_image=self.config.candidate_image if self.role == "candidate" else None,
                received=facts.received,
            )  # fmt: skip
            self.sink.submit(record)
        else:
            pair.primary = Primary(result, facts.segments, facts.features, labels, facts.ts, facts.received, scrub)
            if pair.candidate is not None:
                self._record_pair(request_id, pair)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _shadow(self, req: Request, headers: Headers, request_id: str, pair: _Pair) -> None:
        self.in_flight += 1
        self.metrics.in_flight.set(value=self.in_flight)
        copy = []
        for name, value in headers:
            copy.append((name, value + b"-shadow") if name.lower() == b"host" else (name, value))
        if not any(n.lower() == b"host" for n, _ in copy):
            copy.append((b"host", self.config.candidate.netloc.encode() + b"-shadow"))
        copy.append(SHADOW_HEADER)
        started = time.perf_counter()
        response: UpstreamResponse | None = None
        try:
            async with asyncio.timeout(self.config.candidate_timeout):
                response = await self.candidate.request(req.method, req.target, copy, req.body)
            outcome, error = outcome_for_status(response.status), None
        except TimeoutError:
            outcome, error = TIMEOUT, "timeout"
            self.metrics.mirror.inc("timeout")
        except UpstreamError as failure:
            outcome, error = CONNECTION_ERROR, str(failure)[:200]
        except Exception as failure:
            outcome, error = CONNECTION_ERROR, f"{type(failure).__name__}: {failure}"[:200]
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.set(value=self.in_flight)
        if outcome == CONNECTION_ERROR:
            self.breaker.connection_failed()
        else:
            self.breaker.reached()
        pair.candidate = (response, outcome, error, time.perf_counter() - started)
        if pair.primary is not None:
            self._record_pair(request_id, pair)

    def _record_pair(self, request_id: str, pair: _Pair) -> None:
        primary = pair.primary
        response, outcome, error, latency = pair.candidate
        ex = self.extractor
        body = response.body if response is not None else b""
        doc = parse_body(body) if response is not None else UNPARSEABLE
        result = SideResult(
            outcome=outcome,
            latency_ms=round(latency * 1000, 3),
            status=response.status if response is not None else None,
            prediction=ex.prediction(doc) if outcome == "ok" else None,
            error=error if response is None else ex.error_text(response.status, body, doc, primary.scrub),
        )
        self.metrics.answered("candidate", primary.labels, outcome, latency)
        self.metrics.features("candidate", primary.features)
        record = pair_record(
            self.config.shadow, request_id, primary.ts, primary.segments, primary.features,
            primary.result, result, regression=self.config.regression, candidate_image=self.config.candidate_image,
            received=primary.received,
        )  # fmt: skip
        self.metrics.pair(primary.labels, record["agree"], record["abs_diff"])
        self.sink.submit(record)


def _simple(status: int, body: bytes, keep_alive: bool) -> bytes:
    reasons = {400: b"Bad Request", 413: b"Content Too Large", 431: b"Request Header Fields Too Large",
               501: b"Not Implemented", 502: b"Bad Gateway", 504: b"Gateway Timeout"}  # fmt: skip
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n%s\r\n"
        % (status, reasons.get(status, b"Error"), len(body), b"" if keep_alive else b"connection: close\r\n")
    ) + body


def _serialize(response: UpstreamResponse, req: Request) -> bytes:
    parts = [b"HTTP/1.1 %d %s\r\n" % (response.status, response.reason)]
    keep_length = req.method == b"HEAD" or response.status in (204, 304) or 100 <= response.status < 200
    for name, value in response.headers:
        lowered = name.lower()
        if lowered in HOP_BY_HOP and not (keep_length and lowered == b"content-length"):
            continue
        parts += [name, b": ", value, b"\r\n"]
    if not keep_length:
        parts.append(b"content-length: %d\r\n" % len(response.body))
    if not req.keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    if req.method != b"HEAD":
        parts.append(response.body)
    return b"".join(parts)


class _ClientConnection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order, one at a time."""

    def __init__(self, proxy: ShadowProxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending: asyncio.Queue[Request] = asyncio.Queue()
        self.worker: asyncio.Task | None = None
        self.busy = False
        self.closed = False
        self.closing = False
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: Headers = []
        self.header_bytes = 0
        self.body: list[bytes] = []
        self.body_size = 0
        self.in_message = False
        self.rejected = 0

    # asyncio callbacks
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.proxy.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.proxy.connections.discard(self)
        if self.worker is not None and not self.busy:
            self.worker.cancel()

    def data_received(self, data: bytes) -> None:
        if self.closing and not self.in_message and self.rejected:
            return
        try:
            self.parser.feed_data(data)
        except Exception:
            self._reject(self.rejected or 400)

    def _reject(self, status: int) -> None:
        self.closing = True
        self.rejected = status
        if not self.busy and self.pending.empty():
            self.transport.write(_simple(status, b"", keep_alive=False))
            self.transport.close()
        else:
            self.pending.put_nowait(None)

    def close_when_idle(self) -> None:
        self.closing = True
        if not self.busy and self.pending.empty() and not self.in_message:
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.in_message = True

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self._count(len(name) + len(value) + 4)

    def _count(self, n: int) -> None:
        self.header_bytes += n
        if self.header_bytes > MAX_HEADER_BYTES:
            self.rejected = 431
            raise ValueError("headers too large")

    def on_headers_complete(self) -> None:
        for name, value in self.headers:
            if name.lower() == b"expect" and value.lower() == b"100-continue":
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, data: bytes) -> None:
        self.body_size += len(data)
        if self.body_size > MAX_BUFFERED_BODY:
            self.rejected = 413
            raise ValueError("body too large")
        self.body.append(data)

    def on_message_complete(self) -> None:
        streamed = any(n.lower() == b"transfer-encoding" for n, _ in self.headers)
        request = Request(
            method=self.parser.get_method(),
            target=self.url,
            headers=self.headers,
            body=b"".join(self.body),
            keep_alive=self.parser.should_keep_alive() and not self.closing,
            streamed=streamed,
        )
        self._reset()
        self.pending.put_nowait(request)
        if self.pending.qsize() > 8:
            self.transport.pause_reading()
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        try:
            while True:
                request = await self.pending.get()
                if request is None:  # a later request was malformed
                    self.transport.write(_simple(self.rejected, b"", keep_alive=False))
                    self.transport.close()
                    return
                self.busy = True
                try:
                    wire, account = await self.proxy.handle(request)
                    if not self.closed:
                        self.transport.write(wire)
                        if self.pending.qsize() <= 8:
                            self.transport.resume_reading()
                except Exception:
                    log.exception("error while serving a request")
                    if not self.closed:
                        self.transport.write(_simple(502, b"router error\n", keep_alive=False))
                    request.keep_alive = False
                else:
                    try:
                        account()
                    except Exception:
                        log.exception("error while recording a request")
                finally:
                    self.busy = False
                if self.closed:
                    return
                if not request.keep_alive or (self.closing and self.pending.empty() and not self.in_message):
                    self.transport.close()
                    return
        except asyncio.CancelledError:
            pass
