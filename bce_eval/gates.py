"""Quality gates, comparison with a baseline report, and the verdict; shards of a pair list.

Thresholds are in the report's unit (nats or bits per pixel). A gate fails when the measured
figure is strictly above its threshold; a figure that cannot be measured (no pixel evaluated)
fails no gate, since input errors already make the run exit 2.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .report import ImageResult, ReportError, Settings, StoredReport, Summary, Units, unit_scale, worst


@dataclass(frozen=True)
class Thresholds:
    """The gates asked for; None where a gate is not used. Figures in the report's unit."""

    max_excess: float | None = None
    max_image_excess: float | None = None
    max_bce: float | None = None
    max_regression: float | None = None  # a fraction: 0.05 allows 5 % more overall excess


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
    over: int = 0  # for --max-image-excess: how many images are over the threshold


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

    def image_columns(self) -> dict[str, dict[str, float | None]]:
        """Per-image baseline figures for the reports, in the report's unit, by image name."""
        if self.baseline is None:
            return {}
        scale = unit_scale(self.units)
        return {
            name: {"baseline_excess": before * scale, "excess_delta": delta * scale}
            for name, (before, delta) in self.baseline.per_image.items()
        }

    def to_json(self) -> dict[str, Any]:
        """The "gates" and "baseline" sections of the JSON report."""
        scale = unit_scale(self.units)
        sections: dict[str, Any] = {
            "verdict": "pass" if self.passed else "fail",
            "gates": [
                {
                    "gate": g.option,
                    "figure": g.figure,
                    "threshold": g.threshold,
                    "measured": g.measured,
                    "passed": g.passed,
                    "worst": [{"name": o.name, "value": o.value} for o in g.offenders],
                }
                for g in self.gates
            ],
        }
        b = self.baseline
        if b is not None:
            sections["baseline"] = {
                "path": b.path,
                "excess": b.excess_before * scale,
                "excess_now": b.excess_now * scale,
                "growth": b.growth,
                "added": b.added,
                "removed": b.removed,
            }
        return sections


def _convention(s: Settings) -> tuple[Any, ...]:
    """What decides how a prediction is scored: eps matters only to the keras clip."""
    if s.logits:
        return ("logits",)
    return (s.convention, s.eps) if s.convention == "keras" else (s.convention,)


def settings_difference(a: Settings, b: Settings) -> str | None:
    """'convention X vs Y, ...' where a and b would score the same pair differently; None if
    they would not (units convert; backend and device give the same figures)."""
    differences = []
    if _convention(a) != _convention(b):
        differences.append(f"convention {a.describe_convention()} vs {b.describe_convention()}")
    if a.alpha != b.alpha:
        differences.append(f"alpha {a.alpha} vs {b.alpha}")
    if a.grayscale != b.grayscale:
        differences.append(f"grayscale {a.grayscale} vs {b.grayscale}".lower())
    return ", ".join(differences) or None


def compare_with_baseline(
    results: Sequence[ImageResult], summary: Summary, settings: Settings, baseline: StoredReport
) -> BaselineComparison:
    """Overall and per-image excess against the baseline's; ReportError if its settings differ.

    A CSV baseline records only its unit, so its other settings are taken on trust. A baseline in
    another unit is converted (exactly, through its sums in nats).
    """
    check_baseline(baseline, settings)
    before = {r.name: r.excess for r in baseline.results if r.ok}
    now = {r.name: r.excess for r in results if r.ok}
    return BaselineComparison(
        path=baseline.path,
        excess_before=Summary.of(baseline.results).mean("excess"),
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
    top: int = 10,
) -> Verdict:
    """Each gate asked for, with its measured figure and its worst offending images."""
    scale = unit_scale(settings.units)
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
    return Verdict(settings.units, gates, baseline)


PairT = TypeVar("PairT")


def shard_of(name: str, count: int) -> int:
    """The shard (1 to count) a pair belongs to: CRC-32 of its name, modulo count, plus 1.

    A stable hash of the name alone: the same on every machine and Python version, and adding or
    removing images never moves the others to another shard.
    """
    return zlib.crc32(name.encode("utf-8")) % count + 1


def select_shard(pairs: Sequence[PairT], shard: tuple[int, int], name: Any) -> list[PairT]:
    """The pairs of shard (index, count), in their order; ``name`` gives a pair's name."""
    index, count = shard
    return [p for p in pairs if shard_of(name(p), count) == index]


def check_settings(baseline: StoredReport, settings: Settings) -> None:
    """ReportError if the baseline was made with settings that score pairs differently.

    A CSV baseline records only its unit, so its other settings are taken on trust.
    """
    if baseline.settings is None:
        return
    difference = settings_difference(baseline.settings, settings)
    if difference:
        raise ReportError(
            baseline.path,
            f"made with other settings than this run ({difference}); its figures are not comparable",
        )


def check_baseline(baseline: StoredReport, settings: Settings) -> None:
    """ReportError if the baseline cannot be compared with: other settings, or no pixel evaluated.

    A baseline without evaluated pixels (no rows, or every pair failed) has no overall excess; any
    growth measured against it would be NaN, which passes every gate.
    """
    check_settings(baseline, settings)
    if not any(r.sums and r.sums.pixels for r in baseline.results):
        raise ReportError(baseline.path, "no image was evaluated in it: there is no excess to compare with")
