"""Quality gates, comparison with a baseline report, and the verdict.

Thresholds are in the report's unit (nats or bits per pixel). A gate fails when the measured
figure is strictly above its threshold; a figure that cannot be measured (no pixel evaluated)
fails no gate, since input errors already make the run exit 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import OptionError, ReportError
from .model import ImageResult, Settings, Summary, Units, groups, worst

if TYPE_CHECKING:
    from .pipeline import Report


@dataclass(frozen=True)
class Thresholds:
    """The gates asked for; None where a gate is not used. Figures in the report's unit."""

    max_excess: float | None = None
    max_image_excess: float | None = None
    max_bce: float | None = None
    max_regression: float | None = None  # a fraction: 0.05 allows 5 % more overall excess
    max_group_excess: float | None = None  # with --group-by: any group's pixel-weighted excess

    def __post_init__(self) -> None:
        for option, value in vars(self).items():
            if value is not None and not (isinstance(value, (int, float)) and value >= 0):
                raise OptionError(f"--{option.replace('_', '-')}", f"must be a number >= 0, not {value!r}")

    @property
    def any(self) -> bool:
        return any(value is not None for value in vars(self).values())


@dataclass(frozen=True)
class Offender:
    name: str
    value: float  # in the report's unit; for the regression gate, the growth of the image's excess


@dataclass(frozen=True)
class GateResult:
    option: str  # the option that set it, e.g. "--max-excess"
    figure: str  # what was measured, e.g. "overall excess"
    threshold: float
    measured: float
    passed: bool
    offenders: tuple[Offender, ...] = ()  # worst first, at most --top of them
    over: int = 0  # for --max-image-excess and --max-group-excess: how many are over the threshold


@dataclass(frozen=True)
class BaselineComparison:
    """This run against a report written earlier: overall excess and per-image deltas, in nats."""

    path: str
    excess_before: float
    excess_now: float
    per_image: dict[str, tuple[float, float]]  # name -> (excess in the baseline, delta), both here
    added: list[str]  # evaluated now, not in the baseline
    removed: list[str]  # evaluated in the baseline, not now

    @property
    def growth(self) -> float:
        """(now - before) / before; +inf when a baseline of excess 0 now has some, 0 if still 0."""
        if self.excess_before == 0:
            return 0.0 if self.excess_now == 0 else math.inf
        return (self.excess_now - self.excess_before) / self.excess_before


@dataclass(frozen=True)
class Verdict:
    units: Units
    gates: list[GateResult] = field(default_factory=list)
    baseline: BaselineComparison | None = None

    @property
    def failed(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed]

    @property
    def passed(self) -> bool:
        return not self.failed


def compare_with_baseline(
    results: Sequence[ImageResult], summary: Summary, settings: Settings, baseline: Report
) -> BaselineComparison:
    """Overall and per-image excess against the baseline's; ReportError if its settings differ.

    A CSV baseline records only its unit, so its other settings are taken on trust. A baseline in
    another unit is converted (exactly, through its sums in nats).
    """
    check_baseline(baseline, settings)
    before = {r.name: r.excess for r in baseline.images if r.ok}
    now = {r.name: r.excess for r in results if r.ok}
    return BaselineComparison(
        path=baseline.source or "baseline",
        excess_before=baseline.stats.mean("excess"),
        excess_now=summary.mean("excess"),
        per_image={name: (before[name], now[name] - before[name]) for name in now if name in before},
        added=[name for name in now if name not in before],
        removed=[name for name in before if name not in now],
    )


def check(
    results: Sequence[ImageResult],
    summary: Summary,
    settings: Settings,
    thresholds: Thresholds,
    *,
    baseline: BaselineComparison | None = None,
) -> Verdict:
    """Each gate asked for, with its measured figure (in the report's unit) and its worst
    offending images, at most the settings' ``top`` of them."""
    scale, top = settings.display.scale, settings.display.top
    gates = []
    evaluated = [r for r in results if r.sums is not None and r.sums.pixels]

    def ranked(figure: str, limit: float = -math.inf) -> tuple[Offender, ...]:
        """Images whose mean ``figure`` in the report's unit is above limit, highest first."""
        values = [(r.name, getattr(r.sums, figure) / r.sums.pixels * scale) for r in evaluated if r.sums]
        over = sorted((item for item in values if item[1] > limit), key=lambda item: item[1], reverse=True)
        return tuple(Offender(name, value) for name, value in over)

    if thresholds.max_excess is not None:
        measured = summary.mean("excess") * scale
        offenders = tuple(Offender(r.name, r.excess * scale) for r in worst(evaluated, top))
        gates.append(
            GateResult(
                "--max-excess",
                "overall excess",
                thresholds.max_excess,
                measured,
                not measured > thresholds.max_excess,
                offenders,
            )
        )
    if thresholds.max_image_excess is not None:
        over = ranked("excess", thresholds.max_image_excess)
        gates.append(
            GateResult(
                "--max-image-excess",
                "largest image excess",
                thresholds.max_image_excess,
                summary.excess_max * scale,
                not over,
                over[:top],
                len(over),
            )
        )
    if thresholds.max_bce is not None:
        measured = summary.mean("bce") * scale
        by_bce = ranked("bce")
        gates.append(
            GateResult(
                "--max-bce",
                "overall BCE",
                thresholds.max_bce,
                measured,
                not measured > thresholds.max_bce,
                by_bce[:top],
            )
        )
    levels = settings.display.levels
    if thresholds.max_group_excess is not None and levels is not None:
        # Every group over the threshold is named: groups are few, and each is a finding.
        excess = [
            (g.name, g.summary.mean("excess") * scale)
            for g in groups(results, levels)
            if g.summary.totals.pixels
        ]
        over_groups = sorted((item for item in excess if item[1] > thresholds.max_group_excess),
                             key=lambda item: item[1], reverse=True)  # fmt: skip
        gates.append(
            GateResult(
                "--max-group-excess",
                "largest group excess",
                thresholds.max_group_excess,
                max((value for _, value in excess), default=math.nan),
                not over_groups,
                tuple(Offender(name, value) for name, value in over_groups),
                len(over_groups),
            )
        )
    if thresholds.max_regression is not None and baseline is not None:
        frac = thresholds.max_regression
        grown = sorted(
            ((name, delta * scale) for name, (_, delta) in baseline.per_image.items() if delta > 0),
            key=lambda item: item[1],
            reverse=True,
        )
        gates.append(
            GateResult(
                "--max-regression",
                "growth of overall excess",
                frac,
                baseline.growth,
                not baseline.excess_now > baseline.excess_before * (1 + frac),
                tuple(Offender(name, delta) for name, delta in grown[:top]),
            )
        )
    return Verdict(settings.display.units, gates, baseline)


def check_baseline(baseline: Report, settings: Settings) -> None:
    """ReportError if the baseline cannot be compared with: made with settings that score pairs
    differently, or without an evaluated pixel.

    A CSV baseline records only its unit, so its other settings are taken on trust. A baseline
    without evaluated pixels (no rows, or every pair failed) has no overall excess; any growth
    measured against it would be NaN, which passes every gate.
    """
    where = baseline.source or "baseline"
    difference = baseline.settings.difference(settings) if baseline.settings_recorded else None
    if difference:
        raise ReportError(
            where, f"made with other settings than this run ({difference}); its figures are not comparable"
        )
    if not any(r.sums and r.sums.pixels for r in baseline.images):
        raise ReportError(where, "no image was evaluated in it: there is no excess to compare with")
