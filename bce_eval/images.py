"""Finding, pairing, decoding and normalising image files; named errors for bad input.

Pixels become float64 arrays of shape (height, width, channels). The data range comes from the
stored sample type, never from the values: uint8 / 255, uint16 / 65535, 1-bit to {0, 1}, float
as is. Nothing is narrowed on the way: Pillow reads 16-bit colour PNG and 16-bit or float
colour TIFF as 8-bit (or not at all), so those go to pypng and tifffile, which keep every bit.

A file is decoded as what its first bytes say it is (PNG, TIFF, JPEG, BMP, WebP or .npy), not as
what its suffix says: a 16-bit PNG saved as x.jpg is read as the 16-bit PNG it is, and an array
saved as x.png as an array (never with pickle). Such a mismatch is accepted without a note, since
the content alone decides what the pixels are. The suffix chooses which files are looked at, and
which decoder reports on content that matches none of these signatures.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import stat
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from . import guards
from .errors import InputError, OptionError, printable
from .guards import check_budget, decoding
from .integrity import PNG_SIGNATURE, check_png, jpeg_frame, png_header
from .storage import is_url

Alpha = Literal["drop", "include"]
Decoder = Literal["png", "jpeg", "tiff", "npy", "pillow"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
SUFFIXES = (*IMAGE_SUFFIXES, ".npy", ".npz")  # .npz: batch files, read by bce_eval.stacks
LOSSY_SUFFIXES = (".jpg", ".jpeg")
# TIFF and BigTIFF, little and big endian
TIFF_SIGNATURES = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
NPY_SIGNATURE = b"\x93NUMPY"
SUFFIX_DECODERS: dict[str, Decoder] = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".npy": "npy"}
JPEG_SIGNATURE = b"\xff\xd8\xff"
# ITU-R 601-2 luma, the weights of Pillow's convert("L"), applied here in float64.
LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class Pair:
    """A target and its reconstruction, or the reason they cannot be evaluated (``problem``).

    Paths are strings: cheap to make and to send to worker processes by the million."""

    name: str
    target: str | None
    recon: str | None
    problem: str | None = None
    culprit: str | None = None  # the file the problem is about


@dataclass(frozen=True)
class Pairing:
    pairs: list[Pair]
    ignored: list[str]  # files with other suffixes (notes, hidden files are not listed)
    # Lines for the user that are not errors: a symbolic link to an enclosing folder (a loop),
    # not followed, whose files are all reached through the folder itself.
    notes: list[str] = field(default_factory=list)

    @property
    def lossy_targets(self) -> list[str]:
        targets = (p.target for p in self.pairs if p.target)
        return [t for t in targets if os.path.splitext(t)[1].lower() in LOSSY_SUFFIXES]


def file_problem(path: Path) -> str | None:
    """Why path is not a regular file that can be read, or None. Only looks (stat), never
    opens: opening a FIFO would wait for a writer forever."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "broken symbolic link" if path.is_symlink() else "no such file"
    except OSError as e:  # a name too long, a symbolic link loop, no permission
        return f"cannot be read: {e.strerror or e}"
    except ValueError as e:  # a NUL character in the name
        return f"cannot be read: {e}"
    if stat.S_ISDIR(mode):
        return "is a folder"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    return None


@dataclass(frozen=True)
class _Scan:
    files: dict[str, list[str]]  # image files by key
    ignored: list[str]
    bad: dict[str, str]  # image names that are not readable regular files, and why
    unlisted: dict[str, tuple[str, str]]  # folders that cannot be listed: key prefix -> (path, why)
    notes: list[str]
    stripped: int = 0  # names the suffix to strip was found on


@dataclass(frozen=True)
class _Walked:
    entries: list[tuple[os.DirEntry[str], str]]
    unlisted: dict[str, tuple[str, str]]
    notes: list[str]


def _folder_id(path: str | os.DirEntry[str]) -> tuple[int, int] | None:
    try:
        info = path.stat() if isinstance(path, os.DirEntry) else os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def _walk(root: Path) -> _Walked:
    """Every entry under root but folders and hidden names, with its path relative to root
    (forward slashes). Folders are walked into, symbolic links to folders too, unless the link
    leads to a folder it is in (a loop: noted, and not followed, since its files are all reached
    through that folder already). A folder that cannot be listed (no permission, a path longer
    than the system allows) is recorded with its problem, for the pairs it would hold."""
    entries: list[tuple[os.DirEntry[str], str]] = []
    unlisted: dict[str, tuple[str, str]] = {}
    notes: list[str] = []
    root_id = _folder_id(str(root))
    folders: list[tuple[str, str, frozenset[tuple[int, int] | None]]] = [
        (str(root), "", frozenset({root_id}))
    ]
    while folders:
        folder, prefix, ancestors = folders.pop()
        try:
            with os.scandir(folder) as listing:
                listed = list(listing)
        except OSError as e:
            if not prefix:
                raise InputError(folder, f"cannot list the folder: {e.strerror or e}") from None
            unlisted[prefix] = (folder, f"cannot list the folder: {e.strerror or e}")
            continue
        for entry in listed:
            if entry.name.startswith("."):
                continue
            relative = prefix + entry.name
            try:
                is_dir = entry.is_dir()
            except OSError:  # a symbolic link loop: listed, and reported by file_problem
                is_dir = False
            if not is_dir:
                entries.append((entry, relative))
                continue
            identity = _folder_id(entry) if entry.is_symlink() else None
            if identity is not None and identity in ancestors:
                notes.append(
                    f"{printable(entry.path)}: a symbolic link to a folder it is in (a loop); not followed"
                )
                continue
            if identity is None:
                identity = _folder_id(entry)
            folders.append((entry.path, relative + "/", ancestors | {identity}))
    return _Walked(entries, unlisted, notes)


def _is_file(entry: os.DirEntry[str]) -> bool:
    """Whether entry is a regular file, following links; from the directory listing, no stat."""
    try:
        return entry.is_file()
    except OSError:  # a symbolic link loop
        return False


def _scan(root: Path, strip_suffix: str = "") -> _Scan:
    """Image files under root by key: relative path without extension (and without strip_suffix).

    Folders are walked into, even when named like an image; anything else with an image suffix
    (a broken symbolic link, a FIFO) is kept, with its problem, so that it is reported.
    """
    if not root.is_dir():
        raise InputError(root, "is not a folder")
    found: dict[str, list[str]] = defaultdict(list)
    ignored: list[str] = []
    bad: dict[str, str] = {}
    suffixes = frozenset(s.removeprefix(".") for s in SUFFIXES)
    stripped = 0
    walked = _walk(root)
    for entry, relative in walked.entries:
        path = entry.path
        key, dot, suffix = relative.rpartition(".")
        if not dot or suffix.lower() not in suffixes:  # a dot in a folder's name leaves a "/"
            ignored.append(path)
            continue
        if strip_suffix and key.endswith(strip_suffix):
            key = key[: -len(strip_suffix)]
            stripped += 1
        found[key].append(path)
        if not _is_file(entry):
            problem = file_problem(Path(path))
            if problem is not None:
                bad[path] = problem
    for paths in found.values():
        paths.sort()
    ignored.sort()
    return _Scan(found, ignored, bad, walked.unlisted, walked.notes, stripped)


def _unlisted_folder(name: str, *scans: _Scan) -> tuple[str, str] | None:
    """The folder, and its problem, that holds name (a key) and could not be listed, if any."""
    for scan in scans:
        if scan.unlisted:
            for prefix, problem in scan.unlisted.items():
                if name.startswith(prefix):
                    return problem
    return None


def _ambiguous(paths: list[str]) -> str:
    names = " and ".join(printable(os.path.basename(p)) for p in paths)
    return f"ambiguous: {names} have the same name; keep one"


def pair_folders(targets: Path, recons: Path, *, recon_suffix: str = "") -> Pairing:
    """Pair files by relative path without extension, recursively; report every leftover."""
    target_scan, recon_scan = _scan(targets), _scan(recons, recon_suffix)
    if recon_suffix and not recon_scan.stripped and recon_scan.files:
        example = min(recon_scan.files)
        raise OptionError(
            "--recon-suffix",
            f"no reconstruction's name in {printable(recons)} ends with {recon_suffix!r} "
            f"(e.g. {printable(example)}); nothing would pair by it",
        )
    return pair_scans(target_scan, recon_scan, targets, recons)


def pair_scans(target_scan: _Scan, recon_scan: _Scan, targets: Path | str, recons: Path | str) -> Pairing:
    """Pair two listings (of folders, or of prefixes in object storage) by key; report every
    leftover, naming ``targets`` or ``recons`` where a partner is missing."""
    target_files, recon_files = target_scan.files, recon_scan.files
    bad = target_scan.bad | recon_scan.bad
    unlisted = target_scan.unlisted or recon_scan.unlisted
    pairs = []
    names = target_files.keys() | recon_files.keys()
    for scan in (target_scan, recon_scan):  # a folder with nothing found on the other side either
        for prefix, (folder, problem) in scan.unlisted.items():
            if not any(name.startswith(prefix) for name in names):
                pairs.append(Pair(prefix.rstrip("/"), None, None, problem, folder))
    for name in sorted(names):
        ts, rs = target_files.get(name, ()), recon_files.get(name, ())
        t, r = (ts[0] if ts else None), (rs[0] if rs else None)
        if len(ts) == 1 == len(rs) and t not in bad and r not in bad and not unlisted:
            pairs.append(Pair(name, t, r))  # the usual case, first
        elif unlisted and (unlistable := _unlisted_folder(name, target_scan, recon_scan)) is not None:
            pairs.append(Pair(name, t, r, unlistable[1], unlistable[0]))
        elif len(ts) == 1 == len(rs) and t not in bad and r not in bad:
            pairs.append(Pair(name, t, r))
        elif len(ts) > 1:
            pairs.append(Pair(name, t, r, _ambiguous(ts), ts[0]))
        elif len(rs) > 1:
            pairs.append(Pair(name, t, r, _ambiguous(rs), rs[0]))
        elif (unreadable := next((p for p in (t, r) if p in bad), None)) is not None:
            pairs.append(Pair(name, t, r, bad[unreadable], unreadable))
        elif r is None:
            pairs.append(Pair(name, t, None, f"no reconstruction in {printable(recons)}", t))
        else:  # no target
            pairs.append(Pair(name, None, r, f"no target in {printable(targets)}", r))
    pairs.sort(key=lambda pair: pair.name)
    return Pairing(pairs, target_scan.ignored + recon_scan.ignored, target_scan.notes + recon_scan.notes)


def _unreadable(*paths: Path) -> tuple[str, Path] | None:
    """The first problem among paths that are not readable regular files, and its file."""
    for path in paths:
        problem = file_problem(path)
        if problem is not None:
            return problem, path
    return None


def _name(listed: str) -> str:
    """A pair's name from its listed target path: the path without extension."""
    path = Path(listed)
    return (path.with_suffix("") if path.suffix else path).as_posix()  # "." and "/" have no suffix


def _join(root: Path | str, listed: str) -> Path | str:
    """A listed path under its root: a Path for a folder; for a URL, joined as text (and a URL
    in the list is taken as it is)."""
    if is_url(listed):
        return listed
    if isinstance(root, str) and is_url(root):
        return f"{root.rstrip('/')}/{listed}"
    return Path(root) / listed


def _outside(path: Path | str, root: Path | str) -> bool:
    """Whether path, its symbolic links and .. resolved, lies outside the folder root (resolved).
    A URL leads outside a URL root unless it lies under its prefix without a .. part, and a URL
    always leads outside a folder, and a file outside a URL prefix."""
    if is_url(path) or is_url(root):
        prefix = os.fspath(root).rstrip("/") + "/"
        if not (is_url(path) and is_url(root) and path.startswith(prefix)):
            return True
        return ".." in path[len(prefix) :].split("/")
    try:
        real = os.path.realpath(path)
        return os.path.commonpath([real, root]) != root
        real = os.path.realpath(path)
        return os.path.commonpath([real, root]) != root
    except (OSError, ValueError):  # a NUL in the name, a link loop: file_problem says what
        return False


def pairs_from_csv(
    listing: Path | str,
    targets: Path | str,
    recons: Path | str,
    *,
    allow_outside: bool = False,
    text: str | None = None,
) -> Pairing:
    """Pairs listed in a CSV with columns target,recon; relative paths are under TARGETS/RECONS.

    A row that cannot be evaluated (an empty or unreadable path, a pair listed twice, a target
    named as an earlier row's: one target for two reconstructions, or a.png and a.jpg) becomes
    that pair's problem; a list without a single row is an error of its own.

    Paths must lead inside TARGETS and RECONS (after .., absolute paths and symbolic links are
    resolved): a list from elsewhere must not make bce-eval open /etc/shadow or /proc/self/environ
    and report on it. A row that leads outside is an error for that row and is never opened;
    allow_outside (--allow-outside) lifts the rule. The list itself is read defensively
    (guards.read_input_file): a FIFO or a device is refused at once.

    ``text``: the list's content, when it was read from object storage. TARGETS and RECONS may
    be URLs (s3://...): paths under a URL are not looked at here (for millions of objects that
    would be a request each): a missing object is its pair's error when it is read.
    """
    try:
        if text is None:
            text = guards.read_input_file(listing, what="the pair list").decode("utf-8-sig")
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = [(reader.line_num, row) for row in reader]
        columns = reader.fieldnames
    except (UnicodeDecodeError, csv.Error) as e:
        raise InputError(listing, f"cannot read the pair list: {e}") from None
    if columns and not {"target", "recon"} <= set(columns):
        raise InputError(listing, "the pair list needs the columns target,recon")
    if not rows:
        raise InputError(listing, "lists no pairs: expected a header target,recon and a row per pair")
    roots = {
        side: folder if is_url(folder) else os.path.realpath(folder)
        for side, folder in (("target", targets), ("recon", recons))
    }
    pairs = []
    first_rows: dict[str, tuple[int, Path | str, Path | str]] = {}  # by name: a name is one image in reports
    for line, row in rows:
        t, r = (row["target"] or "").strip(), (row["recon"] or "").strip()
        if not t or not r:
            pairs.append(Pair(f"line {line}", None, None, f"line {line}: empty path", str(listing)))
            continue
        target, recon = _join(targets, t), _join(recons, r)
        name = _name(t)
        first, first_target, first_recon = first_rows.setdefault(name, (line, target, recon))
        if first != line:
            if (first_target, first_recon) == (target, recon):
                problem = f"line {line}: {printable(t)},{printable(r)} listed twice, first on line {first}"
            else:
                problem = (
                    f"line {line}: {printable(t)} is named {printable(name)}, as line {first}'s target is; "
                    "names (target paths without extension) must be unique"
                )
            # Named by its line: the name belongs to the first row, in every report.
            pairs.append(Pair(f"line {line}", str(target), str(recon), problem, str(listing)))
            continue
        if not allow_outside:
            sides = ((t, target, targets, roots["target"]), (r, recon, recons, roots["recon"]))
            escaped = next(
                ((listed, folder) for listed, path, folder, root in sides if _outside(path, root)), None
            )
            if escaped is not None:
                problem = (
                    f"line {line}: {printable(escaped[0])} leads outside {printable(escaped[1])}; "
                    "not read (--allow-outside reads it)"
                )
                pairs.append(Pair(name, str(target), str(recon), problem, str(listing)))
                continue
        unreadable = _unreadable(*(p for p in (target, recon) if isinstance(p, Path)))
        if unreadable is not None:
            problem, culprit = unreadable
            pairs.append(Pair(name, str(target), str(recon), problem, str(culprit)))
        else:
            pairs.append(Pair(name, str(target), str(recon)))
    return Pairing(pairs, [])


# Pillow's threshold for DecompressionBombError (twice Image.MAX_IMAGE_PIXELS): a file that
# claims more pixels is refused before anything is allocated for them, whatever the byte budget.
MAX_PIXELS = 2 * 89_478_485


def _check_pixel_count(width: int, height: int, path: Path | str) -> None:
    if width * height > MAX_PIXELS:
        limit = f"more than the {MAX_PIXELS:,} allowed against decompression bombs"
        raise InputError(path, f"claims {width}x{height} pixels, {limit}")


def _check_size(
    path: Path | str, shape: tuple[int, ...], itemsize: int, budget: int, *, logits: bool = False
) -> None:
    """The pixel limit and the byte budget, from a header's shape, before decoding: 8-bit images
    are budgeted for the lookup path, others for float64 (an 8-bit pair that ends up in float64,
    with --grayscale or beside a 16-bit partner, is checked again by the engine)."""
    if len(shape) >= 2:
        _check_pixel_count(shape[1], shape[0], path)
    check_budget(path, shape, lookup=itemsize == 1 and not logits, max_image_bytes=budget)


def _read_png16(png_bytes: bytes, path: Path | str) -> tuple[np.ndarray, bool]:
    """16-bit grey+alpha, RGB or RGBA PNG with all 16 bits, through pypng."""
    import png

    width, height, rows, info = png.Reader(bytes=png_bytes).read()
    pixels = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    if pixels.size != height * width * info["planes"]:  # checked already; a reshape must not fail
        raise InputError(path, f"cannot decode: {pixels.size} samples for {width}x{height}x{info['planes']}")
    return pixels.reshape(height, width, info["planes"]), bool(info["alpha"])


# Colour types (grey, RGB, RGBA) that libspng returns as stored (no palette, no tRNS, no gamma);
# 16-bit grey and RGB come back with an added opaque alpha channel, which is dropped. Its build
# refuses grey+alpha, which goes to Pillow (8-bit) or pypng (16-bit).
_SPNG_CHANNELS = {0: 1, 2: 3, 6: 4}


def _read_spng(png_bytes: bytes, path: Path | str, colour_type: int) -> tuple[np.ndarray, bool] | None:
    """8- and 16-bit non-palette PNG through pyspng, bit-identical to Pillow and pypng and about
    1.5x faster than Pillow (benchmarks/); None when pyspng is not installed."""
    try:
        import pyspng
    except ImportError:
        return None
    pixels = pyspng.load(png_bytes)
    channels = _SPNG_CHANNELS[colour_type]
    if pixels.ndim == 3 and pixels.shape[2] != channels:
        pixels = pixels[:, :, :channels]
    return pixels, colour_type == 6


def _read_png(data: bytes, path: Path | str, budget: int) -> tuple[np.ndarray, bool]:
    """A PNG, checked whole (integrity.check_png: every CRC, the Adler-32, the data's size, the
    palette) before a decoder sees it; decoders then read the verified scanlines, stored."""
    header = png_header(data, path)
    channels = 4 if header.colour_type == 3 else header.channels  # a palette becomes RGB or RGBA
    _check_size(path, (header.height, header.width, channels), 2 if header.depth == 16 else 1, budget)
    checked = check_png(data, path, header)
    png_bytes = checked.stored()
    del data, checked  # the file and the scanlines: only the stored copy is needed from here
    depth, colour_type = header.depth, header.colour_type
    read = None
    if depth in (8, 16) and colour_type in _SPNG_CHANNELS:
        read = _read_spng(png_bytes, path, colour_type)
    if read is None:
        if depth == 16 and colour_type in (2, 4, 6):
            read = _read_png16(png_bytes, path)
        else:
            read = _read_pillow(io.BytesIO(png_bytes), path, budget)
    return read


def _read_jpeg(data: bytes, path: Path | str, budget: int) -> tuple[np.ndarray, bool]:
    """JPEG through simplejpeg (libjpeg-turbo, as Pillow, and bit-identical to it), strictly: what
    libjpeg calls corrupt data ("Corrupt JPEG data: bad Huffman code", "Premature end of JPEG
    file") is an error, where Pillow fills the rest of the image with grey without a word. The
    frame header is checked against the file's size first: a 644-byte file cannot hold 65500 x
    2730 pixels, whatever its header says. Pillow decodes when simplejpeg is not installed."""
    frame = jpeg_frame(data, path)
    channels = len(frame.sampling)
    if channels not in (1, 3):
        raise InputError(path, f"unsupported image mode: a JPEG of {channels} components (CMYK)")
    if frame.height == 0 or frame.width == 0:
        raise InputError(path, f"cannot decode: damaged JPEG: size {frame.width}x{frame.height}")
    if len(data) < frame.fewest_bytes():
        raise InputError(
            path,
            f"cannot decode: damaged JPEG: its header claims {frame.width}x{frame.height} pixels, "
            f"which take at least {frame.fewest_bytes():,} bytes; the file has {len(data):,}",
        )
    _check_size(path, (frame.height, frame.width, channels), 1, budget)
    try:
        import simplejpeg
    except ImportError:
        return _read_pillow(io.BytesIO(data), path, budget)
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="GRAY" if channels == 1 else "RGB", strict=True)
    except ValueError as e:  # libjpeg's errors and, strict, its warnings about corrupt data
        raise InputError(path, f"cannot decode: damaged JPEG: {e}") from None
    return pixels, False


# Pillow modes bce-eval reads, with the samples per pixel and bytes per sample of the array they
# become (a palette image becomes RGB or RGBA).
_PILLOW_MODES = {
    "1": (1, 1),
    "L": (1, 1),
    "LA": (2, 1),
    "P": (4, 1),
    "PA": (4, 1),
    "RGB": (3, 1),
    "RGBA": (4, 1),
    "I;16": (1, 2),
    "I;16B": (1, 2),
    "I;16L": (1, 2),
    "F": (1, 4),
}


def _read_pillow(source: Path | str | io.BytesIO, path: Path | str, budget: int) -> tuple[np.ndarray, bool]:
    """What Pillow reads (BMP, WebP, TIFF up to 8 bits, PNG below 8 bits, palette or grey+alpha),
    refused after the header is parsed and before the pixels are decoded if it is too large."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(source, io.BytesIO):
        # From memory, never a path: Pillow maps a raw image straight from a file, skipping its
        # check that the image's strips lie inside it (a TIFF whose RowsPerStrip was damaged).
        source = io.BytesIO(_whole_file(source, budget))
    try:
        im = Image.open(source)
    except UnidentifiedImageError:
        raise InputError(path, "not an image file Pillow can read") from None
    with im:
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            raise InputError(path, f"has {frames} frames; only single images are supported")
        mode = im.mode
        if mode not in _PILLOW_MODES:
            raise InputError(path, f"unsupported image mode {mode}")
        channels, itemsize = _PILLOW_MODES[mode]
        _check_size(path, (im.height, im.width, channels), itemsize, budget)
        im.load()
        image: Image.Image = im
        if mode in ("P", "PA"):
            _check_palette_indices(im, path)
            image = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
        pixels = np.asarray(image)
    return pixels, image.mode in ("LA", "RGBA")


def _check_palette_indices(im: Any, path: Path | str) -> None:
    """Refuse indices past the palette's last entry: Pillow would show them as black, pypng
    refuses them."""
    entries = len(im.palette.palette) // len(im.palette.mode) if im.palette else 0
    if entries and entries < 256:
        largest = int(np.asarray(im if im.mode == "P" else im.getchannel(0)).max())
        if largest >= entries:
            raise InputError(path, f"cannot decode: palette index {largest} past its {entries} entries")


def _check_tiff_samples(bits: int, is_float: bool, path: Path | str) -> None:
    """Refuse sample types whose range is not fixed by the type: a 12-bit sample stored in 16 bits
    may mean 4095 or 65535 for white, and nothing in the file says which."""
    if bits not in ((16, 32, 64) if is_float else (1, 8, 16)):
        raise InputError(
            path,
            f"{bits}-bit {'float' if is_float else 'integer'} samples are not supported: "
            "TIFF must hold 1, 8 or 16-bit integer or 16, 32 or 64-bit float samples",
        )


def _tiff_number(value: object, tag: str, path: Path | str) -> int:
    """A tag that must hold one non-negative integer, as tifffile parsed it (a damaged file can
    give a tuple of several, or none)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0:
        return int(value)
    raise InputError(path, f"cannot decode: damaged TIFF: {tag} is {value!r}")


def _read_tiff(path: Path | str, budget: int, data: bytes | None = None) -> tuple[np.ndarray, bool]:
    """TIFF: tifffile for more than 8 bits a sample (it keeps them all), Pillow for the rest.

    MINISWHITE grey (0 is white) is inverted to the usual 0-is-black, as Pillow does for 8 bits:
    max - v for unsigned integers; float MINISWHITE has no obvious inverse and is refused.
    ``data``: the file's bytes, already read (from object storage).
    """
    # What tifffile logs about a damaged file is caught by the boundary (guards.decoding).
    import tifffile

    guards.quiet_libtiff()

    with tifffile.TiffFile(path if data is None else io.BytesIO(data)) as tif:
        if len(tif.pages) != 1:
            raise InputError(path, f"has {len(tif.pages)} pages; only single images are supported")
        page = tif.pages[0]
        # Tags that say how to read the samples must each hold one number: tifffile keeps what
        # a damaged file has (a tuple, none), and Pillow would guess (no compression) instead.
        for field, tag in (
            ("compression", "Compression"),
            ("photometric", "PhotometricInterpretation"),
            ("planarconfig", "PlanarConfiguration"),
            ("sampleformat", "SampleFormat"),
        ):
            _tiff_number(getattr(page, field), tag, path)
        size = tif.filehandle.size
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
            if offset + count > size:  # Pillow would read a raw strip without looking at its length
                strip = f"a strip of {count:,} bytes at {offset:,}"
                raise InputError(path, f"cannot decode: damaged TIFF: {strip} runs past its end")
        compression = getattr(page.compression, "name", str(page.compression))
        is_float = page.sampleformat == tifffile.SAMPLEFORMAT.IEEEFP
        if page.sampleformat == tifffile.SAMPLEFORMAT.INT:
            raise InputError(
                path, "signed integer samples are not supported: their range is ambiguous; use unsigned"
            )
        bits = _tiff_number(page.bitspersample, "BitsPerSample", path)
        _check_tiff_samples(bits, is_float, path)
        shape = tuple(
            _tiff_number(getattr(page, field), tag, path)
            for field, tag in (
                ("imagelength", "ImageLength"),
                ("imagewidth", "ImageWidth"),
                ("samplesperpixel", "SamplesPerPixel"),
            )
        )
        _check_size(path, (*shape[:2], max(1, shape[2])), (bits + 7) // 8, budget)
        photometric = page.photometric
        if bits <= 8 or photometric not in (
            tifffile.PHOTOMETRIC.MINISBLACK,
            tifffile.PHOTOMETRIC.MINISWHITE,
            tifffile.PHOTOMETRIC.RGB,
        ):
            return _read_pillow(path if data is None else io.BytesIO(data), path, budget)
        inverted = photometric == tifffile.PHOTOMETRIC.MINISWHITE
        if inverted and is_float:
            raise InputError(path, "float MINISWHITE (0 is white) TIFF is not supported; store 0 as black")
        try:
            pixels = page.asarray()
        except (ImportError, ValueError) as e:  # tifffile imports a codec only when a file needs it
            if isinstance(e, ValueError) and "imagecodecs" not in str(e):
                raise
            raise InputError(
                path, f"cannot decode {compression} compression without imagecodecs: pip install imagecodecs"
            ) from None
        separate = page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and page.samplesperpixel > 1
        has_alpha = bool(page.extrasamples) and page.samplesperpixel in (2, 4)
    if separate:
        pixels = np.moveaxis(pixels, 0, -1)
    height, width, samples = shape
    if pixels.shape != (height, width, samples) and not (samples == 1 and pixels.shape == (height, width)):
        raise InputError(path, f"cannot decode: damaged TIFF: decoded {pixels.shape} for a header of {shape}")
    if inverted and pixels.dtype.kind == "u":
        grey = pixels if pixels.ndim == 2 else pixels[:, :, 0]  # alpha, if any, keeps its sense
        grey[...] = np.iinfo(pixels.dtype).max - grey
    return pixels, has_alpha


def _npy_header(stream: Any, path: Path | str, available: int) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """A .npy header read from stream, never unpickled: (shape, fortran order, dtype, values),
    with the data it claims checked against the ``available`` bytes after the stream's position."""
    version = np.lib.format.read_magic(stream)
    header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in header:
        raise InputError(path, f"cannot read .npy: format version {version[0]}.{version[1]} is not supported")
    shape, fortran, dtype = header[version](stream)
    if dtype.hasobject:
        raise InputError(path, "cannot read .npy: holds Python objects, which are never loaded")
    count = int(np.prod(shape, dtype=object))
    if count * dtype.itemsize > available - stream.tell():
        raise InputError(path, "cannot read .npy: its header claims more data than the file holds")
    if dtype.itemsize == 0:  # a dtype of no size, which NumPy cannot lay out
        raise InputError(path, f"cannot read .npy: its sample type {dtype} has no size")
    return shape, fortran, dtype, count


def _npy_from_bytes(data: bytes, path: Path | str) -> np.ndarray:
    """A .npy file's bytes as a file would be read: the header parsed, never unpickled, and the
    size it claims checked against the bytes there are; a read-only view of data, nothing copied."""
    stream = io.BytesIO(data)
    shape, fortran, dtype, count = _npy_header(stream, path, len(data))
    array = np.frombuffer(data, dtype, count, stream.tell())
    return array.reshape(shape, order="F" if fortran else "C")


def _check_npy_shape(
    path: Path | str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    budget: int,
    *,
    logits: bool,
    batch_dimensions: int,
) -> None:
    """An array's shape and size checked before its data is read."""
    if len(shape) == batch_dimensions:  # read as a batch (bce_eval.stacks), never loaded whole here
        raise InputError(path, f"has shape {shape}: a batch of {shape[0]} images, not one image")
    if len(shape) not in (2, 3):
        raise InputError(path, f"has shape {shape}; expected (height, width) or (height, width, channels)")
    _check_size(path, tuple(shape), dtype.itemsize, budget, logits=logits)


def _read_npy(
    path: Path | str, budget: int, *, logits: bool, batch_dimensions: int = 4, data: bytes | None = None
) -> np.ndarray:
    """A .npy array, never unpickled. Its header is read first, so that a header that claims more
    data than the file holds (a forged shape of terabytes) is refused before anything is
    allocated, and the pixel count and byte budget are checked before the data is read; the
    data is then read once, straight into the array. ``data``: the file's bytes, already read
    (from object storage), checked the same way."""
    # A damaged header raises whatever numpy's parser (Python's tokenizer) does: the boundary
    # reports it.
    with decoding(path, "cannot read .npy"):
        if data is not None:
            array = _npy_from_bytes(data, path)
            _check_npy_shape(
                path, array.shape, array.dtype, budget, logits=logits, batch_dimensions=batch_dimensions
            )
            return np.array(array)
        try:
            file = open(os.open(path, _OPEN_FLAGS), "rb")  # noqa: SIM115 (closed below)
        except OSError as e:
            raise InputError(path, f"cannot be read: {e.strerror or e}") from None
        with file:
            shape, fortran, dtype, count = _npy_header(file, path, os.fstat(file.fileno()).st_size)
            _check_npy_shape(path, shape, dtype, budget, logits=logits, batch_dimensions=batch_dimensions)
            array = np.empty(count, dtype)
            if file.readinto(array.view(np.uint8).data) != array.nbytes:  # the file shrank meanwhile
                raise InputError(path, "cannot read .npy: the file is shorter than its header claims")
    return array.reshape(shape, order="F" if fortran else "C")


def _wider_than_float64(dtype: np.dtype, path: Path | str) -> InputError:
    return InputError(
        path,
        f"unsupported sample type {dtype}: bce-eval computes in float64, which would "
        "drop its extra precision; save it as float64",
    )


def normalize(pixels: np.ndarray, path: Path | str) -> np.ndarray:
    """Sample values to float64 by dtype: bool to {0,1}, uint8 / 255, uint16 / 65535, float16, 32
    and 64 as they are; wider floats (longdouble) are refused rather than narrowed."""
    kind, size = pixels.dtype.kind, pixels.dtype.itemsize
    if kind == "b":
        return pixels.astype(np.float64)
    if kind == "u" and size == 1:
        return pixels / np.float64(255)
    if kind == "u" and size == 2:
        return pixels / np.float64(65535)
    if kind == "f" and size <= 8:
        # A NaN whose payload marks it signalling makes NumPy warn as it widens; the metrics
        # refuse NaN with the value's place, so the warning would only be a stray line.
        with np.errstate(invalid="ignore"):
            return pixels.astype(np.float64)
    if kind == "f":
        raise _wider_than_float64(pixels.dtype, path)
    raise InputError(
        path,
        f"unsupported sample type {pixels.dtype}: its range is ambiguous; "
        "use uint8, uint16 or float in [0, 1]",
    )


def _to_hwc(pixels: np.ndarray, path: Path | str) -> np.ndarray:
    if pixels.ndim not in (2, 3):
        raise InputError(
            path, f"has shape {pixels.shape}; expected (height, width) or (height, width, channels)"
        )
    if pixels.size == 0:
        raise InputError(path, f"has shape {pixels.shape}: no pixels")
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


_READ_AT_ONCE = 1 << 26
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
# Suffixes whose files are read whole at once: the usual small PNG or JPEG in one system call.
_WHOLE_SUFFIXES = (".png", ".jpg", "jpeg")


def _read_rest(fd: int, head: bytes, limit: int, path: Path | str) -> bytes:
    """The whole of an open file whose first bytes are head, refused past limit bytes (the
    budget: a file larger than it cannot decode within it)."""
    parts, total = [head], len(head)
    while chunk := os.read(fd, min(1 << 24, limit + 1 - total) or 1):
        parts.append(chunk)
        total += len(chunk)
        if total > limit:
            raise InputError(path, f"is larger than the {limit:,} bytes allowed per pair (--max-image-bytes)")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _whole_file(path: Path | str, budget: int) -> bytes:
    """All of a file that _sniff found to be a regular file, refused past budget bytes."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        return _read_rest(fd, b"", budget, path)
    finally:
        os.close(fd)


def _format(head: bytes) -> Decoder | None:
    """The decoder for what a file's first bytes say it is; None if they match no format we read."""
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(JPEG_SIGNATURE):
        return "jpeg"
    if head[:4] in TIFF_SIGNATURES:
        return "tiff"
    if head.startswith(NPY_SIGNATURE):
        return "npy"
    if head.startswith(b"BM") or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "pillow"  # BMP, WebP
    return None


def _sniff(path: Path | str, budget: int, data: bytes | None = None) -> tuple[Decoder | None, bytes]:
    """The decoder for what the file's first bytes say it is (None if they match no format we
    read), and those bytes: all of the file for a PNG or a JPEG, which are decoded from memory.

    Opened without blocking and checked to be a regular file before a byte is read: a FIFO
    would otherwise wait for a writer forever. ``data``: the whole file, already read (from
    object storage); a PNG or JPEG larger than the budget is refused as a file on disk is."""
    if data is not None:
        sniffed = _format(data)
        if sniffed in ("png", "jpeg") and len(data) > budget:
            allowed = f"the {budget:,} bytes allowed per pair (--max-image-bytes)"
            raise InputError(path, f"is larger than {allowed}")
        return sniffed, data
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (OSError, ValueError):
        raise InputError(path, file_problem(Path(path)) or "cannot be read") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(path, "is a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file")
        whole = info.st_size < min(_READ_AT_ONCE, budget) and os.fspath(path)[-4:].lower() in _WHOLE_SUFFIXES
        head = os.read(fd, info.st_size + 1 if whole else 12)
        if head.startswith((PNG_SIGNATURE, JPEG_SIGNATURE)):
            data = head if whole and len(head) <= info.st_size else _read_rest(fd, head, budget, path)
            return ("png" if data.startswith(PNG_SIGNATURE) else "jpeg"), data
    except OSError as e:
        raise InputError(path, f"cannot be read: {e.strerror or e}") from None
    finally:
        os.close(fd)
    return _format(head), head


@dataclass(frozen=True)
class Decoded:
    """A decoded file: samples in their stored type, shape (height, width, channels)."""

    pixels: np.ndarray
    has_alpha: bool

    def channels(self, alpha: Alpha) -> np.ndarray:
        """The stored samples with the alpha channel dropped, unless alpha is "include"."""
        return self.pixels[:, :, :-1] if self.has_alpha and alpha == "drop" else self.pixels


@functools.cache
def _default_budget() -> int:
    return guards.default_max_image_bytes()


def decode(
    path: Path | str,
    *,
    logits: bool = False,
    max_image_bytes: int | None = None,
    layout: str | None = None,
    data: bytes | None = None,
) -> Decoded:
    """Read one file into its stored sample type; nothing is scaled yet.

    logits: the file holds logits (.npy float only). layout: the --layout of batch files; for
    "nchw", a 3-D .npy image is channels first (channels x height x width).
    data: the file's bytes, already read (from object storage), decoded by the same decoders,
    with the same integrity checks and byte budget, as a file on disk; path then only names it.
    max_image_bytes: the memory a pair of such images may take to evaluate (guards.pair_bytes),
    checked from the header before decoding; by default a share of the memory available
    (guards.default_max_image_bytes).

    Whatever goes wrong with the file, in bce-eval's checks or in a decoder library (any
    exception, MemoryError, a warning about the file), is one InputError naming it
    (guards.decoding).
    """
    budget = _default_budget() if max_image_bytes is None else max_image_bytes
    with decoding(path):
        sniffed, head = _sniff(path, budget, data)
        decoder = sniffed or SUFFIX_DECODERS.get(os.path.splitext(path)[1].lower(), "pillow")
        has_alpha = False
        if logits and decoder != "npy":
            raise InputError(path, "with --logits, reconstructions must be .npy files of float logits")
        if decoder == "npy":
            batch_dimensions = 3 if layout == "nhw" else 4
            pixels = _read_npy(path, budget, logits=logits, batch_dimensions=batch_dimensions, data=data)
            if logits and pixels.dtype.kind != "f":
                raise InputError(path, f"with --logits, reconstructions must hold floats, not {pixels.dtype}")
            if layout == "nchw" and pixels.ndim == 3:
                pixels = np.ascontiguousarray(np.moveaxis(pixels, 0, -1))  # summed as a file's would be
        elif decoder == "tiff":
            pixels, has_alpha = _read_tiff(path, budget, data)
        elif decoder == "png":
            pixels, has_alpha = _read_png(head, path, budget)
        elif decoder == "jpeg":
            pixels, has_alpha = _read_jpeg(head, path, budget)
        else:
            source = path if data is None else io.BytesIO(data)
            pixels, has_alpha = _read_pillow(source, path, budget)
        return Decoded(_to_hwc(pixels, path), has_alpha)


def to_float(
    decoded: Decoded,
    path: Path | str,
    *,
    alpha: Alpha = "drop",
    grayscale: bool = False,
    logits: bool = False,
) -> np.ndarray:
    """float64 (height, width, channels), scaled by sample type (logits as they are)."""
    if logits and decoded.pixels.dtype.itemsize > 8:
        raise _wider_than_float64(decoded.pixels.dtype, path)
    if logits:
        with np.errstate(invalid="ignore"):  # as in normalize: NaN is refused by the metrics
            image = decoded.pixels.astype(np.float64)
    else:
        image = normalize(decoded.pixels, path)
    return _channels(image, path, alpha=alpha, has_alpha=decoded.has_alpha, grayscale=grayscale)


def load(path: Path, *, alpha: Alpha = "drop", grayscale: bool = False, logits: bool = False) -> np.ndarray:
    """Decode one file to float64 (height, width, channels); values are checked later, by the metrics."""
    return to_float(decode(path, logits=logits), path, alpha=alpha, grayscale=grayscale, logits=logits)


def _channels(
    image: np.ndarray, path: Path | str, *, alpha: Alpha, has_alpha: bool, grayscale: bool
) -> np.ndarray:
    """Drop or keep alpha, and convert colour to luminance for --grayscale."""
    colour, alpha_channel = (image[:, :, :-1], image[:, :, -1:]) if has_alpha else (image, None)
    if grayscale:
        if colour.shape[2] == 3:
            colour = (colour @ LUMA)[:, :, None]
        elif colour.shape[2] != 1:
            raise InputError(path, f"--grayscale needs 1 or 3 colour channels, not {colour.shape[2]}")
    if alpha_channel is not None and alpha == "include":
        return np.concatenate([colour, alpha_channel], axis=2)
    return colour
