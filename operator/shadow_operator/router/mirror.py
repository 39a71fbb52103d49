"""The router: the shared server (server.py) in front of the primary, mirroring a share of
requests to the candidate (and the noise baseline's twin, when set).

The primary's answer is written to the client as soon as it arrives; the candidate's copy is
written right beside the primary's request, in the same step (no task switch between the two
writes), and its answer is awaited in its own task with its own timeout and pool, bounded by
maxInFlight (beyond it: dropped and counted, never queued). Whichever of the two answers is
accounted second writes the pair record, after the client has its answer.
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
    outcome_for_status,
    pair_record,
)
from .breaker import CircuitBreaker
from .config import RouterConfig
from .extract import UNPARSEABLE, Secrets, parse_body
from .http1 import Request
from .metrics import ShadowMetrics
from .mirror_policy import compile_mirror_policy
from .server import ProxyServer
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


class ShadowRouter(ProxyServer):
    """Forwards every request to the primary and copies the admitted ones to the candidate."""

    def __init__(self, config: RouterConfig, metrics: ShadowMetrics, sink: RecordSink) -> None:
        super().__init__(config, metrics, sink)
        idle = config.upstream_idle_timeout
        # No candidate (a router started with --primary alone): every request is only forwarded.
        self.candidate = (
            UpstreamPool(
                config.candidate, max_idle=config.traffic.max_in_flight, max_response_bytes=16 << 20, idle_timeout=idle
            )
            if config.candidate
            else None
        )
        self.baseline = (
            UpstreamPool(
                config.baseline, max_idle=config.traffic.max_in_flight, max_response_bytes=16 << 20, idle_timeout=idle
            )
            if config.baseline and self.candidate is not None
            else None
        )
        self.percent = config.traffic.mirror_percent
        self.wanted = compile_mirror_policy(config)  # traffic.mirrorMethods and traffic.match
        self.in_flight = 0
        self.breaker = CircuitBreaker()
        self.strip = frozenset(name.lower().encode() for name in config.traffic.strip_headers)

    def pools(self) -> list[UpstreamPool]:
        return [pool for pool in (self.primary, self.candidate, self.baseline) if pool is not None]

    def admit(self, req: Request, request_id: str) -> _Pair | None:
        """A pair when this request is copied; otherwise why not, counted."""
        if self.candidate is None:
            return None
        if not self.wanted(req.method, req.target, req.headers):
            self.metrics.mirror.inc("not_matched")
        elif not mirrored(request_id, self.percent):
            self.metrics.mirror.inc("not_sampled")
        elif req.streamed or len(req.body) > self.config.traffic.max_body_bytes:
            self.metrics.mirror.inc("skipped_large_body")
        elif self.in_flight >= self.config.traffic.max_in_flight:
            self.metrics.mirror.inc("dropped")
        elif not self.breaker.allow():
            self.metrics.mirror.inc("circuit_open")
        else:
            self.metrics.mirror.inc("sampled")
            return _Pair()
        return None

    def send_primary(self, req: Request, headers: Headers, request_id: str, taken: _Pair | None) -> Exchange:
        # Both requests written back to back, before either answer is awaited, in a random order:
        # neither side waits for a task switch the other does not, and neither is always the
        # second one to reach its model (docs/verdict.md).
        copy_first = taken is not None and _getrandbits(1)
        if copy_first:
            self._mirror(req, headers, request_id, taken)
        exchange = self.primary.send(req.method, req.target, headers, req.body)
        if taken is not None and not copy_first:
            self._mirror(req, headers, request_id, taken)
        return exchange

    def account(self, req, request_id, response, outcome, error, latency, taken: _Pair | None) -> None:
        answered = self.answered(req, response, outcome, error, latency, record=taken is not None)
        if taken is None:
            return
        facts = answered.facts
        taken.primary = Primary(
            answered.result, facts.segments, facts.features, answered.labels, facts.ts, facts.received, answered.secrets
        )
        if taken.candidate is not None:
            self._record_pair(request_id, taken)
        if taken.baseline is not None:
            self._record_pair(request_id, taken, BASELINE)

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
        self.spawn(self._shadow(exchange, request_id, pair, started, which))

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
