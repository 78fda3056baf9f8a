"""A seeded corpus of hostile input for bce-eval, and the oracle that says which files are damaged.

Used by tests/test_fuzz.py (a few thousand cases in CI) and benchmarks/fuzz.py (100,000 and
more). Every case is a function of (seed, index) alone, so a failure is reproduced by its index:

- valid seeds of every format and bit depth bce-eval reads: PNG 1, 2, 4, 8 and 16-bit grey,
  RGB, RGBA, grey+alpha, palette (with and without tRNS), interlaced; JPEG grey and colour,
  baseline and progressive; BMP; WebP lossless and lossy; TIFF 1, 8 and 16-bit, float 32 and
  64, LZW and deflate; .npy of every dtype;
- mutants of them: flipped bits, bytes set to edge values, ranges deleted, duplicated or
  inserted, truncation, header fields changed, and for PNG the chunk CRCs fixed up afterwards
  (so that the mutation reaches the decoder and only the zlib stream's Adler-32 can tell);
- decompression bombs: headers that claim far more pixels than the file holds;
- hostile file names: control characters, workflow commands, formula prefixes, markup,
  bytes that are not UTF-8.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import png
import tifffile
from PIL import Image

SIDE = (9, 12)  # height, width of every seed: small, odd, and not a multiple of 8


# ---------------------------------------------------------------------------------------------
# Seeds: one valid file of each kind.


def _pillow(pixels: np.ndarray, fmt: str, mode: str | None = None, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, fmt, **options)
    return buffer.getvalue()


def _pypng(pixels: np.ndarray, **options: object) -> bytes:
    h, w = pixels.shape[:2]
    planes = pixels.shape[2] if pixels.ndim == 3 else 1
    buffer = io.BytesIO()
    png.Writer(w, h, **options).write(buffer, pixels.reshape(h, w * planes).tolist())
    return buffer.getvalue()


def _tiff(pixels: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels, **options)
    return buffer.getvalue()


def _npy(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, pixels)
    return buffer.getvalue()


def _palette(rng: np.random.Generator, depth: int, transparency: bool) -> bytes:
    entries = 1 << depth
    indices = rng.integers(0, entries, SIDE, dtype=np.uint8)
    palette = [(int(v), int(v) // 2, 255 - int(v)) for v in rng.integers(0, 256, entries)]
    alpha = {"transparent": [int(v) for v in rng.integers(0, 256, entries)]} if transparency else {}
    return _pypng(indices, palette=[(*c, a) for c, a in zip(palette, alpha["transparent"], strict=True)]
                  if transparency else palette, bitdepth=depth)  # fmt: skip


def seeds(rng: np.random.Generator) -> dict[str, bytes]:
    """One valid file of every kind bce-eval reads, by a name whose suffix is its format."""
    h, w = SIDE
    u8 = lambda *c: rng.integers(0, 256, (h, w, *c), dtype=np.uint8)  # noqa: E731
    u16 = lambda *c: rng.integers(0, 65536, (h, w, *c), dtype=np.uint16)  # noqa: E731
    files = {
        "grey8.png": _pillow(u8(), "PNG"),
        "rgb8.png": _pillow(u8(3), "PNG"),
        "rgba8.png": _pillow(u8(4), "PNG"),
        "greyalpha8.png": _pillow(u8(2), "PNG", "LA"),
        "grey16.png": _pypng(u16(), greyscale=True, bitdepth=16),
        "rgb16.png": _pypng(u16(3), greyscale=False, bitdepth=16),
        "rgba16.png": _pypng(u16(4), greyscale=False, alpha=True, bitdepth=16),
        "greyalpha16.png": _pypng(u16(2), greyscale=True, alpha=True, bitdepth=16),
        "interlaced.png": _pypng(u8(3), greyscale=False, interlace=True),
        "stored.png": _pillow(u8(3), "PNG", compress_level=0),
        "jpeg_grey.jpg": _pillow(u8(), "JPEG", quality=90),
        "jpeg_rgb.jpg": _pillow(u8(3), "JPEG", quality=90),
        "jpeg_444.jpg": _pillow(u8(3), "JPEG", quality=90, subsampling=0),
        "jpeg_progressive.jpg": _pillow(u8(3), "JPEG", quality=90, progressive=True),
        "rgb.bmp": _pillow(u8(3), "BMP"),
        "grey.bmp": _pillow(u8(), "BMP"),
        "lossless.webp": _pillow(u8(3), "WEBP", lossless=True),
        "lossy.webp": _pillow(u8(3), "WEBP", quality=80),
        "rgba.webp": _pillow(u8(4), "WEBP", lossless=True),
        "grey8.tif": _tiff(u8()),
        "rgb8_lzw.tif": _pillow(u8(3), "TIFF", compression="tiff_lzw"),
        "bilevel.tif": _pillow(u8() > 127, "TIFF"),
        "grey16.tif": _tiff(u16()),
        "rgb16_deflate.tif": _tiff(u16(3), photometric="rgb", compression="zlib"),
        "float32.tif": _tiff(rng.random((h, w), dtype=np.float32)),
        "float64_rgb.tif": _tiff(rng.random((h, w, 3)), photometric="rgb"),
        "u8.npy": _npy(u8(3)),
        "u16.npy": _npy(u16()),
        "f16.npy": _npy(rng.random((h, w)).astype(np.float16)),
        "f32.npy": _npy(rng.random((h, w, 3), dtype=np.float32)),
        "f64.npy": _npy(rng.random((h, w))),
        "bool.npy": _npy(u8() > 127),
    }
    for depth in (1, 2, 4):
        top = (1 << depth) - 1
        files[f"grey{depth}.png"] = _pypng(
            rng.integers(0, top + 1, SIDE, dtype=np.uint8), greyscale=True, bitdepth=depth
        )
    for depth in (1, 2, 4, 8):
        files[f"palette{depth}.png"] = _palette(rng, depth, transparency=False)
    files["palette8_trns.png"] = _palette(rng, 8, transparency=True)
    return files


# ---------------------------------------------------------------------------------------------
# Mutations.


def _png_fix_crcs(data: bytes) -> bytes:
    """Every chunk's CRC recomputed, as far as the chunk layout can be followed."""
    out, pos = bytearray(data), 8
    while pos + 12 <= len(out):
        length = struct.unpack_from(">I", out, pos)[0]
        end = pos + 8 + length
        if end + 4 > len(out):
            break
        out[end : end + 4] = struct.pack(">I", zlib.crc32(bytes(out[pos + 4 : end])))
        pos = end + 4
    return bytes(out)


EDGE_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
EDGE_WORDS = (0, 1, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 13000, 65500)


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One to four random mutations of data; for a PNG, often with its CRCs fixed up after."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        if not out:
            break
        n = len(out)
        at = int(rng.integers(0, n))
        kind = int(rng.integers(0, 9))
        if kind == 0:  # flip a bit
            out[at] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:  # an edge value
            out[at] = EDGE_BYTES[int(rng.integers(0, len(EDGE_BYTES)))]
        elif kind == 2:  # a 16 or 32-bit edge value, either byte order
            value = EDGE_WORDS[int(rng.integers(0, len(EDGE_WORDS)))]
            size = 2 if value <= 0xFFFF and rng.random() < 0.5 else 4
            order = "big" if rng.random() < 0.5 else "little"
            out[at : at + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, order)
        elif kind == 3:  # delete a range
            del out[at : at + int(rng.integers(1, 64))]
        elif kind == 4:  # duplicate a range
            out[at:at] = out[at : at + int(rng.integers(1, 64))]
        elif kind == 5:  # insert random bytes
            out[at:at] = rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8).tobytes()
        elif kind == 6:  # truncate
            del out[at:]
        elif kind == 7:  # random bytes over a range
            span = min(int(rng.integers(1, 32)), n - at)
            out[at : at + span] = rng.integers(0, 256, span, dtype=np.uint8).tobytes()
        else:  # in the first 64 bytes, where the headers are
            out[int(rng.integers(0, min(n, 64)))] ^= 1 << int(rng.integers(0, 8))
    result = bytes(out)
    if result.startswith(b"\x89PNG") and rng.random() < 0.5:
        result = _png_fix_crcs(result)
    return result


# ---------------------------------------------------------------------------------------------
# Bombs: headers that claim far more than the file holds.


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bombs() -> dict[str, bytes]:
    """Files of a few hundred bytes to a few kilobytes whose headers claim gigabytes."""
    files: dict[str, bytes] = {}
    stream = zlib.compress(b"\0" * 100_000, 9)
    for (width, height, depth, colour), name in (
        ((13000, 13000, 16, 6), "png_rgba16"),
        ((20000, 8000, 8, 2), "png_rgb8"),
        ((100_000, 100_000, 8, 0), "png_grey_over_pixel_limit"),
    ):
        header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
        files[f"bomb_{name}.png"] = (
            b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", stream)
            + _png_chunk(b"IEND", b"")
        )
    jpeg = bytearray(_pillow(np.zeros((8, 8, 3), np.uint8), "JPEG"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 2730, 65500)
    files["bomb_jpeg.jpg"] = bytes(jpeg)
    webp = bytearray(_pillow(np.zeros((1, 1, 3), np.uint8), "WEBP", lossless=True))
    at = webp.index(b"VP8L") + 9
    bits = int.from_bytes(webp[at : at + 4], "little")
    webp[at : at + 4] = ((bits & ~((1 << 28) - 1)) | 12999 | (12999 << 14)).to_bytes(4, "little")
    files["bomb_webp.webp"] = bytes(webp)
    tiff = _tiff(np.zeros((8, 8), np.float32), compression="zlib")
    for tag in (256, 257):
        for kind, form in ((3, "<H"), (4, "<I")):
            entry = tiff.find(struct.pack("<HHI", tag, kind, 1))
            if entry >= 0:
                tiff = (
                    tiff[: entry + 8] + struct.pack(form, 13376) + tiff[entry + 8 + struct.calcsize(form) :]
                )
                break
    files["bomb_tiff.tif"] = tiff
    bmp = bytearray(_pillow(np.zeros((2, 2, 3), np.uint8), "BMP"))
    bmp[18:26] = struct.pack("<ii", 13000, 13000)
    files["bomb_bmp.bmp"] = bytes(bmp)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (13000, 13000, 16)}
    )
    files["bomb_npy.npy"] = header.getvalue()  # the data it claims is absent (the sparse file's are zeros)
    return files


# ---------------------------------------------------------------------------------------------
# Hostile names.

HOSTILE_NAMES = (
    "new\nline",
    "carriage\rreturn",
    " ::error::X",
    "::warning file=a::b",
    "=cmd|' -C calc'!A0",
    "+1+1",
    "-2",
    "@SUM(1)",
    "<img src=x onerror=alert(1)>",
    "![x](x.png)",
    "a: b",
    'comma,and"quote',
    "tab\there",
    "\x1b[31mred",
    "ünïcödé",
    "spaces  ",
    "back\\slash",
)
HOSTILE_BYTE_NAMES = (b"not-utf8-\xff\xfe",)


# ---------------------------------------------------------------------------------------------
# The oracle: strict decoders, each with every check it has.


def _png_strict(data: bytes) -> None:
    reader = png.Reader(bytes=data)  # pypng checks every chunk's CRC
    _, _, rows, _ = reader.asDirect()
    for _ in rows:
        pass
    stream, pos = [], 8
    while pos + 12 <= len(data):  # the zlib stream whole, with its Adler-32
        length = struct.unpack_from(">I", data, pos)[0]
        if data[pos + 4 : pos + 8] == b"IDAT":
            stream.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    inflater = zlib.decompressobj()
    inflater.decompress(b"".join(stream))
    if not inflater.eof:
        raise ValueError("zlib stream truncated")
    with Image.open(io.BytesIO(data)) as im:
        im.load()


def _jpeg_strict(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
    import simplejpeg

    simplejpeg.decode_jpeg(data, strict=True)


def _pillow_strict(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as im:
        im.load()


def _tiff_strict(data: bytes) -> None:
    """tifffile, which reads every sample type (its first page, the image: a damaged JSON
    description of tifffile's own does not touch the pixels); Pillow too where it reads the
    file (up to 8 bits), or alone where tifffile lacks the codec (LZW without imagecodecs)."""
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:  # the image itself, not tifffile's own metadata
            pixels = tif.pages[0].asarray()
    except ValueError as e:
        if "imagecodecs" not in str(e):
            raise
        _pillow_strict(data)
        return
    if pixels.dtype.itemsize == 1:
        _pillow_strict(data)


def _npy_strict(data: bytes) -> None:
    np.load(io.BytesIO(data), allow_pickle=False)


def strictly_valid(data: bytes) -> bool:
    """Whether strict decoders accept the file: pypng (every CRC), zlib (the Adler-32) and Pillow
    for PNG; Pillow and libjpeg with warnings as errors for JPEG; Pillow for BMP and WebP;
    tifffile and Pillow for TIFF; numpy without pickle for .npy. Any warning counts as failure."""
    import warnings

    checks: dict[bytes, Callable[[bytes], None]] = {
        b"\x89PNG": _png_strict,
        b"\xff\xd8\xff": _jpeg_strict,
        b"BM": _pillow_strict,
        b"RIFF": _pillow_strict,
        b"II*\0": _tiff_strict,
        b"MM\0*": _tiff_strict,
        b"\x93NUMPY": _npy_strict,
    }
    check = next((c for signature, c in checks.items() if data.startswith(signature)), None)
    if check is None:
        return False
    import logging

    logging.disable(logging.CRITICAL)  # what the libraries log here is the oracle's, not bce-eval's
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check(data)
    except Exception:
        return False
    finally:
        logging.disable(logging.NOTSET)
    return True


# ---------------------------------------------------------------------------------------------
# Cases.


@dataclass(frozen=True)
class Case:
    """One pair to evaluate: a target file, its reconstruction (the unmutated seed, so that a
    mutant that decodes to the same shape is scored), and what made it."""

    index: int
    name: str  # the file name both sides have
    target: bytes
    recon: bytes
    origin: str  # "mutant of X", "bomb", "seed"


def cases(seed: int, start: int, count: int, corpus: dict[str, bytes] | None = None) -> list[Case]:
    """Cases start .. start + count - 1 of the campaign with this seed: every 50th a bomb or a
    valid seed under a hostile name, the rest mutants; each depends only on (seed, index)."""
    corpus = corpus if corpus is not None else seeds(np.random.default_rng(seed))
    kinds = sorted(corpus)
    bomb_files = bombs()
    bomb_names = sorted(bomb_files)
    out = []
    for index in range(start, start + count):
        rng = np.random.default_rng([seed, index])
        if index % 50 == 0:
            name = bomb_names[(index // 50) % len(bomb_names)]
            out.append(Case(index, name, bomb_files[name], bomb_files[name], "bomb"))
            continue
        kind = kinds[int(rng.integers(0, len(kinds)))]
        suffix = os.path.splitext(kind)[1]
        if index % 50 == 25:
            hostile = HOSTILE_NAMES[(index // 50) % len(HOSTILE_NAMES)]
            out.append(
                Case(index, f"{hostile}{suffix}", corpus[kind], corpus[kind], "seed under a hostile name")
            )
            continue
        out.append(
            Case(
                index, f"case{index:07}{suffix}", mutate(corpus[kind], rng), corpus[kind], f"mutant of {kind}"
            )
        )
    return out
