"""The core the router and the recorder share: an asyncio Protocol server in front of the primary
model that forwards each request, writes the answer back as soon as it arrives, and accounts for
it (metrics; a record in the subclasses) only after the client has its answer.

Client connections (parsing, limits, timeouts, header hygiene) are http1.py; mirror.py adds the
candidate's copy (ShadowRouter), recorder.py one-sided records (Recorder). Latencies are the
upstream connection's own (upstream.UpstreamResponse.latency: from the request's last byte written
to the answer's last byte parsed, stamped in the Protocol), never the time until a task resumed:
docs/verdict.md, "How latency is measured".
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from ..contract.records import CONNECTION_ERROR, TIMEOUT, SideResult, outcome_for_status
from .config import RouterConfig
from .extract import UNPARSEABLE, Extracted, Extractor, Secrets, parse_body
from .http1 import BodyAborted, ClientConnection, Request
from .messages import HOP_BY_HOP, simple_response
from .metrics import ShadowMetrics
from .reaper import Reaper
from .sink import RecordSink
from .upstream import Exchange, Headers, UpstreamError, UpstreamPool, UpstreamResponse

# uuid4's version and variant bits, set on random.getrandbits instead of os.urandom: a request id
# needs to be unique, not unguessable, and this saves a syscall and a UUID object per request.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_request_id() -> str:
    """What uuid.uuid4().hex returns: 32 hex digits of a random version-4 UUID."""
    return "%032x" % (random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)


@dataclass
class Answered:
    """The primary's (the fronted model's) answer, read for metrics and, when wanted, a record."""

    facts: Extracted
    labels: list[str]
    result: SideResult | None  # None when no record is wanted
    secrets: Secrets | None  # the request's redacted leaves, and those of the answer


class ProxyServer:
    """Forwards every request to `config.primary`; subclasses decide what else happens to it."""

    role = "primary"  # whose answers this server's metrics count

    def __init__(self, config: RouterConfig, metrics: ShadowMetrics, sink: RecordSink) -> None:
        self.config = config
        self.metrics = metrics
        self.sink = sink
        self.extractor = Extractor(config.recording)
        self.id_header = config.recording.request_id_header.lower().encode()
        self.primary = UpstreamPool(config.primary, max_idle=256, idle_timeout=config.upstream_idle_timeout)
        self.tasks: set[asyncio.Task] = set()
        self.connections: set[ClientConnection] = set()
        self.buffered = 0  # bytes of partly received request bodies, all connections (http1.BUFFER_BUDGET)
        self.max_body_bytes = config.traffic.max_body_bytes
        self.body_limit = config.traffic.body_limit_bytes  # 0: none
        self.reaper = Reaper(self)
        self.server: asyncio.AbstractServer | None = None
        self.stopping = False

    def pools(self) -> list[UpstreamPool]:
        """Every upstream pool: the reaper closes their idle connections, stop() closes them."""
        return [self.primary]

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
        """Stop accepting, let in-flight primaries finish, wait for pending tasks, close pools."""
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
        for pool in self.pools():
            await pool.aclose()

    def spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- one request ---

    def closed_connection(self, reason: str) -> None:
        self.metrics.connections_closed.inc(reason)

    def admit(self, req: Request, request_id: str) -> object | None:
        """What else this request takes part in (the router's mirrored pair), before it is sent."""
        return None

    def send_primary(self, req: Request, headers: Headers, request_id: str, taken: object | None) -> Exchange:
        """Write the request to the primary; the router writes the copy beside it."""
        return self.primary.send(req.method, req.target, headers, req.body)

    def account(self, req, request_id, response, outcome, error, latency, taken) -> None:
        """After the client has its answer: metrics, and a record where the subclass keeps one."""
        self.answered(req, response, outcome, error, latency, record=False)

    async def handle(self, req: Request) -> tuple[bytes | None, object]:
        """The bytes to write back and a closure that accounts for the request afterwards;
        (None, None) when a streamed body was cut short (the connection answers it)."""
        headers = req.headers
        if req.request_id is None:
            request_id = new_request_id()
            headers.append((self.config.recording.request_id_header.encode(), request_id.encode()))
        else:
            request_id = req.request_id.decode("latin-1")
        taken = self.admit(req, request_id)
        started = time.perf_counter()  # only for answers that never came (timeouts, errors)
        try:
            if req.stream is not None:  # never mirrored (admit takes no streamed body)
                stream = req.stream
                response = await self.primary.stream(
                    req.method, req.target, headers, stream, req.length, self.config.primary_timeout
                )
                if not stream.done:  # answered before the whole body: the rest is never read
                    req.keep_alive = False
            else:
                exchange = self.send_primary(req, headers, request_id, taken)
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
            self.account(req, request_id, response, outcome, error, latency, taken)

        return wire, account

    def answered(
        self, req: Request, response: UpstreamResponse | None, outcome: str, error: str | None, latency: float,
        record: bool,
    ) -> Answered:  # fmt: skip
        """The fronted model's answer counted in the metrics; its half of a record when `record`."""
        ex = self.extractor
        # The request body only feeds segments, features, the event time and the redacted values.
        redacting = bool(ex.redact) and (record or ex.needs_request or ex.needs_response)
        needs_request = ex.needs_request or redacting
        # A chunked body is here whole and de-chunked (http1 buffers it like any other) unless it
        # went past maxBodyBytes or the buffer budget: then it was streamed and never kept.
        whole = req.stream is None
        request_doc = parse_body(req.body) if needs_request and whole else UNPARSEABLE
        body = response.body if response is not None else b""
        response_doc = parse_body(body) if (record or ex.needs_response) else UNPARSEABLE
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
        if not record:
            return Answered(facts, labels, None, secrets)
        status = response.status if response is not None else None
        # `error` without a response is the router's own text (timeout, connect failure): no body in it.
        result = SideResult(
            outcome=outcome,
            latency_ms=round(latency * 1000, 3),
            status=status,
            prediction=ex.prediction(response_doc, secrets) if outcome == "ok" else None,
            error=error if response is None else ex.error_text(status, body, response_doc, secrets),
        )
        return Answered(facts, labels, result, secrets)


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
