"""HTTP/1.1 message rules of the router and the recorder, pure: which request headers pass and
which are the router's own, which request targets are accepted, and the short answers the router
writes itself."""

from __future__ import annotations

from .upstream import Headers

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer", b"upgrade",
    b"content-length", b"expect",
})  # fmt: skip
SHADOW_PREFIX = b"x-shadow-"  # the router's own marking: never taken from a client

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 413: b"Content Too Large",
            431: b"Request Header Fields Too Large", 501: b"Not Implemented", 502: b"Bad Gateway",
            503: b"Service Unavailable", 504: b"Gateway Timeout"}  # fmt: skip


class BadRequest(ValueError):
    """A request the router refuses; `status` is the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def simple_response(status: int, body: bytes, keep_alive: bool) -> bytes:
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n%s\r\n"
        % (status, _REASONS.get(status, b"Error"), len(body), b"" if keep_alive else b"connection: close\r\n")
    ) + body


def inbound_headers(headers: Headers, id_header: bytes) -> tuple[Headers, bytes | None, bytes | None, int, bool, bool]:
    """One pass over a request's headers: what is forwarded, and what the router needs from them.

    Returns the forwarded headers (hop-by-hop, x-shadow-* and what `Connection` names removed,
    Host and the request-id header always kept), the request id, the Host value, the declared
    Content-Length (-1 when none), whether the body is chunked and whether the client expects
    100-continue. Raises BadRequest for
    a duplicate Host header. `id_header` is lower case.
    """
    forwarded: Headers = []
    request_id = host = connection = None
    length, chunked, expect = -1, False, False
    for name, value in headers:
        lowered = name.lower()
        if lowered in HOP_BY_HOP:
            if lowered == b"connection":
                connection = value if connection is None else connection + b"," + value
            elif lowered == b"content-length":
                length = int(value)  # llhttp has checked it is one plain number
            elif lowered == b"transfer-encoding":
                chunked = True
            elif lowered == b"expect":
                expect = value.lower() == b"100-continue"
            continue
        if lowered.startswith(SHADOW_PREFIX):
            continue
        if lowered == b"host":
            if host is not None:
                raise BadRequest(400, "duplicate Host header")
            host = value
        elif lowered == id_header and request_id is None:
            request_id = value
        forwarded.append((name, value))
    if connection is not None:
        named = {token.strip().lower() for token in connection.split(b",")}
        named -= {b"close", b"keep-alive", b"host", id_header, b""}
        if named:
            forwarded = [(n, v) for n, v in forwarded if n.lower() not in named]
    return forwarded, request_id, host, length, chunked, expect


def origin_form(target: bytes) -> tuple[bytes, bytes]:
    """An absolute-form target (`http://host:8080/p?q`) as origin-form and its authority: (b"/p?q", b"host:8080")."""
    scheme, sep, rest = target.partition(b"://")
    if not sep or not scheme.isalpha() or scheme.lower() not in (b"http", b"https"):
        raise BadRequest(400, "request target is neither origin-form nor absolute-form")
    end = len(rest)
    for stop in (b"/", b"?", b"#"):
        at = rest.find(stop)
        if 0 <= at < end:
            end = at
    authority, path = rest[:end], rest[end:]
    authority = authority.rpartition(b"@")[2]  # userinfo is not part of Host
    if not authority:
        raise BadRequest(400, "absolute-form target without a host")
    path = path.partition(b"#")[0]
    if not path.startswith(b"/"):
        path = b"/" + path
    return path, authority
