"""Heat maps of where the error is, drawn from the same float64 math as the figures.

For each pair that gets them: the excess per pixel (KL(Bernoulli(y) || Bernoulli(p)), the mean
over the pixel's channels) on the magma colour map, black where the reconstruction is exact;
and the signed error p - y (mean over channels) on the diverging berlin map, centred on 0: blue
where the reconstruction is too dark, black where it is exact, red where it is too bright.

One scale serves a whole run, so that a colour means the same excess in every map: the first
maps drawn for a report fix it (Report.map_scale) at the 99th percentile of the values they draw
(every pixel of a full-size map; a thumbnail's reduced pixels), rounded up to 1, 2, 2.5 or 5
times a power of ten; values above it take the top colour.

Maps are drawn only for the images that get them, after the run, by reading those pairs again
as the run read them (in worker processes for files), and each map is checked against the run:
its sum must be the image's excess sum, or the pair is left out with a note (files changed
since a report was written). The colour tables are data here: no plotting library is imported.
"""

from __future__ import annotations

import functools
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .. import metrics
from ..errors import OptionError, ReportError, printable
from ..model import ImageResult, Settings, unit_scale

if TYPE_CHECKING:
    from ..engine import ArrayPair
    from ..images import Pair
    from ..pipeline import Report
    from ..storage import Storage

MapsFormat = Literal["png", "npy"]
MAPS_FORMATS: tuple[str, ...] = ("png", "npy")

# 256 colours each, as RGB hex. magma: Nathaniel Smith and Stefan van der Walt's perceptually
# uniform sequential map (CC0), as matplotlib ships it; berlin: Fabio Crameri's perceptually
# uniform diverging map (Scientific colour maps, MIT licence), as matplotlib 3.10 ships it.
MAGMA = (
    "00000401000501010601010802010902020b02020d03030f03031204041405041606051806051a07061c08071e090720"
    "0a08220b09240c09260d0a290e0b2b100b2d110c2f120d31130d34140e36150e38160f3b180f3d19103f1a10421c1044"
    "1d11471e114920114b21114e22115024125325125527125829115a2a115c2c115f2d11612f1163311165331067341069"
    "36106b38106c390f6e3b0f703d0f713f0f72400f74420f75440f764510774710784910784a10794c117a4e117b4f127b"
    "51127c52137c54137d56147d57157e59157e5a167e5c167f5d177f5f187f601880621980641a80651a80671b80681c81"
    "6a1c816b1d816d1d816e1e81701f81721f817320817521817621817822817922827b23827c23827e2482802582812581"
    "8326818426818627818827818928818b29818c29818e2a81902a81912b81932b80942c80962c80982d80992d809b2e7f"
    "9c2e7f9e2f7fa02f7fa1307ea3307ea5317ea6317da8327daa337dab337cad347cae347bb0357bb2357bb3367ab5367a"
    "b73779b83779ba3878bc3978bd3977bf3a77c03a76c23b75c43c75c53c74c73d73c83e73ca3e72cc3f71cd4071cf4070"
    "d0416fd2426fd3436ed5446dd6456cd8456cd9466bdb476adc4869de4968df4a68e04c67e24d66e34e65e44f64e55064"
    "e75263e85362e95462ea5661eb5760ec5860ed5a5fee5b5eef5d5ef05f5ef1605df2625df2645cf3655cf4675cf4695c"
    "f56b5cf66c5cf66e5cf7705cf7725cf8745cf8765cf9785df9795df97b5dfa7d5efa7f5efa815ffb835ffb8560fb8761"
    "fc8961fc8a62fc8c63fc8e64fc9065fd9266fd9467fd9668fd9869fd9a6afd9b6bfe9d6cfe9f6dfea16efea36ffea571"
    "fea772fea973feaa74feac76feae77feb078feb27afeb47bfeb67cfeb77efeb97ffebb81febd82febf84fec185fec287"
    "fec488fec68afec88cfeca8dfecc8ffecd90fecf92fed194fed395fed597fed799fed89afdda9cfddc9efddea0fde0a1"
    "fde2a3fde3a5fde5a7fde7a9fde9aafdebacfcecaefceeb0fcf0b2fcf2b4fcf4b6fcf6b8fcf7b9fcf9bbfcfbbdfcfdbf"
)
BERLIN = (
    "9eb0ff9cb0fe9ab0fd98affc95affb93affa91aef98eaef78caef68aaef587adf485adf382adf280acf17eacf07bacee"
    "79abed76abec74aaeb71aae96fa9e86ca9e66aa8e567a8e365a7e262a6e060a5df5da5dd5ba4db58a3d956a2d754a0d5"
    "519fd34f9ed14d9dcf4b9bcd489aca4698c84497c64395c34194c13f92be3e90bc3c8eb93b8db7398bb43889b23787af"
    "3685ad3584aa3382a83280a6327ea3317ca1307a9e2f789c2e76992d75972c73942c71922b6f8f2a6d8d296b8b296988"
    "28688627668327648126627f25607c245e7a245d78235b7522597322577121556e20546c20526a1f50681e4e651e4d63"
    "1d4b611c495f1c475c1b465a1a44581a4256194153193f51183d4f173c4d173a4b163849163747153544153342143240"
    "14303e132f3c132d3a122c38122a3612293411273211263011242e11232c11212a112028101f26101d25101c23111b21"
    "111a2011191e11181c11161b111519111418111317121215121214131112141011140f10150e0e160e0d170d0b180c0a"
    "190c091a0c081b0b071c0b061d0b051e0b04200b04210b03220c02230c02240c02250c01260d01270d01280d012a0e01"
    "2b0e012c0e002d0e002f0e00300f00310f00330f00340f003510003710003810003911003b11003c11013e12013f1201"
    "4112014213014413014514014714014815024a15024b16024d16024f1703501803521804541905561a05571b06591c07"
    "5b1d085d1e095f1f0a61200b63210c65230e68240f6a25106c27116e2813702a14732b16752d17772f1979301b7b321c"
    "7d341e803620823722843924863b26883d288a3f2a8c402c8e422e904430924632944834964a36984c399a4d3b9c4f3d"
    "9e513fa05341a25544a45746a65948a85a4aaa5c4cac5e4fae6051b06253b26455b46658b6685ab86a5cba6b5fbc6d61"
    "be6f63c07165c27368c4756ac6776cc8796fca7b71cc7d73ce7f76d08178d2837ad5857dd7877fd98982db8b84dd8d86"
    "df8f89e1918be3938ee59590e79792ea9995ec9b97ee9d9af09f9cf2a19ff4a3a1f6a5a3f9a7a6fba9a8fdababffadad"
)


@functools.cache
def colour_table(name: Literal["magma", "berlin"]) -> np.ndarray:
    """The colour map's 256 colours, (256, 3) uint8."""
    table = np.frombuffer(bytes.fromhex("".join(MAGMA if name == "magma" else BERLIN)), dtype=np.uint8)
    return table.reshape(256, 3)


# The scale is the PERCENTILE-th percentile of the mapped pixels' values, found from counts in
# bins a fiftieth of a decade wide from 1e-12 up (bin 0 holds 0 and anything below): counts add
# up exactly across chunks and workers, and place the percentile within 5 %, which the rounding
# to 1, 2, 2.5 or 5 times a power of ten then covers.
PERCENTILE = 99.0
_PER_DECADE = 50
_LOWEST = -12
_BINS = (4 - _LOWEST) * _PER_DECADE + 1


@dataclass(frozen=True)
class Spread:
    """How one kind of map's values are spread over the pixels mapped: binned counts, largest."""

    counts: np.ndarray
    largest: float

    @classmethod
    def of(cls, values: np.ndarray) -> Spread:
        magnitudes = np.abs(values.ravel())
        with np.errstate(divide="ignore"):
            position = (np.log10(magnitudes) - _LOWEST) * _PER_DECADE + 1
        index = np.clip(position, 0, _BINS - 1).astype(np.int64)  # log10(0) = -inf: bin 0
        largest = float(magnitudes.max()) if magnitudes.size else 0.0
        return cls(np.bincount(index, minlength=_BINS), largest)

    def __add__(self, other: Spread) -> Spread:
        return Spread(self.counts + other.counts, max(self.largest, other.largest))

    def percentile(self, q: float = PERCENTILE) -> float:
        """The upper edge of the bin that holds the q-th percentile (at most the largest value)."""
        total = int(self.counts.sum())
        if total == 0:
            return 0.0
        rank = max(1, math.ceil(total * q / 100))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        edge = 0.0 if index == 0 else 10.0 ** (_LOWEST + index / _PER_DECADE)
        return min(edge, self.largest)


def nice(x: float) -> float:
    """The smallest of 1, 2, 2.5 and 5 times a power of ten that is >= x (x > 0)."""
    exponent = math.floor(math.log10(x))
    for mantissa in (1, 2, 2.5, 5, 10):
        value = float(f"{mantissa}e{exponent}")
        if value >= x * (1 - 1e-12):
            return value
    return float(f"1e{exponent + 1}")  # not reached: 10 x 10^k >= x


@dataclass(frozen=True)
class MapScale:
    """One colour scale for a run's maps: excess from 0 to ``excess`` (in ``units`` per pixel;
    above it, the top colour), and p - y from ``-signed`` to ``+signed``."""

    excess: float
    signed: float
    units: str

    @classmethod
    def of(cls, excess: Spread, signed: Spread, units: str) -> MapScale:
        """The scale for values spread as these (excess in nats): the PERCENTILE-th percentile
        of each, or its largest value where that percentile is 0, rounded up by ``nice``."""
        top = (excess.percentile() or excess.largest) * unit_scale(units)  # type: ignore[arg-type]
        swing = signed.percentile() or signed.largest
        return cls(nice(top) if top > 0 else 1.0, min(nice(swing), 1.0) if swing > 0 else 1.0, units)

    def describe(self) -> str:
        return (
            f"excess 0 to {self.excess:g} {self.units} per pixel (magma; above it, the top colour); "
            f"signed error p - y from -{self.signed:g} to +{self.signed:g} (berlin; blue: too dark, "
            "red: too bright)"
        )


# --------------------------------------------------------------------------------------------
# One pair's maps.


@dataclass(frozen=True)
class PairMaps:
    """A pair's excess per value (height, width, channels; float64 nats) and signed error p - y,
    the mean over each pixel's channels (height, width; float64)."""

    excess: np.ndarray
    signed: np.ndarray

    @property
    def excess_per_pixel(self) -> np.ndarray:
        """The mean excess over each pixel's channels (height, width), in nats."""
        return _channel_sum(self.excess) / self.excess.shape[2]


def _channel_sum(values: np.ndarray) -> np.ndarray:
    """The sum over the last axis, a channel at a time: NumPy reduces a short last axis several
    times slower than it adds whole planes."""
    total = values[:, :, 0].copy()
    for channel in range(1, values.shape[2]):
        total += values[:, :, channel]
    return total


def pair_maps(target: np.ndarray, recon: np.ndarray, settings: Settings) -> PairMaps:
    """The maps of a prepared pair (engine.prepare: both uint8, or both float64), with the
    run's scoring. 8-bit pairs look each value up in metrics.byte_tables, whose entries are
    metrics.pixel_maps' own values; other pairs go through metrics.pixel_maps."""
    scoring = settings.scoring
    if target.dtype == np.uint8 and recon.dtype == np.uint8:
        figures = metrics.byte_tables(scoring.eps, scoring.convention).figures
        excess = figures[2].take(metrics.byte_pair_index(target, recon)).reshape(target.shape)
        difference = recon.astype(np.int16) - target
        signed = _channel_sum(difference) / np.float64(255 * target.shape[2])
        return PairMaps(excess, signed)
    maps = metrics.pixel_maps(
        target, recon, eps=scoring.eps, convention=scoring.convention, from_logits=scoring.logits
    )
    pred = _sigmoid(recon) if scoring.logits else recon
    return PairMaps(maps.excess, _channel_sum(pred - target) / target.shape[2])


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * logits)


def coloured(values: np.ndarray, top: float, table: Literal["magma", "berlin"]) -> Any:
    """A palette PIL image of values (height, width): 0 to top on magma, -top to top on berlin."""
    from PIL import Image

    position = values / top if table == "magma" else (values / top + 1) / 2
    index = np.rint(np.clip(position, 0, 1) * 255).astype(np.uint8)
    image = Image.fromarray(index)
    image.putpalette(colour_table(table).tobytes())
    return image


def _png(image: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# Thumbnails for the HTML page.

# The longest side of an image embedded in the HTML page: larger images are reduced (by whole
# factors, a box filter), smaller ones are shown enlarged by the browser, pixel for pixel.
THUMBNAIL = 192


@dataclass(frozen=True)
class Thumbnails:
    """A pair's pictures for the page: target and reconstruction encoded (PNG or JPEG), and the
    two maps reduced to the same size, to be coloured once the run's scale is known."""

    target: tuple[str, bytes]  # (MIME type, data)
    recon: tuple[str, bytes]
    excess: np.ndarray  # (h, w) float32 nats, reduced
    signed: np.ndarray
    shape: tuple[int, int, int]

    def maps(self, scale: MapScale) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
        """The excess and signed-error thumbnails as PNG, on the run's scale."""
        excess = self.excess * unit_scale(scale.units)  # type: ignore[arg-type]
        return (
            ("image/png", _png(coloured(excess, scale.excess, "magma"))),
            ("image/png", _png(coloured(self.signed, scale.signed, "berlin"))),
        )


def _factor(shape: tuple[int, ...]) -> int:
    return max(1, math.ceil(max(shape[0], shape[1]) / THUMBNAIL))


def _reduced(values: np.ndarray, factor: int) -> np.ndarray:
    """(h, w) values averaged over factor x factor blocks (the last blocks may be partial)."""
    from PIL import Image

    if factor == 1:
        return values.astype(np.float32)
    h, w = values.shape
    image = Image.fromarray(values.astype(np.float32))  # mode F
    size = (math.ceil(w / factor), math.ceil(h / factor))
    return np.asarray(image.resize(size, Image.Resampling.BOX))


def _picture(pixels: np.ndarray, factor: int, logits: bool = False) -> tuple[str, bytes]:
    """An image as people see it: 8-bit, its first three channels (or its first), reduced; PNG
    for small images (exact), JPEG (quality 90) for larger ones, a tenth of the size."""
    from PIL import Image

    if pixels.dtype != np.uint8:
        values = _sigmoid(pixels) if logits else pixels
        pixels = np.rint(np.clip(values, 0, 1) * 255).astype(np.uint8)
    shown = pixels[:, :, :3] if pixels.shape[2] >= 3 else pixels[:, :, 0]
    image = Image.fromarray(np.ascontiguousarray(shown))
    if factor > 1:
        image = image.reduce(factor)
    if image.width * image.height <= 64 * 64:
        return "image/png", _png(image)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return "image/jpeg", out.getvalue()


# --------------------------------------------------------------------------------------------
# Drawing many pairs' maps.


@dataclass(frozen=True)
class Job:
    """One pair to draw: where its pixels are, what the run measured, and what it gets."""

    name: str
    source: Pair | ArrayPair
    excess_sum: float  # nats, as the run measured it
    stem: str | None = None  # its files' path under the maps folder, without the ending
    thumbnail: bool = False
    storage: Storage | None = None  # to fetch its files when they are URLs (object storage)


@dataclass(frozen=True)
class Looked:
    """What the first pass learns of a pair: how its values spread, its thumbnails; or why it
    is left out."""

    name: str
    problem: str | None = None
    excess: Spread | None = None
    signed: Spread | None = None
    thumbnails: Thumbnails | None = None


def _checked(job: Job, settings: Settings) -> tuple[np.ndarray, np.ndarray, PairMaps] | str:
    """The pair's prepared images and maps, or why there are none: its files cannot be read
    any more, or they no longer give the excess the run measured (changed since)."""
    from ..engine import prepare

    pair = prepare(job.source, settings, job.storage)
    if isinstance(pair, str):
        return pair
    try:
        maps = pair_maps(*pair, settings)
    except metrics.ValueOutOfRange as e:
        return str(e)
    total = float(maps.excess.sum())
    if not math.isclose(total, job.excess_sum, rel_tol=1e-9, abs_tol=1e-300):
        return (
            f"its files now give an excess sum of {total:.9g} nats, not the {job.excess_sum:.9g} "
            "the report has: changed since"
        )
    return pair[0], pair[1], maps


def look(jobs: Sequence[Job], settings: Settings) -> list[Looked]:
    """Each pair's maps measured (their spread) and, where asked, its thumbnails made."""
    looked = []
    for job in jobs:
        checked = _checked(job, settings)
        if isinstance(checked, str):
            looked.append(Looked(job.name, checked))
            continue
        target, recon, maps = checked
        excess, signed = maps.excess_per_pixel, maps.signed
        thumbnails = None
        if job.thumbnail:  # the values drawn are the reduced ones: the scale is theirs
            factor = _factor(target.shape)
            excess, signed = _reduced(excess, factor), _reduced(signed, factor)
            thumbnails = Thumbnails(
                _picture(target, factor),
                _picture(recon, factor, settings.scoring.logits),
                excess,
                signed,
                (int(target.shape[0]), int(target.shape[1]), int(target.shape[2])),
            )
        looked.append(Looked(job.name, None, Spread.of(excess), Spread.of(signed), thumbnails))
    return looked


EXCESS_ENDING, SIGNED_ENDING = ".excess", ".signed"
LEGENDS = {"magma": "excess-scale.png", "berlin": "signed-scale.png"}


@dataclass(frozen=True)
class Drawn:
    name: str
    problem: str | None = None  # left out: cannot be read, or changed since
    error: str | None = None  # its files cannot be written


def draw(
    jobs: Sequence[Job], settings: Settings, *, folder: str, format: MapsFormat, scale: MapScale | None
) -> list[Drawn]:
    """Each pair's maps written under folder: ``stem.excess.png`` and ``stem.signed.png`` on the
    scale, or ``stem.excess.npy``, the float64 excess per value (height, width, channels) in
    the report's unit."""
    from PIL import Image

    drawn = []
    k = settings.display.scale
    for job in jobs:
        checked = _checked(job, settings)
        if isinstance(checked, str):
            drawn.append(Drawn(job.name, checked))
            continue
        _, _, maps = checked
        stem = Path(folder, job.stem or job.name)
        try:
            stem.parent.mkdir(parents=True, exist_ok=True)
            if format == "npy":
                np.save(f"{stem}{EXCESS_ENDING}.npy", maps.excess * k if k != 1 else maps.excess)
            else:
                assert scale is not None  # png maps are drawn on a scale
                excess: Image.Image = coloured(maps.excess_per_pixel * k, scale.excess, "magma")
                excess.save(f"{stem}{EXCESS_ENDING}.png")
                coloured(maps.signed, scale.signed, "berlin").save(f"{stem}{SIGNED_ENDING}.png")
        except (OSError, ValueError) as e:  # ValueError: a NUL in a name from a batch in memory
            drawn.append(
                Drawn(job.name, error=f"{printable(stem)}: cannot write: {getattr(e, 'strerror', None) or e}")
            )
            continue
        drawn.append(Drawn(job.name))
    return drawn


def stems(names: Sequence[str]) -> dict[str, str]:
    """A relative path under the maps folder for each name: the name itself, unless it climbs
    out of the folder (``..``, a leading ``/``, from a pair list) or is taken by another name,
    when the part is escaped or ``~2``, ``~3`` ... is added."""
    taken: set[str] = set()
    paths = {}
    for name in names:
        parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
        stem = "/".join("%2E%2E" if p == ".." else p.replace("\0", "%00") for p in parts) or "%"
        candidate, n = stem, 1
        while candidate in taken:
            n += 1
            candidate = f"{stem}~{n}"
        taken.add(candidate)
        paths[name] = candidate
    return paths


def check_options(folder: str | os.PathLike[str] | None, top: int | None, format: str) -> None:
    """OptionError, before any image is read, for maps options that cannot be used."""
    if format not in MAPS_FORMATS:
        raise OptionError("--maps-format", f"must be one of {', '.join(MAPS_FORMATS)}, not {format!r}")
    if top is not None and not (isinstance(top, int) and top >= 0):
        raise OptionError("--maps-top", f"must be a whole number >= 0, not {top!r}")
    if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
        raise OptionError("--maps", f"{printable(os.fspath(folder))} exists and is not a folder")


def _sources(report: Report, results: Sequence[ImageResult]) -> list[Pair | ArrayPair]:
    from ..images import Pair

    arrays = report.arrays
    return [arrays[r.name] if arrays is not None else Pair(r.name, r.target, r.recon) for r in results]


def _storage(report: Report, results: Sequence[ImageResult]) -> Storage | None:
    """What reads the pairs' files again when any is a URL (with the report's fsspec options)."""
    from ..storage import Storage, is_url

    if report.arrays is None and any(is_url(p) for r in results for p in (r.target, r.recon)):
        return Storage(report.storage_options)
    return None


def _run(function: Any, jobs: list[Job], report: Report) -> list[Any]:
    from ..engine import each_chunk

    return list(each_chunk(function, jobs, report.settings, in_process=report.arrays is not None))


def _scale_of(looked: Sequence[Looked], report: Report) -> MapScale:
    """The report's scale: the one its first maps fixed, else one from these pairs, fixed now."""
    excess = signed = Spread(np.zeros(_BINS, np.int64), 0.0)
    for item in looked:
        if item.excess is not None and item.signed is not None:
            excess, signed = excess + item.excess, signed + item.signed
    return report.fix_map_scale(MapScale.of(excess, signed, report.settings.display.units))


@dataclass(frozen=True)
class MapsWritten:
    """What ``Report.write_maps`` did: how many pairs' maps are in the folder, on which scale,
    the legend images, and a line for each pair left out."""

    folder: str
    format: str
    written: int
    scale: MapScale | None
    legends: tuple[str, ...] = ()
    left_out: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        what = "excess maps (.npy, float64)" if self.format == "npy" else "excess and signed-error maps"
        line = f"maps: {self.written} pairs' {what} in {printable(self.folder)}"
        if self.scale is not None:
            s = self.scale
            line += (
                f"; excess 0 to {s.excess:g} {s.units} per pixel, p - y from -{s.signed:g} to +{s.signed:g}; "
                f"legends {', '.join(map(printable, self.legends))}"
            )
        return line


def write_maps(
    report: Report, folder: str | os.PathLike[str], *, top: int | None = None, format: MapsFormat = "png"
) -> MapsWritten:
    """Maps of the report's evaluated pairs (the ``top`` worst by excess; None: all) in folder,
    under each pair's name, with legend images of the scale. ReportError if they cannot be
    written; pairs that cannot be read again are left out, each with a line in ``left_out``."""
    from ..model import worst

    check_options(folder, top, format)
    folder = os.fspath(folder)
    evaluated = [r for r in report.images if r.ok]
    chosen = evaluated if top is None else worst(evaluated, top)
    paths = stems([r.name for r in chosen])
    storage = _storage(report, chosen)
    jobs = [
        Job(r.name, source, r.sums.excess, paths[r.name], storage=storage)  # type: ignore[union-attr]
        for r, source in zip(chosen, _sources(report, chosen), strict=True)
    ]
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReportError(folder, f"cannot make the maps folder: {e.strerror or e}") from None
    scale = None
    if format == "png":
        scale = report.map_scale or _scale_of(_run(look, jobs, report) if jobs else [], report)
    drawn: list[Drawn] = _run(
        functools.partial(draw, folder=folder, format=format, scale=scale), jobs, report
    )
    errors = [d.error for d in drawn if d.error]
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ReportError(folder, f"maps not written: {errors[0]}{more}")
    legends: list[str] = []
    if scale is not None:
        for table, name in LEGENDS.items():
            path = os.path.join(folder, name)
            try:
                legend(scale, table).save(path)  # type: ignore[arg-type]
            except OSError as e:
                raise ReportError(path, f"cannot write: {e.strerror or e}") from None
            legends.append(path)
    left_out = tuple(f"{printable(d.name)}: no maps: {d.problem}" for d in drawn if d.problem)
    return MapsWritten(folder, format, len(drawn) - len(left_out), scale, tuple(legends), left_out)


def thumbnails(
    report: Report, results: Sequence[ImageResult]
) -> tuple[dict[str, Thumbnails], MapScale | None, list[str]]:
    """Thumbnails of these evaluated pairs for the HTML page, the report's map scale (fixed
    here if no maps were drawn before), and a line for each pair left out."""
    chosen = [r for r in results if r.ok]
    storage = _storage(report, chosen)
    jobs = [
        Job(r.name, source, r.sums.excess, thumbnail=True, storage=storage)  # type: ignore[union-attr]
        for r, source in zip(chosen, _sources(report, chosen), strict=True)
    ]
    looked: list[Looked] = _run(look, jobs, report) if jobs else []
    pictures = {item.name: item.thumbnails for item in looked if item.thumbnails is not None}
    scale = report.map_scale or (_scale_of(looked, report) if pictures else None)
    left_out = [f"{printable(item.name)}: no pictures: {item.problem}" for item in looked if item.problem]
    return pictures, scale, left_out


def colour_bar(table: Literal["magma", "berlin"]) -> bytes:
    """The colour map as a PNG of 256 x 1 pixels, for a legend drawn around it."""
    from PIL import Image

    bar = np.ascontiguousarray(colour_table(table)[None, :, :])
    return _png(Image.fromarray(bar))


def legend(scale: MapScale, table: Literal["magma", "berlin"]) -> Any:
    """A legend image: the colour bar, its ends and middle labelled in the scale's unit."""
    from PIL import Image, ImageDraw, ImageFont

    width, margin, bar_height = 256, 24, 16
    image = Image.new("RGB", (width + 2 * margin, 62), "white")
    bar = Image.fromarray(np.ascontiguousarray(np.repeat(colour_table(table)[None], bar_height, axis=0)))
    image.paste(bar, (margin, 6))
    draw_on = ImageDraw.Draw(image)
    try:
        font: Any = ImageFont.load_default(size=11)
    except TypeError:  # Pillow before 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    if table == "magma":
        ticks = [(0, "0"), (0.5, f"{scale.excess / 2:g}"), (1, f"{scale.excess:g}+")]
        title = f"excess, {scale.units} per pixel"
    else:
        ticks = [(0, f"-{scale.signed:g}"), (0.5, "0"), (1, f"+{scale.signed:g}")]
        title = "p - y: blue too dark, red too bright"
    for at, text in ticks:
        x = margin + round(at * (width - 1))
        draw_on.line([(x, 6 + bar_height), (x, 10 + bar_height)], fill="black")
        draw_on.text((x, 12 + bar_height), text, fill="black", font=font, anchor="ma")
    draw_on.text((margin + width // 2, 44), title, fill="black", font=font, anchor="ma")
    return image
