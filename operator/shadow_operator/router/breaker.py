"""Stop paying for a candidate that refuses every connection: a circuit breaker on the mirror.

After `threshold` consecutive connection errors the circuit opens: copies are skipped (and
counted) except one probe per `probe_interval` seconds; the first probe that reaches the
candidate closes it again. Timeouts and HTTP errors are answers, not connection failures:
they keep the circuit closed (slow candidates are already bounded by maxInFlight).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(self, threshold: int = 20, probe_interval: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.threshold = threshold
        self.probe_interval = probe_interval
        self.clock = clock
        self.consecutive_failures = 0
        self._next_probe = 0.0

    @property
    def open(self) -> bool:
        return self.consecutive_failures >= self.threshold

    def allow(self) -> bool:
        """Whether this copy may go to the candidate."""
        if not self.open:
            return True
        now = self.clock()
        if now >= self._next_probe:
            self._next_probe = now + self.probe_interval
            return True
        return False

    def connection_failed(self) -> None:
        self.consecutive_failures += 1
        if self.consecutive_failures == self.threshold:
            self._next_probe = self.clock() + self.probe_interval

    def reached(self) -> None:
        self.consecutive_failures = 0
