"""The JSONPath subset the API accepts: `$.a.b`, `$.items[0]`, `$['key with space']`.

Only child and index steps: enough to point at a field in a request or response body,
and cheap enough to evaluate on the router's request path (a tuple walk, no parser).
"""

from __future__ import annotations

import re
from typing import Any

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_INDEX = re.compile(r"\[(-?[0-9]+)\]")
_QUOTED = re.compile(r"""\[(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\]""")

Step = str | int
MISSING = object()


class JsonPathError(ValueError):
    """A path the API cannot evaluate; the message says where and what to write instead."""


def compile_path(path: str) -> tuple[Step, ...]:
    """Turn `$.features.purchase_count` into `("features", "purchase_count")`."""
    if not isinstance(path, str) or not path.startswith("$"):
        raise JsonPathError(f"JSON path {path!r} must start with '$', e.g. $.features.purchase_count")
    steps: list[Step] = []
    pos = 1
    while pos < len(path):
        if path[pos] == "." and (match := _NAME.match(path, pos + 1)):
            steps.append(match.group(0))
        elif match := _INDEX.match(path, pos):
            steps.append(int(match.group(1)))
        elif match := _QUOTED.match(path, pos):
            raw = match.group(1) if match.group(1) is not None else match.group(2)
            steps.append(re.sub(r"\\(.)", r"\1", raw))
        else:
            raise JsonPathError(
                f"JSON path {path!r} cannot be read at character {pos + 1} ({path[pos:]!r}): "
                "use .name, [index] or ['quoted name'] steps; wildcards and filters are not supported"
            )
        pos = match.end()
    return tuple(steps)


def extract(document: Any, steps: tuple[Step, ...]) -> Any:
    """The value at `steps`, or MISSING when any step is absent or of the wrong kind."""
    node = document
    for step in steps:
        if isinstance(step, str):
            if not isinstance(node, dict) or step not in node:
                return MISSING
            node = node[step]
        else:
            if not isinstance(node, list) or not -len(node) <= step < len(node):
                return MISSING
            node = node[step]
    return node
