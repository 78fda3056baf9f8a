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
import io
import os
import stat
import struct
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .errors import InputError, printable
from .storage import is_url

Alpha = Literal["drop", "include"]
Decoder = Literal["png", "tiff", "npy", "pillow"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
SUFFIXES = (*IMAGE_SUFFIXES, ".npy")
LOSSY_SUFFIXES = (".jpg", ".jpeg")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# TIFF and BigTIFF, little and big endian
TIFF_SIGNATURES = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
NPY_SIGNATURE = b"\x93NUMPY"
SUFFIX_DECODERS: dict[str, Decoder] = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".npy": "npy"}
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


def _walk(root: Path) -> Iterator[tuple[os.DirEntry[str], str]]:
    """Every entry under root but folders and hidden names, with its path relative to root
    (forward slashes). Folders are walked into, links to folders are not."""
    folders = [(root, "")]
    while folders:
        folder, prefix = folders.pop()
        try:
            with os.scandir(folder) as entries:
                listed = list(entries)
        except OSError as e:
            raise InputError(folder, f"cannot list the folder: {e.strerror or e}") from None
        for entry in listed:
            if entry.name.startswith("."):
                continue
            relative = prefix + entry.name
            try:
                is_dir = entry.is_dir()
            except OSError:  # a symbolic link loop: listed, and reported by file_problem
                is_dir = False
            if is_dir:
                if not entry.is_symlink():
                    folders.append((Path(entry.path), relative + "/"))
                continue
            yield entry, relative


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
    for entry, relative in _walk(root):
        path = entry.path
        key, dot, suffix = relative.rpartition(".")
        if not dot or suffix.lower() not in suffixes:  # a dot in a folder's name leaves a "/"
            ignored.append(path)
            continue
        if strip_suffix and key.endswith(strip_suffix):
            key = key[: -len(strip_suffix)]
        found[key].append(path)
        if not _is_file(entry):
            problem = file_problem(Path(path))
            if problem is not None:
                bad[path] = problem
    for paths in found.values():
        paths.sort()
    ignored.sort()
    return _Scan(found, ignored, bad)


def _ambiguous(paths: list[str]) -> str:
    names = " and ".join(printable(os.path.basename(p)) for p in paths)
    return f"ambiguous: {names} have the same name; keep one"


def pair_folders(targets: Path, recons: Path, *, recon_suffix: str = "") -> Pairing:
    """Pair files by relative path without extension, recursively; report every leftover."""
    return pair_scans(_scan(targets), _scan(recons, recon_suffix), targets, recons)


def pair_scans(target_scan: _Scan, recon_scan: _Scan, targets: Path | str, recons: Path | str) -> Pairing:
    """Pair two listings (of folders, or of prefixes in object storage) by key; report every
    leftover, naming ``targets`` or ``recons`` where a partner is missing."""
    target_files, recon_files = target_scan.files, recon_scan.files
    bad = target_scan.bad | recon_scan.bad
    pairs = []
    for name in sorted(target_files.keys() | recon_files.keys()):
        ts, rs = target_files.get(name, ()), recon_files.get(name, ())
        t, r = (ts[0] if ts else None), (rs[0] if rs else None)
        if len(ts) == 1 == len(rs) and t not in bad and r not in bad:
            pairs.append(Pair(name, t, r))  # the usual case, first
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
    return Pairing(pairs, target_scan.ignored + recon_scan.ignored)


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


def pairs_from_csv(
    listing: Path | str, targets: Path | str, recons: Path | str, *, text: str | None = None
) -> Pairing:
    """Pairs listed in a CSV with columns target,recon; relative paths are under TARGETS/RECONS.

    A row that cannot be evaluated (an empty or unreadable path, a pair listed twice, a target
    named as an earlier row's: one target for two reconstructions, or a.png and a.jpg) becomes
    that pair's problem; a list without a single row is an error of its own.

    ``text``: the list's content, when it was read from object storage. Paths under a URL are
    not looked at here (for millions of objects that would be a request each): a missing object
    is its pair's error when it is read.
    """
    try:
        with (
            io.StringIO(text, newline="")
            if text is not None
            else Path(listing).open(newline="", encoding="utf-8-sig")
        ) as f:
            reader = csv.DictReader(f)
            rows = [(reader.line_num, row) for row in reader]
            columns = reader.fieldnames
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(listing, f"cannot read the pair list: {e}") from None
    if columns and not {"target", "recon"} <= set(columns):
        raise InputError(listing, "the pair list needs the columns target,recon")
    if not rows:
        raise InputError(listing, "lists no pairs: expected a header target,recon and a row per pair")
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
        unreadable = _unreadable(*(p for p in (target, recon) if isinstance(p, Path)))
        if unreadable is not None:
            problem, culprit = unreadable
            pairs.append(Pair(name, str(target), str(recon), problem, str(culprit)))
        else:
            pairs.append(Pair(name, str(target), str(recon)))
    return Pairing(pairs, [])


# Pillow's threshold for DecompressionBombError (twice Image.MAX_IMAGE_PIXELS): a file that
# claims more pixels is refused before anything is allocated for them.
MAX_PIXELS = 2 * 89_478_485


def _check_pixel_count(width: int, height: int, path: Path | str) -> None:
    if width * height > MAX_PIXELS:
        limit = f"more than the {MAX_PIXELS:,} allowed against decompression bombs"
        raise InputError(path, f"claims {width}x{height} pixels, {limit}")


def _png_header(data: bytes, path: Path | str) -> tuple[int, int]:
    """Bit depth and colour type from the IHDR chunk, which the PNG standard puts first."""
    if len(data) < 26 or data[:8] != PNG_SIGNATURE or data[8:16] != b"\0\0\0\rIHDR":
        raise InputError(path, "not a PNG file (bad signature)")
    width, height = struct.unpack_from(">II", data, 16)
    _check_pixel_count(width, height, path)
    return data[24], data[25]


def _check_png_frames(data: bytes, path: Path | str) -> None:
    """Refuse an animated PNG of several frames, as Pillow does: libspng and pypng would read its
    first image silently. The acTL chunk that says so comes before the first IDAT."""
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            return
        if kind == b"acTL" and length >= 4 and pos + 12 <= len(data):
            (frames,) = struct.unpack_from(">I", data, pos + 8)
            if frames > 1:
                raise InputError(path, f"has {frames} frames; only single images are supported")
        pos += 12 + length


def _read_png16(path: Path | str, data: bytes | None = None) -> tuple[np.ndarray, bool]:
    """16-bit grey+alpha, RGB or RGBA PNG with all 16 bits, through pypng."""
    import png

    try:
        reader = png.Reader(filename=str(path)) if data is None else png.Reader(bytes=data)
        width, height, rows, info = reader.read()
        pixels = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    # pypng raises its own errors for damaged chunks, zlib's for damaged compressed data.
    except (png.Error, zlib.error, OSError, ValueError, EOFError) as e:
        raise InputError(path, f"cannot decode: {e}") from None
    return pixels.reshape(height, width, info["planes"]), bool(info["alpha"])


def _png_chunks_intact(data: bytes) -> bool:
    """Whether every chunk up to IEND is complete and its CRC matches.

    libspng (pyspng) is run without checksums, so damaged data would decode silently into wrong
    pixels; checking here keeps the promise Pillow and pypng make. About 0.5 ms per MB.
    """
    view, pos, end = memoryview(data), 8, len(data)
    while pos + 12 <= end:
        (length,) = struct.unpack_from(">I", data, pos)
        crc_at = pos + 8 + length
        if crc_at + 4 > end:
            return False
        if zlib.crc32(view[pos + 4 : crc_at]) != struct.unpack_from(">I", data, crc_at)[0]:
            return False
        if data[pos + 4 : pos + 8] == b"IEND":
            return True
        pos = crc_at + 4
    return False


# Colour types (grey, RGB, RGBA) that libspng returns as stored (no palette, no tRNS, no gamma);
# 16-bit grey and RGB come back with an added opaque alpha channel, which is dropped. Its build
# refuses grey+alpha, which goes to Pillow (8-bit) or pypng (16-bit).
_SPNG_CHANNELS = {0: 1, 2: 3, 6: 4}


def _read_spng(data: bytes, path: Path | str, colour_type: int) -> tuple[np.ndarray, bool] | None:
    """8- and 16-bit non-palette PNG through pyspng, bit-identical to Pillow and pypng and about
    1.5x faster than Pillow (benchmarks/); None when pyspng is not installed."""
    try:
        import pyspng
    except ImportError:
        return None
    if not _png_chunks_intact(data):
        raise InputError(path, "cannot decode: damaged PNG (truncated, or a chunk fails its CRC)")
    try:
        pixels = pyspng.load(data)
    except RuntimeError as e:
        raise InputError(path, f"cannot decode: {str(e).removeprefix('pyspng: ')}") from None
    channels = _SPNG_CHANNELS[colour_type]
    if pixels.ndim == 3 and pixels.shape[2] != channels:
        pixels = pixels[:, :, :channels]
    return pixels, colour_type == 6


def _read_pillow(path: Path | str, data: bytes | None = None) -> tuple[np.ndarray, bool]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path if data is None else io.BytesIO(data)) as im:
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                raise InputError(path, f"has {frames} frames; only single images are supported")
            im.load()
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif mode == "PA":
                im = im.convert("RGBA")
            pixels = np.asarray(im)
    except UnidentifiedImageError:
        raise InputError(path, "not an image file Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise InputError(path, f"cannot decode: {e}") from None
    # Pillow raises many kinds of exception on damaged files (OSError, SyntaxError, struct.error,
    # EOFError, ValueError ...); all of them mean the same to the user.
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as e:
        raise InputError(path, f"cannot decode: {e}") from None
    if im.mode not in ("1", "L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "F"):
        raise InputError(path, f"unsupported image mode {mode}")
    return pixels, im.mode in ("LA", "RGBA")


def _check_tiff_samples(bits: int, is_float: bool, path: Path | str) -> None:
    """Refuse sample types whose range is not fixed by the type: a 12-bit sample stored in 16 bits
    may mean 4095 or 65535 for white, and nothing in the file says which."""
    if bits not in ((16, 32, 64) if is_float else (1, 8, 16)):
        raise InputError(
            path,
            f"{bits}-bit {'float' if is_float else 'integer'} samples are not supported: "
            "TIFF must hold 1, 8 or 16-bit integer or 16, 32 or 64-bit float samples",
        )


def _read_tiff(path: Path | str, data: bytes | None = None) -> tuple[np.ndarray, bool]:
    """TIFF: tifffile for more than 8 bits a sample (it keeps them all), Pillow for the rest.

    MINISWHITE grey (0 is white) is inverted to the usual 0-is-black, as Pillow does for 8 bits:
    max - v for unsigned integers; float MINISWHITE has no obvious inverse and is refused.
    """
    # tifffile also logs what it finds wrong with a damaged file, over several lines; the
    # InputError below reports it in one.
    import logging

    import tifffile

    logging.getLogger("tifffile").setLevel(logging.CRITICAL)

    compression = "this"
    try:
        with tifffile.TiffFile(path if data is None else io.BytesIO(data)) as tif:
            if len(tif.pages) != 1:
                raise InputError(path, f"has {len(tif.pages)} pages; only single images are supported")
            page = tif.pages[0]
            _check_pixel_count(page.imagewidth, page.imagelength, path)
            compression = getattr(page.compression, "name", str(page.compression))
            is_float = page.sampleformat == tifffile.SAMPLEFORMAT.IEEEFP
            if page.sampleformat == tifffile.SAMPLEFORMAT.INT:
                raise InputError(
                    path, "signed integer samples are not supported: their range is ambiguous; use unsigned"
                )
            _check_tiff_samples(page.bitspersample, is_float, path)
            photometric = page.photometric
            if page.bitspersample <= 8 or photometric not in (
                tifffile.PHOTOMETRIC.MINISBLACK,
                tifffile.PHOTOMETRIC.MINISWHITE,
                tifffile.PHOTOMETRIC.RGB,
            ):
                return _read_pillow(path, data)
            inverted = photometric == tifffile.PHOTOMETRIC.MINISWHITE
            if inverted and is_float:
                raise InputError(
                    path, "float MINISWHITE (0 is white) TIFF is not supported; store 0 as black"
                )
            pixels = page.asarray()
            separate = page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and page.samplesperpixel > 1
            has_alpha = bool(page.extrasamples) and page.samplesperpixel in (2, 4)
    except ImportError:  # tifffile imports a codec only when a file needs it
        raise InputError(
            path, f"cannot decode {compression} compression without imagecodecs: pip install imagecodecs"
        ) from None
    # tifffile raises these on damaged files; TypeError, IndexError and AttributeError for tags
    # whose values have the wrong type or number.
    except (
        tifffile.TiffFileError,
        OSError,
        ValueError,
        KeyError,
        TypeError,
        IndexError,
        AttributeError,
        struct.error,
        EOFError,
        zlib.error,
        NotImplementedError,
    ) as e:
        hint = " (pip install imagecodecs)" if "imagecodecs" in str(e) else ""
        raise InputError(path, f"cannot decode: {e}{hint}") from None
    except MemoryError:
        raise InputError(path, "cannot decode: the image does not fit in memory") from None
    if separate:
        pixels = np.moveaxis(pixels, 0, -1)
    if inverted and pixels.dtype.kind == "u":
        grey = pixels if pixels.ndim == 2 else pixels[:, :, 0]  # alpha, if any, keeps its sense
        grey[...] = np.iinfo(pixels.dtype).max - grey
    return pixels, has_alpha


def _npy_from_bytes(data: bytes, path: Path | str) -> np.ndarray:
    """A .npy file's bytes as a memory-mapped file would be read: the header parsed, never
    unpickled, and the size it claims checked against the bytes there are before any of them
    is taken as the array."""
    import tokenize

    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in header:
            raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")
        shape, fortran, dtype = header[version](stream)
    except (ValueError, EOFError, SyntaxError, tokenize.TokenError) as e:
        raise InputError(path, f"cannot read .npy: {e}") from None
    if dtype.hasobject:
        raise InputError(path, "cannot read .npy: holds Python objects, which are never loaded")
    count = int(np.prod(shape, dtype=object))
    if count * dtype.itemsize > len(data) - stream.tell():
        raise InputError(path, "cannot read .npy: its header claims more data than the file holds")
    array = np.frombuffer(data, dtype, count, stream.tell()).reshape(shape, order="F" if fortran else "C")
    return array.copy(order="K")


def _read_npy(path: Path | str, data: bytes | None = None) -> np.ndarray:
    """A .npy array, never unpickled. It is memory-mapped first, so a header that claims more
    data than the file holds (a forged shape of terabytes) is refused before anything is
    allocated, and the pixel count is checked like an image's before the data is read."""
    import tokenize

    if data is not None:
        array = _npy_from_bytes(data, path)
        if array.ndim in (2, 3):
            _check_pixel_count(array.shape[1], array.shape[0], path)
        return array
    try:
        with np.errstate(over="raise"):  # numpy sizes the mapping with integer scalars
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OverflowError, FloatingPointError):
        raise InputError(path, "cannot read .npy: its header claims a shape too large for any file") from None
    # numpy parses the header's dict with Python's tokenizer: a damaged one raises its errors.
    except (OSError, ValueError, EOFError, SyntaxError, tokenize.TokenError) as e:
        problem = "holds Python objects, which are never loaded" if "Python objects" in str(e) else e
        raise InputError(path, f"cannot read .npy: {problem}") from None
    if mapped.ndim in (2, 3):
        _check_pixel_count(mapped.shape[1], mapped.shape[0], path)
    try:
        return np.array(mapped)
    except MemoryError:
        raise InputError(path, "cannot read .npy: the array does not fit in memory") from None


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


def _read_all(fd: int, size: int) -> bytes:
    """The whole of an open file: one read when it is as large as fstat said."""
    os.lseek(fd, 0, os.SEEK_SET)
    parts = []
    while chunk := os.read(fd, max(size, 1 << 16)):
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


_READ_AT_ONCE = 1 << 26
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def _format(head: bytes) -> Decoder | None:
    """The decoder for what a file's first bytes say it is; None if they match no format we read."""
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head[:4] in TIFF_SIGNATURES:
        return "tiff"
    if head.startswith(NPY_SIGNATURE):
        return "npy"
    if head.startswith((b"\xff\xd8\xff", b"BM")) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "pillow"  # JPEG, BMP, WebP
    return None


def _sniff(path: Path | str, data: bytes | None = None) -> tuple[Decoder | None, bytes]:
    """The decoder for what the file's first bytes say it is (None if they match no format we
    read), and those bytes: all of the file for a PNG, which is decoded from memory.

    Opened without blocking and checked to be a regular file before a byte is read: a FIFO
    would otherwise wait for a writer forever. ``data``: the whole file, already read."""
    if data is not None:
        return _format(data), data
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (OSError, ValueError):
        raise InputError(path, file_problem(Path(path)) or "cannot be read") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(path, "is a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file")
        # A file named .png is read whole at once (one system call for the usual small image);
        # others by their first bytes, as their decoders read the file themselves.
        whole = info.st_size < _READ_AT_ONCE and os.fspath(path)[-4:].lower() == ".png"
        head = os.read(fd, info.st_size + 1 if whole else 12)
        if head.startswith(PNG_SIGNATURE):
            return "png", head if whole and len(head) <= info.st_size else _read_all(fd, info.st_size)
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


def decode(path: Path | str, *, logits: bool = False, data: bytes | None = None) -> Decoded:
    """Read one file into its stored sample type; nothing is scaled yet.

    logits: the file holds logits (.npy float only). data: the file's bytes, already read (from
    object storage), decoded by the same decoders as a file on disk; path then only names it.
    """
    sniffed, head = _sniff(path, data)
    decoder = sniffed or SUFFIX_DECODERS.get(os.path.splitext(path)[1].lower(), "pillow")
    has_alpha = False
    if logits and decoder != "npy":
        raise InputError(path, "with --logits, reconstructions must be .npy files of float logits")
    if decoder == "npy":
        pixels = _read_npy(path, data)
        if logits and pixels.dtype.kind != "f":
            raise InputError(path, f"with --logits, reconstructions must hold floats, not {pixels.dtype}")
    elif decoder == "tiff":
        pixels, has_alpha = _read_tiff(path, data)
    elif decoder == "png":
        depth, colour_type = _png_header(head, path)
        _check_png_frames(head, path)
        read = None
        if depth in (8, 16) and colour_type in _SPNG_CHANNELS:
            read = _read_spng(head, path, colour_type)
        if read is None:
            read = (
                _read_png16(path, data)
                if depth == 16 and colour_type in (2, 4, 6)
                else _read_pillow(path, data)
            )
        pixels, has_alpha = read
    else:
        pixels, has_alpha = _read_pillow(path, data)
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
    image = decoded.pixels.astype(np.float64) if logits else normalize(decoded.pixels, path)
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
