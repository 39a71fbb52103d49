"""How requests are mirrored: the router or Istio, what is copied (mirrorMethods, match), limits."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from ..base import ApiModel, Duration, one_of, require_exactly_one

HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
DEFAULT_MIRROR_METHODS: tuple[HttpMethod, ...] = ("POST", "GET")
# Header names a rule cannot select on: what the router removes before it sees a request
# (hop-by-hop headers, the inbound x-shadow-* ones), Host (Istio routes by it: the
# VirtualService's hosts), and the keys Istio ignores in a header match.
UNMATCHABLE_HEADERS = frozenset(
    {"host", "uri", "scheme", "method", "authority", "connection", "keep-alive", "proxy-connection",
     "transfer-encoding", "te", "trailer", "upgrade", "content-length", "expect"}
)  # fmt: skip
HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_~-]+$"  # RFC 9110 token without ` and | (they would break the reference's table)
URI_PATH = r"^/[^?#\s]*$"


def _uri_path(value: Any) -> Any:
    """The pattern's own message names no fix; this one does (the schema keeps the pattern)."""
    if isinstance(value, str) and not re.match(URI_PATH, value):
        raise ValueError(
            f"{value!r}: give a path starting with / and without ?, # or spaces (the query string is never "
            "matched), e.g. /predict"
        )
    return value


UriPath = Annotated[
    str, BeforeValidator(_uri_path), Field(pattern=URI_PATH, max_length=1024, json_schema_extra={"pattern": URI_PATH})
]


class UriMatch(ApiModel):
    """The request path, matched as Istio's HTTPMatchRequest.uri: exact or prefix, case-sensitive."""

    model_config = one_of("exact", "prefix")

    exact: UriPath | None = Field(
        default=None,
        description="The path must be exactly this (the query string is not part of it), e.g. /v2/models/m/infer. "
        "Set either exact or prefix.",
    )
    prefix: UriPath | None = Field(
        default=None,
        description="The path must start with this, character by character: /predict matches /predict, "
        "/predict/batch and /predictions (end it with / to match one directory only). Set either exact or prefix.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> UriMatch:
        require_exactly_one(
            self, ("exact", "prefix"), "set exactly one of uri.exact (one path) or uri.prefix (a path and all below it)"
        )
        return self


class HeaderMatch(ApiModel):
    """A request header: present, or present with exactly this value."""

    name: str = Field(
        pattern=HEADER_NAME,
        max_length=256,
        description="Header name, case-insensitive (Istio mode writes it lower case). Not Host, hop-by-hop "
        "headers or x-shadow-*: the router never sees those.",
    )
    exact: str | None = Field(
        default=None,
        max_length=4096,
        description="The header's value must be exactly this (case-sensitive; a header sent several times is "
        "matched on its values joined with commas, as Envoy does). Unset: the header only has to be present.",
    )

    @model_validator(mode="after")
    def _matchable(self) -> HeaderMatch:
        lowered = self.name.lower()
        if lowered in UNMATCHABLE_HEADERS or lowered.startswith("x-shadow-"):
            raise ValueError(
                f"header {self.name!r} cannot select requests (the router removes it before matching, or Istio "
                "ignores it in a match); match on another header, or on uri"
            )
        return self


class MatchRule(ApiModel):
    """Requests matching every condition given (path, method, headers) are mirrored."""

    model_config = {"json_schema_extra": {"minProperties": 1}}

    uri: UriMatch | None = Field(default=None, description="The request path. Unset: any path.")
    methods: list[HttpMethod] | None = Field(
        default=None,
        min_length=1,
        description="The request method is one of these; each must be in mirrorMethods. Unset: any of mirrorMethods.",
    )
    headers: list[HeaderMatch] | None = Field(
        default=None,
        min_length=1,
        max_length=16,
        description="Every one of these headers matches. Unset: any headers.",
    )

    @model_validator(mode="after")
    def _not_empty(self) -> MatchRule:
        if self.uri is None and not self.methods and not self.headers:
            raise ValueError(
                "an empty rule matches every request: give uri, methods or headers, or remove "
                "traffic.match to mirror every request (of mirrorMethods)"
            )
        names = [header.name.lower() for header in self.headers or []]
        if repeated := sorted({name for name in names if names.count(name) > 1}):
            raise ValueError(f"headers: each header once per rule, repeated: {repeated}")
        return self


class TrafficSpec(ApiModel):
    """How live traffic is copied to the candidate."""

    router: Literal["istio", "builtin"] = Field(
        default="istio",
        description="istio: an Istio VirtualService mirrors requests and recorder sidecars capture both "
        "answers. builtin: the operator's own mirroring router sits behind the Service (for clusters "
        "without Istio); the Service is switched to it and restored when the ShadowDeployment is deleted.",
    )
    mirror_percent: float = Field(
        default=100, ge=0, le=100, description="Percent of live requests copied to the candidate, 0 to 100."
    )
    mirror_methods: list[HttpMethod] = Field(
        default_factory=lambda: list(DEFAULT_MIRROR_METHODS),
        min_length=1,
        json_schema_extra={"default": list(DEFAULT_MIRROR_METHODS)},
        description="Only requests with these methods are copied to the candidate (as Diffy does): a PUT, PATCH "
        "or DELETE usually changes state, and the candidate's copy would change it a second time. List them "
        "here to mirror them too. To mirror nothing, set mirrorPercent to 0.",
    )
    match: list[MatchRule] = Field(
        default_factory=list,
        max_length=32,
        description="Which requests are copied to the candidate: a request is mirrored when it matches any rule "
        "(and its method is in mirrorMethods, and it falls in mirrorPercent). Empty: every request of "
        "mirrorMethods. The same rules in both modes: the builtin router applies them itself, Istio mode turns "
        "each into a VirtualService route with match blocks (one per method) and the mirror.",
    )
    candidate_timeout: Duration = Field(
        default="2s",
        description="builtin router: how long a mirrored request may take before it is recorded as a timeout.",
    )
    max_in_flight: int = Field(
        default=256,
        ge=1,
        le=100000,
        description="builtin router: mirrored requests in flight at once; copies beyond it are dropped "
        "and counted, never queued. In istio mode it bounds the candidate's connection pool.",
    )
    max_body_bytes: int = Field(
        default=1048576,
        ge=0,
        description="builtin router: request bodies up to this size are buffered and may be mirrored; larger ones "
        "are streamed to the primary as they arrive, never buffered whole and never mirrored (recorders, "
        "with the default, record such requests without their request fields).",
    )
    body_limit_bytes: int = Field(
        default=268435456,
        ge=0,
        description="builtin router (recorders keep the default): request bodies larger than this are refused with 413 Content Too Large "
        "(a declared Content-Length before any of the body is read). 0: no limit (bodies past maxBodyBytes "
        "are streamed, so memory stays bounded whatever the size). Default 256 MiB.",
    )
    client_header_timeout: Duration = Field(
        default="10s",
        description="builtin router (recorders keep the default): how long a client may take to send a request's headers, counted from "
        "the connection's opening or the request's first byte; slower clients are answered 408 and "
        "disconnected (slowloris).",
    )
    client_body_timeout: Duration = Field(
        default="60s",
        description="builtin router (recorders keep the default): how long a client may take to send a whole request body once its "
        "headers are in; slower clients are answered 408 and disconnected.",
    )
    client_idle_timeout: Duration = Field(
        default="75s",
        description="builtin router (recorders keep the default): how long a keep-alive connection may wait for its next request before "
        "the router closes it. Keep it above the idle timeout of any load balancer in front (often 60s), so "
        "the router never closes a connection the balancer is about to reuse.",
    )
    max_connections: int = Field(
        default=4096,
        ge=1,
        le=1000000,
        description="builtin router (recorders keep the default): client connections open at once; a connection beyond it is answered "
        "503 and closed at once. Each idle connection costs a few KiB.",
    )
    strip_headers: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")]] = Field(
        default_factory=list,
        description="builtin router: request headers removed from the candidate's copies only (the primary "
        "still gets them), by name, case-insensitive. The usual candidates are credentials the candidate "
        "must not be able to use or log: Authorization, Cookie, Proxy-Authorization, X-Api-Key. Inbound "
        "x-shadow-* headers are always removed from both paths.",
    )
    router_replicas: int = Field(default=2, ge=1, le=100, description="builtin router: number of router Pods.")
    router_grace_period: Duration = Field(
        default="30s",
        description="builtin router: how long the Service stays on the router while no router Pod is available "
        "before it is moved back to the primary (condition RouterAvailable, one Event). The Service moves to "
        "the router only once a router Pod is available.",
    )

    @model_validator(mode="after")
    def _rule_methods_are_mirrored(self) -> TrafficSpec:
        """A rule's method outside mirrorMethods could never be mirrored: say so rather than ignore it."""
        for i, rule in enumerate(self.match):
            if missing := [method for method in rule.methods or [] if method not in self.mirror_methods]:
                raise ValueError(
                    f"match[{i}].methods: {', '.join(missing)} not in mirrorMethods {list(self.mirror_methods)}, "
                    f"so this rule would never mirror it; add it to traffic.mirrorMethods or remove it from the rule"
                )
        return self
