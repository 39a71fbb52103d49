"""The record collector's ingest throughput on loopback, and record sizes: the numbers in docs/records.md.

    python -m benchmarks.collector [--records DIR] [--seconds 10] [--writers 10]

Prints one table (benchmarks/table.py): the record size, the ingest rate, and the records/s ingested
beside what 10,000 mirrored requests/s need at sampleRate 1.0 (target ≥ 1x) and 0.1.

Starts a real `shadowctl collector` process, and `--writers` threads that each play a router's
shipper: POST /v1/records/<source>/<file>?offset=N with 1 MiB chunks of whole records (what a
shipper sends after 2 s at ~1,700 records/s), as fast as the collector acknowledges them. Record
size: the mean line length of the `*.jsonl` files under --records (e.g. the demo's workdir),
else of synthetic pair records shaped like the demo's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.support.ports import free_port

from benchmarks import table

REPO = Path(__file__).resolve().parents[1]


def record_size(directory: Path | None) -> tuple[float, int, str]:
    """(mean bytes per record, records, where from)."""
    if directory is not None:
        files = list(directory.rglob("*.jsonl"))
        lines = total = 0
        for path in files:
            data = path.read_bytes()
            lines += data.count(b"\n")
            total += len(data)
        if lines:
            return total / lines, lines, f"{len(files)} files under {directory}"
    sys.path.insert(0, str(REPO / "operator"))
    from shadow_operator.contract.records import SideResult, dumps, pair_record

    side = SideResult("ok", 1.4, 200, 1)
    sample = dumps(
        pair_record("demo/recommender", "0" * 32, 1763942400.123, {"history": "1-200"},
                    {"$.features.purchase_count": True, "$.features.session_seconds": True}, side, side)
    )  # fmt: skip
    return float(len(sample)), 1, "one synthetic pair record"


def chunk_of(record_bytes: int, target: int = 1 << 20) -> bytes:
    line = b'{"pad":"' + b"x" * max(0, record_bytes - 11) + b'"}\n'
    return line * max(1, target // len(line))


def run(seconds: float, writers: int, record_bytes: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="collector-bench-") as root:
        port, admin = free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
        process = subprocess.Popen(
            [sys.executable, "-m", "shadow_operator.cli", "collector", "--records", root, "--listen",
             f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}", "--retention-bytes", str(8 << 30)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
        )  # fmt: skip
        assert process.stdout.readline().startswith("listening")
        chunk = chunk_of(record_bytes)
        sent = [0] * writers
        requests = [0] * writers
        stop = threading.Event()

        def writer(index: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            offset, file_index = 0, 0
            while not stop.is_set():
                if offset >= 64 << 20:  # rotate like the sink: a new file past 64 MiB
                    offset, file_index = 0, file_index + 1
                conn.request("POST", f"/v1/records/router-{index}/records-{index}-{file_index}.jsonl?offset={offset}",
                             body=chunk)  # fmt: skip
                response = conn.getresponse()
                offset = json.loads(response.read())["size"]
                sent[index] += len(chunk)
                requests[index] += 1
            conn.close()

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        process.terminate()
        process.wait(10)
        total = sum(sent)
        return {
            "writers": writers,
            "seconds": round(elapsed, 2),
            "chunk_bytes": len(chunk),
            "requests_per_s": round(sum(requests) / elapsed, 1),
            "mib_per_s": round(total / elapsed / (1 << 20), 1),
            "records_per_s": round(total / elapsed / record_bytes),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, help="record files to measure the record size on (the demo's workdir)")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--writers", type=int, default=10)
    table.add_arguments(parser)
    args = parser.parse_args()
    size, count, source = record_size(args.records)
    result = run(args.seconds, args.writers, round(size))
    t = table.Table(
        f"Record collector ingest: {args.writers} shippers posting {result['chunk_bytes'] / 2**20:.0f} MiB chunks "
        f"for {result['seconds']:g} s, loopback, page cache",
        reference="needed",
    )
    t.row("record size", size, "B", digits=0, note=source if count == 1 else f"mean of {count:,} records ({source})")
    t.row("ingest", result["mib_per_s"], "MiB/s")
    t.row("ingest requests", result["requests_per_s"], "requests/s")
    for rate, where in ((10_000, "sampleRate 1.0"), (1_000, "sampleRate 0.1")):
        per_s = rate * size
        t.row(
            f"records ingested, vs {rate:,} records/s ({where} at 10,000 req/s)",
            result["records_per_s"],
            "records/s",
            ref=rate,
            target="≥ 1x" if rate == 10_000 else "",
            note=f"{per_s / 1e6:.2f} MB/s, {per_s * 86400 / 1e9:.1f} GB/day, {per_s * 7 * 86400 / 1e9:.0f} GB/week",
        )
    t.print()


if __name__ == "__main__":
    main()
