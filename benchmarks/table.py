"""One way for every benchmark to print its results: a table, one row per measurement.

Each row says what is measured, our value with its unit, the reference's value beside it (nginx,
DuckDB, kubectl, a direct connection, ...: whatever the benchmark compares with), the ratio
ours / reference, the target (e.g. "≥ 0.8x") and whether it is met ("—" where there is no
target; the "met" column reads met, NOT MET or —). The caption names the machine the numbers come from (cores, CPU model, memory, kernel,
date), so a table pasted anywhere still says where it ran.

Usage::

    from benchmarks import table

    parser = argparse.ArgumentParser()
    table.add_arguments(parser)            # --markdown / --text (or BENCH_FORMAT=markdown|text|rich)
    args = parser.parse_args()

    t = table.Table("Operator convergence, 200 ShadowDeployments", reference="kubectl")
    t.row("convergence time", 9.4, "s", ref=5.7, target="≤ 1.2x")     # ratio 1.65x, met: NO
    t.row("peak RSS per object", 380, "KiB")                            # no reference, no target: —
    t.section("idle window, 60 s")                                      # a titled group of rows
    t.row("API writes", 0, target="= 0")                                # a target on the value itself
    t.row("added p50", 0.14, "ms", ref=0.06, ref_name="direct",         # another reference than the
          target="added < 1 ms", met=0.14 - 0.06 < 1)                   # table's; any target + met
    t.note("writes by kind: ...")                                       # a line under the table
    t.print()                                                           # or t.render() -> str

`Table(title, reference=NAME)`: NAME heads the reference column. `Table.row(...)` arguments:

  measure    what is measured (str)
  ours       our value: a number (formatted with `digits` decimals, default about 3 significant
             digits, thousands separated) or a ready string; None prints "—"
  unit       appended to both values ("s", "ms", "MiB", "req/s", "%", ...)
  ref        the reference's value (number or string); None when there is none
  ref_name   shown beside the reference value when this row's reference is not the table's
  ratio      defaults to ours / ref when both are numbers; pass a float (or a string) to override
  target     a string. "≥ 0.8x", "<= 1.2x", "< 1.1x": on the ratio; "= 0", "< 1 s", "≤ 500 MiB":
             on our value (in the row's unit; the unit in the text is for the reader).
             Anything else (e.g. "added < 1 ms") is shown as is and needs `met`.
  met        True/False overrides the target's own evaluation (for a target on something the row
             does not show, e.g. a difference, or for a row that had errors)
  note       free text in a last "note" column (shown only when a row has one)
  digits     decimals for ours and ref

`Table.section(title)` starts a group of rows under a title; `Table.note(text)` adds a line
printed under the table; `Table.rows` is the list of `Row`s (each with `.ratio` and `.met`
filled in), and `Table.all_met` is True when no row misses its target, for a benchmark that
wants its exit status from the targets.

For benchmarks/analyze.py, e.g. per size: `t.row(f"{n:,} records: time", ours_s, "s",
ref=duckdb_s, target="≤ 1.2x")` in `Table("...", reference="DuckDB")`, and
`t.row("incremental run: time", s, "s", target="< 1 s")` for a target on the value.

Formats (`Table.print(fmt=None)` / `Table.render(fmt)`):

  rich      (default) a rich table; colours on a terminal only. Always as wide as the table
            needs (wider than the terminal if it must), so no cell is ever cut.
  markdown  a GitHub table, the title in bold above, the notes and then the machine (in
            italics) below: what docs/benchmarks.md holds, pasted as printed
  text      the rich table drawn in ASCII, no colour

chosen by the `fmt` argument, else by `--markdown` / `--text` (`add_arguments`), else by the
environment variable BENCH_FORMAT (rich, markdown or text), else rich. `machine()` returns the
caption's text.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

FORMATS = ("rich", "markdown", "text")
_format: str | None = None  # set by --markdown / --text
DASH = "—"

_TARGET = re.compile(r"^\s*(≤|<=|≥|>=|<|>|==|=)\s*([-+]?\d[\d,]*(?:\.\d+)?)\s*(x\b)?\s*(.*)$")
_OPS = {
    "≤": lambda a, b: a <= b,
    "<=": lambda a, b: a <= b,
    "≥": lambda a, b: a >= b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "=": lambda a, b: a == b,
    "==": lambda a, b: a == b,
}


# ---- the machine ------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.0f} GiB"
    except OSError:
        pass
    return "? GiB"


def _cpu_limit() -> str:
    """The cgroup's CPU quota when it is below the core count (what a container may use)."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            limit = int(quota) / int(period)
            if limit < (os.cpu_count() or 0):
                return f" (cgroup limit {limit:g})"
    except (OSError, ValueError):
        pass
    return ""


def machine(when: datetime | None = None) -> str:
    """Where the table ran: cores, CPU model, memory, kernel, date (UTC)."""
    when = when or datetime.now(UTC)
    cores = os.cpu_count() or 0
    return (
        f"{cores} cores{_cpu_limit()}, {_cpu_model()}, {_memory()}, "
        f"{platform.system()} {platform.release()}, {when:%Y-%m-%d %H:%M} UTC"
    )


# ---- formatting ---------------------------------------------------------------------------------


def number(value: float | int | str | None, digits: int | None = None) -> str:
    """A value as the tables show it: ints with thousands separators, floats with `digits` decimals
    (default: about 3 significant digits), None as "—"."""
    if value is None:
        return DASH
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if digits is None:
        if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 1000):
            return f"{int(value):,}"
        digits = _auto_digits(abs(value))
    if digits == 0 and abs(value) >= 1000:
        return f"{round(value):,}"
    return f"{value:,.{digits}f}"


def _auto_digits(magnitude: float) -> int:
    """About 3 significant digits."""
    return 0 if magnitude >= 100 else 1 if magnitude >= 10 else 2 if magnitude >= 0.1 or magnitude == 0 else 3


def ratio_text(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if math.isinf(value):
        return "∞"
    magnitude = abs(value)
    return f"{value:.0f}x" if magnitude >= 100 else f"{value:.1f}x" if magnitude >= 10 else f"{value:.2f}x"


def _with_unit(text: str, unit: str) -> str:
    if text in (DASH, "n/a") or not unit:
        return text
    return f"{text}{unit}" if unit in ("%", "x") else f"{text} {unit}"


# ---- the table --------------------------------------------------------------------------------


@dataclass
class Row:
    measure: str
    ours: float | int | str | None
    unit: str = ""
    ref: float | int | str | None = None
    ref_name: str = ""
    ratio: float | str | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    digits: int | None = None
    section: str = ""

    def evaluate(self) -> None:
        """Fill in the ratio (ours / ref) and, from the target, `met` where not given."""
        numeric = isinstance(self.ours, (int, float)) and not isinstance(self.ours, bool)
        if self.ratio is None and numeric and isinstance(self.ref, (int, float)) and self.ref:
            self.ratio = self.ours / self.ref
        if self.met is not None or not self.target:
            return
        match = _TARGET.match(self.target)
        if not match:
            return
        op, bound, on_ratio, rest = match.groups()
        if not on_ratio and rest and not rest.split()[0].isalpha() and rest.strip() not in (self.unit, "%"):
            return  # not a plain comparison: the benchmark says whether it is met
        value = self.ratio if on_ratio else (self.ours if numeric else None)
        if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
            self.met = _OPS[op](value, float(bound.replace(",", "")))

    def cells(self, table_reference: str) -> list[str]:
        digits = self.digits
        if digits is None and isinstance(self.ours, float) and isinstance(self.ref, (int, float)):
            digits = _auto_digits(max(abs(self.ours), abs(self.ref)))  # both alike, as the larger needs
        ours = _with_unit(number(self.ours, digits), self.unit)
        ref = _with_unit(number(self.ref, digits), self.unit) if self.ref is not None else DASH
        if self.ref_name and self.ref_name != table_reference:
            ref = f"{ref} ({self.ref_name})" if self.ref is not None else DASH
        ratio = self.ratio if isinstance(self.ratio, str) else ratio_text(self.ratio)
        met = DASH if self.met is None else ("met" if self.met else "NOT MET")
        return [self.measure, ours, ref, ratio, self.target or DASH, met]


@dataclass
class Table:
    title: str
    reference: str = "reference"
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    caption: str = ""  # defaults to machine() at render time
    _section: str = ""
    _sections: list[tuple[int, str]] = field(default_factory=list)

    def section(self, title: str) -> None:
        """The rows added after this belong under `title`."""
        self._section = title
        self._sections.append((len(self.rows), title))

    def row(self, measure: str, ours: float | int | str | None, unit: str = "", **kwargs) -> Row:
        row = Row(measure, ours, unit, section=self._section, **kwargs)
        row.evaluate()
        self.rows.append(row)
        return row

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def all_met(self) -> bool:
        """No row's target is missed (rows without a target count as met)."""
        return all(row.met is not False for row in self.rows)

    # rendering

    def _grid(self) -> tuple[list[str], list[tuple[str, list[str]]]]:
        """Header and [(section title or "", cells)] in order; a section title row has cells = []."""
        header = ["measure", "ours", self.reference, "ratio", "target", "met"]
        with_notes = any(row.note for row in self.rows)
        if with_notes:
            header.append("note")
        starts = dict(self._sections)
        out: list[tuple[str, list[str]]] = []
        for i, row in enumerate(self.rows):
            if starts.get(i):
                out.append((starts[i], []))
            cells = row.cells(self.reference)
            if with_notes:
                cells.append(row.note)
            out.append(("", cells))
        return header, out

    def render(self, fmt: str | None = None) -> str:
        fmt = resolve_format(fmt)
        caption = self.caption or f"ran on {machine()}"
        if fmt == "markdown":
            return self._markdown(caption)
        return self._rich(caption, ascii_only=fmt == "text")

    def print(self, fmt: str | None = None, file=None) -> None:
        file = file or sys.stdout
        fmt = resolve_format(fmt)
        if fmt == "rich" and file.isatty():
            table = self._rich_table(self.caption or f"ran on {machine()}", ascii_only=False)
            console = _console(table, file=file)
            console.print(table)
            for line in self.notes:
                console.print(line, highlight=False, markup=False, soft_wrap=True)
            return
        with contextlib.suppress(BrokenPipeError):  # `| head`
            print(self.render(fmt), file=file, flush=True)

    def _rich_table(self, caption: str, ascii_only: bool):
        from rich import box
        from rich.table import Table as RichTable
        from rich.text import Text

        header, grid = self._grid()
        table = RichTable(
            title=self.title,
            caption=caption,
            box=box.ASCII2 if ascii_only else box.SIMPLE_HEAD,
            title_justify="left",
            caption_justify="left",
            show_lines=False,
        )
        for i, name in enumerate(header):
            right = name in ("ours", "ratio") or i == 2
            table.add_column(name, justify="right" if right else "left", no_wrap=name != "note")
        for k, (title, cells) in enumerate(grid):
            if title:
                if k:
                    table.add_section()
                table.add_row(Text(title, style="bold"), *[""] * (len(header) - 1))
                continue
            style = {"met": "green", "NOT MET": "bold red"}.get(cells[5], "")
            table.add_row(*cells[:5], Text(cells[5], style=style), *cells[6:])
        return table

    def _rich(self, caption: str, ascii_only: bool) -> str:
        table = self._rich_table(caption, ascii_only)
        console = _console(table, file=open(os.devnull, "w"), record=True)  # noqa: SIM115
        console.print(table)
        for line in self.notes:
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        text = console.export_text(styles=False)
        console.file.close()
        return "\n".join(line.rstrip() for line in text.splitlines())

    def _markdown(self, caption: str) -> str:
        header, grid = self._grid()

        def escape(cell: str) -> str:
            return cell.replace("|", "\\|")

        aligns = ["---" if name in ("measure", "target", "met", "note") else "--:" for name in header]
        lines = [f"**{escape(self.title)}**", "", "| " + " | ".join(header) + " |", "|" + "|".join(aligns) + "|"]
        for title, cells in grid:
            if title:
                lines.append(f"| **{escape(title)}** |" + " |" * (len(header) - 1))
                continue
            if cells[5] == "NOT MET":
                cells = [*cells[:5], "**NOT MET**", *cells[6:]]
            lines.append("| " + " | ".join(escape(c) for c in cells) + " |")
        lines.append("")
        lines += [f"{line}  " for line in self.notes]
        lines.append(f"*{escape(caption)}*")
        return "\n".join(lines)


def _console(table, file, record: bool = False):
    """A console as wide as the table needs (or the terminal, if wider): no column is ever cut."""
    from rich.console import Console
    from rich.measure import Measurement

    probe = Console(width=1000, file=file)
    needed = Measurement.get(probe, probe.options, table).maximum
    terminal = file.isatty()
    width = max(needed, Console(file=file).width if terminal else 0)
    return Console(file=file, width=width, record=record, no_color=not terminal, force_terminal=terminal or None)


# ---- choosing the format ----------------------------------------------------------------------


def resolve_format(fmt: str | None = None) -> str:
    fmt = fmt or _format or os.environ.get("BENCH_FORMAT", "").strip().lower() or "rich"
    if fmt not in FORMATS:
        raise ValueError(f"table format {fmt!r}: one of {', '.join(FORMATS)}")
    return fmt


def set_format(fmt: str | None) -> None:
    global _format
    _format = resolve_format(fmt) if fmt else None


class _FormatAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        set_format(self.const)
        setattr(namespace, self.dest, self.const)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--markdown and --text on a benchmark's command line (else BENCH_FORMAT, else rich)."""
    parser.add_argument(
        "--markdown",
        dest="table_format",
        nargs=0,
        action=_FormatAction,
        const="markdown",
        help="print the tables as markdown (what docs/benchmarks.md holds); also BENCH_FORMAT=markdown",
    )
    parser.add_argument(
        "--text",
        dest="table_format",
        nargs=0,
        action=_FormatAction,
        const="text",
        help="print the tables in plain ASCII; also BENCH_FORMAT=text",
    )


if __name__ == "__main__":  # a look at the three formats
    demo = Table("demo: the same numbers in every format", reference="nginx")
    demo.section("closed loop")
    demo.row("router, no mirror: throughput", 32594.0, "req/s", ref=74528.0, target="≥ 0.8x")
    demo.row("router, no mirror: p99", 1.6, "ms", ref=0.9)
    demo.row("API writes, idle", 0, target="= 0")
    demo.row("added p50, one connection", 0.14, "ms", ref=0.06, ref_name="direct", target="added < 1 ms", met=True)
    demo.note("a note under the table")
    for name in FORMATS:
        demo.print(name)
        print()
