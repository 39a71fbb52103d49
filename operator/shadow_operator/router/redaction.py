"""What `recording.redact` hides: every leaf value under a redacted path, wherever it reappears.

A redacted path's value is never recorded (extract.py refuses to read it), but the same value can
come back elsewhere: a model echoing the request in its prediction or in an error body, another
request field repeating it, a response field at the same path. `Secrets` holds the leaves (strings
and numbers) found under the redacted paths of one request (and of its answers), and scrubs them
from every value and text that goes into a record: string leaves and object keys by substring,
numbers by value. It never compares whole objects as JSON text, so whitespace, key order or
escaping cannot let an object's leaves through.

Everything is bounded for hostile bodies: the nodes walked, the depth, the number and total size
of the secrets, and the characters compared. Past a bound the answer fails closed: `complete` is
False (or value() returns UNCHECKED) and the caller records "[redacted]" (or no prediction) instead
of something it could not check. No recursion follows the document's own depth.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..contract.jsonpath import MISSING, Step, extract

REDACTED = "[redacted]"
MIN_SECRET_CHARS = 2  # shorter values (single digits, one letter) would scrub everything they touch
MAX_NODES = 10_000  # nodes walked under the redacted paths of one document
MAX_DEPTH = 64  # of a redacted value, and of a value being scrubbed
MAX_SECRETS = 1024  # distinct text forms kept per request
MAX_SECRET_CHARS = 1 << 20  # their total length
SCRUB_BUDGET = 4 << 20  # characters x secrets compared while scrubbing one value
UNCHECKED = object()  # value(): too big or too deep to check; the caller must not record it
_PLAIN = frozenset('"\\/')


class _OverBudget(Exception):
    pass


def _number_key(value: int | float) -> float | None:
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _number_texts(value: int | float) -> set[str]:
    """How a JSON encoder may spell the number: 42, 42.0; 0.5; 1e+100."""
    forms = {str(value), repr(value)}
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        forms.add(str(int(value)))
    return forms


class Secrets:
    """The redacted leaves of one request (and its answers), and the scrubbing with them."""

    __slots__ = ("_chars", "_forms", "_texts", "complete", "numbers", "paths")

    def __init__(self, paths: list[tuple[Step, ...]], complete: bool = True) -> None:
        self.paths = paths
        self.complete = complete  # False: some redacted value could not be read (body unseen, too big)
        self.numbers: set[float] = set()
        self._forms: set[str] = set()
        self._texts: tuple[str, ...] = ()  # longest first: a longer secret wins over its own prefix
        self._chars = 0

    @property
    def longest(self) -> int:
        return len(self._texts[0]) if self._texts else 0

    @property
    def empty(self) -> bool:
        return self.complete and not self._forms and not self.numbers

    # --- collecting ---

    def add_document(self, document: Any) -> bool:
        """Take the leaves under every redacted path of `document`; True when any was new."""
        before = (len(self._forms), len(self.numbers), self.complete)
        for steps in self.paths:
            value = extract(document, steps)
            if value is not MISSING:
                self._collect(value)
        self._texts = tuple(sorted(self._forms, key=len, reverse=True))
        return (len(self._forms), len(self.numbers), self.complete) != before

    def _collect(self, root: Any) -> None:
        stack, nodes = [(root, 0)], 0
        while stack:
            node, depth = stack.pop()
            if isinstance(node, str):
                self._add_text(node)
            elif isinstance(node, bool) or node is None:
                continue
            elif isinstance(node, int | float):
                key = _number_key(node)
                if key is not None and len(str(node)) >= MIN_SECRET_CHARS:
                    self.numbers.add(key)
                    for form in _number_texts(node):
                        self._add_text(form, escape=False)
            elif isinstance(node, dict | list):
                children = node.values() if isinstance(node, dict) else node
                nodes += len(children)
                if nodes > MAX_NODES or depth >= MAX_DEPTH:
                    self.complete = False  # a leaf left unread could leak: fail closed
                    return
                stack.extend((child, depth + 1) for child in children)

    def _add_text(self, text: str, escape: bool = True) -> None:
        forms = {text}
        # As it appears in raw JSON text (error bodies), or in a JSON string inside a string; most
        # values (printable ASCII without quote, backslash or slash) are spelt the same there.
        if escape and not (text.isascii() and text.isprintable() and _PLAIN.isdisjoint(text)):
            ascii_form = json.dumps(text)[1:-1]
            forms |= {ascii_form, json.dumps(text, ensure_ascii=False)[1:-1], ascii_form.replace("/", "\\/")}
        for form in forms:
            # A secret inside the marker itself cannot be hidden by the marker (docs/security.md).
            if len(form) < MIN_SECRET_CHARS or form in self._forms or form in REDACTED:
                continue
            self._forms.add(form)
            self._chars += len(form)
            if len(self._forms) > MAX_SECRETS or self._chars > MAX_SECRET_CHARS:
                self.complete = False
                return

    # --- scrubbing ---

    def value(self, value: Any) -> Any:
        """`value` with every redacted leaf replaced by "[redacted]" (a copy; the input is untouched),
        or UNCHECKED when it is too big or too deep to check, or when the secrets are incomplete."""
        if not self.complete:
            return UNCHECKED
        if not self._forms and not self.numbers:
            return value
        try:
            return self._scrub(value, 0, [SCRUB_BUDGET])
        except _OverBudget:
            return UNCHECKED

    def _scrub(self, value: Any, depth: int, budget: list[int]) -> Any:
        # Recursion is bounded by MAX_DEPTH, far below Python's limit, whatever the document's depth.
        if depth > MAX_DEPTH:
            raise _OverBudget
        if isinstance(value, str):
            return self._string(value, budget)
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int | float):
            budget[0] -= 1
            if (
                _number_key(value) in self.numbers
                or str(value) in self._forms
                or (isinstance(value, float) and not _number_texts(value).isdisjoint(self._forms))
            ):
                return REDACTED
            return value
        if isinstance(value, list):
            budget[0] -= len(value)
            if budget[0] < 0:
                raise _OverBudget
            return [self._scrub(item, depth + 1, budget) for item in value]
        if isinstance(value, dict):
            budget[0] -= len(value)
            if budget[0] < 0:
                raise _OverBudget
            return {self._string(k, budget): self._scrub(v, depth + 1, budget) for k, v in value.items()}
        return value

    def _string(self, text: str, budget: list[int]) -> str:
        texts = self._texts
        budget[0] -= (len(text) + 1) * (len(texts) + 1)
        if budget[0] < 0:
            raise _OverBudget
        for secret in texts:  # a plain loop: this runs for every string and key of every prediction
            if secret in text:
                break
        else:
            return text
        for secret in texts:  # longest first
            text = text.replace(secret, REDACTED)
        # A secret re-formed across a marker and its neighbours ("]x" around "[redacted]x"): all of it goes.
        return REDACTED if any(secret in text for secret in texts) else text

    def text(self, text: str, limit: int) -> str:
        """The first `limit` characters of `text` with the secrets replaced, reading only what is
        needed: a secret that starts before the cut is found whole, never left half-visible."""
        if not self.complete:
            return REDACTED
        texts = self._texts
        if not texts:
            return text[:limit]
        out: list[str] = []
        size, pos, end = 0, 0, len(text)
        while size < limit and pos < end:
            room = limit - size
            hit, hit_len = -1, 0
            for secret in texts:  # longest first: at a tie the longer one stays
                at = text.find(secret, pos, min(end, pos + room + len(secret)))
                if at != -1 and (hit == -1 or at < hit):
                    hit, hit_len = at, len(secret)
            if hit == -1:
                out.append(text[pos : pos + room])
                break
            out += [text[pos:hit], REDACTED]
            size += hit - pos + len(REDACTED)
            pos = hit + hit_len
        result = "".join(out)[:limit]
        return REDACTED if any(secret in result for secret in texts) else result


def redact_paths(document: Any, paths: list[tuple[Step, ...]]) -> Any:
    """`document` with the value at each path that exists replaced by "[redacted]": copies along
    the paths only, the rest is shared (the input is untouched)."""
    for steps in paths:
        if extract(document, steps) is MISSING:
            continue
        if not steps:  # "$": all of it
            return REDACTED
        root = node = document.copy()
        for step in steps[:-1]:
            child = node[step].copy()
            node[step] = child
            node = child
        node[steps[-1]] = REDACTED
        document = root
    return document
