"""`shadowctl analyze --records-from URL`: the records the collector keeps, read over HTTP.

The comparison job's Pod mounts no record volume. Two ways to read the collector:

* `download_records`, a full run: `GET <url>/v1/records` (every file the collector retains, JSON
  Lines) into a temporary file, analysed whole.
* `CollectorSource`, an incremental run (the CronJob's default): the collector's parts as a
  RecordSource (record_sources.py), so only the bytes past each part's cursor are read:
  `GET <url>/v1/files` lists parts with their size and head, `GET <url>/v1/records/<source>/<part>
  ?offset=N&end=E` reads the new whole lines of one.

A collector that cannot be reached, answers an error, breaks off, or sends more than the cap
becomes a data problem naming the URL, never a crash: a full run is then Inconclusive
(InsufficientData); an incremental one folds nothing new and judges the state it has.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..contract.collector_protocol import (
    END,
    FILES_PATH,
    HEAD_BYTES,
    OFFSET,
    RECORDS_PATH,
    SOURCE_NAME,
    head_digest,
    writer_file,
)
from ..contract.records import RECORD_SUFFIX
from ..contract.report import DataProblem
from .record_sources import FileGone, RecordFile, SourceUnavailable

RECORDS_UNAVAILABLE = "RecordsUnavailable"
CHUNK = 1 << 20
# The listing names each retained part in ~250 bytes: 64 MiB is 250,000 parts, far past any retention.
MAX_LISTING_BYTES = 64 << 20


def download_records(
    url: str, directory: Path, max_bytes: int, timeout: float = 30.0, deadline: float = 900.0
) -> tuple[Path | None, DataProblem | None]:
    """(the downloaded file, None), or (None, the problem) when the records cannot be had whole."""
    base = url.rstrip("/")
    source = f"{base}/v1/records"
    target = directory / f"collector{RECORD_SUFFIX}"
    end = time.monotonic() + deadline
    try:
        if not base.startswith(("http://", "https://")):
            raise ValueError("use an http:// URL, e.g. http://recommender-collector.ml.svc.cluster.local:8090")
        with urllib.request.urlopen(source, timeout=timeout) as response, target.open("wb") as out:
            received = 0
            while chunk := response.read(CHUNK):
                received += len(chunk)
                if received > max_bytes:
                    raise ValueError(
                        f"more than --records-max-bytes {max_bytes} bytes: lower the collector's "
                        "spec.recording.sink.retention.maxBytes or raise the cap"
                    )
                if time.monotonic() > end:
                    raise TimeoutError(f"not received within {deadline:g}s")
                out.write(chunk)
    except urllib.error.HTTPError as error:
        return None, _problem(source, f"the collector answered {error.code} {error.reason}")
    except urllib.error.URLError as error:
        return None, _problem(source, f"{error.reason}: is the <name>-collector Pod running?")
    except (OSError, ValueError, http.client.HTTPException) as error:
        return None, _problem(source, str(error) or type(error).__name__)
    return target, None


def _problem(source: str, why: str) -> DataProblem:
    return DataProblem(code=RECORDS_UNAVAILABLE, message=f"cannot read records from {source}: {why}")


class RecordsUnavailable(SourceUnavailable):
    """The collector could not be read whole this run; `problem` says why, naming the URL."""


class CollectorSource:
    """The collector's parts as a RecordSource: listed with their sizes and heads, read from an offset.

    A part's key is `<source>/<part>` (a part of a writer's file, contract/collector_protocol.py);
    every read ends at the size the listing gave, so a part's cursor head is the listed head.
    `max_bytes` caps what one run reads in all (the emptyDir it lands in is sized for it);
    `bytes_read` is what it read.
    """

    def __init__(self, url: str, max_bytes: int, timeout: float = 30.0, deadline: float = 900.0) -> None:
        self.base = url.rstrip("/")
        self.max_bytes, self.timeout = max_bytes, timeout
        self.end = time.monotonic() + deadline
        self.deadline = deadline
        self.bytes_read = 0  # every record byte read, heads included
        self.head_bytes_read = 0  # of which re-read to check that a small part was not replaced
        self.requests = 0

    def listing(self) -> list[RecordFile]:
        where = f"{self.base}{FILES_PATH}"
        try:
            with self._get(where) as response:
                body = response.read(MAX_LISTING_BYTES)
        except (OSError, http.client.HTTPException) as error:
            raise RecordsUnavailable(_problem(where, f"broken off ({error or type(error).__name__})")) from None
        try:
            files = json.loads(body)["files"]
            return [self._listed(entry) for entry in files]
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            raise RecordsUnavailable(_problem(where, f"the collector's listing is malformed ({error})")) from None

    def head(self, file: RecordFile, length: int) -> str:
        if min(length, HEAD_BYTES) == min(file.size, HEAD_BYTES) and file.head:
            return file.head
        # A part smaller than HEAD_BYTES at the last run has grown: its first bytes are read again (< 4 KiB).
        before = self.bytes_read
        digest = head_digest(b"".join(self._range(file, 0, min(length, HEAD_BYTES))))
        self.head_bytes_read += self.bytes_read - before
        return digest

    def read(self, file: RecordFile, offset: int) -> Iterator[bytes]:
        return self._range(file, offset, file.size)

    def _listed(self, entry: dict[str, Any]) -> RecordFile:
        source, part, size, head = entry["source"], entry["part"], entry["bytes"], entry["head"]
        if not (isinstance(source, str) and SOURCE_NAME.match(source)) or not (
            isinstance(part, str) and writer_file(part)
        ):
            raise ValueError(f"a part named {source!r}/{part!r}")
        if type(size) is not int or size < 0 or not isinstance(head, str):
            raise ValueError(f"part {source}/{part} has size {size!r} and head {head!r}")
        return RecordFile(f"{source}/{part}", size, head)

    def _range(self, file: RecordFile, offset: int, end: int) -> Iterator[bytes]:
        path = f"{RECORDS_PATH}/{quote(file.key, safe='/')}?{OFFSET}={offset}&{END}={end}"
        url = f"{self.base}{path}"
        response = self._get(url, gone=f"{file.key} was deleted by retention since the listing")
        with response:
            received = 0
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as error:
                    raise RecordsUnavailable(_problem(url, f"broken off ({error or type(error).__name__})")) from None
                if not chunk:
                    break
                received += len(chunk)
                self.bytes_read += len(chunk)
                if self.bytes_read > self.max_bytes:
                    raise RecordsUnavailable(
                        _problem(self.base, f"more than --records-max-bytes {self.max_bytes} bytes in one run: "
                                 "lower spec.recording.sink.retention.maxBytes or raise the cap")
                    )  # fmt: skip
                if time.monotonic() > self.end:
                    raise RecordsUnavailable(_problem(self.base, f"not received within {self.deadline:g}s"))
                yield chunk
            if received != end - offset:
                raise RecordsUnavailable(_problem(url, f"the collector sent {received} of {end - offset} bytes"))

    def _get(self, url: str, gone: str = "") -> Any:
        """The open response; RecordsUnavailable, or FileGone for a 404 when `gone` says what is gone."""
        if not self.base.startswith(("http://", "https://")):
            raise RecordsUnavailable(
                _problem(url, "use an http:// URL, e.g. http://recommender-collector.ml.svc.cluster.local:8090")
            )
        self.requests += 1
        try:
            return urllib.request.urlopen(url, timeout=self.timeout)
        except urllib.error.HTTPError as error:
            error.close()
            if error.code == 404 and gone:
                raise FileGone(gone) from None
            raise RecordsUnavailable(_problem(url, f"the collector answered {error.code} {error.reason}")) from None
        except urllib.error.URLError as error:
            raise RecordsUnavailable(_problem(url, f"{error.reason}: is the <name>-collector Pod running?")) from None
        except (OSError, ValueError, http.client.HTTPException) as error:
            raise RecordsUnavailable(_problem(url, str(error) or type(error).__name__)) from None
