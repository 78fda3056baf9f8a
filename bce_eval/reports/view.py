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
from typing import TYPE_CHECKING

from ..model import ImageResult, Settings, Summary, worst

if TYPE_CHECKING:
    from ..gates import Verdict


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


class View:
    """A run's figures as every format shows them."""

    def __init__(
        self,
        results: Sequence[ImageResult],
        summary: Summary,
        settings: Settings,
        verdict: Verdict | None = None,
    ) -> None:
        self.results, self.summary, self.settings, self.verdict = results, summary, settings, verdict
        self.units = settings.display.units
        self.scale = settings.display.scale

    @cached_property
    def overall(self) -> Overall:
        s, t, k = self.summary, self.summary.totals, self.scale
        return Overall(
            units=self.units,
            pairs=s.pairs,
            failed=s.failed,
            pixels=t.pixels,
            bce=s.mean("bce") * k,
            entropy=s.mean("entropy") * k,
            excess=s.mean("excess") * k,
            bce_sum=t.bce * k,
            entropy_sum=t.entropy * k,
            excess_sum=t.excess * k,
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
        if s is None:
            nan = math.nan
            error = result.error or "error"
            return ImageRow(
                result.name, result.target, result.recon, result.shape,
                None, nan, nan, nan, nan, nan, nan, None, error, result.culprit, before, delta,
            )  # fmt: skip
        return ImageRow(
            result.name,
            result.target,
            result.recon,
            result.shape,
            s.pixels,
            result.mean("bce") * k,
            result.mean("entropy") * k,
            result.mean("excess") * k,
            s.bce * k,
            s.entropy * k,
            s.excess * k,
            s.clipped,
            None,
            None,
            before,
            delta,
        )

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
