"""Heat maps: the same float64 math as the figures, one scale per run, files under each name."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import bce_eval
from bce_eval.cli import app
from bce_eval.reports import maps as M

from .conftest import write_image

SIDE, SQUARE = 64, slice(24, 40)


def smooth(side: int = SIDE, channels: int = 1) -> np.ndarray:
    """A smooth uint8 image, (side, side) or (side, side, channels)."""
    yy, xx = np.mgrid[0:side, 0:side] / side
    grey = 40 + 150 * (0.5 + 0.5 * np.sin(3 * xx + 2 * yy))
    image = np.round(grey).astype(np.uint8)
    return image if channels == 1 else np.repeat(image[:, :, None], channels, axis=2)


def damaged(target: np.ndarray) -> np.ndarray:
    """The target with one square made brighter: the only place the reconstruction is wrong."""
    recon = target.copy()
    recon[SQUARE, SQUARE] = np.clip(recon[SQUARE, SQUARE].astype(int) + 60, 0, 255)
    return recon


@pytest.fixture
def square_pair(folders: tuple[Path, Path]) -> tuple[Path, Path]:
    targets, recons = folders
    target = smooth()
    write_image(targets / "square.png", target)
    write_image(recons / "square.png", damaged(target))
    write_image(targets / "exact.png", target)
    write_image(recons / "exact.png", target)
    return targets, recons


def test_colour_tables_are_the_published_maps() -> None:
    magma, berlin = M.colour_table("magma"), M.colour_table("berlin")
    assert magma.shape == berlin.shape == (256, 3)
    assert tuple(magma[0]) == (0, 0, 4) and tuple(magma[255]) == (252, 253, 191)  # black to pale yellow
    assert magma.sum(axis=1).tolist() == sorted(magma.sum(axis=1).tolist())  # brighter all the way
    centre = berlin[127:129].sum(axis=1)
    assert centre.max() < 60 and berlin[0, 2] > 200 and berlin[255, 0] > 200  # blue, dark, red


def test_the_damaged_square_is_hot_inside_and_cold_outside(
    square_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    report = bce_eval.compare(*square_pair, maps=tmp_path / "maps")
    excess = np.asarray(Image.open(tmp_path / "maps" / "square.excess.png"))  # palette indices
    signed = np.asarray(Image.open(tmp_path / "maps" / "square.signed.png"))
    inside = np.zeros((SIDE, SIDE), bool)
    inside[SQUARE, SQUARE] = True
    assert excess[inside].min() > 96 and excess[~inside].max() == 0
    assert signed[inside].min() > 200 and set(np.unique(signed[~inside])) == {
        128
    }  # brighter; 0 in the middle
    rgb = np.asarray(Image.open(tmp_path / "maps" / "square.excess.png").convert("RGB")).astype(int)
    assert rgb[inside].sum(axis=1).min() > 3 * rgb[~inside].sum(axis=1).max()
    assert not np.asarray(Image.open(tmp_path / "maps" / "exact.excess.png")).any()
    assert report.map_scale is not None and report.map_scale.units == "nats"
    for legend in M.LEGENDS.values():
        assert Image.open(tmp_path / "maps" / legend).size[0] > 256


def test_npy_maps_are_the_float64_excess_of_every_value(folders: tuple[Path, Path], tmp_path: Path) -> None:
    targets, recons = folders
    rng = np.random.default_rng(3)
    eight = rng.integers(0, 256, size=(9, 7, 3), dtype=np.uint8)
    write_image(targets / "eight.png", eight)
    write_image(
        recons / "eight.png",
        np.clip(eight.astype(int) + rng.integers(-9, 9, eight.shape), 0, 255).astype(np.uint8),
    )
    floats = rng.random((6, 5))
    write_image(targets / "floats.npy", floats)
    write_image(recons / "floats.npy", np.clip(floats + 0.1 * rng.standard_normal(floats.shape), 0, 1))
    for units in ("nats", "bits"):
        report = bce_eval.compare(targets, recons, maps=tmp_path / units, maps_format="npy", units=units)
        scale = 1.0 if units == "nats" else 1 / math.log(2)
        for result in report.images:
            stored = np.load(tmp_path / units / f"{result.name}.excess.npy")
            y = (
                np.load(targets / "floats.npy")
                if result.name == "floats"
                else np.asarray(Image.open(result.target)) / 255.0
            )
            p = (
                np.load(recons / "floats.npy")
                if result.name == "floats"
                else np.asarray(Image.open(result.recon)) / 255.0
            )
            expected = bce_eval.pixel_maps(y, p).excess.reshape(stored.shape)
            assert stored.dtype == np.float64
            np.testing.assert_array_equal(stored, expected * scale if units == "bits" else expected)
            assert result.sums is not None
            assert math.isclose(stored.sum() / scale, result.sums.excess, rel_tol=1e-12)
        assert not list((tmp_path / units).glob("*.png"))  # no legend: npy maps have no colours


def test_maps_top_draws_only_the_worst(folders: tuple[Path, Path], tmp_path: Path) -> None:
    targets, recons = folders
    for i, shift in enumerate((5, 40, 20)):
        target = smooth(16)
        write_image(targets / f"im{i}.png", target)
        write_image(recons / f"im{i}.png", np.clip(target.astype(int) + shift, 0, 255).astype(np.uint8))
    bce_eval.compare(targets, recons, maps=tmp_path / "maps", maps_top=2)
    assert sorted(p.name for p in (tmp_path / "maps").glob("im*.excess.png")) == [
        "im1.excess.png",
        "im2.excess.png",
    ]


def test_one_scale_for_every_map_of_a_run(folders: tuple[Path, Path], tmp_path: Path) -> None:
    """The same error gives the same colour in two maps, however bad the rest of each image is."""
    targets, recons = folders
    base = smooth(32)
    mild, bad = base.copy(), base.copy()
    mild[:4, :4] += 30
    bad[:4, :4] += 30
    bad[16:, 16:] += 90
    for name, recon in (("mild", mild), ("bad", bad)):
        write_image(targets / f"{name}.png", base)
        write_image(recons / f"{name}.png", recon)
    report = bce_eval.compare(targets, recons, maps=tmp_path / "maps")
    mild_map = np.asarray(Image.open(tmp_path / "maps" / "mild.excess.png"))
    bad_map = np.asarray(Image.open(tmp_path / "maps" / "bad.excess.png"))
    np.testing.assert_array_equal(mild_map[:4, :4], bad_map[:4, :4])
    assert report.map_scale is not None
    assert f"{report.map_scale.excess:g}" in report.to_html()  # the page states the run's scale


def test_the_scale_is_a_round_number_over_the_99th_percentile() -> None:
    assert [M.nice(x) for x in (0.7, 1.0, 1.3, 2.2, 3.1, 0.00042)] == [1.0, 1.0, 2.0, 2.5, 5.0, 0.0005]
    values = np.concatenate([np.full(990, 0.01), np.full(10, 7.0)])  # 1 % outliers take the top colour
    spread = M.Spread.of(values)
    assert 0.01 <= spread.percentile() <= 0.0105
    scale = M.MapScale.of(spread, M.Spread.of(np.full(4, -0.3)), "nats")
    assert (scale.excess, scale.signed) == (0.02, 0.5)
    assert M.MapScale.of(M.Spread.of(np.zeros(5)), M.Spread.of(np.zeros(5)), "bits").excess == 1.0
    halves = M.Spread.of(values[:500]) + M.Spread.of(values[500:])
    np.testing.assert_array_equal(halves.counts, spread.counts)


def test_names_stay_inside_the_maps_folder() -> None:
    stems = M.stems(["a/b", "../up", "/abs/x", "a/./b", "a//b", "."])
    assert stems["a/b"] == "a/b" and stems["../up"] == "%2E%2E/up" and stems["/abs/x"] == "abs/x"
    assert stems["a/./b"] == "a/b~2" and stems["a//b"] == "a/b~3" and stems["."] == "%"


def test_maps_of_a_batch_in_memory(tmp_path: Path) -> None:
    targets = np.stack([smooth(), smooth()])
    recons = np.stack([damaged(smooth()), smooth()])
    report = bce_eval.compare_arrays(targets, recons, layout="NHW", names=["hurt", "fine"], maps=tmp_path)
    hurt = np.asarray(Image.open(tmp_path / "hurt.excess.png"))
    assert hurt[SQUARE, SQUARE].min() > 96 and hurt[:20, :20].max() == 0
    assert report.arrays is not None and set(report.arrays) == {"hurt", "fine"}


def test_maps_from_a_saved_report_leave_out_what_changed(
    square_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    targets, recons = square_pair
    bce_eval.compare(targets, recons).write_json(tmp_path / "report.json")
    write_image(recons / "exact.png", damaged(smooth()))  # changed since the report
    written = bce_eval.read_report(tmp_path / "report.json").write_maps(tmp_path / "maps")
    assert written.written == 1 and (tmp_path / "maps" / "square.excess.png").exists()
    assert len(written.left_out) == 1 and "exact: no maps: its files now give" in written.left_out[0]
    (recons / "square.png").unlink()
    again = bce_eval.read_report(tmp_path / "report.json").write_maps(tmp_path / "maps2")
    assert again.written == 0 and any(
        "square: no maps:" in line and "no such file" in line for line in again.left_out
    )


def test_the_command_writes_maps_and_says_where(square_pair: tuple[Path, Path], tmp_path: Path) -> None:
    targets, recons = square_pair
    command = ["compare", str(targets), str(recons), "--maps", str(tmp_path / "m")]
    result = CliRunner().invoke(app, [*command, "--json", str(tmp_path / "r.json")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "maps: 2 pairs' excess and signed-error maps in" in result.output
    assert (tmp_path / "m" / "square.signed.png").exists()
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["pairs"] == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--maps-format", "jpg"], "--maps-format"),
        (["--maps-top", "-1"], "--maps-top"),
    ],
)
def test_bad_maps_options_are_usage_errors(
    square_pair: tuple[Path, Path], tmp_path: Path, options: list[str], message: str
) -> None:
    targets, recons = square_pair
    result = CliRunner().invoke(
        app, ["compare", str(targets), str(recons), "--maps", str(tmp_path / "m"), *options]
    )
    assert result.exit_code == 2 and message in result.output


def test_a_maps_folder_that_is_a_file_is_refused_before_the_run(
    square_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    targets, recons = square_pair
    (tmp_path / "taken").write_text("x")
    result = CliRunner().invoke(
        app, ["compare", str(targets), str(recons), "--maps", str(tmp_path / "taken")]
    )
    assert result.exit_code == 2
    assert "error: --maps:" in result.output and "is not a folder" in result.output
    assert "bce-eval: 2 pairs" not in result.output  # refused before any image was read
    with pytest.raises(bce_eval.OptionError, match="--maps-format"):
        bce_eval.compare(targets, recons, maps=tmp_path / "m", maps_format="gif")  # type: ignore[arg-type]
