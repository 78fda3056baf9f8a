"""Report files: CSV and JSON written from the view, atomically, and read back.

Each JSON image carries its sums in nats as well as in the report's unit, so reports read back
(as a baseline, or to merge shards) give exactly the figures of the run that wrote them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from ..errors import InputError, ReportError
from ..metrics import Sums
from ..model import LAYOUTS, ImageResult, Settings, Units, unit_scale
from ..shards import parse_shard
from .view import ChannelRow, ImageRow, View

if TYPE_CHECKING:
    from ..gates import Verdict


# The layout of the JSON report. Readers (--baseline, merge) refuse a higher number: a newer
# bce-eval wrote it, and figures it added could be misread. 1 added "format", "shard" and the
# per-image "sums_nats" that make merged totals exact whatever --units a shard used. 2 counts as
# "clipped" only the predictions whose BCE the convention changed (1 counted every prediction
# clipped or floored), and added "groups", "channels" (overall) and "by_channel" (per image),
# each channel with its sums in nats, "hint" and the settings "layout", "layouts", "group_by" and
# "per_channel". Format 1 is still read; merge refuses to mix it with 2, whose clipped counts
# mean something else.
REPORT_FORMAT = 2

# A file name that is not UTF-8 comes from os.fsdecode() with its bytes as surrogate escapes; text
# reports write those bytes back (and CSV reports are read with them), so the name is the file's.
REPORT_ERRORS = "surrogateescape"

CSV_COLUMNS = (
    "name",
    "target", "recon", "height", "width", "channels", "pixels", "bce", "entropy", "excess",
    "bce_sum", "entropy_sum", "excess_sum", "clipped", "unit", "status", "error",
)  # fmt: skip


def _csv_row(
    row: ImageRow, units: Units, extra_columns: tuple[str, ...], channel_columns: Sequence[str] = ()
) -> dict[str, Any]:
    """Every column, "" where a failed pair has no value; floats at full float64 precision."""
    h, w, c = row.shape or ("", "", "")
    figures: dict[str, Any] = {}
    if row.ok:
        figures = {
            "pixels": row.pixels,
            **{k: repr(getattr(row, k)) for k in _FIGURES},
            "clipped": row.clipped,
        }
    values = {
        **dict.fromkeys((*CSV_COLUMNS, *extra_columns), ""),
        "name": row.name,
        "target": row.target,
        "recon": row.recon,
        "height": h,
        "width": w,
        "channels": c,
        **figures,
        "unit": units,
        "status": row.status,
        "error": row.error or "",
    }
    for column in extra_columns:
        value = getattr(row, column)
        values[column] = "" if value is None else repr(value)
    if row.group is not None:
        values["group"] = row.group
    figures_of = {channel.channel: channel for channel in row.channels}
    for name in channel_columns:
        channel = figures_of.get(name)
        for figure in _CHANNEL_FIGURES:
            values[f"{figure}_{name}"] = "" if channel is None else repr(getattr(channel, figure))
    return values


_CHANNEL_FIGURES = ("bce", "entropy", "excess")


_FIGURES = ("bce", "entropy", "excess", "bce_sum", "entropy_sum", "excess_sum")
BASELINE_COLUMNS = ("baseline_excess", "excess_delta")


# Text cells that a spreadsheet would run as a formula (OWASP's list), and the quote that
# neutralises them. A cell that starts with the quote itself gets one more, so that reading
# drops exactly one and every name round-trips.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NEUTRAL = "'"
_TEXT_COLUMNS = ("name", "target", "recon", "error")


def csv_text(text: str) -> str:
    """A text cell as written: "'" before one a spreadsheet would take as a formula."""
    return NEUTRAL + text if text.startswith((*FORMULA_STARTS, NEUTRAL)) else text


def csv_text_read(text: str) -> str:
    """The text a cell written by csv_text holds."""
    return text[1:] if text.startswith(NEUTRAL) else text


def _csv_line(cells: Iterable[Any]) -> str:
    """One CSV record: a cell with a comma, a quote, CR or LF is quoted (Python's csv writer
    leaves a lone CR unquoted, which readers then take as the end of the record)."""
    quoted = []
    for cell in cells:
        text = str(cell)
        if any(c in text for c in ',"\r\n'):
            text = '"' + text.replace('"', '""') + '"'
        quoted.append(text)
    return ",".join(quoted) + "\n"


def write_csv(view: View, out: IO[str]) -> None:
    """One row per pair, failed pairs included, figures at full float64 precision; with a
    baseline, each image's excess there and its change. Any name round-trips (quoted where it
    holds a comma, quote, CR or LF); text cells that would start a spreadsheet formula begin
    with an added "'" (the JSON report has every name exactly)."""
    extra = BASELINE_COLUMNS if view.has_baseline else ()
    group = ("group",) if view.settings.display.levels is not None else ()
    channels = view.channel_columns if view.settings.display.per_channel else []
    per_channel = tuple(f"{figure}_{name}" for name in channels for figure in _CHANNEL_FIGURES)
    columns = (CSV_COLUMNS[0], *group, *CSV_COLUMNS[1:], *per_channel, *extra)
    out.write(_csv_line(columns))
    for row in view.rows:
        values = _csv_row(row, view.units, extra, channels)
        for column in (*_TEXT_COLUMNS, *group):
            values[column] = csv_text(values[column])
        out.write(_csv_line(values[c] for c in columns))


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def settings_json(settings: Settings, layouts: Sequence[str] = ()) -> dict[str, Any]:
    """The settings as reports record them (flat, as report format 1 has them); ``layouts``:
    those of the batch files read."""
    scoring, reading, execution = settings.scoring, settings.reading, settings.execution
    return {
        "convention": scoring.convention,
        "eps": scoring.eps,
        "logits": scoring.logits,
        "units": settings.display.units,
        "alpha": reading.alpha,
        "grayscale": reading.grayscale,
        "backend": execution.backend,
        "device": execution.device,
        "described": scoring.describe(),
        "weighting": "pixel",
        "layout": reading.layout,
        "layouts": list(layouts),
        "group_by": settings.display.group_by,
        "per_channel": settings.display.per_channel,
    }


def _channel_json(channel: ChannelRow) -> dict[str, Any]:
    s = channel.sums_nats
    return {
        "channel": channel.channel,
        "pixels": channel.pixels,
        **{k: _finite(getattr(channel, k)) for k in _FIGURES},
        "clipped": channel.clipped,
        "sums_nats": {"bce": s.bce, "entropy": s.entropy, "excess": s.excess},
    }


def _image_json(row: ImageRow, result: ImageResult, units: Units, baseline: bool) -> dict[str, Any]:
    h, w, c = row.shape or (None, None, None)
    image: dict[str, Any] = {
        "name": row.name,
        "target": row.target,
        "recon": row.recon,
        "height": h,
        "width": w,
        "channels": c,
        "pixels": row.pixels,
        **{k: _finite(getattr(row, k)) if row.ok else None for k in _FIGURES},
        "clipped": row.clipped,
        "unit": units,
        "status": row.status,
        "error": row.error,
    }
    s = result.sums
    image["sums_nats"] = None if s is None else {"bce": s.bce, "entropy": s.entropy, "excess": s.excess}
    if result.culprit is not None:
        image["culprit"] = result.culprit  # the file the error is about
    if row.channels:  # "channels" is the count, as in the CSV
        image["by_channel"] = [_channel_json(channel) for channel in row.channels]
    if row.group is not None:
        image["group"] = row.group
    if baseline and row.baseline_excess is not None:
        image["baseline_excess"] = row.baseline_excess
        image["excess_delta"] = row.excess_delta
    return image


def verdict_json(verdict: Verdict, scale: float) -> dict[str, Any]:
    """The "verdict", "gates" and "baseline" sections of the JSON report."""
    sections: dict[str, Any] = {
        "verdict": "pass" if verdict.passed else "fail",
        "gates": [
            {
                "gate": g.option,
                "figure": g.figure,
                "threshold": g.threshold,
                "measured": g.measured,
                "passed": g.passed,
                "worst": [{"name": o.name, "value": o.value} for o in g.offenders],
            }
            for g in verdict.gates
        ],
    }
    b = verdict.baseline
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


def to_json(view: View, version: str, *, shard: tuple[int, int] | None = None) -> dict[str, Any]:
    """format, version, settings, shard, summary (sums and counts, and the means derived from
    them), images, and the verdict's sections (gates, baseline).

    Each image also carries its sums in nats (``sums_nats``): scaling to bits and back is not
    exact in floating point, and merged totals must be exactly those of a single run.
    """
    o = view.overall
    baseline = view.has_baseline
    groups = {}
    if view.groups:
        groups["groups"] = [
            {
                "group": g.group,
                "pairs": g.pairs,
                "failed": g.failed,
                "pixels": g.pixels,
                "bce_sum": g.bce_sum,
                "entropy_sum": g.entropy_sum,
                "excess_sum": g.excess_sum,
                "clipped": g.clipped,
                "bce": g.bce,
                "entropy": g.entropy,
                "excess": g.excess,
                "excess_median": g.excess_median,
                "excess_max": g.excess_max,
                "worst": g.worst,
            }
            for g in view.groups
        ]
    channels = {"channels": [_channel_json(c) for c in view.channels]} if view.channels else {}
    return {
        "format": REPORT_FORMAT,
        "version": version,
        "settings": settings_json(view.settings, view.layouts),
        "shard": f"{shard[0]}/{shard[1]}" if shard else None,
        "summary": {
            "pairs": o.pairs,
            "failed": o.failed,
            "pixels": o.pixels,
            "bce_sum": o.bce_sum,
            "entropy_sum": o.entropy_sum,
            "excess_sum": o.excess_sum,
            "clipped": o.clipped,
            "bce": o.bce,
            "entropy": o.entropy,
            "excess": o.excess,
            "excess_median": o.excess_median,
            "excess_p95": o.excess_p95,
            "excess_max": o.excess_max,
            "worst": o.worst,
        },
        **channels,
        **groups,
        "hint": view.hint,
        "images": [
            _image_json(row, result, view.units, baseline)
            for row, result in zip(view.rows, view.results, strict=True)
        ],
        **(verdict_json(view.verdict, view.scale) if view.verdict is not None else {}),
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


def _new_file_mode(target: Path) -> int:
    """The mode the report would get from open(): the old file's, or 0o666 less the umask."""
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def _report_errors(path: str) -> Iterator[None]:
    """Any OSError, and text that cannot be encoded, as a ReportError naming the report."""
    try:
        yield
    except OSError as e:
        raise ReportError(_where(path), f"cannot write: {e.strerror or e}") from None
    except UnicodeEncodeError as e:
        text = e.object[e.start : e.end]
        raise ReportError(_where(path), f"cannot write {text!r}: not encodable as {e.encoding}") from None


def _open_text(fd: int) -> IO[str]:
    return os.fdopen(fd, "w", newline="", encoding="utf-8", errors=REPORT_ERRORS)


def _partial_prefix(target: Path, pid: int | None = None) -> str:
    """Temporary reports are named .NAME.PID.*.partial, so that a later run can tell the ones
    a killed run left (its process is gone) from those another run is writing now."""
    return f".{target.name}.{os.getpid() if pid is None else pid}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def clean_stale(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Remove the temporary files that a killed run left beside these reports (a process that
    no longer exists wrote them); best effort, silent."""
    from ..storage import is_url

    for path in paths:
        if os.fspath(path) == "-" or is_url(os.fspath(path)):  # a URL is written in one request
            continue
        target = Path(path)
        prefix = f".{target.name}."
        try:
            names = os.listdir(target.parent if str(target.parent) else ".")
        except OSError:
            continue
        for name in names:
            if not (name.startswith(prefix) and name.endswith(".partial")):
                continue
            pid = name[len(prefix) :].split(".", 1)[0]
            if not (pid.isdigit() and _alive(int(pid))):
                with suppress(OSError):
                    os.unlink(target.parent / name)


def write_together(reports: Sequence[tuple[str, Callable[[IO[str]], None]]]) -> None:
    """Write each (path, writer) report: all replaced together, or none.

    Every report goes to a temporary file beside its path (``.NAME.*.partial``), is flushed to
    disk, and only when all are complete are they renamed over the old ones, so an error or an
    interruption while writing leaves the old set as it was and no partial file. '-' is stdout;
    an existing path that is not a regular file (a device, a pipe) is written directly. Both
    come after the files.

    Reports are UTF-8, on stdout too, whatever the locale. A file name that is not UTF-8 reaches
    Python as a str with surrogate escapes; it is written back as the bytes it has on disk
    (errors="surrogateescape"). Any OSError, on open or on a write, and any text that still cannot
    be encoded, becomes a ReportError.
    """
    clean_stale(p for p, _ in reports)
    direct = [(p, w) for p, w in reports if p == "-" or (Path(p).exists() and not Path(p).is_file())]
    files = [(p, w) for p, w in reports if (p, w) not in direct]
    written: list[tuple[str, str]] = []  # (temporary, path)
    try:
        for path, write in files:
            target = Path(path)
            with _report_errors(path):
                fd, temporary = tempfile.mkstemp(
                    dir=target.parent, prefix=_partial_prefix(target), suffix=".partial"
                )
                written.append((temporary, path))
                os.chmod(temporary, _new_file_mode(target))
                with _open_text(fd) as f:
                    write(f)
                    f.flush()
                    os.fsync(f.fileno())
        for temporary, path in written:
            with _report_errors(path):
                os.replace(temporary, path)
    except BaseException:
        for temporary, _ in written:
            with suppress(OSError):
                os.unlink(temporary)
        raise
    for path, write in direct:
        with _report_errors(path):
            if path == "-":
                with _stdout_as_report() as out:
                    write(out)
            else:
                with Path(path).open("w", newline="", encoding="utf-8", errors=REPORT_ERRORS) as out:
                    write(out)


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
class Loaded:
    """A report file read back: its images (sums in nats) and what it records.

    A CSV report records only its unit (``settings_recorded`` is False; the other settings are
    the defaults); ``exact`` says whether the sums in nats are exactly those the run had (JSON
    since format 1, and any report in nats).
    """

    path: str
    settings: Settings
    images: list[ImageResult]
    shard: tuple[int, int] | None
    exact: bool
    settings_recorded: bool
    version: int = REPORT_FORMAT  # the JSON report's format (a CSV report's is this bce-eval's)
    layouts: tuple[str, ...] = ()


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
    layout = recorded.get("layout")
    if layout is not None and not (isinstance(layout, str) and all(p in LAYOUTS for p in layout.split(","))):
        raise ValueError(
            f"settings.layout is {layout!r}, not one of {', '.join(LAYOUTS)} or two of them, or null"
        )
    return Settings.of(
        convention=recorded["convention"],
        eps=float(eps),
        logits=recorded["logits"],
        units=recorded["units"],
        alpha=recorded["alpha"],
        grayscale=recorded["grayscale"],
        backend=recorded["backend"],
        device=str(recorded.get("device", "cpu")),
        layout=layout,
    )


def _sum(value: Any, field: str) -> float:
    """A sum as a report holds it: a number >= 0, or null for one that overflowed to +inf
    (every term of every sum is >= 0). NaN, a negative sum or text is refused."""
    if value is None:
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{field} is {value!r}, not a number")
    number = float(value)
    if not number >= 0:  # NaN too
        raise ValueError(f"{field} is {value!r}, not a number >= 0")
    return number


def _count(value: Any, field: str, *, least: int = 0) -> int:
    """A count as a report holds it: a whole number >= least (JSON integer, or CSV digits)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{field} is {value!r}, not a whole number >= {least}")
    return value


# Rounding may put one figure a few ulp above another that bounds it mathematically.
_SLACK = 1e-9


def _result(image: Mapping[str, Any], scale: float, nats: Mapping[str, Any] | None) -> ImageResult:
    """One image of a report, checked: every figure finite (or an overflowed sum) and in range,
    counts whole, pixels = height x width x channels, entropy and excess not above BCE."""
    name, target, recon = str(image["name"]), str(image["target"] or ""), str(image["recon"] or "")
    if not name:
        raise ValueError("an image has an empty name")
    status = image["status"]
    if status not in ("ok", "error"):
        raise ValueError(f"image {name!r} has status {status!r}, not ok or error")
    if status != "ok":
        culprit = image.get("culprit")
        return ImageResult(
            name,
            target,
            recon,
            error=str(image.get("error") or "error"),
            culprit=None if culprit is None else str(culprit),
        )
    shape = tuple(_count(image[k], f"image {name!r}: {k}", least=1) for k in ("height", "width", "channels"))
    pixels = _count(image["pixels"], f"image {name!r}: pixels")
    if pixels != math.prod(shape):
        raise ValueError(
            f"image {name!r} has {pixels} pixels, not height x width x channels = {math.prod(shape)}"
        )
    if nats is None:
        nats = {
            k: _sum(image[f"{k}_sum"], f"image {name!r}: {k}_sum") / scale
            for k in ("bce", "entropy", "excess")
        }
    elif not isinstance(nats, Mapping):
        raise ValueError(f"image {name!r}: sums_nats is not an object")
    bce, entropy, excess = (
        _sum(nats[k], f"image {name!r}: {k} in nats") for k in ("bce", "entropy", "excess")
    )
    for figure, value in (("entropy", entropy), ("excess", excess)):
        if value > bce * (1 + _SLACK):
            raise ValueError(
                f"image {name!r} has {figure} {value!r} above its BCE {bce!r} (BCE = H + excess)"
            )
    clipped = _count(image["clipped"], f"image {name!r}: clipped")
    if clipped > pixels:
        raise ValueError(f"image {name!r} has {clipped} clipped of {pixels} pixels")
    channels = None
    if image.get("by_channel"):
        if not isinstance(image["by_channel"], list):
            raise ValueError(f"image {name!r}: by_channel is not a list")
        channels = tuple(_channel_sums(c, name) for c in image["by_channel"])
    sums = Sums(pixels, bce, entropy, excess, clipped)
    h, w, c = shape
    return ImageResult(name, target, recon, (h, w, c), sums, channels=channels)


def _channel_sums(channel: Mapping[str, Any], name: str) -> Sums:
    """One channel's sums in an image of a report, checked as the image's are."""
    where = f"image {name!r}: a channel's"
    bce, entropy, excess = (
        _sum(channel["sums_nats"][k], f"{where} {k}") for k in ("bce", "entropy", "excess")
    )
    return Sums(
        _count(channel["pixels"], f"{where} pixels"),
        bce,
        entropy,
        excess,
        _count(channel["clipped"], f"{where} clipped"),
    )


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON has")


def _read_json(path: Path | str, text: str) -> Loaded:
    try:
        document = json.loads(text, parse_constant=_no_constant)
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
        scale = settings.display.scale
        results = [_result(image, scale, image.get("sums_nats")) for image in document["images"]]
        shard = parse_shard(document["shard"]) if document.get("shard") else None
    except KeyError as e:
        raise ReportError(path, f"not a bce-eval JSON report: an image has no {e.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as e:
        raise ReportError(path, f"not a bce-eval JSON report: {e}") from None
    exact = version >= 1 or settings.display.units == "nats"
    recorded = document["settings"].get("layouts") or ()
    layouts = tuple(str(x) for x in recorded) if isinstance(recorded, list) else ()
    return Loaded(str(path), settings, results, shard, exact, True, version, layouts)


def _read_csv(path: Path | str, text: str) -> Loaded:
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))  # a quoted name may hold a newline
    except csv.Error as e:
        raise ReportError(path, f"not a CSV report ({e})") from None
    needed = {"name", "status", "pixels", "bce_sum", "entropy_sum", "excess_sum", "clipped", "unit"}
    if rows and not needed <= rows[0].keys():
        missing = ", ".join(sorted(needed - rows[0].keys(), key=str))
        raise ReportError(path, f"not a bce-eval CSV report (no column {missing})")
    try:
        records = [_csv_record(row) for row in rows]
    except ValueError as e:
        raise ReportError(path, f"not a bce-eval CSV report: {e}") from None
    units = {record["unit"] for record in records} or {"nats"}
    if len(units) > 1 or not units <= {"nats", "bits"}:
        raise ReportError(path, f"not a bce-eval CSV report: unit {', '.join(sorted(map(str, units)))}")
    unit: Units = "bits" if units == {"bits"} else "nats"
    try:
        results = [_result(record, unit_scale(unit), None) for record in records]
    except (KeyError, TypeError, ValueError) as e:
        raise ReportError(path, f"not a bce-eval CSV report: {e}") from None
    return Loaded(str(path), Settings.of(units=unit), results, None, unit == "nats", settings_recorded=False)


def _csv_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A CSV row as the JSON image it stands for: "" as None, text cells as they were written."""
    if None in row or any(v is None for v in row.values()):  # more cells than columns, or fewer
        raise ValueError(f"a row has {len(row) - (None in row)} columns where the header has others")
    record = {k: v if v != "" else None for k, v in row.items()}
    for column in _TEXT_COLUMNS:
        text = record.get(column)
        if text is not None:
            record[column] = csv_text_read(text)
    return record


def _read_regular(path: Path) -> bytes:
    """The report's bytes, read defensively (guards.read_input_file): a FIFO or a device such
    as /dev/zero is refused at once, and so is a file too large to be a report."""
    from ..guards import read_input_file

    try:
        return read_input_file(path, what="the report")
    except InputError as e:
        raise ReportError(path, e.problem) from None


def read_report(path: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> Loaded:
    """A CSV or JSON report written by bce-eval (JSON if the name ends in .json or the text is
    an object); ReportError if it cannot be read or is not one. A URL is read through fsspec,
    with ``storage_options``."""
    from ..storage import is_url

    if is_url(path):
        from ..storage import Storage

        url = str(path)
        data = Storage(storage_options or {}).read_bytes(url)
        path = PurePosixPath(url.partition("://")[2])  # its suffix; messages name the URL
        return _read_report_data(url, path.suffix, data)
    path = Path(path)
    data = _read_regular(path)
    return _read_report_data(path, path.suffix, data)


def _read_report_data(path: Path | str, suffix: str, data: bytes) -> Loaded:
    try:
        text, utf8 = data.decode("utf-8"), True
    except UnicodeDecodeError:  # a CSV report holds a name that is not UTF-8 as its bytes
        text, utf8 = data.decode("utf-8", REPORT_ERRORS), False
    if suffix.lower() == ".json" or text.lstrip().startswith("{"):
        if not utf8:  # JSON reports are ASCII
            raise ReportError(path, "not a bce-eval report (not UTF-8 text)")
        return _read_json(path, text)
    return _read_csv(path, text)
