"""The collector's reads for incremental analysis (issue 13, item 3): `GET /v1/files` with heads and
`GET /v1/records/<source>/<part>?offset=N&end=E`, hostile requests refused and counted, never a crash."""

from __future__ import annotations

import hashlib
import json

import pytest

from shadow_operator.contract.collector_protocol import HEAD_BYTES, parse_offset, writer_file

from .test_collector import FILE, Collector, _lines

pytestmark = pytest.mark.timeout(60)
PART = f"/v1/records/pod-1/{FILE}"


@pytest.fixture
def collector(tmp_path):
    started = Collector(tmp_path / "collector")
    started.request("POST", f"{PART}?offset=0", _lines(1, 2, 3))  # 3 lines of 10 bytes
    yield started
    started.stop()


def test_a_range_read_serves_whole_lines_from_an_offset_and_counts_them(collector):
    served = collector.metrics.served_bytes.get()
    assert collector.request("GET", f"{PART}?offset=10") == (200, _lines(2, 3))
    assert collector.request("GET", f"{PART}?offset=10&end=20") == (200, _lines(2))
    assert collector.request("GET", f"{PART}?offset=30") == (200, b"")  # nothing new: empty, not an error
    assert collector.metrics.served_bytes.get() - served == 30


def test_the_listing_gives_each_part_its_size_and_head(collector):
    [listed] = json.loads(collector.request("GET", "/v1/files")[1])["files"]
    assert (listed["source"], listed["part"], listed["bytes"]) == ("pod-1", FILE, 30)
    assert listed["head"] == hashlib.sha256(_lines(1, 2, 3)).hexdigest()
    big = b"".join(b'{"id": %06d}\n' % i for i in range(500))  # 7,000 bytes: the head is the first 4 KiB
    collector.request("POST", f"{PART}?offset=30", big)
    [listed] = json.loads(collector.request("GET", "/v1/files")[1])["files"]
    assert listed["head"] == hashlib.sha256((_lines(1, 2, 3) + big)[:HEAD_BYTES]).hexdigest()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"{PART}", 400),  # no offset
        (f"{PART}?offset=", 400),
        (f"{PART}?offset=-1", 400),
        (f"{PART}?offset=1e1", 400),
        (f"{PART}?offset=%C2%B2", 400),  # a digit to str.isdigit, not to int()
        (f"{PART}?offset=+10", 400),
        (f"{PART}?offset=99999999999999999999", 400),  # 20 digits
        (f"{PART}?offset=0&offset=10", 400),
        (f"{PART}?offset=0&end=10&end=20", 400),
        (f"{PART}?offset=0&length=10", 400),  # unknown parameter
        (f"{PART}?offset=31", 416),  # past the end
        (f"{PART}?offset=0&end=31", 416),
        (f"{PART}?offset=20&end=10", 416),
        (f"{PART}?offset=5", 416),  # inside a line
        (f"{PART}?offset=0&end=15", 416),
        ("/v1/records/pod-1/other.jsonl?offset=0", 404),  # not retained
        (f"/v1/records/pod-2/{FILE}?offset=0", 404),
        ("/v1/records/pod-1/records-pod-1-ab12cd-0@0.jsonl?offset=0", 404),  # a part name, not this part
        (f"/v1/records/../{FILE}?offset=0", 400),
        (f"/v1/records/%2e%2e/{FILE}?offset=0", 400),
        (f"/v1/records/.hidden/{FILE}?offset=0", 400),
        ("/v1/records/pod-1/..%2f..%2fetc%2fpasswd?offset=0", 400),
        ("/v1/records/pod-1/records.txt?offset=0", 400),
        ("/v1/records/pod-1/a@b.jsonl?offset=0", 400),
        (f"/v1/records/pod-1/{'a' * 300}.jsonl?offset=0", 400),
        (f"/v1/records/a/b/{FILE}?offset=0", 400),
        ("/v1/records/pod-1/?offset=0", 400),
    ],
)
def test_hostile_range_reads_are_refused_and_counted(collector, path, status):
    rejected = sum(collector.metrics.rejected.values.values())
    answer, body = collector.request("GET", path)
    assert answer == status, body
    assert "error" in json.loads(body)
    assert sum(collector.metrics.rejected.values.values()) == rejected + 1
    # and the collector still serves
    assert collector.request("GET", f"{PART}?offset=0") == (200, _lines(1, 2, 3))


def test_a_post_offset_that_only_str_isdigit_accepts_is_400_not_a_dead_connection(collector):
    status, body = collector.request("POST", f"{PART}?offset=%C2%B2", _lines(4))
    assert status == 400 and b"offset" in body


def test_a_part_deleted_by_retention_is_404_and_its_continuation_is_a_new_part(tmp_path):
    collector = Collector(tmp_path / "c", retention_bytes=25)
    try:
        collector.request("POST", f"{PART}?offset=0", _lines(1, 2))
        collector.request("POST", "/v1/records/pod-2/b.jsonl?offset=0", _lines(7, 8))  # over 25 bytes: pod-1 goes
        assert collector.request("GET", f"{PART}?offset=0")[0] == 404
        collector.request("POST", f"{PART}?offset=20", _lines(3))
        parts = {f["part"] for f in json.loads(collector.request("GET", "/v1/files")[1])["files"]}
        continuation = FILE.removesuffix(".jsonl") + "@20.jsonl"
        assert continuation in parts
        assert collector.request("GET", f"/v1/records/pod-1/{continuation}?offset=0") == (200, _lines(3))
    finally:
        collector.stop()


@pytest.mark.parametrize(
    ("text", "value"), [("0", 0), ("42", 42), ("", None), ("-1", None), ("²", None), ("1" * 20, None), (" 1", None)]
)
def test_offsets_are_parsed_strictly(text, value):
    assert parse_offset(text) == value


def test_part_names_map_to_writer_files():
    assert writer_file("r.jsonl") == ("r.jsonl", 0)
    assert writer_file("r@4096.jsonl") == ("r.jsonl", 4096)
    assert writer_file("../r.jsonl") is None and writer_file("r.txt") is None
