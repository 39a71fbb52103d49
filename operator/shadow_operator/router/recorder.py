"""The recorder sidecar (Istio mode): the shared server (server.py) in front of one model, writing
a one-sided record of each answer; the comparison job pairs the primary's and the candidate's
records by request id."""

from __future__ import annotations

from ..contract.records import one_sided_record
from .config import RouterConfig
from .metrics import ShadowMetrics
from .server import ProxyServer
from .sink import RecordSink


class Recorder(ProxyServer):
    """Forwards every request to the one model it fronts (`config.primary`) and records its answer."""

    def __init__(self, config: RouterConfig, metrics: ShadowMetrics, sink: RecordSink) -> None:
        super().__init__(config, metrics, sink)
        self.role = config.role  # primary, candidate or baseline: the model behind it

    def account(self, req, request_id, response, outcome, error, latency, taken) -> None:
        answered = self.answered(req, response, outcome, error, latency, record=True)
        facts = answered.facts
        config = self.config
        record = one_sided_record(
            config.shadow, request_id, facts.ts, self.role, facts.segments, facts.features, answered.result,
            candidate_image=config.candidate_image if self.role == "candidate" else None,
            received=facts.received,
        )  # fmt: skip
        self.sink.submit(record)
