"""Decoding keeps every bit and normalises by dtype; pairing reports every leftover file."""

from __future__ import annotations

import importlib.util
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import png
import pytest
import tifffile
from PIL import Image

from bce_eval.images import InputError, load, pair_folders, pairs_from_csv

from .conftest import write_image


def test_png_8bit_grey_divides_by_255(tmp_path: Path, rng: np.random.Generator) -> None:
    pixels = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    out = load(write_image(tmp_path / "a.png", pixels))
    assert out.shape == (5, 7, 1) and out.dtype == np.float64
    np.testing.assert_array_equal(out[:, :, 0], pixels / 255)


def test_png_16bit_grey_divides_by_65535(tmp_path: Path, rng: np.random.Generator) -> None:
    pixels = rng.integers(0, 65536, (5, 7), dtype=np.uint16)
    out = load(write_image(tmp_path / "a.png", pixels))
    np.testing.assert_array_equal(out[:, :, 0], pixels / 65535)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_png_16bit_colour_keeps_all_16_bits(tmp_path: Path, rng: np.random.Generator, channels: int) -> None:
    pixels = rng.integers(0, 65536, (4, 6, channels), dtype=np.uint16)
    out = load(write_image(tmp_path / "a.png", pixels), alpha="include")
    np.testing.assert_array_equal(out, pixels / 65535)  # Pillow alone would give 8 bits


def test_png_1bit_becomes_0_and_1(tmp_path: Path) -> None:
    pixels = np.array([[True, False], [False, True]])
    out = load(write_image(tmp_path / "a.png", pixels))
    np.testing.assert_array_equal(out[:, :, 0], pixels.astype(float))


@pytest.mark.parametrize("depth", [2, 4])
def test_png_low_bit_depths_divide_by_their_maximum(tmp_path: Path, depth: int) -> None:
    levels = np.arange(2**depth, dtype=np.uint8)[None, :]
    with (tmp_path / "a.png").open("wb") as f:
        png.Writer(levels.shape[1], 1, greyscale=True, bitdepth=depth).write(f, levels.tolist())
    np.testing.assert_allclose(load(tmp_path / "a.png")[0, :, 0], levels[0] / (2**depth - 1), rtol=1e-15)


def test_palette_becomes_rgb(tmp_path: Path) -> None:
    im = Image.new("P", (2, 1))
    im.putpalette([255, 0, 0, 0, 128, 255] + [0] * 762)
    im.putdata([0, 1])
    im.save(tmp_path / "p.png")
    out = load(tmp_path / "p.png")
    np.testing.assert_array_equal(out[0], np.array([[255, 0, 0], [0, 128, 255]]) / 255)


def test_alpha_is_dropped_by_default_and_kept_on_request(tmp_path: Path, rng: np.random.Generator) -> None:
    pixels = rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    path = write_image(tmp_path / "a.png", pixels)
    np.testing.assert_array_equal(load(path), pixels[:, :, :3] / 255)
    np.testing.assert_array_equal(load(path, alpha="include"), pixels / 255)


def test_grayscale_uses_601_luma_in_float64(tmp_path: Path, rng: np.random.Generator) -> None:
    pixels = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    out = load(write_image(tmp_path / "a.png", pixels), grayscale=True)
    expected = (0.299 * pixels[:, :, 0] + 0.587 * pixels[:, :, 1] + 0.114 * pixels[:, :, 2]) / 255
    np.testing.assert_allclose(out[:, :, 0], expected, rtol=1e-15)


@pytest.mark.parametrize("suffix", [".bmp", ".webp", ".tif"])
def test_lossless_8bit_formats(tmp_path: Path, rng: np.random.Generator, suffix: str) -> None:
    pixels = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    if suffix == ".webp":
        Image.fromarray(pixels).save(tmp_path / "a.webp", lossless=True)
        path = tmp_path / "a.webp"
    else:
        path = write_image(tmp_path / f"a{suffix}", pixels)
    np.testing.assert_array_equal(load(path), pixels / 255)


def test_jpeg_is_read_as_8bit(tmp_path: Path, rng: np.random.Generator) -> None:
    pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = load(write_image(tmp_path / "a.jpg", pixels))
    assert out.shape == (8, 8, 3)
    np.testing.assert_array_equal(out * 255, np.round(out * 255))  # multiples of 1/255


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 3), (4, 5, 4)])
def test_tiff_16bit_keeps_all_bits(tmp_path: Path, rng: np.random.Generator, shape: tuple[int, ...]) -> None:
    pixels = rng.integers(0, 65536, shape, dtype=np.uint16)
    out = load(write_image(tmp_path / "a.tif", pixels), alpha="include")
    np.testing.assert_array_equal(out.reshape(pixels.shape), pixels / 65535)


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 3)])
def test_tiff_float32_is_taken_as_is(
    tmp_path: Path, rng: np.random.Generator, shape: tuple[int, ...]
) -> None:
    pixels = rng.random(shape, dtype=np.float32)
    out = load(write_image(tmp_path / "a.tiff", pixels))
    np.testing.assert_array_equal(out.reshape(pixels.shape), pixels.astype(np.float64))


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [(np.uint8, 255), (np.uint16, 65535), (np.float16, 1), (np.float32, 1), (np.float64, 1), (bool, 1)],
)
def test_npy_normalised_by_dtype(tmp_path: Path, rng: np.random.Generator, dtype: type, scale: int) -> None:
    raw = rng.random((3, 4, 2)) * (scale if scale > 1 else 1)
    pixels = (raw > 0.5) if dtype is bool else raw.astype(dtype)
    out = load(write_image(tmp_path / "a.npy", pixels))
    np.testing.assert_array_equal(out, pixels.astype(np.float64) / scale)


def test_npy_values_are_not_used_to_guess_the_range(tmp_path: Path) -> None:
    """A dark uint8 image stays dark: 3 means 3/255, whatever the maximum is."""
    out = load(write_image(tmp_path / "a.npy", np.array([[0, 3]], dtype=np.uint8)))
    assert out[0, 1, 0] == 3 / 255


def test_npy_with_pickle_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"a\.npy: cannot read \.npy"):
        load(tmp_path / "a.npy")


@pytest.mark.parametrize("dtype", [np.int64, np.uint32, np.int8])
def test_npy_with_ambiguous_range_is_refused(tmp_path: Path, dtype: type) -> None:
    with pytest.raises(InputError, match="unsupported sample type"):
        load(write_image(tmp_path / "a.npy", np.zeros((2, 2), dtype=dtype)))


def test_npy_with_four_dimensions_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"has shape \(1, 2, 2, 1\)"):
        load(write_image(tmp_path / "a.npy", np.zeros((1, 2, 2, 1))))


@pytest.mark.parametrize("shape", [(0, 3), (2, 0, 1)])
def test_npy_without_pixels_is_refused(tmp_path: Path, shape: tuple[int, ...]) -> None:
    with pytest.raises(InputError, match="no pixels"):
        load(write_image(tmp_path / "a.npy", np.zeros(shape)))


def test_logits_need_float_npy(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="with --logits"):
        load(write_image(tmp_path / "a.png", np.zeros((2, 2), np.uint8)), logits=True)
    logits = np.array([[-50.0, 3.0]])
    out = load(write_image(tmp_path / "b.npy", logits), logits=True)
    np.testing.assert_array_equal(out[:, :, 0], logits)


@pytest.mark.parametrize("name", ["bad.png", "bad.jpg", "bad.tif", "bad.npy", "bad.webp"])
def test_corrupt_files_raise_input_error_naming_the_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40 if name.endswith(".png") else b"not an image at all")
    with pytest.raises(InputError) as info:
        load(path)
    assert info.value.path == str(path)
    assert "\n" not in str(info.value)


def test_truncated_png_raises_input_error(tmp_path: Path, rng: np.random.Generator) -> None:
    path = write_image(tmp_path / "a.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match=r"a\.png"):
        load(path)


def _touch(root: Path, *names: str) -> None:
    for name in names:
        write_image(root / name, np.zeros((2, 2), np.uint8))


def test_pairing_by_relative_path_without_extension(folders: tuple[Path, Path]) -> None:
    targets, recons = folders
    _touch(targets, "a.png", "sub/b.png")
    _touch(recons, "a.npy", "sub/b.png")
    pairing = pair_folders(targets, recons)
    assert [(p.name, p.problem) for p in pairing.pairs] == [("a", None), ("sub/b", None)]
    assert pairing.pairs[0].recon == str(recons / "a.npy")


def test_recon_suffix_is_stripped(folders: tuple[Path, Path]) -> None:
    targets, recons = folders
    _touch(targets, "a.png")
    _touch(recons, "a_recon.png")
    assert [p.problem for p in pair_folders(targets, recons, recon_suffix="_recon").pairs] == [None]


def test_unpaired_and_ambiguous_files_are_reported(folders: tuple[Path, Path]) -> None:
    targets, recons = folders
    _touch(targets, "only_target.png", "twice.png", "twice.bmp", "ok.png")
    _touch(recons, "only_recon.png", "twice.png", "ok.png")
    (targets / "notes.txt").write_text("not an image")
    (targets / ".hidden.png").write_bytes(b"")
    pairing = pair_folders(targets, recons)
    problems = {p.name: p.problem for p in pairing.pairs}
    assert problems["ok"] is None
    assert problems["only_target"] == f"no reconstruction in {recons}"
    assert problems["only_recon"] == f"no target in {targets}"
    assert "ambiguous: twice.bmp and twice.png" in (problems["twice"] or "")
    assert pairing.ignored == [str(targets / "notes.txt")]


def test_missing_folder_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is not a folder"):
        pair_folders(tmp_path / "nope", tmp_path)


def test_pairs_from_csv(folders: tuple[Path, Path], tmp_path: Path) -> None:
    targets, recons = folders
    _touch(targets, "x.png", "z.png")
    _touch(recons, "y.png")
    listing = tmp_path / "pairs.csv"
    listing.write_text("target,recon\nx.png,y.png\nz.png,missing.png\n")
    pairs = pairs_from_csv(listing, targets, recons).pairs
    assert (pairs[0].target, pairs[0].recon, pairs[0].problem) == (
        str(targets / "x.png"),
        str(recons / "y.png"),
        None,
    )
    assert pairs[1].problem == "no such file" and pairs[1].culprit == str(recons / "missing.png")


def test_pairs_csv_needs_its_columns(folders: tuple[Path, Path], tmp_path: Path) -> None:
    listing = tmp_path / "pairs.csv"
    listing.write_text("a,b\nx.png,y.png\n")
    with pytest.raises(InputError, match="needs the columns target,recon"):
        pairs_from_csv(listing, *folders)


def test_jpeg_targets_are_flagged_as_lossy(folders: tuple[Path, Path]) -> None:
    targets, recons = folders
    _touch(targets, "a.jpg", "b.png")
    _touch(recons, "a.png", "b.png")
    assert pair_folders(targets, recons).lossy_targets == [str(targets / "a.jpg")]


def _png16_with_damaged_idat(path: Path, pixels: np.ndarray) -> Path:
    """A 16-bit PNG whose compressed data is damaged but whose chunk checksum is right."""
    data = bytearray(write_image(path, pixels).read_bytes())
    start = data.index(b"IDAT")
    length = struct.unpack(">I", data[start - 4 : start])[0]
    for i in range(start + 6, start + 4 + length):
        data[i] ^= 0x5A
    data[start + 4 + length : start + 8 + length] = struct.pack(
        ">I", zlib.crc32(bytes(data[start : start + 4 + length]))
    )
    path.write_bytes(bytes(data))
    return path


def test_png_16bit_with_damaged_compressed_data_raises_input_error(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    path = _png16_with_damaged_idat(tmp_path / "a.png", rng.integers(0, 65536, (8, 8, 3), dtype=np.uint16))
    with pytest.raises(InputError, match=r"a\.png: cannot decode"):
        load(path)


def _tiff16_with_tag(path: Path, tag: int, value: int) -> Path:
    """A 16-bit RGB TIFF written uncompressed, then one SHORT tag's value changed."""
    tifffile.imwrite(path, np.full((8, 8, 3), 1000, np.uint16), photometric="rgb")
    data = path.read_bytes()
    entry = data.index(struct.pack("<HHI", tag, 3, 1))
    path.write_bytes(data[: entry + 8] + struct.pack("<H", value) + data[entry + 10 :])
    return path


def test_tiff_16bit_with_bad_deflate_data_raises_input_error(tmp_path: Path) -> None:
    path = _tiff16_with_tag(tmp_path / "a.tif", 259, 8)  # compression: deflate, data: raw
    with pytest.raises(InputError, match=r"a\.tif: cannot decode"):
        load(path)


@pytest.mark.skipif(
    importlib.util.find_spec("imagecodecs") is not None
    or importlib.util.find_spec("compression") is not None,
    reason="a ZSTD codec is installed",
)
def test_tiff_with_a_codec_not_installed_names_the_compression(tmp_path: Path) -> None:
    path = _tiff16_with_tag(tmp_path / "a.tif", 259, 50000)  # compression: ZSTD
    with pytest.raises(
        InputError, match=r"a\.tif: cannot decode ZSTD compression .* pip install imagecodecs"
    ):
        load(path)


def test_tiff_12bit_is_refused_as_ambiguous(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, np.full((8, 8), 4095, np.uint16))
    data = path.read_bytes()
    path.write_bytes(data.replace(struct.pack("<HHIH", 258, 3, 1, 16), struct.pack("<HHIH", 258, 3, 1, 12)))
    with pytest.raises(InputError, match=r"a\.tif: 12-bit integer samples are not supported"):
        load(path)


def test_tiff_32bit_integer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, np.zeros((2, 2), np.uint32))
    with pytest.raises(InputError, match="32-bit integer samples are not supported"):
        load(path)


@pytest.mark.parametrize("suffix", [".jpg", ".webp", ".bmp", ".tif", ".npy"])
def test_16bit_png_under_another_suffix_is_read_as_png(
    tmp_path: Path, rng: np.random.Generator, suffix: str
) -> None:
    pixels = rng.integers(0, 65536, (4, 6, 3), dtype=np.uint16)
    path = write_image(tmp_path / "a.png", pixels).rename(tmp_path / f"a{suffix}")
    np.testing.assert_array_equal(load(path), pixels / 65535)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_tiff_16bit_under_another_suffix_is_read_as_tiff(
    tmp_path: Path, rng: np.random.Generator, suffix: str
) -> None:
    pixels = rng.integers(0, 65536, (4, 6, 3), dtype=np.uint16)
    path = write_image(tmp_path / "a.tif", pixels).rename(tmp_path / f"a{suffix}")
    np.testing.assert_array_equal(load(path), pixels / 65535)


def test_npy_under_an_image_suffix_is_read_as_npy_without_pickle(tmp_path: Path) -> None:
    pixels = np.array([[0.25, 0.5]])
    np.testing.assert_array_equal(
        load(write_image(tmp_path / "a.npy", pixels).rename(tmp_path / "a.png"))[:, :, 0], pixels
    )
    np.save(tmp_path / "b.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"b\.png: cannot read \.npy"):
        load((tmp_path / "b.npy").rename(tmp_path / "b.png"))


@pytest.mark.parametrize(("dtype", "white"), [(np.uint8, 255), (np.uint16, 65535)])
def test_tiff_miniswhite_is_inverted(tmp_path: Path, dtype: type, white: int) -> None:
    """In MINISWHITE, 0 is white: 0 must read as 1.0 and the maximum as 0.0, at 8 and 16 bits."""
    stored = np.array([[0, 100, white]], dtype=dtype)
    tifffile.imwrite(tmp_path / "a.tif", stored, photometric="miniswhite")
    np.testing.assert_array_equal(
        load(tmp_path / "a.tif")[:, :, 0], (white - stored.astype(np.int64)) / white
    )


def test_tiff_float_miniswhite_is_refused(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((2, 2), np.float32), photometric="miniswhite")
    with pytest.raises(InputError, match="float MINISWHITE"):
        load(tmp_path / "a.tif")


@pytest.mark.skipif(np.dtype(np.longdouble).itemsize <= 8, reason="longdouble is float64 here")
@pytest.mark.parametrize("logits", [False, True])
def test_npy_float128_is_refused_not_narrowed(tmp_path: Path, logits: bool) -> None:
    with pytest.raises(InputError, match=r"unsupported sample type float128: .* save it as float64"):
        load(write_image(tmp_path / "a.npy", np.full((2, 2), 0.3, np.longdouble)), logits=logits)


def test_npy_with_a_damaged_header_is_an_input_error(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.npy", np.zeros((16, 16)))
    data = path.read_bytes()
    path.write_bytes(data.replace(b"(16, 16)", b"((16, 16", 1))  # numpy's tokenizer: EOF in statement
    with pytest.raises(InputError, match=r"a\.npy: cannot read \.npy"):
        load(path)


def test_npy_claiming_more_data_than_it_holds_is_refused_before_allocating(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.npy", np.zeros((4, 4)))
    data = path.read_bytes()
    forged = data.replace(b"(4, 4)", b"(200000, 200000)").replace(b" " * 10 + b"\n", b"\n", 1)
    assert len(forged) == len(data) and b"(200000, 200000)" in forged  # header length kept
    path.write_bytes(forged)  # 298 GiB of float64 claimed by a file of 256 bytes
    with pytest.raises(InputError, match=r"a\.npy: cannot read \.npy"):
        load(path)


@pytest.mark.parametrize("size", [1 << 60, 10**23])  # too large to map; too large for a C long
def test_npy_whose_shape_overflows_is_an_input_error(tmp_path: Path, size: int) -> None:
    path = tmp_path / "a.npy"
    with path.open("wb") as f:
        header = {"descr": "<f8", "fortran_order": False, "shape": (1, size)}
        np.lib.format.write_array_header_1_0(f, header)
        f.write(bytes(64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing but the one-line error: no RuntimeWarning either
        with pytest.raises(
            InputError, match=r"a\.npy: cannot read \.npy: its header claims more data than the file holds"
        ):
            load(path)


def test_signed_8bit_tiff_is_refused_not_read_as_unsigned(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, np.array([[-128, -1, 0, 127]], np.int8))
    with pytest.raises(InputError, match="signed integer samples are not supported"):
        load(path)


def test_tiff_tag_errors_are_input_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tifffile raises IndexError on some damaged float TIFFs (a tag with too few values)."""
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, np.zeros((4, 4), np.float32))

    def damaged(*args: object, **kwargs: object) -> None:
        raise IndexError("tuple index out of range")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", damaged)
    with pytest.raises(InputError, match=r"a\.tif: cannot decode: IndexError: tuple index out of range"):
        load(path)


def test_animated_png_is_refused_not_read_as_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((4, 4, 3), v, np.uint8)) for v in (0, 200)]
    path = tmp_path / "a.png"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(InputError, match="has 2 frames; only single images are supported"):
        load(path)
    frames[0].save(path)  # a still PNG beside it reads as ever
    assert load(path).shape == (4, 4, 3)


def test_a_symbolic_link_loop_is_its_pair_s_problem(folders: tuple[Path, Path]) -> None:
    targets, recons = folders
    _touch(targets, "a.png", "loop.png")
    _touch(recons, "a.png")
    (recons / "loop.png").symlink_to(recons / "loop.png")
    pairs = {p.name: p for p in pair_folders(targets, recons).pairs}
    assert pairs["a"].problem is None
    assert pairs["loop"].problem is not None and "symbolic links" in pairs["loop"].problem


def test_bmp_claiming_too_many_pixels_raises_input_error(tmp_path: Path) -> None:
    data = bytearray(write_image(tmp_path / "a.bmp", np.zeros((2, 2), np.uint8)).read_bytes())
    data[18:26] = struct.pack("<ii", 30000, 30000)  # width and height in the BMP header
    (tmp_path / "a.bmp").write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"a\.bmp: cannot decode"):
        load(tmp_path / "a.bmp")


def test_tiff_claiming_too_many_pixels_raises_input_error(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint16))
    data = path.read_bytes()
    for tag in (256, 257):  # ImageWidth and ImageLength
        entry = data.index(struct.pack("<HHI", tag, 4, 1))  # a LONG
        data = data[: entry + 8] + struct.pack("<I", 60000) + data[entry + 12 :]
    path.write_bytes(data)
    with pytest.raises(InputError, match=r"claims 60000x60000 pixels"):
        load(path)


def test_pairs_csv_name_too_long_is_that_pairs_problem(folders: tuple[Path, Path], tmp_path: Path) -> None:
    targets, recons = folders
    _touch(targets, "x.png")
    _touch(recons, "x.png")
    listing = tmp_path / "pairs.csv"
    listing.write_text(f"target,recon\n{'a' * 300}.png,x.png\nx.png,x.png\n")
    pairs = pairs_from_csv(listing, targets, recons).pairs
    assert pairs[0].problem == "cannot be read: File name too long"
    assert pairs[1].problem is None


@pytest.mark.parametrize("listed", [".", "/"])
def test_pairs_csv_folder_paths_are_that_pairs_problem(
    folders: tuple[Path, Path], tmp_path: Path, listed: str
) -> None:
    targets, recons = folders
    _touch(recons, "x.png")
    listing = tmp_path / "pairs.csv"
    listing.write_text(f"target,recon\n{listed},x.png\n")
    (pair,) = pairs_from_csv(listing, targets, recons, allow_outside=True).pairs
    assert (pair.name, pair.problem) == (listed, "is a folder")


def test_pairs_csv_row_listed_twice_is_reported(folders: tuple[Path, Path], tmp_path: Path) -> None:
    targets, recons = folders
    _touch(targets, "x.png")
    _touch(recons, "y.png")
    listing = tmp_path / "pairs.csv"
    listing.write_text("target,recon\nx.png,y.png\n\n./x.png,y.png\n")
    pairs = pairs_from_csv(listing, targets, recons).pairs
    assert [p.problem for p in pairs] == [None, "line 4: ./x.png,y.png listed twice, first on line 2"]
    assert pairs[1].culprit == str(listing) and pairs[1].name == "line 4"


def test_pairs_csv_names_are_unique(folders: tuple[Path, Path], tmp_path: Path) -> None:
    """A name is one image in every report, baseline and merge: one target for two models, or
    a.png beside a.jpg, is an error on the later row, which is named by its line."""
    targets, recons = folders
    _touch(targets, "a.png", "a.jpg")
    _touch(recons, "m1/a.png", "m2/a.png")
    listing = tmp_path / "pairs.csv"
    listing.write_text("target,recon\na.png,m1/a.png\na.png,m2/a.png\na.jpg,m2/a.png\n")
    pairs = pairs_from_csv(listing, targets, recons).pairs
    assert [p.name for p in pairs] == ["a", "line 3", "line 4"]
    assert pairs[0].problem is None
    assert pairs[1].problem == (
        "line 3: a.png is named a, as line 2's target is; "
        "names (target paths without extension) must be unique"
    )
    assert pairs[2].problem is not None and pairs[2].problem.startswith(
        "line 4: a.jpg is named a, as line 2's"
    )


@pytest.mark.parametrize("text", ["", "target,recon\n"])
def test_pairs_csv_without_rows_is_an_input_error(
    folders: tuple[Path, Path], tmp_path: Path, text: str
) -> None:
    listing = tmp_path / "pairs.csv"
    listing.write_text(text)
    with pytest.raises(InputError, match=r"pairs\.csv: lists no pairs"):
        pairs_from_csv(listing, *folders)


def test_broken_symlink_is_reported_as_such(folders: tuple[Path, Path]) -> None:
    targets, recons = folders
    _touch(targets, "x.png")
    (recons / "x.png").symlink_to(recons / "nowhere.png")
    (pair,) = pair_folders(targets, recons).pairs
    assert (pair.problem, pair.culprit) == ("broken symbolic link", str(recons / "x.png"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_reported_and_never_opened(folders: tuple[Path, Path]) -> None:
    targets, recons = folders
    _touch(targets, "x.png")
    os.mkfifo(recons / "x.png")
    (pair,) = pair_folders(targets, recons).pairs
    assert (pair.problem, pair.culprit) == ("not a regular file", str(recons / "x.png"))
    with pytest.raises(InputError, match="not a regular file"):
        load(recons / "x.png")  # opening it would wait for a writer forever


def test_folder_named_like_an_image_is_walked_into(folders: tuple[Path, Path]) -> None:
    targets, recons = folders
    _touch(targets, "x.png/a.png")
    _touch(recons, "x.png/a.png")
    assert [(p.name, p.problem) for p in pair_folders(targets, recons).pairs] == [("x.png/a", None)]


def test_input_error_escapes_control_characters_in_the_path(tmp_path: Path) -> None:
    path = tmp_path / "a\nb.png"
    path.write_bytes(b"not an image")
    with pytest.raises(InputError) as info:
        load(path)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(repr(str(path)) + ": ")
    assert info.value.path == str(path)
    assert str(InputError(tmp_path / "plain é.png", "x")) == f"{tmp_path / 'plain é.png'}: x"
