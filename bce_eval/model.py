"""The data every part of bce-eval shares: settings, one pair's result, and the summary.

Settings come in four parts, by what they decide:

- ``Scoring``: how a prediction is turned into figures (convention, eps, logits);
- ``Reading``: how files become pixels (alpha, grayscale);
- ``Execution``: where and how the work runs (array library, device, workers); it never changes
  a figure;
- ``Display``: how figures are shown (units, how many worst images).

Results hold sums and counts in nats, never averages: they merge exactly across images, shards
and machines, and display units are applied only when figures are shown (reports.view).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .errors import OptionError
from .metrics import CONVENTIONS, KERAS_EPSILON, Sums

Units = Literal["nats", "bits"]
Convention = Literal["keras", "torch"]
AlphaMode = Literal["drop", "include"]
Backend = Literal["numpy", "torch"]

UNITS: tuple[str, ...] = ("nats", "bits")
ALPHA_MODES: tuple[str, ...] = ("drop", "include")
BACKENDS: tuple[str, ...] = ("numpy", "torch")


def unit_scale(units: Units) -> float:
    """Multiplier from nats to the chosen unit."""
    return 1.0 if units == "nats" else 1.0 / math.log(2)


def _choice(option: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise OptionError(option, f"must be one of {', '.join(allowed)}, not {value!r}")


@dataclass(frozen=True)
class Scoring:
    """What decides the figures of a pair of pixel arrays."""

    convention: Convention = "keras"
    eps: float = KERAS_EPSILON
    logits: bool = False

    def __post_init__(self) -> None:
        _choice("--convention", self.convention, CONVENTIONS)
        # eps = 0 would make the keras clip a no-op and 0 * log 0 a NaN
        if not (isinstance(self.eps, (int, float)) and 0 < self.eps < 0.5):
            raise OptionError("--eps", f"must be in (0, 0.5), not {self.eps!r}")

    def describe(self) -> str:
        """The convention in words, as the reports state it."""
        if self.logits:
            return "logits (BCEWithLogitsLoss: stable log-sigmoid, no clipping)"
        if self.convention == "keras":
            # repr: --eps 0.4999999 must not read as 0.5; 1 - eps is computed, as the clip uses it
            return f"keras (pred clipped to [{self.eps!r}, {1 - self.eps:.15g}])"
        return "torch (BCELoss: each log floored at -100)"

    def key(self) -> tuple[Any, ...]:
        """What decides how a prediction is scored: eps matters only to the keras clip."""
        if self.logits:
            return ("logits",)
        return (self.convention, self.eps) if self.convention == "keras" else (self.convention,)


@dataclass(frozen=True)
class Reading:
    """How files (or arrays) become pixels in [0, 1]."""

    alpha: AlphaMode = "drop"
    grayscale: bool = False
    # The memory one pair may take, checked from the files' headers before decoding; None:
    # sized for this machine when the run starts (guards.default_max_image_bytes).
    max_image_bytes: int | None = None

    def __post_init__(self) -> None:
        _choice("--alpha", self.alpha, ALPHA_MODES)
        if self.max_image_bytes is not None and not (
            isinstance(self.max_image_bytes, int) and self.max_image_bytes >= 1
        ):
            raise OptionError(
                "--max-image-bytes", f"must be a whole number >= 1, not {self.max_image_bytes!r}"
            )


@dataclass(frozen=True)
class Execution:
    """Where the math runs and how many workers share it; never changes a figure."""

    backend: Backend = "numpy"
    device: str = "cpu"
    workers: int | None = None  # None: one per core

    def __post_init__(self) -> None:
        _choice("--backend", self.backend, BACKENDS)
        if self.workers is not None and not (isinstance(self.workers, int) and self.workers >= 1):
            raise OptionError("--workers", f"must be a whole number >= 1, not {self.workers!r}")


@dataclass(frozen=True)
class Display:
    """How figures are shown."""

    units: Units = "nats"
    top: int = 10  # how many of the worst images to list

    def __post_init__(self) -> None:
        _choice("--units", self.units, UNITS)
        if not (isinstance(self.top, int) and self.top >= 0):
            raise OptionError("--top", f"must be a whole number >= 0, not {self.top!r}")

    @property
    def scale(self) -> float:
        return unit_scale(self.units)


@dataclass(frozen=True)
class Settings:
    """Everything a run was made with; recorded in every report."""

    scoring: Scoring = field(default_factory=Scoring)
    reading: Reading = field(default_factory=Reading)
    execution: Execution = field(default_factory=Execution)
    display: Display = field(default_factory=Display)

    @classmethod
    def of(
        cls,
        *,
        convention: Convention = "keras",
        eps: float = KERAS_EPSILON,
        logits: bool = False,
        alpha: AlphaMode = "drop",
        grayscale: bool = False,
        max_image_bytes: int | None = None,
        backend: Backend = "numpy",
        device: str = "cpu",
        workers: int | None = None,
        units: Units = "nats",
        top: int = 10,
    ) -> Settings:
        """Settings from the options as the command and ``bce_eval.compare`` name them."""
        return cls(
            Scoring(convention, eps, logits),
            Reading(alpha, grayscale, max_image_bytes),
            Execution(backend, device, workers),
            Display(units, top),
        )

    def difference(self, other: Settings) -> str | None:
        """'convention X vs Y, ...' where the two would score the same pair differently; None if
        they would not (units convert; execution never changes a figure)."""
        a, b = self, other
        differences = []
        if a.scoring.key() != b.scoring.key():
            differences.append(f"convention {a.scoring.describe()} vs {b.scoring.describe()}")
        if a.reading.alpha != b.reading.alpha:
            differences.append(f"alpha {a.reading.alpha} vs {b.reading.alpha}")
        if a.reading.grayscale != b.reading.grayscale:
            differences.append(f"grayscale {a.reading.grayscale} vs {b.reading.grayscale}".lower())
        return ", ".join(differences) or None


@dataclass(frozen=True)
class ImageResult:
    """One pair: its sums (in nats), or the one-line error that kept it from being evaluated."""

    name: str
    target: str
    recon: str
    shape: tuple[int, int, int] | None = None
    sums: Sums | None = None
    error: str | None = None
    culprit: str | None = None  # the file a failed pair's error is about, where known

    @property
    def ok(self) -> bool:
        return self.sums is not None

    @property
    def status(self) -> str:
        return "ok" if self.ok else "error"

    @property
    def excess(self) -> float:
        """Mean excess per pixel in nats (NaN for a failed pair)."""
        return self.sums.excess / self.sums.pixels if self.sums and self.sums.pixels else math.nan

    def mean(self, figure: str) -> float:
        """Mean "bce", "entropy" or "excess" per pixel in nats (NaN for a failed pair)."""
        s = self.sums
        return getattr(s, figure) / s.pixels if s and s.pixels else math.nan


@dataclass(frozen=True)
class Summary:
    """Totals (in nats) over the evaluated pairs and the spread of per-image mean excess."""

    pairs: int
    failed: int
    totals: Sums
    excess_median: float = math.nan
    excess_p95: float = math.nan
    excess_max: float = math.nan
    worst: ImageResult | None = None

    @classmethod
    def of(cls, results: Sequence[ImageResult]) -> Summary:
        good = [r for r in results if r.sums is not None]
        sums = [r.sums for r in good if r.sums is not None]
        totals = Sums(
            pixels=sum(s.pixels for s in sums),
            bce=total(s.bce for s in sums),
            entropy=total(s.entropy for s in sums),
            excess=total(s.excess for s in sums),
            clipped=sum(s.clipped for s in sums),
        )
        summary = cls(pairs=len(good), failed=len(results) - len(good), totals=totals)
        scored = [r for r in good if r.sums and r.sums.pixels]
        per_image = np.array([r.excess for r in scored])
        if per_image.size == 0:
            return summary
        worst = int(per_image.argmax())  # the first of equals, as max() would pick
        return cls(
            pairs=summary.pairs,
            failed=summary.failed,
            totals=totals,
            excess_median=median(per_image),
            excess_p95=percentile(per_image, 95),
            excess_max=float(per_image[worst]),
            worst=scored[worst],
        )

    def mean(self, figure: str) -> float:
        """Pixel-weighted mean of "bce", "entropy" or "excess" in nats: total / total pixels."""
        pixels = self.totals.pixels
        return float(getattr(self.totals, figure)) / pixels if pixels else math.nan


def total(values: Iterable[float]) -> float:
    """The correctly rounded sum of non-negative figures (math.fsum), or +inf where it is too
    large for float64: fsum raises OverflowError there, and every term is >= 0."""
    values = list(values)
    try:
        return math.fsum(values)
    except OverflowError:
        return math.inf


# np.median and np.percentile import numpy.ma, a tenth of a quick run's start-up; these give
# their figures, bit for bit (tests/test_report.py).


def median(values: np.ndarray) -> float:
    """np.median of a 1-D array without NaN: the middle value, or the mean of the middle two."""
    ordered = np.sort(values)
    half = ordered.size // 2
    return float(ordered[half] if ordered.size % 2 else (ordered[half - 1] + ordered[half]) / 2)


def percentile(values: np.ndarray, q: float) -> float:
    """np.percentile(values, q) of a 1-D array without NaN, by its default (linear) method."""
    ordered = np.sort(values)
    virtual = (ordered.size - 1) * (q / 100)
    if virtual >= ordered.size - 1:
        return float(ordered[-1])
    below = math.floor(virtual)
    gamma = virtual - below
    a, b = float(ordered[below]), float(ordered[below + 1])
    difference = b - a
    return b - difference * (1 - gamma) if gamma >= 0.5 else a + difference * gamma


def worst(results: Sequence[ImageResult], top: int) -> list[ImageResult]:
    """The ``top`` evaluated pairs with the highest mean excess, worst first."""
    return heapq.nlargest(top, (r for r in results if r.ok), key=lambda r: r.excess)
