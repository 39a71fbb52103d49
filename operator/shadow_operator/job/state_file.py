"""The incremental analysis state in a local file (`shadowctl analyze --state FILE`), locked and replaced whole.

The file store of incremental_state.py's StateStore (the cluster's is state_configmap.py): the
state's JSON, written whole to a temporary file in the same directory, flushed and renamed over
FILE, so a run that dies midway leaves the previous state; `FILE.lock` keeps two runs apart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..contract.report import DataProblem
from .incremental_state import State, decode, encode


@dataclass
class FileStore:
    """`shadowctl analyze --state FILE`: one JSON file, replaced atomically, locked for a run."""

    path: Path

    @property
    def where(self) -> str:
        return str(self.path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock on `path`.lock for one run."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self, expected: str) -> tuple[State | None, str, list[DataProblem]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None, "no state yet", []
        except OSError as error:
            return None, f"the state {self.path} cannot be read ({error})", []
        state, why = decode(raw, expected, self.where)
        return state, why, []

    def write(self, state: State) -> list[DataProblem]:
        write(self.path, state)
        return []


def write(path: Path, state: State) -> None:
    """Replace the state atomically: a temporary file in the same directory, flushed, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(encode(state))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
