"""Per-image results and the overall summary, and their renderings: rich tables, CSV, JSON.

Overall figures are built from per-image sums and pixel counts (pixel-weighted), never from
averages of averages, so results from shards or machines merge exactly.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any, Literal

import numpy as np

from .metrics import KERAS_EPSILON, Sums

Units = Literal["nats", "bits"]

CSV_COLUMNS = (
    "name",
    "target", "recon", "height", "width", "channels", "pixels", "bce", "entropy", "excess",
    "bce_sum", "entropy_sum", "excess_sum", "clipped", "unit", "status", "error",
)  # fmt: skip


def unit_scale(units: Units) -> float:
    """Multiplier from nats to the chosen unit."""
    return 1.0 if units == "nats" else 1.0 / math.log(2)


@dataclass(frozen=True)
class ImageResult:
    """One pair: its sums (in nats), or the one-line error that kept it from being evaluated."""

    name: str
    target: str
    recon: str
    shape: tuple[int, int, int] | None = None
    sums: Sums | None = None
    error: str | None = None

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


@dataclass(frozen=True)
class Summary:
    """Totals over the evaluated pairs and the spread of per-image mean excess."""

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
            bce=math.fsum(s.bce for s in sums),
            entropy=math.fsum(s.entropy for s in sums),
            excess=math.fsum(s.excess for s in sums),
            clipped=sum(s.clipped for s in sums),
        )
        summary = cls(pairs=len(good), failed=len(results) - len(good), totals=totals)
        per_image = np.array([r.excess for r in good if r.sums and r.sums.pixels])
        if per_image.size == 0:
            return summary
        return cls(
            pairs=summary.pairs,
            failed=summary.failed,
            totals=totals,
            excess_median=float(np.median(per_image)),
            excess_p95=float(np.percentile(per_image, 95)),
            excess_max=float(per_image.max()),
            worst=max(good, key=lambda r: r.excess),
        )

    def mean(self, figure: str) -> float:
        """Pixel-weighted mean of "bce", "entropy" or "excess" in nats: total / total pixels."""
        pixels = self.totals.pixels
        return float(getattr(self.totals, figure)) / pixels if pixels else math.nan


def worst(results: Sequence[ImageResult], top: int) -> list[ImageResult]:
    """The ``top`` evaluated pairs with the highest mean excess, worst first."""
    return sorted((r for r in results if r.ok), key=lambda r: r.excess, reverse=True)[:top]


@dataclass(frozen=True)
class Settings:
    """How pairs were read and scored; recorded in every report."""

    convention: Literal["keras", "torch"] = "keras"
    eps: float = KERAS_EPSILON
    logits: bool = False
    units: Units = "nats"
    alpha: Literal["drop", "include"] = "drop"
    grayscale: bool = False
    backend: Literal["numpy", "torch"] = "numpy"
    device: str = "cpu"

    def describe_convention(self) -> str:
        """The convention in words, as the reports state it."""
        if self.logits:
            return "logits (BCEWithLogitsLoss: stable log-sigmoid, no clipping)"
        if self.convention == "keras":
            return f"keras (pred clipped to [{self.eps:g}, 1 - {self.eps:g}])"
        return "torch (BCELoss: each log floored at -100)"


def _row(result: ImageResult, scale: float, units: Units) -> dict[str, Any]:
    """Every column, "" where a failed pair has no value."""
    h, w, c = result.shape or ("", "", "")
    row: dict[str, Any] = dict.fromkeys(CSV_COLUMNS, "")
    row |= {
        "name": result.name,
        "target": result.target,
        "recon": result.recon,
        "height": h,
        "width": w,
        "channels": c,
        "status": result.status,
        "error": result.error or "",
        "unit": units,
    }
    s = result.sums
    if s is not None:
        n = s.pixels
        row.update(
            pixels=n,
            bce=s.bce / n * scale if n else math.nan,
            entropy=s.entropy / n * scale if n else math.nan,
            excess=s.excess / n * scale if n else math.nan,
            bce_sum=s.bce * scale,
            entropy_sum=s.entropy * scale,
            excess_sum=s.excess * scale,
            clipped=s.clipped,
        )
    return row


def write_csv(results: Sequence[ImageResult], out: IO[str], settings: Settings) -> None:
    """One row per pair, failed pairs included, figures at full float64 precision."""
    scale = unit_scale(settings.units)
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerow(
            {
                k: repr(v) if isinstance(v, float) else v
                for k, v in _row(result, scale, settings.units).items()
            }
        )


def _sums_json(sums: Sums, scale: float) -> dict[str, Any]:
    return {
        "pixels": sums.pixels,
        "bce_sum": sums.bce * scale,
        "entropy_sum": sums.entropy * scale,
        "excess_sum": sums.excess * scale,
        "clipped": sums.clipped,
    }


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def to_json(
    results: Sequence[ImageResult], summary: Summary, settings: Settings, version: str
) -> dict[str, Any]:
    """version, settings, summary (sums and counts, and the means derived from them), images."""
    scale = unit_scale(settings.units)
    images = []
    for result in results:
        row = _row(result, scale, settings.units)
        images.append(
            {k: None if v == "" else _finite(v) if isinstance(v, float) else v for k, v in row.items()}
        )
    return {
        "version": version,
        "settings": {
            "convention": settings.convention,
            "eps": settings.eps,
            "logits": settings.logits,
            "units": settings.units,
            "alpha": settings.alpha,
            "grayscale": settings.grayscale,
            "backend": settings.backend,
            "device": settings.device,
            "described": settings.describe_convention(),
            "weighting": "pixel",
        },
        "summary": {
            "pairs": summary.pairs,
            "failed": summary.failed,
            **_sums_json(summary.totals, scale),
            "bce": _finite(summary.mean("bce") * scale),
            "entropy": _finite(summary.mean("entropy") * scale),
            "excess": _finite(summary.mean("excess") * scale),
            "excess_median": _finite(summary.excess_median * scale),
            "excess_p95": _finite(summary.excess_p95 * scale),
            "excess_max": _finite(summary.excess_max * scale),
            "worst": summary.worst.target if summary.worst else None,
        },
        "images": images,
    }


def write_json(document: dict[str, Any], out: IO[str]) -> None:
    json.dump(document, out, indent=2, allow_nan=False)
    out.write("\n")
