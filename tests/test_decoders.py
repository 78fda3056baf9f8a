"""The fast PNG decoder (pyspng) gives the same samples as Pillow and pypng, and refuses damage."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import png
import pytest
from PIL import Image

from bce_eval.images import InputError, decode, load

from .conftest import write_image

pytest.importorskip("pyspng")


def _without_pyspng(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspng", None)  # makes "import pyspng" raise ImportError


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((9, 11), np.uint8), ((9, 11, 3), np.uint8), ((9, 11, 4), np.uint8), ((9, 11), np.uint16)],
)
def test_spng_matches_pillow(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, shape: tuple, dtype: type
) -> None:
    path = write_image(tmp_path / "a.png", rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype))
    fast = decode(path)
    _without_pyspng(monkeypatch)
    slow = decode(path)
    assert fast.pixels.dtype == slow.pixels.dtype == dtype
    assert fast.has_alpha == slow.has_alpha == (shape[-1] == 4)
    np.testing.assert_array_equal(fast.pixels, slow.pixels)


@pytest.mark.parametrize("channels", [3, 4])
def test_spng_16bit_colour_matches_pypng(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, channels: int
) -> None:
    pixels = rng.integers(0, 65536, (6, 5, channels), dtype=np.uint16)
    path = write_image(tmp_path / "a.png", pixels)
    fast = decode(path)
    _without_pyspng(monkeypatch)
    np.testing.assert_array_equal(fast.pixels, decode(path).pixels)
    np.testing.assert_array_equal(fast.pixels, pixels)


def test_spng_ignores_trns_like_pillow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pixels = np.array([[[1, 2, 3], [4, 5, 6]]], dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png", transparency=(1, 2, 3))
    fast = load(tmp_path / "a.png", alpha="include")
    _without_pyspng(monkeypatch)
    np.testing.assert_array_equal(fast, load(tmp_path / "a.png", alpha="include"))
    assert fast.shape == (1, 2, 3)


def _idat_offset(data: bytes) -> int:
    return data.index(b"IDAT") + 4


def test_flipped_bit_in_image_data_is_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    # libspng runs without checksums and would decode this into wrong pixels without a word.
    path = write_image(tmp_path / "a.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    data = bytearray(path.read_bytes())
    data[_idat_offset(data) + 40] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="CRC"):
        decode(path)


def test_truncated_png_is_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    path = write_image(tmp_path / "a.png", rng.integers(0, 256, (32, 32), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(InputError, match="damaged PNG"):
        decode(path)


def test_grey_alpha_16bit_still_keeps_every_bit(tmp_path: Path, rng: np.random.Generator) -> None:
    # libspng refuses grey+alpha; pypng reads it.
    pixels = rng.integers(0, 65536, (3, 4, 2), dtype=np.uint16)
    with (tmp_path / "a.png").open("wb") as f:
        png.Writer(4, 3, greyscale=True, alpha=True, bitdepth=16).write(f, pixels.reshape(3, 8).tolist())
    np.testing.assert_array_equal(decode(tmp_path / "a.png").pixels, pixels)


def test_png_claiming_too_many_pixels_is_refused_before_decoding(tmp_path: Path) -> None:
    # A valid header for 100,000 x 100,000 RGB: libspng would try to allocate 30 GB.
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    data = b"\x89PNG\r\n\x1a\n" + chunks
    (tmp_path / "bomb.png").write_bytes(data)
    with pytest.raises(InputError, match="100000x100000 pixels, more than"):
        decode(tmp_path / "bomb.png")
