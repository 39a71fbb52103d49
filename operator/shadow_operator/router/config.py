"""RouterConfig: what the router or recorder runs with, from router.json and/or flags (flags win)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from ..api.durations import parse_duration
from ..api.v1alpha1.recording import RecordingSpec
from ..api.v1alpha1.traffic import TrafficSpec


class ConfigError(ValueError):
    """A config the router cannot run with; the message says which setting."""


@dataclass(frozen=True)
class Upstream:
    """An http:// upstream as host, port and the Host header value to send when the client gave none."""

    url: str
    host: str
    port: int

    @property
    def netloc(self) -> str:
        return self.host if self.port == 80 else f"{self.host}:{self.port}"


def parse_upstream(url: str) -> Upstream:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http":
        raise ConfigError(f"upstream {url!r}: only http:// is supported")
    if not parts.hostname:
        raise ConfigError(f"upstream {url!r}: no host")
    if parts.path not in ("", "/"):
        raise ConfigError(f"upstream {url!r}: a path prefix is not supported; give scheme://host:port")
    return Upstream(url=url, host=parts.hostname, port=parts.port or 80)


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"listen address {text!r}: use HOST:PORT, e.g. 0.0.0.0:8080")
    return host.strip("[]") or "0.0.0.0", int(port)


def parse_seconds(text: str | float) -> float:
    if isinstance(text, int | float):
        return float(text)
    try:
        return parse_duration(text).total_seconds()
    except ValueError as error:
        raise ConfigError(str(error)) from None


@dataclass(frozen=True)
class RouterConfig:
    shadow: str = "default/unknown"  # ns/name, written into every record
    primary: Upstream | None = None
    candidate: Upstream | None = None
    # The noise baseline (records.BASELINE): a copy of the primary sent the same copies as the candidate.
    baseline: Upstream | None = None
    traffic: TrafficSpec = field(default_factory=TrafficSpec)
    recording: RecordingSpec = field(default_factory=RecordingSpec)
    records_dir: str = "/var/lib/shadow/records"
    primary_timeout: float = 60.0
    candidate_timeout: float = 2.0  # traffic.candidateTimeout in seconds, parsed once by build_config
    # traffic.clientHeaderTimeout, clientBodyTimeout and clientIdleTimeout in seconds (router/http1.py)
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    idle_timeout: float = 75.0
    # How long a pooled connection to a model may stay unused (upstream.IDLE_TIMEOUT); only tests
    # change it, with `upstreamIdleTimeout` in the file.
    upstream_idle_timeout: float = 4.0
    role: str = "primary"  # recorder mode: which role the one upstream plays
    # The candidate's image, written into its records (records.CANDIDATE_IMAGE).
    candidate_image: str | None = None
    # Where the sink ships its files (router/shipper.py); None keeps them in records_dir.
    collector: str | None = None

    @property
    def regression(self) -> bool:
        return self.recording.prediction_type == "regression"


def load_file(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read config {path}: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: expected a JSON object")
    return data


def build_config(
    file_data: dict[str, Any] | None = None,
    *,
    primary: str | None = None,
    candidate: str | None = None,
    upstream: str | None = None,
    role: str | None = None,
    shadow: str | None = None,
    mirror_percent: float | None = None,
    candidate_timeout: str | None = None,
    max_in_flight: int | None = None,
    max_body_bytes: int | None = None,
    records_dir: str | None = None,
    sample_rate: float | None = None,
    primary_timeout: str | None = None,
    collector: str | None = None,
    candidate_image: str | None = None,
) -> RouterConfig:
    """Merge router.json (the wire form router_config() writes) with flags; flags override."""
    data = dict(file_data or {})
    traffic = dict(data.get("traffic") or {})
    recording = dict(data.get("recording") or {})
    if mirror_percent is not None:
        traffic["mirrorPercent"] = mirror_percent
    if candidate_timeout is not None:
        traffic["candidateTimeout"] = candidate_timeout
    if max_in_flight is not None:
        traffic["maxInFlight"] = max_in_flight
    if max_body_bytes is not None:
        traffic["maxBodyBytes"] = max_body_bytes
    if sample_rate is not None:
        recording["sampleRate"] = sample_rate
    if records_dir is not None:
        recording["sink"] = {**(recording.get("sink") or {}), "path": str(Path(records_dir).absolute())}
    try:
        traffic_spec = TrafficSpec.model_validate(traffic, by_alias=True)
        recording_spec = RecordingSpec.model_validate(recording, by_alias=True)
    except ValidationError as error:
        raise ConfigError(f"invalid traffic/recording settings: {error}") from None
    client_timeouts = {
        key: parse_seconds(getattr(traffic_spec, f"client_{key}"))
        for key in ("header_timeout", "body_timeout", "idle_timeout")
    }
    for key, seconds in client_timeouts.items():
        if seconds <= 0:
            raise ConfigError(f"traffic.client{key.title().replace('_', '')} must be above 0")
    if shadow is None:
        shadow = f"{data.get('namespace', 'default')}/{data.get('name', 'unknown')}"
    if upstream is not None:  # recorder: one upstream, playing `role`
        primary_url, candidate_url = upstream, None
    else:
        primary_url = primary or data.get("primary")
        candidate_url = candidate or data.get("candidate")
    if not primary_url:
        raise ConfigError("no primary/upstream URL: give --primary/--upstream or a config file with 'primary'")
    return RouterConfig(
        shadow=shadow,
        primary=parse_upstream(primary_url),
        candidate=parse_upstream(candidate_url) if candidate_url else None,
        traffic=traffic_spec,
        recording=recording_spec,
        records_dir=recording_spec.sink.path,
        primary_timeout=parse_seconds(primary_timeout) if primary_timeout else 60.0,
        candidate_timeout=parse_seconds(traffic_spec.candidate_timeout),
        **client_timeouts,
        upstream_idle_timeout=parse_seconds(data.get("upstreamIdleTimeout", 4.0)),
        role=role or "primary",
        candidate_image=candidate_image or None,
        collector=_collector_url(collector if collector is not None else data.get("collector")),
        baseline=parse_upstream(data["baseline"]) if data.get("baseline") and upstream is None else None,
    )


def _collector_url(url: object) -> str | None:
    """The collector's http:// base URL; an empty string means none (e.g. `--collector ''` for a local run)."""
    if url is None or url == "":
        return None
    if not isinstance(url, str):
        raise ConfigError(f"collector {url!r}: expected a URL such as http://recommender-collector:8090")
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(f"collector {url!r}: use http://host:port, e.g. http://recommender-collector:8090")
    return f"http://{parts.netloc}"
