"""One view of a run's figures in display units, computed once and rendered by every format.

Results hold sums in nats; here each figure is scaled to the report's unit and each mean is
derived (sum / pixels) in one place, so the text summary, CSV, JSON, JUnit, Markdown and GitHub
outputs can never disagree about a number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ..metrics import Sums
from ..model import ImageResult, Settings, Summary, channel_names, group_of, groups, worst

if TYPE_CHECKING:
    from ..gates import Verdict


def scaled(s: Sums, k: float) -> tuple[float, float, float, float, float, float]:
    """The means per pixel (NaN without pixels) and the sums of BCE, entropy and excess, in
    display units (k: the multiplier from nats): the figures every row of a view shows."""
    n = s.pixels
    means = (s.bce / n * k, s.entropy / n * k, s.excess / n * k) if n else (math.nan,) * 3
    return (*means, s.bce * k, s.entropy * k, s.excess * k)


@dataclass(frozen=True)
class ChannelRow:
    """One channel's figures in display units (R, G, B, A, grey or an index): of one image,
    or over every image that has a channel of that name."""

    channel: str
    pixels: int
    bce: float
    entropy: float
    excess: float
    bce_sum: float
    entropy_sum: float
    excess_sum: float
    clipped: int
    sums_nats: Sums

    @classmethod
    def of(cls, channel: str, s: Sums, k: float) -> ChannelRow:
        return cls(channel, s.pixels, *scaled(s, k), s.clipped, s)


@dataclass(frozen=True)
class ImageRow:
    """One pair's figures in display units; NaN (and None for counts) where it failed."""

    name: str
    target: str
    recon: str
    shape: tuple[int, int, int] | None
    pixels: int | None
    bce: float
    entropy: float
    excess: float
    bce_sum: float
    entropy_sum: float
    excess_sum: float
    clipped: int | None
    error: str | None
    culprit: str | None = None  # the file a failed pair's error is about, where known
    baseline_excess: float | None = None  # with --baseline: the image's excess there
    excess_delta: float | None = None  # and how much it grew since
    channels: tuple[ChannelRow, ...] = ()  # with --per-channel
    group: str | None = None  # with --group-by

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> str:
        return "ok" if self.ok else "error"


@dataclass(frozen=True)
class Overall:
    """The overall figures in display units: pixel-weighted means, sums and counts."""

    units: str
    pairs: int  # evaluated
    failed: int
    pixels: int
    bce: float
    entropy: float
    excess: float
    bce_sum: float
    entropy_sum: float
    excess_sum: float
    clipped: int
    excess_median: float  # of the per-image means
    excess_p95: float
    excess_max: float
    worst: str | None  # the name of the image with the largest excess


@dataclass(frozen=True)
class GroupRow:
    """One group's figures (--group-by) in display units, as a run over its pairs alone."""

    group: str
    pairs: int  # evaluated
    failed: int
    pixels: int
    bce: float
    entropy: float
    excess: float
    bce_sum: float
    entropy_sum: float
    excess_sum: float
    clipped: int
    excess_median: float
    excess_max: float
    worst: str | None


class View:
    """A run's figures as every format shows them."""

    def __init__(
        self,
        results: Sequence[ImageResult],
        summary: Summary,
        settings: Settings,
        verdict: Verdict | None = None,
        *,
        layouts: tuple[str, ...] = (),
    ) -> None:
        self.results, self.summary, self.settings, self.verdict = results, summary, settings, verdict
        self.units = settings.display.units
        self.scale = settings.display.scale
        self.layouts = layouts  # of the batch files read, to state

    @cached_property
    def overall(self) -> Overall:
        s, t, k = self.summary, self.summary.totals, self.scale
        bce, entropy, excess, bce_sum, entropy_sum, excess_sum = scaled(t, k)
        return Overall(
            units=self.units,
            pairs=s.pairs,
            failed=s.failed,
            pixels=t.pixels,
            bce=bce,
            entropy=entropy,
            excess=excess,
            bce_sum=bce_sum,
            entropy_sum=entropy_sum,
            excess_sum=excess_sum,
            clipped=t.clipped,
            excess_median=s.excess_median * k,
            excess_p95=s.excess_p95 * k,
            excess_max=s.excess_max * k,
            worst=s.worst.name if s.worst else None,
        )

    @cached_property
    def _baseline(self) -> dict[str, tuple[float, float]]:
        b = self.verdict.baseline if self.verdict is not None else None
        if b is None:
            return {}
        k = self.scale
        return {name: (before * k, delta * k) for name, (before, delta) in b.per_image.items()}

    @property
    def has_baseline(self) -> bool:
        return self.verdict is not None and self.verdict.baseline is not None

    def row(self, result: ImageResult) -> ImageRow:
        k, s = self.scale, result.sums
        before, delta = self._baseline.get(result.name, (None, None))
        levels = self.settings.display.levels
        group = group_of(result.name, levels) if levels is not None else None
        if s is None:
            nan = math.nan
            error = result.error or "error"
            return ImageRow(
                result.name, result.target, result.recon, result.shape,
                None, nan, nan, nan, nan, nan, nan, None, error, result.culprit, before, delta,
                group=group,
            )  # fmt: skip
        channels: tuple[ChannelRow, ...] = ()
        if result.channels is not None:
            names = channel_names(len(result.channels))
            channels = tuple(ChannelRow.of(n, c, k) for n, c in zip(names, result.channels, strict=True))
        return ImageRow(
            result.name,
            result.target,
            result.recon,
            result.shape,
            s.pixels,
            *scaled(s, k),
            s.clipped,
            None,
            None,
            before,
            delta,
            channels,
            group,
        )

    @cached_property
    def channels(self) -> list[ChannelRow]:
        """Each channel's figures over the run (grey, R, G, B, A, then indices), when every
        evaluated image recorded its channels (--per-channel)."""
        return [ChannelRow.of(name, sums, self.scale) for name, sums in self.summary.channels]

    @cached_property
    def channel_columns(self) -> list[str]:
        """The channel names any image has, in order: the CSV's per-channel columns."""
        return [row.channel for row in self.channels]

    @cached_property
    def groups(self) -> list[GroupRow]:
        """Each group's figures (--group-by), groups in name order; [] without --group-by."""
        levels = self.settings.display.levels
        if levels is None:
            return []
        k, rows = self.scale, []
        for g in groups(self.results, levels):
            s, t = g.summary, g.summary.totals
            rows.append(
                GroupRow(
                    g.name,
                    s.pairs,
                    s.failed,
                    t.pixels,
                    *scaled(t, k),
                    t.clipped,
                    s.excess_median * k,
                    s.excess_max * k,
                    s.worst.name if s.worst else None,
                )
            )
        return rows

    @cached_property
    def channel_count(self) -> int:
        """The most channels an evaluated image has (0 if none was evaluated)."""
        return max((r.shape[2] for r in self.results if r.ok and r.shape), default=0)

    @cached_property
    def hint(self) -> str | None:
        """What probably went wrong, when most pairs failed for one reason (bce_eval.hints)."""
        from ..hints import hint

        return hint(self.results, self.settings)

    @cached_property
    def rows(self) -> list[ImageRow]:
        """Every pair, failed ones included, in the run's order."""
        return [self.row(r) for r in self.results]

    @cached_property
    def worst(self) -> list[ImageRow]:
        """The settings' ``top`` evaluated pairs with the highest excess, worst first."""
        return [self.row(r) for r in worst(self.results, self.settings.display.top)]

    @cached_property
    def failed(self) -> list[ImageRow]:
        return [self.row(r) for r in self.results if not r.ok]

    def breakdowns(self) -> list[Breakdown]:
        """The per-group and per-channel tables, where the run has them (for the HTML page)."""
        per = f"{self.units} per pixel"
        tables = []
        if self.groups:
            tables.append(
                Breakdown(
                    f"By group ({per})",
                    ("group", "pairs", "failed", "BCE", "H", "excess", "median", "max"),
                    [
                        (
                            g.group,
                            f"{g.pairs:,}",
                            f"{g.failed:,}",
                            g.bce,
                            g.entropy,
                            g.excess,
                            g.excess_median,
                            g.excess_max,
                        )
                        for g in self.groups
                    ],
                )
            )
        if len(self.channels) > 1:
            tables.append(
                Breakdown(
                    f"By channel ({per})",
                    ("channel", "values", "BCE", "H", "excess"),
                    [(c.channel, f"{c.pixels:,}", c.bce, c.entropy, c.excess) for c in self.channels],
                )
            )
        return tables


@dataclass(frozen=True)
class Breakdown:
    """A further table of the figures: a title, column names and rows of text or numbers."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
