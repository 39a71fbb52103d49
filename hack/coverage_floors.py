#!/usr/bin/env python3
"""Per-package line-coverage floors over the combined data of a `make test` run.

    .venv/bin/coverage combine && .venv/bin/python hack/coverage_floors.py
    .venv/bin/python hack/coverage_floors.py --json coverage.json   # a `coverage json` report instead

Reads the combined data file ([tool.coverage.run] data_file) through coverage's JSON report,
sums the statements of each package in PACKAGES (a module belongs to the first package whose
pattern matches its path under shadow_operator/; modules nothing names fall into "other", so a
new module is never left out), prints "package | lines | covered | floor | ok" and exits 1 when
any package is below its floor (2 when there is no data).

The floors were measured on the unit + integration tiers (the node tier adds only what runs in
Pods, which is not measured) and sit a couple of points under what was measured, so that an
unrelated change does not trip them but a package losing its tests does. Raise a floor when a
package's coverage rises; each entry says why it is where it is.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

PACKAGE_ROOT = "shadow_operator/"


@dataclass(frozen=True)
class Package:
    name: str
    patterns: tuple[str, ...]  # fnmatch patterns over the path below shadow_operator/
    floor: float  # percent of statements
    why: str


# Order matters: a module belongs to the first package that matches it. Measured: the unit and
# integration tiers in one `coverage run` (2026-12-02; in brackets after each floor). Other work
# (promotion, notifications) was landing meanwhile, so some numbers moved between measurements.
PACKAGES: tuple[Package, ...] = (
    Package("controller/builders/", ("controller/builders/*",), 95.0, "pure object builders, unit-tested"),  # [99.3%]
    Package(
        "promotion",
        ("controller/promotion.py", "controller/promote.py", "controller/notifications.py"),
        90.0,  # [93.2%, 2026-12-02; 89.3% before `shadowctl promote` had its tests]
        "promotion and notifications; what is left is notifications' retry timing and Secret reads",
    ),
    Package(
        "controller/",
        ("controller/*",),
        91.0,  # [93.6%]
        "the reconcile and its kopf wiring, measured in the operator subprocess of the integration "
        "tier (controller/reconcile.py: 55% from unit tests alone); the pure parts (progress, validation) by unit "
        "tests. controller/reconcile.py is at 83%: promotion's patch of a referenced Deployment has no "
        "integration test yet",
    ),
    Package(
        "kube/client.py",
        ("kube/client.py",),
        93.0,  # [88.9% on 2026-12-02; tests/integration/test_kube_client.py added the error paths on 12-03]
        "the only module that talks to the API server, run in-process by test_kube_client (Secrets, 403s, "
        "uid preconditions, access reviews) and by the operator subprocess; 190 lines, so one test more or "
        "less moves it half a point",
    ),
    Package(
        "router/",
        ("router/*",),
        90.0,  # [91.0%; 92.0% when test_router_hostile's attack passes]
        "the router, recorder and collector, in-process (unit) and as subprocesses (integration); "
        "a 2-point margin is not there yet: workers.py (85%: a worker that cannot start or dies before "
        "listening, the restart backoff) and shipper.py (87%: oversized and torn lines, a file poisoned "
        "mid-shipping) have error paths no test provokes yet",
    ),
    Package(
        "job/",
        ("job/*",),
        93.0,  # [96.2%]
        "the comparison job: unit tests cover dataset, stats, checks, verdict and render; the job's "
        "CLI, publish and the Prometheus client run as subprocesses of the integration tier",
    ),
    Package("api/", ("api/*",), 96.0, "the pydantic models and the CRD/reference generators"),  # [99.4%]
    Package(
        "other",
        ("*",),
        90.0,  # [95.2%]
        "contract/ (records, report, names, reasons), kube/ besides the client (cache, permissions, rbac), "
        "cli.py and any module not named above",
    ),
)


def package_of(relative: str) -> Package:
    for package in PACKAGES:
        if any(fnmatch.fnmatchcase(relative, pattern) for pattern in package.patterns):
            return package
    raise AssertionError(f"no package matches {relative}: the last one must match everything")


def load_report(json_path: Path | None) -> dict:
    if json_path is not None:
        return json.loads(json_path.read_text())
    import coverage
    from coverage.exceptions import NoDataError

    cov = coverage.Coverage()
    cov.load()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "coverage.json"
        try:
            cov.json_report(outfile=str(out))
        except NoDataError as error:
            raise SystemExit(f"coverage_floors: {error} (run `coverage combine` first)") from None
        return json.loads(out.read_text())


def summarize(report: dict) -> dict[str, tuple[int, int]]:
    """Statements and covered statements per package name, in PACKAGES order."""
    totals = {package.name: [0, 0] for package in PACKAGES}
    for path, entry in report["files"].items():
        posix = Path(path).as_posix()
        if PACKAGE_ROOT not in posix:
            continue
        relative = posix.split(PACKAGE_ROOT, 1)[1]
        summary = entry["summary"]
        total = totals[package_of(relative).name]
        total[0] += summary["num_statements"]
        total[1] += summary["covered_lines"]
    return {name: (lines, covered) for name, (lines, covered) in totals.items()}


def check(totals: dict[str, tuple[int, int]]) -> tuple[list[list[str]], bool]:
    rows = [["package", "lines", "covered", "floor", "ok"]]
    ok_all = True
    for package in PACKAGES:
        lines, covered = totals[package.name]
        if lines == 0:
            rows.append([package.name, "0", "-", f"{package.floor:.1f}%", "no modules"])
            continue
        percent = 100.0 * covered / lines
        ok = percent >= package.floor
        ok_all &= ok
        rows.append(
            [package.name, str(lines), f"{covered} ({percent:.1f}%)", f"{package.floor:.1f}%", "ok" if ok else "BELOW"]
        )
    return rows, ok_all


def render(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="a `coverage json` report (default: read the combined data)")
    args = parser.parse_args(argv)
    report = load_report(args.json)
    if not report.get("files"):
        print("coverage_floors: no measured files", file=sys.stderr)
        return 2
    rows, ok = check(summarize(report))
    print(render(rows))
    if not ok:
        below = [row[0] for row in rows[1:] if row[4] == "BELOW"]
        print(f"\ncoverage below the floor in: {', '.join(below)} (floors: hack/coverage_floors.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
