"""`shadowctl analyze --records-from URL`: the records the collector keeps, downloaded for one run.

The comparison job's Pod mounts no record volume: it reads `GET <url>/v1/records` (every file
the collector retains, JSON Lines) into a temporary file and analyses that. A collector that
cannot be reached, answers an error, breaks off, or sends more than the cap becomes a data
problem naming the URL (the verdict is then Inconclusive: InsufficientData), never a crash.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..contract.records import RECORD_SUFFIX
from ..contract.report import DataProblem

RECORDS_UNAVAILABLE = "RecordsUnavailable"
CHUNK = 1 << 20


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
