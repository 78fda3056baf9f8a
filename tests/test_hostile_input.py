"""Hostile input: each case a fuzz campaign found, reproduced, ends as one line for its file.

Decoder failures of any kind, damaged PNG and JPEG that decoders pass over, decompression bombs
under the pixel limit, stray warnings and C libraries' messages, and the folder oddities that
stopped a run or dropped pairs without a word.
"""

from __future__ import annotations

import io
import os
import re
import struct
import threading
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import png
import pytest
import tifffile
from PIL import Image

from bce_eval import guards
from bce_eval.images import InputError, decode, load, pair_folders, pairs_from_csv

from .conftest import write_image

GIB = 1 << 30


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, depth: int, colour_type: int, scanlines: bytes, *extra: bytes) -> bytes:
    """A PNG built chunk by chunk, every CRC right: extra chunks go before the image data."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + b"".join(extra)
        + _chunk(b"IDAT", zlib.compress(scanlines))
        + _chunk(b"IEND", b"")
    )


def _one_line(error: InputError, path: Path) -> None:
    assert error.path == str(path)
    assert "\n" not in str(error) and "Traceback" not in str(error)


# ---------------------------------------------------------------------------------------------
# 1. Every decoder failure is that file's one-line error.


def test_png_16bit_grey_alpha_claiming_a_row_more_than_stored(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    """pypng yields 20 rows for a header of 21; the reshape after it raised a ValueError."""
    pixels = rng.integers(0, 65536, (20, 5, 2), dtype=np.uint16)
    buffer = io.BytesIO()
    png.Writer(5, 20, greyscale=True, alpha=True, bitdepth=16).write(buffer, pixels.reshape(20, 10).tolist())
    data = bytearray(buffer.getvalue())
    data[20:24] = struct.pack(">I", 21)  # the height in IHDR
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path = tmp_path / "a.png"
    path.write_bytes(bytes(data))
    with pytest.raises(
        InputError, match="damaged PNG: its image data holds 420 bytes where its header implies 441"
    ) as e:
        decode(path)
    _one_line(e.value, path)


def _tiff_with_tag(path: Path, tag: int, value: int, **options: object) -> Path:
    """A 16-bit RGB TIFF (the tifffile path) with one tag's value changed."""
    tifffile.imwrite(path, np.full((64, 8, 3), 1000, np.uint16), photometric="rgb", **options)
    data = path.read_bytes()
    for kind, form in ((3, "<H"), (4, "<I")):  # SHORT, LONG
        entry = data.find(struct.pack("<HHI", tag, kind, 1))
        if entry >= 0:
            path.write_bytes(
                data[: entry + 8] + struct.pack(form, value) + data[entry + 8 + struct.calcsize(form) :]
            )
            return path
    raise AssertionError(f"no tag {tag}")


def test_tiff_with_rows_per_strip_0(tmp_path: Path) -> None:
    """tifffile divides by RowsPerStrip for compressed strips: ZeroDivisionError."""
    path = _tiff_with_tag(tmp_path / "a.tif", 278, 0, compression="zlib", rowsperstrip=8)
    with pytest.raises(InputError, match="cannot decode: ZeroDivisionError") as e:
        decode(path)
    _one_line(e.value, path)


def test_tiff_whose_compression_tag_says_lzma_over_other_data(tmp_path: Path) -> None:
    path = _tiff_with_tag(tmp_path / "a.tif", 259, 34925)  # LZMA, over raw samples
    with pytest.raises(InputError, match="cannot decode: LZMAError") as e:
        decode(path)
    _one_line(e.value, path)


def test_memory_error_in_a_decoder_is_the_file_s_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_image(tmp_path / "a.tif", np.zeros((4, 4), np.float32))

    def exhausted(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(tifffile.TiffPage, "asarray", exhausted)
    with pytest.raises(InputError, match=r"a\.tif: cannot decode: the image does not fit in memory"):
        decode(path)


def test_a_bug_in_bce_eval_itself_is_not_hidden() -> None:
    """An exception raised by bce-eval's own code, not inside a library, keeps its traceback."""
    from bce_eval.integrity import PngHeader

    with pytest.raises(KeyError), guards.decoding("x.png"):
        PngHeader(1, 1, 8, 9, False).data_size()  # colour type 9: a lookup in bce-eval fails


# ---------------------------------------------------------------------------------------------
# 2. Integrity on every path.


def _stored_png_with_a_changed_pixel(path: Path, rng: np.random.Generator, mode: str, side: int = 16) -> Path:
    """An uncompressed PNG (stored deflate blocks) with one sample changed and the chunk CRC
    fixed up: only the zlib stream's Adler-32 still tells."""
    pixels = rng.integers(0, 256, (side, side, 3) if mode == "RGB" else (side, side), dtype=np.uint8)
    Image.fromarray(pixels, mode).save(path, compress_level=0)
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT")
    length = struct.unpack(">I", data[start - 4 : start])[0]
    data[start + 4 + 2 + 5 + 40] ^= 0x10  # past the zlib header and the stored block's header
    data[start + 4 + length : start + 8 + length] = struct.pack(
        ">I", zlib.crc32(bytes(data[start : start + 4 + length]))
    )
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("side", [16, 128])  # inflated in one call by zlib; by ISA-L, if installed
@pytest.mark.parametrize("isal", [True, False])
def test_png_whose_adler32_fails_is_refused(
    tmp_path: Path,
    rng: np.random.Generator,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    side: int,
    isal: bool,
) -> None:
    from bce_eval import integrity

    if not isal:
        monkeypatch.setattr(integrity, "_fast_zlib", lambda: zlib)
    path = _stored_png_with_a_changed_pixel(tmp_path / "a.png", rng, mode, side)
    pyspng = pytest.importorskip("pyspng")
    pyspng.load(path.read_bytes())  # libspng, without checksums, decodes it into a wrong pixel
    with pytest.raises(
        InputError,
        match=r"damaged PNG: its compressed image data fails to inflate .*(incorrect data check|checksum)",
    ):
        decode(path)


def test_low_bit_depth_png_whose_crc_fails_is_refused(tmp_path: Path) -> None:
    """The Pillow path (1, 2 and 4-bit, palette, 8-bit grey+alpha) never checked CRCs."""
    levels = np.tile(np.arange(16, dtype=np.uint8), (4, 1))
    path = tmp_path / "a.png"
    with path.open("wb") as f:
        png.Writer(16, 4, greyscale=True, bitdepth=4, compression=0).write(f, levels.tolist())
    data = bytearray(path.read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 4 + struct.unpack(">I", data[idat - 4 : idat])[0]] ^= 0x01  # its CRC, not its data
    path.write_bytes(bytes(data))
    with Image.open(path) as im:
        im.load()  # Pillow alone decodes it
    with pytest.raises(InputError, match="damaged PNG: chunk b'IDAT' fails its CRC"):
        decode(path)


def test_palette_png_without_its_palette_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(_png(2, 2, 8, 3, b"\0\0\1\0\1\0"))
    with pytest.raises(InputError, match=r"a palette image without its palette \(PLTE\)"):
        decode(path)


def test_palette_index_past_the_palette_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(_png(2, 1, 8, 3, b"\0\0\5", _chunk(b"PLTE", bytes(range(6)))))
    with pytest.raises(InputError, match="palette index 5 past its 2 entries"):
        decode(path)


def _jpeg(pixels: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def test_corrupt_jpeg_is_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    data = bytearray(_jpeg(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    scan = data.index(b"\xff\xda")
    for i in range(scan + 200, scan + 260, 7):
        data[i] ^= 0x55
    path = tmp_path / "a.jpg"
    path.write_bytes(bytes(data))
    with Image.open(path) as im:
        im.load()  # Pillow decodes it into garbage without a word
    with pytest.raises(InputError, match="damaged JPEG: Corrupt JPEG data"):
        decode(path)


def test_truncated_jpeg_is_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    data = _jpeg(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    path = tmp_path / "a.jpg"
    path.write_bytes(data[: len(data) * 3 // 4])
    with pytest.raises(InputError, match="damaged JPEG"):
        decode(path)


@pytest.mark.parametrize(
    ("channels", "options"),
    [
        (1, {}),
        (3, {"subsampling": 0}),
        (3, {"subsampling": 1}),
        (3, {"subsampling": 2}),
        (3, {"progressive": True}),
    ],
)
def test_jpeg_decoding_matches_pillow_bit_for_bit(
    tmp_path: Path, rng: np.random.Generator, channels: int, options: dict[str, object]
) -> None:
    pytest.importorskip("simplejpeg")
    shape = (37, 53) if channels == 1 else (37, 53, channels)
    path = tmp_path / "a.jpg"
    path.write_bytes(_jpeg(rng.integers(0, 256, shape, dtype=np.uint8), **options))
    with Image.open(path) as im:
        expected = np.asarray(im)
    np.testing.assert_array_equal(decode(path).pixels.reshape(expected.shape), expected)


# ---------------------------------------------------------------------------------------------
# 3. Bombs under the pixel limit: refused from the header, in well under a second.

# The default budget on the machine of the fuzz campaign: 22 GiB available, 2 workers.
CAMPAIGN_BUDGET = 22 * GIB // (guards.MEMORY_SHARE * 2)


def _webp_claiming(tmp_path: Path, side: int) -> Path:
    """A tiny lossless WebP whose VP8L header claims side x side pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "WEBP", lossless=True)
    data = bytearray(buffer.getvalue())
    at = data.index(b"VP8L") + 8 + 1  # the chunk's payload, after the 0x2f signature byte
    bits = int.from_bytes(data[at : at + 4], "little")
    bits = (bits & ~((1 << 28) - 1)) | (side - 1) | ((side - 1) << 14)
    data[at : at + 4] = bits.to_bytes(4, "little")
    path = tmp_path / "bomb.webp"
    path.write_bytes(bytes(data))
    return path


def _jpeg_claiming(tmp_path: Path, width: int, height: int) -> Path:
    data = bytearray(_jpeg(np.zeros((8, 8, 3), np.uint8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path = tmp_path / "bomb.jpg"
    path.write_bytes(bytes(data))
    return path


def _tiff_claiming(tmp_path: Path, side: int) -> Path:
    path = tmp_path / "bomb.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.float32), compression="zlib")
    data = path.read_bytes()
    for tag in (256, 257):  # ImageWidth, ImageLength
        for kind, form in ((3, "<H"), (4, "<I")):
            entry = data.find(struct.pack("<HHI", tag, kind, 1))
            if entry >= 0:
                data = data[: entry + 8] + struct.pack(form, side) + data[entry + 8 + struct.calcsize(form) :]
                break
    path.write_bytes(data)
    return path


def _png_claiming(tmp_path: Path, side: int) -> Path:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png(side, side, 16, 6, b"\0" * 1000))  # RGBA, 16 bits
    return path


def _npy_claiming(tmp_path: Path, shape: tuple[int, ...]) -> Path:
    path = tmp_path / "bomb.npy"
    with path.open("wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": shape})
        f.truncate(f.tell() + 8 * int(np.prod(shape)))  # sparse: the size is real, no block is
    return path


@pytest.mark.parametrize(
    ("bomb", "problem"),
    [
        (lambda tmp: _webp_claiming(tmp, 13000), "13000x13000x3 values would take"),
        (lambda tmp: _jpeg_claiming(tmp, 65500, 2730), "claims 65500x2730 pixels, which take at least"),
        (lambda tmp: _tiff_claiming(tmp, 13376), "13376x13376x1 values would take"),
        (lambda tmp: _png_claiming(tmp, 13000), "13000x13000x4 values would take"),
        (lambda tmp: _npy_claiming(tmp, (13000, 13000, 16)), "13000x13000x16 values would take"),
    ],
    ids=["webp", "jpeg", "tiff", "png", "npy"],
)
def test_bombs_are_refused_from_the_header_at_once(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], bomb: object, problem: str
) -> None:
    path = bomb(tmp_path)  # type: ignore[operator]
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InputError, match=problem) as e:
            decode(path, max_image_bytes=CAMPAIGN_BUDGET)
    assert time.perf_counter() - started < 1.0
    _one_line(e.value, path)
    assert not caught  # no DecompressionBombWarning either
    assert capfd.readouterr().err == ""


def test_default_budget_is_a_quarter_of_available_memory_shared_by_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(guards, "available_memory", lambda: 22 * GIB)
    assert guards.default_max_image_bytes(2) == 22 * GIB // 8
    assert guards.default_max_image_bytes(1) == 22 * GIB // 4
    monkeypatch.setattr(guards, "available_memory", lambda: None)
    assert guards.default_max_image_bytes(1) == guards.ASSUMED_AVAILABLE // 4


def test_the_budget_counts_bytes_not_pixels(tmp_path: Path) -> None:
    """The same 1000x1000 pixels: as 8-bit they fit a 20 MB budget, as 16-bit (float64 path) not."""
    small = write_image(tmp_path / "a.png", np.zeros((1000, 1000), np.uint8))
    wide = write_image(tmp_path / "b.png", np.zeros((1000, 1000), np.uint16))
    assert decode(small, max_image_bytes=20_000_000).pixels.shape == (1000, 1000, 1)
    with pytest.raises(InputError, match=r"1000x1000x1 values would take 191 MiB .* more than the 19.1 MiB"):
        decode(wide, max_image_bytes=20_000_000)


def test_the_pipeline_stays_within_its_budgeted_bytes(tmp_path: Path, rng: np.random.Generator) -> None:
    """guards.pair_bytes is an upper bound of what scoring a pair holds at its peak (tracemalloc
    sees NumPy's allocations), on the lookup and the float64 paths."""
    import tracemalloc

    from bce_eval.engine import evaluate_pair
    from bce_eval.images import Pair
    from bce_eval.model import Settings

    shape = (256, 256, 3)
    for dtype, lookup in ((np.uint8, True), (np.uint16, False)):
        top = np.iinfo(dtype).max + 1
        target = write_image(tmp_path / f"t{top}.png", rng.integers(0, top, shape, dtype=dtype))
        recon = write_image(tmp_path / f"r{top}.png", rng.integers(0, top, shape, dtype=dtype))
        evaluate_pair(Pair("a", str(target), str(recon)), Settings())  # the lookup tables, built once
        tracemalloc.start()
        result = evaluate_pair(Pair("a", str(target), str(recon)), Settings())
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert result.error is None
        assert peak <= guards.pair_bytes(int(np.prod(shape)), lookup=lookup), (dtype, peak / np.prod(shape))


# ---------------------------------------------------------------------------------------------
# 9. No stray stderr: warnings become the file's error or are dropped with their reason, and
# libtiff's messages from C are silenced.


def test_decompression_bomb_warning_is_dropped_for_an_image_within_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30)  # 36 pixels: Pillow warns (error above 60)
    path = tmp_path / "a.bmp"
    Image.new("RGB", (6, 6)).save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert decode(path).pixels.shape == (6, 6, 3)
    assert not caught
    assert capfd.readouterr().err == ""


def _tiff_with_tag_data_past_the_end(path: Path) -> Path:
    """An 8-bit TIFF (Pillow's path) whose ImageDescription claims more bytes than the file has."""
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), description="x" * 100)
    data = path.read_bytes()
    entry = data.index(struct.pack("<HHI", 270, 2, 101))
    path.write_bytes(data[: entry + 4] + struct.pack("<I", 1_000_000) + data[entry + 8 :])
    return path


def test_tiff_tag_data_larger_than_file_is_the_file_s_error(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = _tiff_with_tag_data_past_the_end(tmp_path / "a.tif")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # tifffile, which opens every TIFF first, logs an ERROR about the tag; Pillow then warns
        with pytest.raises(InputError, match=r"damaged: .*(Tag data larger than file|TiffTag 270)"):
            decode(path)
    assert not caught
    assert capfd.readouterr().err == ""


def test_libtiff_messages_are_silenced(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.tif"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        path, compression="tiff_lzw"
    )
    data = bytearray(path.read_bytes())
    for i in range(300, 1000, 37):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"a\.tif: cannot decode"):
        decode(path)
    assert capfd.readouterr().err == ""


def test_warnings_are_caught_per_thread(tmp_path: Path, rng: np.random.Generator) -> None:
    """Threads decoding at once (the torch backend) each get their own file's warnings."""
    damaged = [_tiff_with_tag_data_past_the_end(tmp_path / f"d{i}.tif") for i in range(4)]
    clean = [
        write_image(tmp_path / f"c{i}.bmp", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        for i in range(4)
    ]
    outcomes: dict[Path, str] = {}

    def work(path: Path) -> None:
        for _ in range(25):
            try:
                decode(path)
                outcome = "ok"
            except InputError as e:
                outcome = e.problem
            if outcomes.setdefault(path, outcome) != outcome:
                outcomes[path] = "inconsistent"

    threads = [threading.Thread(target=work, args=(p,)) for p in damaged + clean]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(outcomes[p] == outcomes[damaged[0]] and outcomes[p].startswith("damaged: ") for p in damaged)
    assert all(outcomes[p] == "ok" for p in clean)


# ---------------------------------------------------------------------------------------------
# 6. Folders: links to folders followed, loops noted, unlistable folders an error for their pairs.


def _touch(root: Path, *names: str) -> None:
    for name in names:
        write_image(root / name, np.zeros((2, 2), np.uint8))


def test_symbolic_links_to_folders_are_followed(folders: tuple[Path, Path], tmp_path: Path) -> None:
    targets, recons = folders
    _touch(tmp_path / "shared", "a.png")
    (targets / "linked").symlink_to(tmp_path / "shared")
    _touch(recons, "linked/a.png", "linked/b.png")  # b has no target: an error, not a silent drop
    pairs = {p.name: p for p in pair_folders(targets, recons).pairs}
    assert pairs["linked/a"].problem is None
    assert pairs["linked/b"].problem == f"no target in {targets}"


def test_a_link_to_an_enclosing_folder_is_noted_not_followed(folders: tuple[Path, Path]) -> None:
    targets, recons = folders
    _touch(targets, "sub/a.png")
    _touch(recons, "sub/a.png")
    (targets / "sub" / "up").symlink_to(targets)
    pairing = pair_folders(targets, recons)
    assert [(p.name, p.problem) for p in pairing.pairs] == [("sub/a", None)]
    assert pairing.notes == [
        f"{targets / 'sub' / 'up'}: a symbolic link to a folder it is in (a loop); not followed"
    ]


def test_a_folder_that_cannot_be_listed_is_an_error_for_its_pairs(
    folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    targets, recons = folders
    _touch(targets, "ok.png", "locked/a.png")
    _touch(recons, "ok.png", "locked/a.png", "locked/b.png", "gone/c.png")
    (targets / "gone").mkdir()
    scandir = os.scandir
    locked = {str(targets / "locked"), str(recons / "gone")}

    def denied(path: str) -> object:
        if str(path) in locked:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    pairs = {p.name: p for p in pair_folders(targets, recons).pairs}
    assert pairs["ok"].problem is None
    for name in ("locked/a", "locked/b"):
        assert (pairs[name].problem, pairs[name].culprit) == (
            "cannot list the folder: Permission denied",
            str(targets / "locked"),
        )
    assert (pairs["gone"].problem, pairs["gone"].culprit) == (
        "cannot list the folder: Permission denied",
        str(recons / "gone"),
    )


def test_a_folder_deeper_than_path_max_is_an_error_for_its_pairs(folders: tuple[Path, Path]) -> None:
    targets, recons = folders
    _touch(targets, "ok.png")
    _touch(recons, "ok.png")
    name = "d" * 250
    fd = os.open(targets, os.O_RDONLY)
    try:
        for _ in range(20):  # 20 x 251 characters: past PATH_MAX (4096) on Linux
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        os.close(os.open("x.png", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    finally:
        os.close(fd)
    pairs = pair_folders(targets, recons).pairs
    assert [p.problem for p in pairs if p.name == "ok"] == [None]
    deep = [p for p in pairs if p.name != "ok"]
    assert len(deep) == 1 and deep[0].problem is not None and "too long" in deep[0].problem


# ---------------------------------------------------------------------------------------------
# 8. Lists and reports read defensively.


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_as_the_pair_list_is_refused_at_once(folders: tuple[Path, Path], tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pairs.csv")
    outcome: list[str] = []

    def read() -> None:
        try:
            pairs_from_csv(tmp_path / "pairs.csv", *folders)
        except InputError as e:
            outcome.append(e.problem)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    assert outcome == ["cannot read the pair list: not a regular file (a pipe or a device)"]


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("/dev/zero", "not a regular file (a pipe or a device)"),
        (".", "is a folder"),
        ("missing.csv", "no such file"),
    ],
)
def test_read_input_file_refuses_what_is_not_a_small_regular_file(
    tmp_path: Path, name: str, problem: str
) -> None:
    path = Path(name) if name.startswith("/") else tmp_path / name
    if name.startswith("/") and not path.exists():
        pytest.skip(f"no {name} here")
    with pytest.raises(InputError, match=re.escape(f"cannot read the baseline: {problem}")):
        guards.read_input_file(path, what="the baseline")


def test_read_input_file_refuses_a_file_over_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_bytes(b"x" * 2000)
    assert guards.read_input_file(path, what="the report", max_bytes=2000) == b"x" * 2000
    with pytest.raises(
        InputError, match=r"report\.json: cannot read the report: 1.95 KiB, more than the 1.95 KiB"
    ):
        guards.read_input_file(path, what="the report", max_bytes=1999)


# ---------------------------------------------------------------------------------------------
# 10. --pairs rows confined to TARGETS and RECONS.


def test_pairs_rows_that_lead_outside_are_refused_unopened(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    targets, recons = folders
    _touch(targets, "x.png")
    _touch(recons, "x.png")
    _touch(tmp_path, "secret.png")
    (targets / "link.png").symlink_to(tmp_path / "secret.png")
    listing = tmp_path / "pairs.csv"
    listing.write_text(
        "target,recon\nx.png,x.png\n../secret.png,x.png\n/etc/passwd,x.png\nlink.png,x.png\nsub/../x2.png,../x.png\n"
    )
    pairs = pairs_from_csv(listing, targets, recons).pairs
    assert pairs[0].problem is None
    escapes = [(p.problem, p.culprit) for p in pairs[1:]]
    assert escapes == [
        (f"line 3: ../secret.png leads outside {targets}; not read (--allow-outside reads it)", str(listing)),
        (f"line 4: /etc/passwd leads outside {targets}; not read (--allow-outside reads it)", str(listing)),
        (f"line 5: link.png leads outside {targets}; not read (--allow-outside reads it)", str(listing)),
        (f"line 6: ../x.png leads outside {recons}; not read (--allow-outside reads it)", str(listing)),
    ]
    allowed = pairs_from_csv(listing, targets, recons, allow_outside=True).pairs
    assert [p.problem for p in allowed[:2]] == [None, None]
    assert load(Path(allowed[1].target or "")).shape == (2, 2, 1)


def test_a_library_s_log_lines_about_the_file_are_not_printed(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Pillow logs "More samples per pixel than can be decoded" at ERROR before it raises;
    without logging configured, Python printed it on stderr."""
    path = tmp_path / "a.tif"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    data = path.read_bytes()
    entry = data.index(struct.pack("<HHI", 277, 3, 1))  # SamplesPerPixel
    path.write_bytes(data[: entry + 8] + struct.pack("<H", 254) + data[entry + 10 :])
    with pytest.raises(InputError, match=r"a\.tif: "):
        decode(path)
    assert capfd.readouterr().err == ""
