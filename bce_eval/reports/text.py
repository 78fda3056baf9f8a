"""The summary for people: the overall figures, groups, channels and the worst images as tables.

On a terminal the tables fit its width. Elsewhere (a CI log, a pipe) nothing is padded, wrapped
or shortened: every line ends with its last character, and a name is always shown whole. There
``COLUMNS``, when set, is the width a boxed table may take; one that would not fit is printed
in a plain layout, without a box, rather than cut.
"""

from __future__ import annotations

import io
import os

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import printable
from ..model import channel_names
from .ci import fmt, plural, verdict_lines
from .view import View

# The width a table is laid out at where nothing may be wrapped: wider than any line.
UNLIMITED = 1 << 20

STACK_AXES = {
    "nhwc": "items x height x width x channels",
    "nchw": "items x channels x height x width",
    "nhw": "items x height x width",
}


def columns() -> int | None:
    """The width in COLUMNS, when set to a positive whole number."""
    value = os.environ.get("COLUMNS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def _print(console: Console, table: Table, plain: Table | None = None) -> None:
    """A table on a terminal as rich lays it out; elsewhere at its natural width, without
    trailing spaces, boxed if it fits in COLUMNS (when set) and otherwise as ``plain``."""
    if console.is_terminal:
        console.print(table)
        return
    lines = _lines(table)
    width = columns()
    if width is not None and plain is not None and max(map(len, lines), default=0) > width:
        lines = _lines(plain)
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _lines(table: Table) -> list[str]:
    out = Console(file=io.StringIO(), width=UNLIMITED, color_system=None, highlight=False, emoji=False)
    out.print(table)
    return [line.rstrip() for line in out.file.getvalue().rstrip("\n").split("\n")]  # type: ignore[attr-defined]


def _line(console: Console, text: str, *, markup: bool = True) -> None:
    """One line, never wrapped outside a terminal."""
    console.print(text, markup=markup, highlight=False, soft_wrap=not console.is_terminal)


def layout_line(view: View) -> str:
    """The layouts of the batch files read, with their axes: "nhwc (items x height x ...)", or
    "targets nhwc (...), reconstructions nchw (...)" where the sides differ."""

    def described(layouts: str) -> str:
        return "/".join(
            f"{layout} ({STACK_AXES.get(layout, '?')})" for layout in layouts.split("/") if layout
        )

    sides = [layouts for layouts in view.layouts if layouts]
    if len(set(sides)) == 1:
        text = described(sides[0])
    else:
        sided = zip(("targets", "reconstructions"), view.layouts, strict=False)
        text = ", ".join(f"{side} {described(layouts)}" for side, layouts in sided if layouts)
    return text if view.settings.reading.layout is not None else f"{text}, the default (--layout)"


def clipped_note(view: View) -> str:
    """Which predictions the clipped count counts, under the run's convention."""
    scoring = view.settings.scoring
    if scoring.logits:
        return "logits are never clipped"
    if scoring.convention == "keras":
        return "p < eps under y > 0, p > 1 - eps under y < 1"
    return "p < e^-100 under y > 0, p = 1 under y < 1: log floored"


def _figures_table(title: str, label: str, *, plain: bool) -> Table:
    table = Table(title=title, title_justify="left", box=None if plain else box.HEAVY_HEAD)
    table.add_column(label, justify="left")
    return table


def print_summary(console: Console, view: View) -> None:
    """Counts, the convention and layout, the overall figures, the channels and groups, the
    worst images, the verdict and the hint."""
    o = view.overall
    _line(
        console,
        f"[bold]bce-eval[/]: {plural(o.pairs + o.failed, 'pair')}, {o.pairs:,} evaluated, "
        f"{o.failed:,} failed; {o.pixels:,} values (pixels x channels)",
    )
    _line(console, f"convention: {view.settings.scoring.describe()}", markup=False)
    if view.layouts:
        _line(console, f"batch layout: {layout_line(view)}", markup=False)
    overall = Table(
        title=f"Overall, pixel-weighted ({view.units} per pixel)",
        title_justify="left",
        show_header=False,
        box=None,
        padding=(0, 1),
    )
    overall.add_row("BCE", fmt(o.bce))
    overall.add_row("Entropy H(target)", fmt(o.entropy), "the floor of BCE")
    overall.add_row(
        "[bold]Excess BCE - H[/]", f"[bold]{fmt(o.excess)}[/]", "KL(target || pred), the reconstruction error"
    )
    overall.add_row("Per-image excess", fmt(o.excess_median), "median")
    overall.add_row("", fmt(o.excess_p95), "95th percentile")
    overall.add_row("", fmt(o.excess_max), "max")
    if o.worst is not None:
        overall.add_row("Worst image", escape(printable(o.worst)))
    overall.add_row("Clipped preds", f"{o.clipped:,}", f"of {o.pixels:,}, {escape(clipped_note(view))}")
    if view.channel_count > 1 and not view.channels:
        names = ", ".join(channel_names(view.channel_count))
        overall.add_row("By channel", "-", f"--per-channel gives {names}")
    _print(console, overall)
    if len(view.channels) > 1:
        _print_channels(console, view)
    if view.groups:
        _print_groups(console, view)
    if view.worst:
        _print_worst(console, view)
    if view.verdict is not None:
        for line in verdict_lines(view.verdict, view.scale):
            console.print(line, markup=False, soft_wrap=True)
    if view.hint:
        console.print(view.hint, markup=False, soft_wrap=True)


def _print_channels(console: Console, view: View) -> None:
    tables = []
    for plain in (False, True):
        table = _figures_table(f"By channel ({view.units} per pixel)", "channel", plain=plain)
        for column in ("values", "BCE", "H", "excess", "clipped"):
            table.add_column(column, justify="right")
        for c in view.channels:
            table.add_row(
                c.channel, f"{c.pixels:,}", fmt(c.bce), fmt(c.entropy), fmt(c.excess), f"{c.clipped:,}"
            )
        tables.append(table)
    _print(console, *tables)


def _print_groups(console: Console, view: View) -> None:
    tables = []
    for plain in (False, True):
        table = _figures_table(f"By group ({view.units} per pixel)", "group", plain=plain)
        for column in ("pairs", "failed", "BCE", "H", "excess", "median", "max"):
            table.add_column(column, justify="right")
        for g in view.groups:
            table.add_row(
                escape(printable(g.group)), f"{g.pairs:,}", f"{g.failed:,}", fmt(g.bce), fmt(g.entropy),
                fmt(g.excess), fmt(g.excess_median), fmt(g.excess_max),
            )  # fmt: skip
        tables.append(table)
    _print(console, *tables)


def _print_worst(console: Console, view: View) -> None:
    tables = []
    for plain in (False, True):
        table = _figures_table(
            f"Worst {len(view.worst)} by excess ({view.units} per pixel)", "#", plain=plain
        )
        table.columns[0].justify = "right"
        table.add_column("image", justify="left")
        for column in ("size", "BCE", "H", "excess", "clipped"):
            table.add_column(column, justify="right")
        by_channel = len(view.channels) > 1  # --per-channel on a multi-channel set
        if by_channel:
            table.add_column("excess by channel", justify="left")
        for rank, r in enumerate(view.worst, start=1):
            cells = [
                str(rank),
                escape(printable(r.name)),
                "x".join(map(str, r.shape or ())),
                fmt(r.bce),
                fmt(r.entropy),
                fmt(r.excess),
                str(r.clipped),
            ]
            if by_channel:
                cells.append(" ".join(f"{c.channel} {fmt(c.excess)}" for c in r.channels))
            table.add_row(*cells)
        tables.append(table)
    _print(console, *tables)
