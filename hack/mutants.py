#!/usr/bin/env python3
"""Mutation testing of the verdict engine: run mutmut, compare survivors with the known equivalents.

    .venv/bin/python hack/mutants.py                      # every file in [tool.mutmut] only_mutate
    .venv/bin/python hack/mutants.py --files checks.py    # some of them
    .venv/bin/python hack/mutants.py --reuse 'shadow_operator.job.checks.x__gate*'  # retest some mutants

mutmut 3 imports the mutated code from its own copy (mutants/), and names a mutant after the
file's path with only a leading `src/` stripped. This project's source root is `operator/`,
with no __init__.py (a top-level `operator` package would hide the standard library's), so
mutmut run in the checkout would call `shadow_operator.job.checks` by the name
`operator.shadow_operator.job.checks`, find no test hitting it and stop. So this script
lays out a staging directory (.mutmut/, git-ignored) with the package under `src/`, the tests
and pyproject.toml ([tool.mutmut] configures the run), and runs `mutmut run` there. The
checkout's own files are never touched: other work (and its tests) can go on meanwhile.

Each surviving mutant is keyed by a stable description, not by mutmut's numbering (which shifts
when a function changes): `file::function: <original line> => <mutated line>`. The ones that
cannot be killed are listed in hack/mutants-equivalent.txt (the reasons are in docs/mutants.md).
The script prints a table per file and exits non-zero when a mutant survives (or has no test)
that the list does not name.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGE = ROOT / ".mutmut"
EQUIVALENT = ROOT / "hack" / "mutants-equivalent.txt"
PACKAGE = "shadow_operator"
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
# statuses mutmut reports that count as detected
DETECTED = {"killed", "timeout", "caught by type check", "segfault"}
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@")


def configured_files() -> dict[str, Path]:
    """File name (as the keys and --files spell it) -> its path under the package, e.g. job/checks.py."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    paths = [Path(p).relative_to(Path("src") / PACKAGE) for p in config["only_mutate"]]
    by_name = {path.name: path for path in paths}
    if len(by_name) != len(paths):
        raise SystemExit(
            "[tool.mutmut] only_mutate: two files share a name; the equivalents' keys could not tell them apart"
        )
    return by_name


def module_glob(path: Path) -> str:
    """job/checks.py -> shadow_operator.job.checks.* (mutmut's names for that file's mutants)."""
    return ".".join((PACKAGE, *path.with_suffix("").parts)) + ".*"


def stage(reuse: bool) -> None:
    """The checkout's package under src/, its tests and pyproject.toml, in .mutmut/."""
    if STAGE.exists() and not reuse:
        shutil.rmtree(STAGE)
    if (STAGE / "mutants").exists():
        # a retest: refresh the tests (new ones may kill mutants) and the [tool.mutmut] config, keep
        # mutmut's mutants and results (mutmut itself drops the results a config change invalidates:
        # a new test selection all of them, a new timeout the timeouts)
        for sub in ("tests", "mutants/tests"):
            shutil.rmtree(STAGE / sub, ignore_errors=True)
            shutil.copytree(ROOT / "tests", STAGE / sub, ignore=IGNORE)
        shutil.copy2(ROOT / "pyproject.toml", STAGE / "pyproject.toml")
        _sync(ROOT / "operator" / PACKAGE, STAGE / "src" / PACKAGE)
        return
    STAGE.mkdir(parents=True, exist_ok=True)
    (STAGE / ".gitignore").write_text("*\n")
    shutil.copytree(ROOT / "operator" / PACKAGE, STAGE / "src" / PACKAGE, ignore=IGNORE)
    shutil.copytree(ROOT / "tests", STAGE / "tests", ignore=IGNORE)
    shutil.copy2(ROOT / "pyproject.toml", STAGE / "pyproject.toml")


def _sync(source: Path, target: Path) -> None:
    """Make target's files those of source, rewriting (with a new mtime) only the ones that differ.

    mutmut regenerates the mutants of a mutated file whose source is newer than its mutants, and
    keeps the results of the functions whose text did not change; the other files it copies anew
    each run. So a retest runs against the checkout's code as it is now.
    """
    wanted = {p.relative_to(source) for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    for path in sorted(wanted):
        old, new = target / path, source / path
        if not old.exists() or old.read_bytes() != new.read_bytes():
            old.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(new, old)
    for path in target.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.relative_to(target) not in wanted:
            path.unlink()


def run_mutmut(names: list[str], max_children: int, log: Path) -> int:
    mutmut = Path(sys.executable).parent / "mutmut"
    command = [str(mutmut), "run", "--max-children", str(max_children), *names]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COVERAGE_PROCESS_START")}
    env["PYTHONHASHSEED"] = "0"
    print(f"$ (cd {STAGE.relative_to(ROOT)} && {' '.join(command[1:])})  # output in {log.relative_to(ROOT)}")
    with log.open("w") as out:
        return subprocess.call(command, cwd=STAGE, stdout=out, stderr=subprocess.STDOUT, env=env)


def _function_lines(source: str) -> dict[str, int]:
    """Top-level function name -> the line of its `def` (or first decorator)."""
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found[node.name] = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return found


def describe(diff: str, function_line: int) -> tuple[str, int]:
    """`<original> => <mutated>` from a unified diff of one function, and the file line it changes."""
    before, after, line = [], [], 0
    position = 0
    for text in diff.splitlines():
        hunk = _HUNK.match(text)
        if hunk:
            position = int(hunk.group(1))
            continue
        if text.startswith(("---", "+++")):
            continue
        if text.startswith("-"):
            before.append(text[1:].strip())
            line = line or function_line + position - 1
            position += 1
        elif text.startswith("+"):
            after.append(text[1:].strip())
        else:
            position += 1
    return f"{' / '.join(before)} => {' / '.join(after)}", line


def collect(files: list[str], paths: dict[str, Path]) -> list[dict]:
    """Every mutant of the given files: status, stable key and line (read in the stage, as mutmut left it)."""
    os.chdir(STAGE)
    sys.path.insert(0, str(STAGE))
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code

    found = []
    for name in files:
        path = Path("src") / PACKAGE / paths[name]
        lines = _function_lines(path.read_text())
        data = SourceFileMutationData(path=path)
        data.load()
        seen: Counter[str] = Counter()
        for mutant, exit_code in sorted(data.exit_code_by_key.items(), key=lambda kv: _numbered(kv[0])):
            function = mutant.rpartition(".")[2].partition("__mutmut_")[0].removeprefix("x_")
            change, line = describe(get_diff_for_mutant(mutant, path=path), lines.get(function, 0))
            key = f"{name}::{function}: {change}"
            seen[key] += 1
            if seen[key] > 1:
                key += f" [#{seen[key]}]"
            status = status_by_exit_code[exit_code]
            found.append({"file": name, "line": line, "key": key, "mutant": mutant, "status": status})
    return found


def _numbered(mutant: str) -> tuple[str, int]:
    head, _, number = mutant.rpartition("__mutmut_")
    return head, int(number) if number.isdigit() else 0


def read_equivalent() -> set[str]:
    if not EQUIVALENT.exists():
        return set()
    return {
        line.rstrip("\n") for line in EQUIVALENT.read_text().splitlines() if line.strip() and not line.startswith("#")
    }


def report(found: list[dict], equivalent: set[str], files: list[str]) -> int:
    table: dict[str, Counter[str]] = defaultdict(Counter)
    unexpected = []
    for m in found:
        if m["status"] in DETECTED:
            table[m["file"]]["killed" if m["status"] != "timeout" else "timeout"] += 1
        elif m["key"] in equivalent:
            table[m["file"]]["equivalent"] += 1
        else:
            table[m["file"]]["survived" if m["status"] == "survived" else "other"] += 1
            unexpected.append(m)
    columns = ("killed", "timeout", "equivalent", "survived", "other")
    print()
    print(f"{'file':<14}" + "".join(f"{c:>11}" for c in (*columns, "total", "score")))
    total: Counter[str] = Counter()
    for name in files:
        row = table[name]
        total.update(row)
        print(_row(name, row, columns))
    print(_row("all", total, columns))
    print("score: (killed + timeout) / (total - equivalent); 'other': no test covers it, or not run")

    keys = {m["key"] for m in found}
    scoped = {k for k in equivalent if k.split("::", 1)[0] in files}
    stale = sorted(scoped - keys)
    for key in stale:
        print(f"note: listed as equivalent but no longer a mutant: {key}")
    detected_listed = sorted(m["key"] for m in found if m["key"] in equivalent and m["status"] in DETECTED)
    for key in detected_listed:
        print(f"note: listed as equivalent but killed now (remove it from the list): {key}")
    if unexpected:
        print()
        print(f"{len(unexpected)} surviving mutant(s) not known to be equivalent:")
        for m in unexpected:
            print(f"  [{m['status']}] {m['file']}:{m['line']}  {m['mutant']}")
            print(f"      {m['key']}")
        print("kill each with a test, or list its key in hack/mutants-equivalent.txt with a reason in docs/mutants.md")
        return 1
    print("no surviving mutant beyond the known equivalents")
    return 0


def _row(name: str, row: Counter[str], columns: tuple[str, ...]) -> str:
    total = sum(row[c] for c in columns)
    judged = total - row["equivalent"]
    score = f"{100 * (row['killed'] + row['timeout']) / judged:.1f}%" if judged else "-"
    return f"{name:<14}" + "".join(f"{row[c]:>11}" for c in columns) + f"{total:>11}{score:>11}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", nargs="+", help="file names, e.g. checks.py coverage.py (default: all configured)")
    parser.add_argument("--max-children", type=int, default=1, help="mutmut worker processes (default 1)")
    parser.add_argument("--reuse", action="store_true", help="keep .mutmut/ and its results (retest given mutants)")
    parser.add_argument("--report-only", action="store_true", help="only compare the last run's results")
    parser.add_argument("mutants", nargs="*", help="mutmut mutant names or globs to (re)test")
    args = parser.parse_args()

    configured = configured_files()
    files = args.files or list(configured)
    unknown = sorted(set(files) - set(configured))
    if unknown:
        parser.error(f"not in [tool.mutmut] only_mutate: {', '.join(unknown)}")
    started = time.monotonic()
    if not args.report_only:
        stage(reuse=args.reuse or bool(args.mutants))
        names = args.mutants or ([] if files == list(configured) else [module_glob(configured[f]) for f in files])
        code = run_mutmut(names, args.max_children, STAGE / "run.log")
        if code != 0:
            print((STAGE / "run.log").read_text()[-4000:])
            print(f"mutmut run failed (exit {code})")
            return code
    found = collect(files, configured)
    status = report(found, read_equivalent(), files)
    print(f"took {time.monotonic() - started:.0f}s")
    return status


if __name__ == "__main__":
    sys.exit(main())
