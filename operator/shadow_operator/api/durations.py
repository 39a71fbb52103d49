"""Go-style duration strings (`10m`, `1h30m`, `168h`) as the API spells them."""

from __future__ import annotations

import re
from datetime import timedelta

# Same units Kubernetes users know from Go's time.ParseDuration (minus ns/us, which
# no shadow rollout needs). The CRD carries this pattern, so the API server rejects
# "10 minutes" or "1d" at apply time.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> timedelta:
    """Parse `1h30m` into a timedelta; ValueError names the offending text."""
    if not re.fullmatch(DURATION_PATTERN, text or ""):
        raise ValueError(f"{text!r} is not a duration: use a number and a unit ms, s, m or h, e.g. 10m or 168h")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest Go-style spelling of a whole-second timedelta: 3h5m, 45s, 0s."""
    total = int(value.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n)
    return text or "0s"
