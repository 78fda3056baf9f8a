"""Per-image results and the overall summary, and their renderings: rich tables, CSV, JSON.

Overall figures are built from per-image sums and pixel counts (pixel-weighted), never from
averages of averages, so results from shards or machines merge exactly.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

from .metrics import KERAS_EPSILON, Sums

Units = Literal["nats", "bits"]

# The layout of the JSON report. Readers (--baseline, merge) refuse a higher number: a newer
# bce-eval wrote it, and figures it added could be misread. 1 added "format", "shard" and the
# per-image "sums_nats" that make merged totals exact whatever --units a shard used.
REPORT_FORMAT = 1

# A file name that is not UTF-8 comes from os.fsdecode() with its bytes as surrogate escapes; text
# reports write those bytes back (and CSV reports are read with them), so the name is the file's.
REPORT_ERRORS = "surrogateescape"

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
            # repr: --eps 0.4999999 must not read as 0.5; 1 - eps is computed, as the clip uses it
            return f"keras (pred clipped to [{self.eps!r}, {1 - self.eps:.15g}])"
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


def write_csv(
    results: Sequence[ImageResult],
    out: IO[str],
    settings: Settings,
    *,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
    extra_columns: Sequence[str] = (),
) -> None:
    """One row per pair, failed pairs included, figures at full float64 precision.

    ``extra`` adds ``extra_columns`` by image name (the baseline deltas), empty where absent.
    """
    scale = unit_scale(settings.units)
    writer = csv.DictWriter(out, (*CSV_COLUMNS, *extra_columns), lineterminator="\n")
    writer.writeheader()
    for result in results:
        row = _row(result, scale, settings.units)
        added = (extra or {}).get(result.name, {})
        row.update({c: "" if added.get(c) is None else added[c] for c in extra_columns})
        writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})


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


def settings_json(settings: Settings) -> dict[str, Any]:
    return {
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
    }


def to_json(
    results: Sequence[ImageResult],
    summary: Summary,
    settings: Settings,
    version: str,
    *,
    shard: tuple[int, int] | None = None,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
    sections: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """format, version, settings, shard, summary (sums and counts, and the means derived from
    them), images, and any further ``sections`` (baseline, gates).

    Each image also carries its sums in nats (``sums_nats``): scaling to bits and back is not
    exact in floating point, and merged totals must be exactly those of a single run.
    """
    scale = unit_scale(settings.units)
    images = []
    for result in results:
        row = _row(result, scale, settings.units)
        image = {k: None if v == "" else _finite(v) if isinstance(v, float) else v for k, v in row.items()}
        s = result.sums
        image["sums_nats"] = None if s is None else {"bce": s.bce, "entropy": s.entropy, "excess": s.excess}
        image.update((extra or {}).get(result.name, {}))
        images.append(image)
    return {
        "format": REPORT_FORMAT,
        "version": version,
        "settings": settings_json(settings),
        "shard": f"{shard[0]}/{shard[1]}" if shard else None,
        "summary": {
            "pairs": summary.pairs,
            "failed": summary.failed,
            **_sums_json(summary.totals, scale),
            "bce": summary.mean("bce") * scale,
            "entropy": summary.mean("entropy") * scale,
            "excess": summary.mean("excess") * scale,
            "excess_median": summary.excess_median * scale,
            "excess_p95": summary.excess_p95 * scale,
            "excess_max": summary.excess_max * scale,
            "worst": summary.worst.name if summary.worst else None,
        },
        "images": images,
        **(sections or {}),
    }


def _json_safe(value: Any) -> Any:
    """The document with every non-finite float as null: JSON has no inf or NaN."""
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(document: dict[str, Any], out: IO[str]) -> None:
    """Write the document; inf and NaN anywhere in it (a sum that overflowed) become null.

    The text is ASCII: every other character is a \\u escape, so a name that is not UTF-8 (its
    bytes as lone surrogates, \\udcff for 0xff) is still valid JSON and reads back as it was.
    """
    json.dump(_json_safe(document), out, indent=2, allow_nan=False)
    out.write("\n")


class ReportError(Exception):
    """A report cannot be written, or a report given to read is not one bce-eval can use."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = str(path), problem


def _new_file_mode(target: Path) -> int:
    """The mode the report would get from open(): the old file's, or 0o666 less the umask."""
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def atomic_output(path: str) -> Iterator[IO[str]]:
    """A text stream for a report that replaces ``path`` only once it is complete.

    The report is written to a temporary file beside ``path``, flushed to disk and renamed over
    it, so an interrupted or failed run leaves the old report as it was and no partial one. '-' is
    stdout; an existing path that is not a regular file (a device, a pipe) is written directly.

    Reports are UTF-8, on stdout too, whatever the locale. A file name that is not UTF-8 reaches
    Python as a str with surrogate escapes; it is written back as the bytes it has on disk
    (errors="surrogateescape"). Any OSError, on open or on a write, and any text that still cannot
    be encoded, becomes a ReportError.
    """
    target = Path(path)
    try:
        if path == "-":
            with _stdout_as_report() as f:
                yield f
        elif target.exists() and not target.is_file():
            with target.open("w", newline="", encoding="utf-8", errors=REPORT_ERRORS) as f:
                yield f
        else:
            fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
            try:
                os.chmod(temporary, _new_file_mode(target))
                with os.fdopen(fd, "w", newline="", encoding="utf-8", errors=REPORT_ERRORS) as f:
                    yield f
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temporary, target)
            except BaseException:
                with suppress(OSError):
                    os.unlink(temporary)
                raise
    except OSError as e:
        raise ReportError(_where(path), f"cannot write: {e.strerror or e}") from None
    except UnicodeEncodeError as e:
        text = e.object[e.start : e.end]
        raise ReportError(_where(path), f"cannot write {text!r}: not encodable as {e.encoding}") from None


def _where(path: str) -> str:
    return "stdout" if path == "-" else path


@contextmanager
def _stdout_as_report() -> Iterator[IO[str]]:
    """stdout as a report file would be written: UTF-8, names kept as their bytes.

    sys.stdout's own encoding and error handler follow the locale (strict under most of them), so
    the report's bytes go to its binary buffer through a wrapper that is detached, not closed.
    """
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a text-only stream put in place of stdout
        yield sys.stdout
        sys.stdout.flush()
        return
    out = io.TextIOWrapper(buffer, encoding="utf-8", errors=REPORT_ERRORS, newline="")
    try:
        yield out
        out.flush()
    finally:
        out.detach()


@dataclass(frozen=True)
class StoredReport:
    """A report written earlier, read back: its results (sums in nats) and what it records.

    A CSV report records only its unit, so ``settings`` is None for one; ``exact`` says whether
    the sums in nats are exactly those the run had (JSON since format 1, and any report in nats).
    """

    path: str
    units: Units
    results: list[ImageResult]
    settings: Settings | None
    shard: tuple[int, int] | None
    exact: bool


_CHOICES: dict[str, tuple[Any, ...]] = {
    "convention": ("keras", "torch"),
    "units": ("nats", "bits"),
    "alpha": ("drop", "include"),
    "backend": ("numpy", "torch"),
}


def _settings_from_json(recorded: Any) -> Settings:
    if not isinstance(recorded, dict):
        raise ValueError("settings is not an object")
    for key, allowed in _CHOICES.items():
        if recorded.get(key) not in allowed:
            raise ValueError(f"settings.{key} is {recorded.get(key)!r}, not one of {', '.join(allowed)}")
    eps = recorded.get("eps")
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < eps < 0.5:
        raise ValueError(f"settings.eps is {eps!r}, not a number in (0, 0.5)")
    for key in ("logits", "grayscale"):
        if not isinstance(recorded.get(key), bool):
            raise ValueError(f"settings.{key} is {recorded.get(key)!r}, not true or false")
    return Settings(
        convention=recorded["convention"],
        eps=float(eps),
        logits=recorded["logits"],
        units=recorded["units"],
        alpha=recorded["alpha"],
        grayscale=recorded["grayscale"],
        backend=recorded["backend"],
        device=str(recorded.get("device", "cpu")),
    )


def _sum(value: Any) -> float:
    # Every term of every sum is >= 0, so a sum the report wrote as null overflowed to +inf.
    return math.inf if value is None else float(value)


def _result(image: Mapping[str, Any], scale: float, nats: Mapping[str, Any] | None) -> ImageResult:
    name, target, recon = str(image["name"]), str(image["target"] or ""), str(image["recon"] or "")
    if image["status"] != "ok":
        return ImageResult(name, target, recon, error=str(image.get("error") or "error"))
    shape = (int(image["height"]), int(image["width"]), int(image["channels"]))
    if nats is None:
        nats = {k: _sum(image[f"{k}_sum"]) / scale for k in ("bce", "entropy", "excess")}
    sums = Sums(
        pixels=int(image["pixels"]),
        bce=_sum(nats["bce"]),
        entropy=_sum(nats["entropy"]),
        excess=_sum(nats["excess"]),
        clipped=int(image["clipped"]),
    )
    return ImageResult(name, target, recon, shape, sums)


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' as (I, N), 1 <= I <= N."""
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise ValueError(f"expected I/N with 1 <= I <= N, e.g. 1/4, not {text!r}")
    return int(index), int(count)


def _read_json(path: Path, text: str) -> StoredReport:
    try:
        document = json.loads(text)
    except ValueError as e:
        raise ReportError(path, f"not valid JSON ({e})") from None
    except RecursionError:
        raise ReportError(path, "not a bce-eval JSON report (nested too deeply to read)") from None
    if not isinstance(document, dict) or not {"settings", "images"} <= document.keys():
        raise ReportError(path, "not a bce-eval JSON report (it has no settings and images)")
    version = document.get("format", 0)
    if not isinstance(version, int) or version > REPORT_FORMAT:
        raise ReportError(
            path,
            f"report format {version!r} is newer than the {REPORT_FORMAT} this bce-eval reads; "
            "upgrade bce-eval",
        )
    try:
        settings = _settings_from_json(document["settings"])
        scale = unit_scale(settings.units)
        results = [_result(image, scale, image.get("sums_nats")) for image in document["images"]]
        shard = parse_shard(document["shard"]) if document.get("shard") else None
    except KeyError as e:
        raise ReportError(path, f"not a bce-eval JSON report: an image has no {e.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as e:
        raise ReportError(path, f"not a bce-eval JSON report: {e}") from None
    exact = version >= 1 or settings.units == "nats"
    return StoredReport(str(path), settings.units, results, settings, shard, exact)


def _read_csv(path: Path, text: str) -> StoredReport:
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))  # a quoted name may hold a newline
    except csv.Error as e:
        raise ReportError(path, f"not a CSV report ({e})") from None
    needed = {"name", "status", "pixels", "bce_sum", "entropy_sum", "excess_sum", "clipped", "unit"}
    if rows and not needed <= rows[0].keys():
        missing = ", ".join(sorted(needed - rows[0].keys()))
        raise ReportError(path, f"not a bce-eval CSV report (no column {missing})")
    units = {row["unit"] for row in rows} or {"nats"}
    if len(units) > 1 or not units <= {"nats", "bits"}:
        raise ReportError(path, f"not a bce-eval CSV report: unit {', '.join(sorted(units))}")
    unit: Units = "bits" if units == {"bits"} else "nats"
    scale = unit_scale(unit)
    try:
        results = [_result({k: v if v != "" else None for k, v in row.items()}, scale, None) for row in rows]
    except (KeyError, TypeError, ValueError) as e:
        raise ReportError(path, f"not a bce-eval CSV report: {e}") from None
    return StoredReport(str(path), unit, results, None, None, unit == "nats")


def read_report(path: Path) -> StoredReport:
    """A CSV or JSON report written by bce-eval (JSON if the name ends in .json or the text is
    an object); ReportError if it cannot be read or is not one."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ReportError(path, f"cannot read: {e.strerror or e}") from None
    try:
        text, utf8 = data.decode("utf-8"), True
    except UnicodeDecodeError:  # a CSV report holds a name that is not UTF-8 as its bytes
        text, utf8 = data.decode("utf-8", REPORT_ERRORS), False
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        if not utf8:  # JSON reports are ASCII
            raise ReportError(path, "not a bce-eval report (not UTF-8 text)")
        return _read_json(path, text)
    return _read_csv(path, text)
