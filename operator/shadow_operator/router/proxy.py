"""The router: an asyncio Protocol server (httptools) in front of the primary, mirroring a share
of requests to the candidate; and the recorder, the same server in front of one upstream.

Client connections (parsing, limits, timeouts, header hygiene) are router/http1.py. The
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
from dataclasses import dataclass

from ..contract.records import (
    BASELINE,
    COMPARED,
    CONNECTION_ERROR,
    TIMEOUT,
    SideResult,
    one_sided_record,
    outcome_for_status,
    pair_record,
)
from .breaker import CircuitBreaker
from .config import RouterConfig
from .extract import UNPARSEABLE, Extractor, Secrets, parse_body
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
    scrub: Secrets | None = None  # the request's redacted leaves, and those of the primary's answer


class _Pair:
    """The two halves of one mirrored request. Whichever side is accounted second writes the record:
    nobody waits for the other (no future, no timeout), and a primary that never answers (the
    request failed in the router) leaves no record."""

    __slots__ = ("baseline", "candidate", "primary")

    def __init__(self) -> None:
        self.primary: Primary | None = None
        self.candidate: tuple[UpstreamResponse | None, str, str | None, float] | None = None
        # The noise baseline's answer to the same copy (spec.analysis.baseline), recorded as a pair of its own.
        self.baseline: tuple[UpstreamResponse | None, str, str | None, float] | None = None


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
        self.baseline = (
            UpstreamPool(
                config.baseline, max_idle=config.traffic.max_in_flight, max_response_bytes=16 << 20, idle_timeout=idle
            )
            if config.baseline and self.candidate is not None
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

    async def start(self, host: str, port: int, reuse_port: bool = False) -> int:
        """Listen; `reuse_port`: one of several worker processes on the same port (workers.py)."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: ClientConnection(self), host, port, backlog=1024, reuse_port=reuse_port or None
        )
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
        if self.baseline is not None:
            await self.baseline.aclose()

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
        redacting = bool(ex.redact) and (needs_pair or ex.needs_request or ex.needs_response)
        needs_request = ex.needs_request or redacting
        # A chunked body is here whole and de-chunked (http1 buffers it like any other) unless it
        # went past maxBodyBytes or the buffer budget: then it was streamed and never kept.
        whole = req.stream is None
        request_doc = parse_body(req.body) if needs_request and whole else UNPARSEABLE
        body = response.body if response is not None else b""
        response_doc = parse_body(body) if (needs_pair or ex.needs_response) else UNPARSEABLE
        secrets = None
        if redacting:
            # Unread or non-JSON: its redacted values are unknown, so nothing taken from the answers
            # can be checked and the record holds "[redacted]" (no prediction) instead.
            secrets = ex.secrets(request_doc, known=whole and (not req.body or request_doc is not UNPARSEABLE))
            if response_doc is not UNPARSEABLE:
                secrets.add_document(response_doc)  # redacted paths that point into the answer
        facts = ex.request_facts(request_doc, response_doc, secrets)
        labels = self.metrics.segment_labels(facts.segments)
        self.metrics.answered(self.role, labels, outcome, latency)
        self.metrics.features(self.role, facts.features)
        if not needs_pair:
            return
        status = response.status if response is not None else None
        # `error` without a response is the router's own text (timeout, connect failure): no body in it.
        result = SideResult(
            outcome=outcome,
            latency_ms=round(latency * 1000, 3),
            status=status,
            prediction=ex.prediction(response_doc, secrets) if outcome == "ok" else None,
            error=error if response is None else ex.error_text(status, body, response_doc, secrets),
        )
        if self.recorder:
            record = one_sided_record(
                self.config.shadow, request_id, facts.ts, self.role, facts.segments, facts.features, result,
                candidate_image=self.config.candidate_image if self.role == "candidate" else None,
                received=facts.received,
            )  # fmt: skip
            self.sink.submit(record)
        else:
            pair.primary = Primary(result, facts.segments, facts.features, labels, facts.ts, facts.received, secrets)
            if pair.candidate is not None:
                self._record_pair(request_id, pair)
            if pair.baseline is not None:
                self._record_pair(request_id, pair, BASELINE)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _mirror(self, req: Request, headers: Headers, request_id: str, pair: _Pair) -> None:
        """Write the copy now (on an idle pooled connection; else its task connects first) and
        leave its answer to a task of its own; the noise baseline's twin right behind it, on the
        same path and the same clock."""
        self._send_copy(self.candidate, req, headers, request_id, pair, "candidate")
        if self.baseline is not None:
            self._send_copy(self.baseline, req, headers, request_id, pair, BASELINE)

    def _send_copy(
        self, pool: UpstreamPool, req: Request, headers: Headers, request_id: str, pair: _Pair, which: str
    ) -> None:
        self.in_flight += 1
        self.metrics.in_flight.set(value=self.in_flight)
        started = time.perf_counter()
        try:
            copy = shadow_headers(headers, self.strip, pool.upstream.netloc.encode())
            exchange = pool.send(req.method, req.target, copy, req.body)
        except Exception as failure:  # never the primary's problem
            log.exception("error while sending a copy to the %s", which)
            exchange = failure
        self._spawn(self._shadow(exchange, request_id, pair, started, which))

    async def _shadow(
        self, exchange: Exchange | Exception, request_id: str, pair: _Pair, started: float, which: str = "candidate"
    ) -> None:
        response: UpstreamResponse | None = None
        pool = self.baseline if which == BASELINE else self.candidate
        try:
            if isinstance(exchange, Exception):
                raise exchange
            async with asyncio.timeout(self.config.candidate_timeout):
                response = await pool.answer(exchange)
            outcome, error = outcome_for_status(response.status), None
        except TimeoutError:
            outcome, error = TIMEOUT, "timeout"
            if which != BASELINE:
                self.metrics.mirror.inc("timeout")
        except UpstreamError as failure:
            outcome, error = CONNECTION_ERROR, str(failure)[:200]
        except Exception as failure:
            outcome, error = CONNECTION_ERROR, f"{type(failure).__name__}: {failure}"[:200]
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.set(value=self.in_flight)
        latency = response.latency if response is not None else time.perf_counter() - started
        if which == BASELINE:
            pair.baseline = (response, outcome, error, latency)
            if pair.primary is not None:
                self._record_pair(request_id, pair, BASELINE)
            return
        if outcome == CONNECTION_ERROR:
            self.breaker.connection_failed()
        else:
            self.breaker.reached()
        pair.candidate = (response, outcome, error, latency)
        if pair.primary is not None:
            self._record_pair(request_id, pair)

    def _record_pair(self, request_id: str, pair: _Pair, which: str = "candidate") -> None:
        """The pair record of primary and candidate, or (which=BASELINE) of primary and baseline."""
        primary = pair.primary
        response, outcome, error, latency = pair.baseline if which == BASELINE else pair.candidate
        ex = self.extractor
        body = response.body if response is not None else b""
        doc = parse_body(body) if response is not None else UNPARSEABLE
        secrets = primary.scrub
        if secrets is not None and doc is not UNPARSEABLE and secrets.add_document(doc):
            # The candidate's answer holds values at redacted paths: hide them in the primary's half too.
            primary.result = ex.rescrub(primary.result, secrets)
        result = SideResult(
            outcome=outcome,
            latency_ms=round(latency * 1000, 3),
            status=response.status if response is not None else None,
            prediction=ex.prediction(doc, secrets) if outcome == "ok" else None,
            error=error if response is None else ex.error_text(response.status, body, doc, secrets),
        )
        baseline = which == BASELINE
        record = pair_record(
            self.config.shadow, request_id, primary.ts, primary.segments, primary.features,
            primary.result, result, regression=self.config.regression,
            candidate_image=None if baseline else self.config.candidate_image, received=primary.received,
        )  # fmt: skip
        if baseline:  # the candidate's metrics stay the candidate's alone
            record[COMPARED] = BASELINE
        else:
            self.metrics.answered("candidate", primary.labels, outcome, latency)
            self.metrics.features("candidate", primary.features)
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
