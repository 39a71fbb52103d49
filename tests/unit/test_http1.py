"""The router's header hygiene and client limits settings (router/http1.py, router/mirror.py, router/config.py)."""

from __future__ import annotations

import pytest

from shadow_operator.api.v1alpha1.traffic import TrafficSpec
from shadow_operator.router.config import ConfigError, build_config
from shadow_operator.router.messages import BadRequest, inbound_headers, origin_form
from shadow_operator.router.mirror import shadow_headers

ID = b"x-request-id"


def test_inbound_shadow_headers_are_removed_whatever_their_case():
    headers = [(b"Host", b"m"), (b"X-Shadow-Request", b"false"), (b"x-shadow-request", b"true"),
               (b"X-SHADOW-Source", b"me"), (b"X-Shadowy", b"kept"), (b"Accept", b"*/*")]  # fmt: skip
    forwarded, request_id, host, length, chunked, expect = inbound_headers(headers, ID)
    assert forwarded == [(b"Host", b"m"), (b"X-Shadowy", b"kept"), (b"Accept", b"*/*")]
    assert (request_id, host, length, chunked, expect) == (None, b"m", -1, False, False)


def test_hop_by_hop_headers_go_and_tell_framing_and_expect():
    headers = [(b"Host", b"m"), (b"Connection", b"keep-alive"), (b"Keep-Alive", b"timeout=5"), (b"TE", b"trailers"),
               (b"Transfer-Encoding", b"chunked"), (b"Expect", b"100-Continue"), (b"Upgrade", b"h2c"),
               (b"Proxy-Connection", b"x"), (b"Trailer", b"x"), (b"X-Request-Id", b"abc")]  # fmt: skip
    forwarded, request_id, _, length, chunked, expect = inbound_headers(headers, ID)
    assert forwarded == [(b"Host", b"m"), (b"X-Request-Id", b"abc")]
    assert request_id == b"abc" and length == -1 and chunked and expect
    _, _, _, length, chunked, _ = inbound_headers([(b"Content-Length", b"42")], ID)
    assert length == 42 and not chunked


def test_connection_cannot_remove_host_or_the_request_id():
    headers = [(b"Host", b"m"), (b"X-Request-Id", b"abc"), (b"X-Drop", b"1"), (b"x-keep", b"1"),
               (b"Connection", b"Host, X-REQUEST-ID, x-drop"), (b"connection", b"close, ,x-other")]  # fmt: skip
    forwarded, request_id, host, *_ = inbound_headers(headers, ID)
    assert forwarded == [(b"Host", b"m"), (b"X-Request-Id", b"abc"), (b"x-keep", b"1")]
    assert (request_id, host) == (b"abc", b"m")
    # a custom request-id header is protected the same way
    forwarded, request_id, *_ = inbound_headers([(b"Trace", b"t1"), (b"Connection", b"trace")], b"trace")
    assert forwarded == [(b"Trace", b"t1")] and request_id == b"t1"


def test_the_first_request_id_is_the_id():
    _, request_id, *_ = inbound_headers([(b"x-request-id", b"a"), (b"X-Request-Id", b"b")], ID)
    assert request_id == b"a"


@pytest.mark.parametrize("second", [b"Host", b"host", b"HOST"])
def test_duplicate_host_is_refused(second):
    with pytest.raises(BadRequest) as refused:
        inbound_headers([(b"Host", b"a"), (b"X", b"y"), (second, b"a")], ID)
    assert refused.value.status == 400


@pytest.mark.parametrize(
    ("target", "path", "authority"),
    [
        (b"http://host/path", b"/path", b"host"),
        (b"http://host:8080/p?q=1&r=/x", b"/p?q=1&r=/x", b"host:8080"),
        (b"HTTP://Host", b"/", b"Host"),
        (b"https://host?x=1", b"/?x=1", b"host"),
        (b"http://user:pw@host:81/a", b"/a", b"host:81"),
        (b"http://[::1]:80/a", b"/a", b"[::1]:80"),
        (b"http://host/a#frag", b"/a", b"host"),
    ],
)
def test_absolute_form_becomes_origin_form(target, path, authority):
    assert origin_form(target) == (path, authority)


@pytest.mark.parametrize("target", [b"host/path", b"ftp://host/x", b"http:///nohost", b"h2://x/", b"//host/x"])
def test_targets_of_no_known_form_are_refused(target):
    with pytest.raises(BadRequest):
        origin_form(target)


def test_copies_are_marked_suffixed_and_stripped():
    headers = [(b"Host", b"m"), (b"Authorization", b"Bearer s"), (b"Cookie", b"c=1"), (b"X-Request-Id", b"i")]
    strip = frozenset({b"authorization", b"cookie"})
    copy = shadow_headers(headers, strip, b"cand:8080")
    assert copy == [(b"Host", b"m-shadow"), (b"X-Request-Id", b"i"), (b"x-shadow-request", b"true")]
    assert headers[1] == (b"Authorization", b"Bearer s")  # the primary's list is untouched
    copy = shadow_headers([(b"Accept", b"*/*")], frozenset(), b"cand:8080")
    assert copy == [(b"Accept", b"*/*"), (b"host", b"cand:8080-shadow"), (b"x-shadow-request", b"true")]


def test_client_limits_have_safe_defaults_and_reach_the_router_config():
    spec = TrafficSpec()
    assert (spec.client_header_timeout, spec.client_body_timeout, spec.client_idle_timeout) == ("10s", "60s", "75s")
    assert spec.max_connections == 4096 and spec.body_limit_bytes == 256 << 20 and spec.strip_headers == []
    config = build_config({"traffic": {}}, primary="http://p:80")
    assert (config.header_timeout, config.body_timeout, config.idle_timeout) == (10.0, 60.0, 75.0)
    config = build_config(
        {"traffic": {"clientHeaderTimeout": "500ms", "clientBodyTimeout": "2m", "clientIdleTimeout": "1s",
                     "maxConnections": 10, "bodyLimitBytes": 0, "stripHeaders": ["Authorization", "Cookie"]}},
        primary="http://p:80",
    )  # fmt: skip
    assert (config.header_timeout, config.body_timeout, config.idle_timeout) == (0.5, 120.0, 1.0)
    assert config.traffic.max_connections == 10 and config.traffic.body_limit_bytes == 0
    assert config.traffic.strip_headers == ["Authorization", "Cookie"]


@pytest.mark.parametrize(
    "traffic",
    [{"clientHeaderTimeout": "0s"}, {"clientIdleTimeout": "10 s"}, {"maxConnections": 0}, {"bodyLimitBytes": -1},
     {"stripHeaders": ["Bad Header"]}, {"stripHeaders": ["x:y"]}],
)  # fmt: skip
def test_bad_client_limits_are_config_errors(traffic):
    with pytest.raises(ConfigError):
        build_config({"traffic": traffic}, primary="http://p:80")
