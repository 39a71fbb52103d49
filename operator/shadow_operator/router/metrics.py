"""A minimal Prometheus text-format registry: labelled counters, gauges and histograms.

No dependency; single event loop thread writes, the admin handler reads (a lock keeps a scrape
consistent with writes from the sink thread). With `--workers N` each worker process keeps its own
registry and the parent sums their dumps (Registry.dump, merge_dumps, Registry.from_dump).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable

from ..contract import metric_names as m
from ..contract.records import OUTCOMES, ROLES

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: LabelValues, *extra: str) -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    parts += [e for e in extra if e]
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...], lock: threading.Lock) -> None:
        self.name, self.help, self.label_names, self.lock = name, help_text, labels, lock
        self.constant = ""  # the registry's constant labels, rendered on every series

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.values: dict[LabelValues, float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self.lock:
            self.values[labels] = self.values.get(labels, 0.0) + amount

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def render(self) -> Iterable[str]:
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, labels, self.constant)} {_num(value)}"


class Gauge(Counter):
    kind = "gauge"

    def set(self, *labels: str, value: float) -> None:
        with self.lock:
            self.values[labels] = value


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, *args, buckets: tuple[float, ...]) -> None:
        super().__init__(*args)
        self.buckets = tuple(buckets)
        self.series: dict[LabelValues, list[float]] = {}  # per-bucket counts, then +Inf count, then sum

    def observe(self, value: float, *labels: str) -> None:
        with self.lock:
            series = self.series.get(labels)
            if series is None:
                series = self.series[labels] = [0.0] * (len(self.buckets) + 2)
            series[bisect.bisect_left(self.buckets, value)] += 1
            series[-1] += value

    def render(self) -> Iterable[str]:
        for labels, series in sorted(self.series.items()):
            cumulative = 0.0
            for bound, count in zip((*self.buckets, float("inf")), series[:-1], strict=True):
                cumulative += count
                le = 'le="' + _num(bound) + '"'
                yield f"{self.name}_bucket{_labels(self.label_names, labels, self.constant, le)} {_num(cumulative)}"
            yield f"{self.name}_sum{_labels(self.label_names, labels, self.constant)} {_num(series[-1])}"
            yield f"{self.name}_count{_labels(self.label_names, labels, self.constant)} {_num(cumulative)}"


# |primary - candidate| of regression predictions: from exact to far apart.
ABS_DIFF_BUCKETS = (0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 100.0)


class Registry:
    def __init__(self, constant: dict[str, str] | None = None) -> None:
        """`constant`: labels every series carries (the Prometheus client's const_labels)."""
        self.lock = threading.Lock()
        self.metrics: list[_Metric] = []
        self.constant = ",".join(f'{name}="{_escape(value)}"' for name, value in (constant or {}).items())

    def _add(self, metric: _Metric) -> _Metric:
        metric.constant = self.constant
        self.metrics.append(metric)
        return metric

    def counter(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Counter:
        return self._add(Counter(name, help_text, labels, self.lock))

    def gauge(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Gauge:
        return self._add(Gauge(name, help_text, labels, self.lock))

    def histogram(self, name: str, help_text: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> Histogram:
        return self._add(Histogram(name, help_text, labels, self.lock, buckets=buckets))

    def render(self) -> str:
        with self.lock:
            lines: list[str] = []
            for metric in self.metrics:
                lines.extend(metric.header())
                lines.extend(metric.render())
        return "\n".join(lines) + "\n"

    # --- several processes (router/workers.py): each worker's raw values, summed by the parent ---

    def dump(self) -> list[dict]:
        """Every metric's definition and raw values, JSON-serialisable (histograms: per-bucket counts,
        not cumulative, then +Inf, then the sum)."""
        with self.lock:
            out = []
            for metric in self.metrics:
                entry = {"name": metric.name, "kind": metric.kind, "help": metric.help,
                         "labels": list(metric.label_names), "constant": metric.constant}  # fmt: skip
                if isinstance(metric, Histogram):
                    entry["buckets"] = list(metric.buckets)
                    entry["values"] = [[list(k), list(v)] for k, v in metric.series.items()]
                else:
                    entry["values"] = [[list(k), v] for k, v in metric.values.items()]
                out.append(entry)
        return out

    @classmethod
    def from_dump(cls, dump: list[dict]) -> Registry:
        """A registry holding these values, rendered like the one they came from."""
        registry = cls()
        for entry in dump:
            labels = tuple(entry["labels"])
            if entry["kind"] == "histogram":
                metric = registry.histogram(entry["name"], entry["help"], labels, tuple(entry["buckets"]))
                metric.series = {tuple(k): list(v) for k, v in entry["values"]}
            else:
                make = registry.gauge if entry["kind"] == "gauge" else registry.counter
                metric = make(entry["name"], entry["help"], labels)
                metric.values = {tuple(k): v for k, v in entry["values"]}
            metric.constant = entry["constant"]
        return registry


def merge_dumps(dumps: Iterable[list[dict]], gauges: bool = True) -> list[dict]:
    """Registry dumps of several processes summed into one: counters and histogram buckets, sums and
    counts add up (same buckets in every process: the same code defined them), and so do gauges
    (every gauge here counts something per process: connections, copies in flight, spool bytes).
    `gauges=False` leaves the gauges out: what a process that exited contributes is its counters."""
    merged: dict[str, dict] = {}
    for dump in dumps:
        for entry in dump:
            if entry["kind"] == "gauge" and not gauges:
                continue
            into = merged.get(entry["name"])
            if into is None:
                into = merged[entry["name"]] = {**entry, "values": []}
                into["_index"] = {}
            elif into["kind"] != entry["kind"] or into.get("buckets") != entry.get("buckets"):
                continue  # a definition that changed between versions: keep the first
            index = into["_index"]
            for labels, value in entry["values"]:
                key = tuple(labels)
                at = index.get(key)
                if at is None:
                    index[key] = len(into["values"])
                    into["values"].append([list(labels), list(value) if isinstance(value, list) else value])
                elif isinstance(value, list):
                    into["values"][at][1] = [a + b for a, b in zip(into["values"][at][1], value, strict=True)]
                else:
                    into["values"][at][1] += value
    for entry in merged.values():
        del entry["_index"]
    return list(merged.values())


class ShadowMetrics:
    """The metric_names metrics, with segment labels folded to a bounded set."""

    def __init__(self, segment_buckets: dict[str, set[str] | None] | None = None, shadow: str | None = None) -> None:
        """`shadow`: the ShadowDeployment ("namespace/name") every series names (SHADOW_LABEL)."""
        self.registry = r = Registry({m.SHADOW_LABEL: shadow} if shadow else None)
        self.requests = r.counter(m.REQUESTS_TOTAL, "Requests answered, by role, segment and outcome.",
                                  ("role", "segment", "outcome"))  # fmt: skip
        self.duration = r.histogram(m.REQUEST_DURATION, "Upstream answer latency in seconds.", ("role", "segment"),
                                    m.LATENCY_BUCKETS)  # fmt: skip
        self.mirror = r.counter(m.MIRROR_TOTAL, "Mirroring decisions and results.", ("result",))
        self.pairs = r.counter(m.PAIRS_TOTAL, "Completed pairs by segment and agreement.", ("segment", "agree"))
        self.abs_diff = r.histogram(m.PAIR_ABS_DIFF, "Absolute difference of regression predictions.",
                                    ("segment",), ABS_DIFF_BUCKETS)  # fmt: skip
        self.feature_missing = r.counter(m.FEATURE_MISSING_TOTAL, "Requests missing a recorded feature.",
                                         ("feature", "role"))  # fmt: skip
        self.records_dropped = r.counter(m.RECORDS_DROPPED_TOTAL, "Records not written, by reason.", ("reason",))
        self.records_written = r.counter("shadow_records_written_total", "Records written to the sink.")
        self.in_flight = r.gauge("shadow_mirror_in_flight", "Mirrored requests in flight to the candidate.")
        self.connections = r.gauge("shadow_client_connections", "Client connections open (router, recorder).")
        self.connections_closed = r.counter(
            "shadow_client_connections_closed_total",
            "Client connections the router closed: header_timeout, body_timeout, idle_timeout, or limit "
            "(refused past maxConnections).",
            ("reason",),
        )
        self.segment_buckets = segment_buckets or {}
        self._seen: dict[str, set[str]] = {name: set() for name in self.segment_buckets}
        for role in ROLES:  # so dashboards see the series before the first error
            for outcome in OUTCOMES:
                self.requests.values.setdefault((role, m.ALL_SEGMENTS, outcome), 0.0)

    def segment_labels(self, segments: dict[str, str]) -> list[str]:
        """`all` plus one `<name>=<bucket>` per dimension, unknown buckets folded to `<name>=other`."""
        labels = [m.ALL_SEGMENTS]
        for name, bucket in segments.items():
            allowed = self.segment_buckets.get(name)
            if allowed is not None:
                if bucket not in allowed:
                    bucket = "other"
            else:  # open-ended: the extractor already bounds it; guard anyway
                seen = self._seen.setdefault(name, set())
                if bucket not in seen:
                    if len(seen) >= 32:
                        bucket = "other"
                    else:
                        seen.add(bucket)
            labels.append(m.segment_label(name, bucket))
        return labels

    def answered(self, role: str, labels: list[str], outcome: str, latency_s: float) -> None:
        for label in labels:
            self.requests.inc(role, label, outcome)
            self.duration.observe(latency_s, role, label)

    def features(self, role: str, features: dict[str, bool]) -> None:
        for feature, present in features.items():
            if not present:
                self.feature_missing.inc(feature, role)

    def pair(self, labels: list[str], agree: bool | None, abs_diff: float | None) -> None:
        word = "none" if agree is None else ("true" if agree else "false")
        for label in labels:
            self.pairs.inc(label, word)
            if abs_diff is not None:
                self.abs_diff.observe(abs_diff, label)
