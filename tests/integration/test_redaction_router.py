"""recording.redact end to end: the real `shadowctl router` and `shadowctl recorder` (subprocesses,
loopback sockets, no cluster) in front of a model that echoes the request everywhere it can (its
prediction, an error object, a pretty-printed or plain-text error body, a response field at a
redacted path), then every byte of every record file written is searched for every secret."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path

import pytest

from .harness import stop_loop
from .test_router import Router

pytestmark = pytest.mark.timeout(90)

EMAIL = "alice.secret@example.com"
SSN = 987654321
CARD = {"number": "4111-1111-1111-1111", "holder": {"name": "Zed Secretname"}, "pin": 48151623}
HISTORY = ["hist-secret-one", 27182818, {"deep": "hist-secret-deep"}]
RESPONSE_TOKEN = "resp-token-31337"  # only ever in the model's answer, at a redacted path
SECRETS = [EMAIL, str(SSN), CARD["number"], CARD["holder"]["name"], str(CARD["pin"]), HISTORY[0], str(HISTORY[1]),
           HISTORY[2]["deep"], RESPONSE_TOKEN]  # fmt: skip
REQUEST = {"user": {"email": EMAIL, "ssn": SSN}, "card": CARD, "history": HISTORY, "note": EMAIL, "x": 3}
MAX_BODY = 65536
CONFIG = {
    "name": "recommender",
    "namespace": "shop",
    "traffic": {"router": "builtin", "mirrorPercent": 100, "maxBodyBytes": MAX_BODY, "candidateTimeout": "5s"},
    "recording": {
        "redact": ["$.user.email", "$.user.ssn", "$.card", "$.history", "$.session.token"],
        "segments": [{"name": "note", "path": "$.note"}, {"name": "who", "path": "$.who", "source": "response"}],
        "features": ["$.user.email"],
    },
}
PATHS = ["/predict", "/elsewhere", "/error-object", "/error-pretty", "/error-text", "/detail"]


# --- the echoing model -------------------------------------------------------------------------


def _answer_to(path: bytes, body: bytes) -> tuple[int, bytes]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        doc = body.decode("utf-8", "replace")  # hostile or cut: echoed as text
    reordered = json.loads(json.dumps(doc, sort_keys=True))  # other key order than the request
    who = doc.get("note") if isinstance(doc, dict) else doc
    if path == b"/predict":
        answer = {"prediction": {"label": "ok", "echo": doc}, "session": {"token": RESPONSE_TOKEN}, "who": who}
    elif path == b"/elsewhere":
        spread = {"label": "ok", "said": f"dear {EMAIL}, token {RESPONSE_TOKEN}", "n": float(SSN), str(SSN): 1}
        answer = {"prediction": spread, "who": f"card {CARD['number']}", "session": {"token": RESPONSE_TOKEN}}
    elif path == b"/error-object":
        return 500, json.dumps({"error": {"input": reordered, "session": {"token": RESPONSE_TOKEN}}}).encode()
    elif path == b"/error-pretty":
        return 500, json.dumps(
            {"trace": reordered, "session": {"token": RESPONSE_TOKEN}}, indent=2, sort_keys=True
        ).encode()
    elif path == b"/error-text":
        return 500, b"cannot score request " + body
    elif path == b"/detail":
        return 422, json.dumps({"detail": [{"loc": ["body"], "input": reordered}]}).encode()
    else:
        return 404, b"no such path"
    return 200, json.dumps(answer).encode()


async def _model(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        line, *rest = head[:-4].split(b"\r\n")
        headers = {n.strip().lower(): v.strip() for n, _, v in (h.partition(b":") for h in rest)}
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = b""
            while (n := int((await reader.readuntil(b"\r\n")).strip(), 16)) > 0:
                body += await reader.readexactly(n + 2)
                body = body[:-2]
            await reader.readuntil(b"\r\n")
        else:
            body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
        status, answer = _answer_to(line.split()[1], body)
        writer.write(b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n\r\n" % (status, len(answer)) + answer)
        await writer.drain()


@pytest.fixture(scope="module")
def model():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start():
        async def guarded(reader, writer):
            try:
                await _model(reader, writer)
            except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError, ValueError):
                writer.close()

        return await asyncio.start_server(guarded, "127.0.0.1", 0)

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(5)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    stop_loop(loop, thread, server)


# --- helpers -----------------------------------------------------------------------------------


def _recorder(url: str, config: Path, records: Path) -> Router:
    """`shadowctl recorder` exactly as the sidecar runs it."""
    return Router(["--upstream", url, "--role", "candidate", "--config", str(config)], records, command="recorder")


def _chunked(port: int, path: str, body: bytes, request_id: str, pieces: int = 7) -> int:
    """POST `body` with Transfer-Encoding: chunked, cut so the secrets straddle chunk boundaries."""
    size = -(-len(body) // pieces)
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    wire = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    head = f"POST {path} HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\nx-request-id: {request_id}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + b"Connection: close\r\n\r\n" + wire)
        answer = b""
        while data := sock.recv(65536):
            answer += data
    return int(answer.split(b" ", 2)[1])


def _assert_no_secret_in(directory: Path) -> list[bytes]:
    """Every file written under `directory`, byte for byte: no secret, in any spelling JSON gives it."""
    files = [f for f in directory.rglob("*") if f.is_file()]
    assert files, f"nothing written under {directory}"
    contents = [f.read_bytes() for f in files]
    for secret in SECRETS:
        forms = {secret.encode(), json.dumps(secret).strip('"').encode()}
        for path, data in zip(files, contents, strict=True):
            for form in forms:
                assert form not in data, f"{secret!r} found in {path}: {data[:2000]!r}"
    return contents


def _records(contents: list[bytes]) -> dict[str, dict]:
    return {r["id"]: r for data in contents for r in map(json.loads, data.splitlines())}


# --- tests -------------------------------------------------------------------------------------


def test_router_records_hold_no_redacted_value(model, tmp_path):
    config = tmp_path / "router.json"
    config.write_text(json.dumps(CONFIG))
    router = Router(["--primary", model, "--candidate", model, "--config", str(config)], tmp_path / "records")
    for path in PATHS:
        status, _, _ = router.post(REQUEST, path=path, request_id=path.strip("/"))
        assert status in (200, 422, 500), path
    records = router.stop()
    assert {r["id"] for r in records} == {p.strip("/") for p in PATHS}, "one pair record per request"
    by_id = _records(_assert_no_secret_in(tmp_path / "records"))
    for side in ("primary", "candidate"):
        predicted = by_id["predict"][side]["prediction"]
        assert predicted["label"] == "ok" and predicted["echo"]["x"] == 3, "what is not secret is kept"
        assert predicted["echo"]["user"] == {"email": "[redacted]", "ssn": "[redacted]"}
        assert by_id["elsewhere"][side]["prediction"]["said"] == "dear [redacted], token [redacted]"
        assert by_id["error-text"][side]["error"].startswith("cannot score request")
    assert by_id["predict"]["agree"] is True, "both sides scrubbed alike still compare"
    assert by_id["predict"]["segments"] == {"note": "[redacted]", "who": "[redacted]"}
    assert by_id["elsewhere"]["segments"]["who"] == "card [redacted]"


def test_recorder_records_hold_no_redacted_value_chunked_or_not(model, tmp_path):
    config = tmp_path / "recorder.json"
    config.write_text(json.dumps(CONFIG))
    recorder = _recorder(model, config, tmp_path / "records")
    body = json.dumps(REQUEST).encode()
    for path in PATHS:
        assert recorder.post(REQUEST, path=path, request_id="plain" + path.replace("/", "-"))[0] in (200, 422, 500)
        assert _chunked(recorder.port, path, body, "chunked" + path.replace("/", "-")) in (200, 422, 500)
    # Past maxBodyBytes a chunked body is streamed to the model, never kept: nothing to check it
    # against, so what the answer says is not recorded.
    padded = json.dumps({**REQUEST, "pad": "p" * (2 * MAX_BODY)}).encode()
    assert _chunked(recorder.port, "/predict", padded, "streamed", pieces=40) == 200
    assert _chunked(recorder.port, "/error-text", padded, "streamed-error", pieces=40) == 500
    # Nested past the recursion limit: not JSON to the recorder either.
    hostile = b'{"user": {"email": "%s"}, "x": ' % EMAIL.encode() + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert _chunked(recorder.port, "/predict", hostile, "hostile") == 200
    assert recorder.post(hostile, path="/error-text", request_id="hostile-error")[0] == 500
    recorder.stop()
    by_id = _records(_assert_no_secret_in(tmp_path / "records"))
    assert len(by_id) == 2 * len(PATHS) + 4
    for kind in ("plain", "chunked"):
        predicted = by_id[f"{kind}-predict"]["result"]["prediction"]
        assert predicted["label"] == "ok" and predicted["echo"]["user"]["email"] == "[redacted]", kind
        assert by_id[f"{kind}-predict"]["segments"] == {"note": "[redacted]", "who": "[redacted]"}
    for request_id in ("streamed", "hostile"):
        assert by_id[request_id]["result"]["outcome"] == "ok" and by_id[request_id]["result"]["prediction"] is None
    for request_id in ("streamed-error", "hostile-error"):
        assert by_id[request_id]["result"]["error"] == "[redacted]"
