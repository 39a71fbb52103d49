"""A production-like week, compressed: users by profile, an hour-of-day and weekday/weekend
pattern, each request stamped with its simulated event time and sent on a schedule that maps
the week onto a few seconds of wall-clock, over keep-alive connections, with a progress bar.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .world import DAY, HOUR, WEEK, User, make_users

# Requests per hour relative to the daily mean: quiet nights, a lunch bump, an evening peak.
HOURLY_SHAPE = (
    0.35, 0.25, 0.2, 0.18, 0.2, 0.3, 0.55, 0.8, 1.0, 1.05, 1.1, 1.2,
    1.35, 1.25, 1.1, 1.05, 1.1, 1.25, 1.45, 1.7, 1.8, 1.65, 1.2, 0.7,
)  # fmt: skip
WEEKEND_FACTOR = 0.75


def week_start(now: float) -> float:
    """Monday 00:00 UTC of the last complete week, so the whole replayed week lies in the past."""
    today = math.floor(now / DAY) * DAY
    weekday = datetime.fromtimestamp(today, UTC).weekday()
    return today - (weekday + 7) * DAY


@dataclass(frozen=True)
class Event:
    t: float
    user: User
    request_id: str

    def body(self) -> bytes:
        """The request's JSON body: the same bytes every time, so two replays send the same requests."""
        return json.dumps(self.user.request(self.t, random.Random(self.request_id))).encode()


def schedule(total: int, start: float, seed: int = 3, users: int = 5000) -> list[Event]:
    """`total` requests over the week starting at `start`, in time order."""
    rng = random.Random(seed)
    population = make_users(users, seed)
    weights = [HOURLY_SHAPE[h % 24] * (WEEKEND_FACTOR if h // 24 >= 5 else 1.0) for h in range(int(WEEK // HOUR))]
    scale = total / sum(weights)
    events = []
    for hour, weight in enumerate(weights):
        count = round(weight * scale)
        for t in sorted(start + hour * HOUR + rng.uniform(0, HOUR) for _ in range(count)):
            events.append(Event(t, rng.choice(population), f"replay-{seed}-{len(events)}"))
    return events


@dataclass
class ReplayResult:
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Connection:
    """One keep-alive HTTP/1.1 client connection; reconnects when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{head}\r\n".encode()
            + body
        )
        status_line, _, rest = (await self.reader.readuntil(b"\r\n\r\n")).partition(b"\r\n")
        length, close = 0, False
        for line in rest.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"connection" and value.strip().lower() == b"close":
                close = True
        await self.reader.readexactly(length)
        if close:
            self.close()
        return int(status_line.split()[1])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Progress:
    """A one-line progress bar on stderr (a line per quarter when stderr is not a terminal)."""

    def __init__(self, total: int, start: float) -> None:
        self.total, self.start = total, start
        self.tty = sys.stderr.isatty()
        self.shown_quarter = -1
        self.began = self.shown_at = time.monotonic()

    def show(self, done: int, simulated: float, final: bool = False) -> None:
        fraction = done / self.total if self.total else 1.0
        quarter, now = int(fraction * 4), time.monotonic()
        due = (now - self.shown_at > 0.1) if self.tty else quarter > self.shown_quarter
        if not (due or (final and self.tty)):
            return
        self.shown_quarter, self.shown_at = quarter, now
        bar = "#" * int(fraction * 28)
        when = datetime.fromtimestamp(simulated, UTC).strftime("%a %H:00")
        rate = done / max(now - self.began, 1e-6)
        line = f"  {when} [{bar:<28}] {fraction:4.0%} {done:,}/{self.total:,} requests {rate:,.0f}/s"
        sys.stderr.write(("\r" + line if self.tty else line + "\n") + ("\n" if final and self.tty else ""))
        sys.stderr.flush()


async def replay(
    host: str, port: int, events: list[Event], seconds: float, concurrency: int = 48, path: str = "/predict"
) -> ReplayResult:
    """Send every event at its compressed time (or as soon as a connection is free when behind)."""
    result = ReplayResult()
    if not events:
        return result
    first = events[0].t
    compress = seconds / WEEK
    queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=concurrency * 4)
    progress = Progress(len(events), first)
    began = time.monotonic()

    async def produce() -> None:
        for event in events:
            delay = began + (event.t - first) * compress - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await queue.put(event)
        for _ in range(concurrency):
            await queue.put(None)

    async def work() -> None:
        connection = Connection(host, port)
        while (event := await queue.get()) is not None:
            body = event.body()
            sent = time.perf_counter()
            try:
                status = await connection.post(path, body, {"x-request-id": event.request_id})
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.latencies_ms.append((time.perf_counter() - sent) * 1000)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                result.failures += 1
                connection.close()
            result.sent += 1
            progress.show(result.sent, event.t)
        connection.close()

    await asyncio.gather(produce(), *(work() for _ in range(concurrency)))
    result.seconds = time.monotonic() - began
    progress.show(result.sent, events[-1].t, final=True)
    return result
