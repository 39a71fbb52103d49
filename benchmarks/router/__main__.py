"""The command line of `make bench-router` (`python -m benchmarks.router`): the options, then the table or the soak.

What is measured and how: the package's docstring (benchmarks/router/__init__.py).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from benchmarks import table
from benchmarks.router import __doc__ as package_doc

from .bench import Bench, router_available, shadowctl_path
from .load import BODY, PATH
from .processes import BenchError, Procs, terminate
from .report import report
from .scenarios import CANDIDATE_TIMEOUT, CANDIDATES, CONNECTIONS, MAX_IN_FLIGHT, build_rows
from .soak import soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.router",
        description=package_doc.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per row (default 10)")
    parser.add_argument("--connections", type=int, default=CONNECTIONS, help="wrk connections for the closed-loop rows")
    parser.add_argument("--soak", type=float, default=0.0, metavar="SECONDS", help="run only the soak, for SECONDS")
    parser.add_argument(
        "--soak-candidate", choices=sorted(CANDIDATES), default="resetting", help="the soak's candidate behaviour"
    )
    parser.add_argument(
        "--only", default="", help="only rows whose name contains this (plus direct and nginx, no mirror)"
    )
    parser.add_argument("--no-router", action="store_true", help="skip the router rows")
    parser.add_argument(
        "--scaling", action="store_true", help="only the scaling rows: --workers 1 and 2 beside nginx with as many"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, records)")
    table.add_arguments(parser)
    args = parser.parse_args(argv)

    missing = [tool for tool in ("nginx", "wrk", "hey") if not shutil.which(tool)]
    if missing:
        print(f"missing tools: {', '.join(missing)} (make bench-deps installs them)", file=sys.stderr)
        return 2
    with_router, why = (False, "--no-router") if args.no_router else router_available(shadowctl_path())
    if args.soak and not with_router:
        print(f"router: not available ({why}); the soak needs it", file=sys.stderr)
        return 2

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    workdir = Path(tempfile.mkdtemp(prefix="bench-router-"))
    procs = Procs()
    bench = Bench(args, workdir, procs)
    try:
        if args.soak:
            bench.start_upstreams((args.soak_candidate,))
            return soak(bench, args.soak, args.soak_candidate)

        sections = build_rows(args, with_router)
        needed = {row.candidate for _, _, _, rows in sections for row in rows if row.candidate and not row.note}
        needed.add("fast")  # the router's candidate URL when it does not mirror
        bench.start_upstreams(tuple(c for c in CANDIDATES if c in needed))
        setup = (
            f"POST {PATH} ({len(BODY)} B JSON), keep-alive; primary: nginx return 200, 1 worker; "
            f"router: --candidate-timeout {CANDIDATE_TIMEOUT} --max-in-flight {MAX_IN_FLIGHT}"
        )
        print(setup, file=sys.stderr, flush=True)
        if not with_router:
            print(f"router: not available ({why})", flush=True)
        for _title, load, seconds, rows in sections:
            for row in rows:
                if row.note:
                    continue
                print(f"  measuring {load:<6} {row.name} ...", file=sys.stderr, flush=True)
                try:
                    bench.measure(row, load, seconds)
                except BenchError as e:
                    row.note = "failed"
                    print(f"  {row.name}: {e}", file=sys.stderr, flush=True)
                if row.result and row.result.detail:
                    print(f"    {row.name}: {row.result.detail}", file=sys.stderr, flush=True)
        t = report(sections)
        t.notes.insert(0, setup)
        t.print()
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if args.keep:
            print(f"kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
