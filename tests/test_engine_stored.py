"""The engine scores every pair but 8-bit ones in their stored sample types (kernels.image_sums):
float32 .npy and TIFF reconstructions, logits, 16-bit PNG; the figures are the direct path's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bce_eval import engine, metrics
from bce_eval.images import pair_folders
from bce_eval.model import ImageResult, Settings

from .conftest import write_image


def _evaluate(folders: tuple[Path, Path], settings: Settings) -> list[ImageResult]:
    return list(engine.evaluate(pair_folders(*folders).pairs, settings, workers=1))


def _assert_close(result: ImageResult, expected: metrics.Sums) -> None:
    assert result.error is None and result.sums is not None
    assert result.sums.pixels == expected.pixels and result.sums.clipped == expected.clipped
    for figure in ("bce", "entropy", "excess"):
        assert getattr(result.sums, figure) == pytest.approx(getattr(expected, figure), rel=1e-12, abs=0)


def _target(rng: np.random.Generator, shape: tuple[int, ...] = (20, 30, 3)) -> np.ndarray:
    target = rng.integers(0, 256, shape).astype(np.uint8)
    target.flat[:2] = [0, 255]
    return target


@pytest.mark.parametrize("suffix", [".npy", ".tif"])
@pytest.mark.parametrize("convention", ["keras", "torch"])
def test_float32_recons_of_8bit_png_targets(
    folders: tuple[Path, Path], rng: np.random.Generator, suffix: str, convention: str
) -> None:
    target = _target(rng)
    recon = np.clip(target / 255 + rng.normal(0, 0.02, target.shape), 0, 1).astype(np.float32)
    write_image(folders[0] / "a.png", target)
    write_image(folders[1] / f"a{suffix}", recon)
    [result] = _evaluate(folders, Settings.of(convention=convention))  # type: ignore[arg-type]
    _assert_close(result, metrics.sums(target / np.float64(255), recon, convention=convention))  # type: ignore[arg-type]


def test_16bit_png_pairs_with_alpha_dropped(folders: tuple[Path, Path], rng: np.random.Generator) -> None:
    target = rng.integers(0, 65536, (24, 20, 4)).astype(np.uint16)  # above kernels.SMALL
    recon = np.clip(target + rng.normal(0, 500, target.shape), 0, 65535).astype(np.uint16)
    write_image(folders[0] / "a.png", target)
    write_image(folders[1] / "a.png", recon)
    [result] = _evaluate(folders, Settings())
    expected = metrics.sums(target[:, :, :3] / np.float64(65535), recon[:, :, :3] / np.float64(65535))
    _assert_close(result, expected)
    assert result.shape == (24, 20, 3)


def test_logits_recons(folders: tuple[Path, Path], rng: np.random.Generator) -> None:
    target = _target(rng)
    logits = rng.normal(0, 3, target.shape).astype(np.float32)
    logits.flat[:2] = [-40.0, 40.0]
    write_image(folders[0] / "a.png", target)
    write_image(folders[1] / "a.npy", logits)
    [result] = _evaluate(folders, Settings.of(logits=True))
    _assert_close(result, metrics.sums(target / np.float64(255), logits, from_logits=True))


def test_grayscale_still_converts_to_float(folders: tuple[Path, Path], rng: np.random.Generator) -> None:
    target = _target(rng)
    recon = np.clip(target / 255 + rng.normal(0, 0.02, target.shape), 0, 1)
    write_image(folders[0] / "a.png", target)
    write_image(folders[1] / "a.npy", recon)
    [result] = _evaluate(folders, Settings.of(grayscale=True))
    luma = np.array([0.299, 0.587, 0.114])
    _assert_close(result, metrics.sums((target / np.float64(255)) @ luma, recon @ luma))


def test_a_value_out_of_range_names_the_file_and_the_pixel(
    folders: tuple[Path, Path], rng: np.random.Generator
) -> None:
    target = _target(rng, (4, 5, 3))
    recon = np.full(target.shape, 0.5, np.float32)
    recon[2, 3, 1] = np.nan
    write_image(folders[0] / "a.png", target)
    write_image(folders[1] / "a.npy", recon)
    [result] = _evaluate(folders, Settings())
    assert result.sums is None and result.error is not None
    assert result.error.endswith("a.npy: value nan at row 2, column 3, channel 1 is not in [0, 1]")


def test_a_float_target_out_of_range_is_the_target_s_error(folders: tuple[Path, Path]) -> None:
    write_image(folders[0] / "a.npy", np.full((3, 3), 1.5))
    write_image(folders[1] / "a.npy", np.full((3, 3), 0.5, np.float32))
    [result] = _evaluate(folders, Settings())
    assert result.error is not None and "a.npy: value 1.5 at row 0, column 0, channel 0" in result.error
    assert str(folders[0]) in result.error


def test_the_torch_backend_gives_the_same_figures(
    folders: tuple[Path, Path], rng: np.random.Generator
) -> None:
    pytest.importorskip("torch")
    for i, suffix in enumerate([".npy", ".tif", ".png"]):
        target = _target(rng)
        write_image(folders[0] / f"{i}.png", target)
        if suffix == ".png":
            levels = target.astype(np.int64) * 257 + rng.integers(-300, 300, target.shape)
            recon: np.ndarray = np.clip(levels, 0, 65535).astype(np.uint16)
        else:
            recon = np.clip(target / 255 + rng.normal(0, 0.02, target.shape), 0, 1).astype(np.float32)
        write_image(folders[1] / f"{i}{suffix}", recon)
    by_numpy = _evaluate(folders, Settings())
    by_torch = _evaluate(folders, Settings.of(backend="torch"))
    for a, b in zip(by_numpy, by_torch, strict=True):
        assert b.sums is not None
        _assert_close(a, b.sums)
