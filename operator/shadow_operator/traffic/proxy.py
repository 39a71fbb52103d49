"""The router: an asyncio Protocol server (httptools) in front of the primary, mirroring a share
of requests to the candidate; and the recorder, the same server in front of one upstream.

Client connections (parsing, limits, timeouts, header hygiene) are traffic/http1.py. The
primary's answer is written to the client as soon as it arrives; the candidate's copy is written
right after the primary's request, in the same step (no task switch between the two writes), and
its answer is awaited in its own task with its own timeout and pool, bounded by maxInFlight
(beyond it: dropped and counted, never queued). Records and metrics are built after the client
has its answer.

Both latencies are the upstream connection's own (upstream.UpstreamResponse.latency: from the
request's last byte written to the answer's last byte parsed, stamped in the Protocol), never the
time until a task resumed: docs/verdict.md, "How latency is measured".
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import zlib
from dataclasses import dataclass, field

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
from .http1 import HOP_BY_HOP, BodyAborted, ClientConnection, Reaper, Request, simple_response
from .metrics import ShadowMetrics
from .sink import RecordSink
from .upstream import Exchange, Headers, UpstreamError, UpstreamPool, UpstreamResponse

log = logging.getLogger(__name__)
_getrandbits = random.getrandbits

SHADOW_HEADER = (b"x-shadow-request", b"true")


def mirrored(request_id: str, percent: float) -> bool:
    """Deterministic sampling: the same id is always in or out of the mirrored share."""
    return zlib.crc32(request_id.encode()) % 10000 < round(percent * 100)


def shadow_headers(headers: Headers, strip: frozenset[bytes], candidate_host: bytes) -> Headers:
    """The copy's headers: Host suffixed `-shadow`, `strip` (lower-case names) removed, marked.

    Inbound x-shadow-* headers are gone already (http1.inbound_headers): the mark is only ours.
    """
    copy, host = [], False
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"host":
            copy.append((name, value + b"-shadow"))
            host = True
        elif lowered not in strip:
            copy.append((name, value))
    if not host:
        copy.append((b"host", candidate_host + b"-shadow"))
    copy.append(SHADOW_HEADER)
    return copy


# uuid4's version and variant bits, set on random.getrandbits instead of os.urandom: a request id
# needs to be unique, not unguessable, and this saves a syscall and a UUID object per request.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def _new_request_id() -> str:
    """What uuid.uuid4().hex returns: 32 hex digits of a random version-4 UUID."""
    return "%032x" % (random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)


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
        idle = config.upstream_idle_timeout
        self.primary = UpstreamPool(config.primary, max_idle=256, idle_timeout=idle)
        self.candidate = (
            UpstreamPool(
                config.candidate, max_idle=config.traffic.max_in_flight, max_response_bytes=16 << 20, idle_timeout=idle
            )
            if config.candidate and not recorder
            else None
        )
        self.percent = config.traffic.mirror_percent if self.candidate else 0.0
        self.in_flight = 0
        self.breaker = CircuitBreaker()
        self.tasks: set[asyncio.Task] = set()
        self.connections: set[ClientConnection] = set()
        self.buffered = 0  # bytes of partly received request bodies, all connections (http1.BUFFER_BUDGET)
        self.max_body_bytes = config.traffic.max_body_bytes
        self.body_limit = config.traffic.body_limit_bytes  # 0: none
        self.strip = frozenset(name.lower().encode() for name in config.traffic.strip_headers)
        self.reaper = Reaper(self)
        self.server: asyncio.AbstractServer | None = None
        self.stopping = False

    # --- lifecycle ---

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: ClientConnection(self), host, port, backlog=1024)
        self.reaper.start()
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
        self.reaper.stop()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=self.config.candidate_timeout + 1)
        await self.primary.aclose()
        if self.candidate is not None:
            await self.candidate.aclose()

    # --- one request ---

    def closed_connection(self, reason: str) -> None:
        self.metrics.connections_closed.inc(reason)

    async def handle(self, req: Request) -> tuple[bytes | None, object]:
        """The bytes to write back and a closure that accounts for the request afterwards;
        (None, None) when a streamed body was cut short (the connection answers it)."""
        headers = req.headers
        if req.request_id is None:
            request_id = _new_request_id()
            headers.append((self.config.recording.request_id_header.encode(), request_id.encode()))
        else:
            request_id = req.request_id.decode("latin-1")

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

        started = time.perf_counter()  # only for answers that never came (timeouts, errors)
        try:
            if req.stream is not None:  # never mirrored (pair is None)
                stream = req.stream
                response = await self.primary.stream(
                    req.method, req.target, headers, stream, req.length, self.config.primary_timeout
                )
                if not stream.done:  # answered before the whole body: the rest is never read
                    req.keep_alive = False
            else:
                # Both requests written back to back, before either answer is awaited, in a random
                # order: neither side waits for a task switch the other does not, and neither is
                # always the second one to reach its model (docs/verdict.md).
                copy_first = pair is not None and _getrandbits(1)
                if copy_first:
                    self._mirror(req, headers, request_id, pair)
                exchange = self.primary.send(req.method, req.target, headers, req.body)
                if pair is not None and not copy_first:
                    self._mirror(req, headers, request_id, pair)
                # asyncio.timeout, not wait_for: wait_for wraps the request in a task of its own
                async with asyncio.timeout(self.config.primary_timeout):
                    response = await self.primary.answer(exchange)
            outcome, error = outcome_for_status(response.status), None
        except BodyAborted:
            return None, None
        except TimeoutError:
            response, outcome, error = None, TIMEOUT, "timeout"
        except UpstreamError as failure:
            response, outcome, error = None, CONNECTION_ERROR, str(failure)[:200]
        latency = response.latency if response is not None else time.perf_counter() - started
        if response is None:
            status = 504 if outcome == TIMEOUT else 502
            wire = simple_response(status, b"upstream " + outcome.encode() + b"\n", req.keep_alive)
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

    def _mirror(self, req: Request, headers: Headers, request_id: str, pair: _Pair) -> None:
        """Write the copy now (on an idle pooled connection; else its task connects first) and
        leave its answer to a task of its own."""
        self.in_flight += 1
        self.metrics.in_flight.set(value=self.in_flight)
        started = time.perf_counter()
        try:
            copy = shadow_headers(headers, self.strip, self.config.candidate.netloc.encode())
            exchange = self.candidate.send(req.method, req.target, copy, req.body)
        except Exception as failure:  # never the primary's problem
            log.exception("error while sending a copy")
            exchange = failure
        self._spawn(self._shadow(exchange, request_id, pair, started))

    async def _shadow(self, exchange: Exchange | Exception, request_id: str, pair: _Pair, started: float) -> None:
        response: UpstreamResponse | None = None
        try:
            if isinstance(exchange, Exception):
                raise exchange
            async with asyncio.timeout(self.config.candidate_timeout):
                response = await self.candidate.answer(exchange)
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
        latency = response.latency if response is not None else time.perf_counter() - started
        pair.candidate = (response, outcome, error, latency)
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
