"""The summary for people: the overall figures and the worst images as rich tables."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import printable
from .ci import fmt, verdict_lines
from .view import View


def print_summary(console: Console, view: View) -> None:
    """Counts, the convention, the overall figures, the worst images and the verdict."""
    o = view.overall
    console.print(
        f"[bold]bce-eval[/]: {o.pairs + o.failed} pairs, {o.pairs} evaluated, {o.failed} failed; "
        f"{o.pixels:,} values (pixels x channels)"
    )
    console.print(f"convention: {escape(view.settings.scoring.describe())}")
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
    overall.add_row("Clipped preds", f"{o.clipped:,}", f"of {o.pixels:,}, moved into range by the convention")
    console.print(overall)
    if view.worst:
        table = Table(
            title=f"Worst {len(view.worst)} by excess ({view.units} per pixel)", title_justify="left"
        )
        for column in ("#", "image", "size", "BCE", "H", "excess", "clipped"):
            table.add_column(column, justify="left" if column == "image" else "right")
        for rank, r in enumerate(view.worst, start=1):
            table.add_row(
                str(rank),
                escape(printable(r.name)),
                "x".join(map(str, r.shape or ())),
                fmt(r.bce),
                fmt(r.entropy),
                fmt(r.excess),
                str(r.clipped),
            )
        console.print(table)
    if view.verdict is not None:
        for line in verdict_lines(view.verdict, view.scale):
            console.print(line, markup=False, soft_wrap=True)
