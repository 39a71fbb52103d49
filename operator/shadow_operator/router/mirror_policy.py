"""Which requests the builtin router copies to the candidate: traffic.mirrorMethods and traffic.match.

Pure, compiled once from the RouterConfig into a function of the request's method, target and
headers (bytes, as http1.Request carries them). The rules mean what Istio mode's VirtualService
match blocks mean (controller/builders/istio.py), so both modes mirror the same requests:

- a request is mirrored when its method is one of mirrorMethods and, if there are rules, it
  matches any rule; a rule matches when every condition it gives holds;
- the method is compared exactly (methods are case-sensitive);
- the path is the request target without its query string, normalized (RFC 3986: percent-encoded
  unreserved characters decoded, `.` and `..` segments resolved, as Istio's default path
  normalization does before its routes match), so `/predict/../feedback` is `/feedback` and is not
  copied by a `/predict` prefix; `uri.exact` compares the path whole, `uri.prefix` its beginning,
  character by character (`/predict` matches `/predictions`, as a VirtualService prefix does);
- a header name is case-insensitive; `exact` compares the value exactly, the values of a
  header sent several times joined with `,` (as Envoy does); without `exact` the header only
  has to be present.

The sampling share (mirrorPercent), body size, in-flight bound and breaker are the router's
own checks, after this one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .config import RouterConfig

Headers = Iterable[tuple[bytes, bytes]]
MirrorPolicy = Callable[[bytes, bytes, Headers], bool]

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class _Rule:
    methods: frozenset[bytes]
    exact: bytes | None
    prefix: bytes | None
    headers: tuple[tuple[bytes, bytes | None], ...]  # (lower-case name, exact value or None: present)

    def matches(self, method: bytes, path: bytes, headers: Headers) -> bool:
        if method not in self.methods:
            return False
        if self.exact is not None and path != self.exact:
            return False
        if self.prefix is not None and not path.startswith(self.prefix):
            return False
        return not self.headers or _headers_match(self.headers, headers)


def compile_mirror_policy(config: RouterConfig) -> MirrorPolicy:
    """`policy(method, target, headers) -> bool`: whether this request may be copied to the candidate."""
    traffic = config.traffic
    mirror_methods = frozenset(method.encode() for method in traffic.mirror_methods)
    if not traffic.match:

        def by_method(method: bytes, target: bytes, headers: Headers) -> bool:
            return method in mirror_methods

        return by_method

    rules = tuple(
        _Rule(
            methods=frozenset(method.encode() for method in rule.methods) if rule.methods else mirror_methods,
            exact=rule.uri.exact.encode() if rule.uri is not None and rule.uri.exact is not None else None,
            prefix=rule.uri.prefix.encode() if rule.uri is not None and rule.uri.prefix is not None else None,
            headers=tuple(
                (header.name.lower().encode(), header.exact.encode() if header.exact is not None else None)
                for header in rule.headers or ()
            ),
        )
        for rule in traffic.match
    )

    def by_rules(method: bytes, target: bytes, headers: Headers) -> bool:
        if method not in mirror_methods:
            return False
        path = request_path(target)
        return any(rule.matches(method, path, headers) for rule in rules)

    return by_rules


def request_path(target: bytes) -> bytes:
    """The path a rule is matched on: the target without query string or fragment, normalized."""
    end = len(target)
    for stop in (b"?", b"#"):
        at = target.find(stop, 0, end)
        if at >= 0:
            end = at
    path = target[:end]
    if not path.startswith(b"/"):
        # absolute-form (`http://host/path`, proxies) or asterisk-form (`OPTIONS *`)
        scheme = path.find(b"://")
        if scheme >= 0:
            slash = path.find(b"/", scheme + 3)
            path = path[slash:] if slash >= 0 else b"/"
    if b"%" in path:
        path = _PERCENT.sub(_decode_unreserved, path)
    if b"/." in path:
        path = _remove_dot_segments(path)
    return path


def _decode_unreserved(found: re.Match[bytes]) -> bytes:
    """%41 is `A` (RFC 3986 6.2.2.2); reserved characters such as %2F stay encoded."""
    byte = int(found.group(1), 16)
    return bytes((byte,)) if byte in _UNRESERVED else found.group(0).upper()


def _remove_dot_segments(path: bytes) -> bytes:
    """RFC 3986 5.2.4 on an absolute path: `/a/./b/../c` is `/a/c`; never above the root."""
    output: list[bytes] = []
    segments = path.split(b"/")[1:]
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == b".":
            if last:
                output.append(b"")
        elif segment == b"..":
            if output:
                output.pop()
            if last:
                output.append(b"")
        else:
            output.append(segment)
    return b"/" + b"/".join(output)


def _headers_match(wanted: tuple[tuple[bytes, bytes | None], ...], headers: Headers) -> bool:
    values: dict[bytes, list[bytes]] = {}
    names = {name for name, _ in wanted}
    for name, value in headers:
        lowered = name.lower()
        if lowered in names:
            values.setdefault(lowered, []).append(value)
    for name, exact in wanted:
        found = values.get(name)
        if found is None:
            return False
        if exact is not None and b",".join(found) != exact:
            return False
    return True
