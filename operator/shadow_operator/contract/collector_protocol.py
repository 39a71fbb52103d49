"""The collector's names and reads, as both ends use them: router/collector.py serves them,
job/remote.py reads them (docs/records.md, "The protocol").

A stored **part** is one file on the collector's volume: a writer's file (`<file>.jsonl`), or its
continuation after retention deleted the part before (`<stem>@<offset>.jsonl`). Parts only grow,
by whole lines, until retention deletes them whole; so the comparison job keeps a byte cursor per
part, and tells a part that was replaced (a collector restarted on an emptyDir) by a hash of its
first bytes, its **head**.
"""

from __future__ import annotations

import hashlib
import re

from .records import RECORD_SUFFIX

# No leading dot: refuses "." and "..". Short: a path can neither leave the directory nor grow unbounded.
SOURCE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
FILE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,191}\.jsonl$")
PART = re.compile(r"^(?P<stem>.+)@(?P<base>[0-9]{1,20})\.jsonl$")  # a continuation after a retention delete

# Bytes hashed at the start of each part: enough to tell two writers' files apart (the first
# record alone carries a request id and a timestamp), few enough to read on every listing.
HEAD_BYTES = 4096

RECORDS_PATH = "/v1/records"
FILES_PATH = "/v1/files"
# `GET /v1/records/<source>/<part>?offset=N&end=E`: the part's bytes [N, E) (E: its size when left out).
OFFSET, END = "offset", "end"


def head_digest(first_bytes: bytes) -> str:
    """The head of a part whose first bytes (at least min(size, HEAD_BYTES) of them) are `first_bytes`."""
    return hashlib.sha256(first_bytes[:HEAD_BYTES]).hexdigest()


def writer_file(part: str) -> tuple[str, int] | None:
    """(the writer's file name, the offset of that file the part starts at), or None for a name not served."""
    match = PART.match(part)
    name, base = (match["stem"] + RECORD_SUFFIX, int(match["base"])) if match else (part, 0)
    return (name, base) if FILE_NAME.match(name) else None


def parse_offset(text: str) -> int | None:
    """A byte offset as a query gives it: decimal digits only, at most 19 (no sign, no spaces, no 1e3)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 19 else None
