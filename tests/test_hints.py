"""Hints for the usual mistakes, and repeated errors shown a few times: the cases users met."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from bce_eval.cli import app

from .conftest import write_image

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def class_folders(root: Path, rng: np.random.Generator, per_class: int = 15) -> dict[str, np.ndarray]:
    """16x16 grey targets in two class folders, as a digits data set is laid out."""
    images = {}
    for label in ("c0", "c1"):
        for i in range(per_class):
            pixels = rng.integers(0, 256, (16, 16), dtype=np.uint8)
            write_image(root / label / f"{i:03d}.png", pixels)
            images[f"{label}/{i:03d}"] = pixels
    return images


def test_recon_names_with_a_suffix_get_the_recon_suffix_hint(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    targets = class_folders(tmp_path / "t", rng)
    for name, pixels in targets.items():
        write_image(tmp_path / "r" / f"{name}_recon.png", pixels)
    result = invoke("compare", tmp_path / "t", tmp_path / "r")
    assert result.exit_code == 2
    assert "60 pairs, 0 evaluated, 60 failed" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1] == (
        "hint: 30 reconstructions are named as a target plus '_recon' (c0/000_recon for c0/000): "
        "give --recon-suffix _recon"
    )
    errors = result.stderr.splitlines()
    # 30 of each kind: 10 shown, then a count; every one is in the reports
    assert sum("no reconstruction in" in e for e in errors) == 10
    assert sum("no target in" in e for e in errors) == 10
    assert errors.count("... and 20 more like this") == 2
    assert errors[-1] == "60 of 60 pairs could not be evaluated"
    github = invoke("compare", tmp_path / "t", tmp_path / "r", "--format", "github")
    assert (
        github.stdout.rstrip()
        .splitlines()[-1]
        .startswith("::notice title=bce-eval hint::30 reconstructions are named as a target plus '_recon'")
    )
    fixed = invoke("compare", tmp_path / "t", tmp_path / "r", "--recon-suffix", "_recon")
    assert fixed.exit_code == 0 and "hint:" not in fixed.stdout


def test_a_recon_suffix_that_ends_no_name_is_refused_before_evaluating(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    targets = class_folders(tmp_path / "t", rng, per_class=2)
    for name, pixels in targets.items():
        write_image(tmp_path / "r" / f"{name}_recon.png", pixels)
    result = invoke(
        "compare", tmp_path / "t", tmp_path / "r", "--recon-suffix", "_recn", "--csv", tmp_path / "o.csv"
    )
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("error: --recon-suffix: no reconstruction's name in ")
    assert "ends with '_recn'" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "o.csv").exists()


def test_logits_saved_without_logits_get_the_logits_hint(tmp_path: Path, rng: np.random.Generator) -> None:
    targets = class_folders(tmp_path / "t", rng, per_class=150)  # 300 pairs, as reported
    for name in targets:
        path = tmp_path / "r" / f"{name}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, rng.normal(0, 4, (16, 16, 1)).astype(np.float32))
    result = invoke("compare", tmp_path / "t", tmp_path / "r")
    assert result.exit_code == 2
    hint = result.stdout.rstrip().splitlines()[-1]
    assert hint.startswith("hint: 300 reconstructions hold values outside [0, 1] of both signs (")
    assert hint.endswith("as logits do: if they are logits, give --logits")
    assert len(result.stderr.splitlines()) == 12  # 10 errors, "... and 290 more", the count
    assert "... and 290 more like this" in result.stderr
    assert invoke("compare", tmp_path / "t", tmp_path / "r", "--logits").exit_code == 0


def test_channels_first_arrays_get_the_layout_hint_and_read_with_it(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    targets = class_folders(tmp_path / "t", rng, per_class=3)
    for name, pixels in targets.items():
        chw = (pixels / 255)[None].astype(np.float32)  # what tensor.numpy() gives: (1, 16, 16)
        path = tmp_path / "r" / f"{name}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, chw)
        np.save(write_dir(tmp_path / "r4" / name.split("/")[0]) / f"{name.split('/')[1]}.npy", chw[None])
    result = invoke("compare", tmp_path / "t", tmp_path / "r")
    assert result.exit_code == 2
    assert "shape 1x16x16 (height x width x channels) differs from the target's 16x16x1" in result.stderr
    assert result.stdout.rstrip().splitlines()[-1] == (
        "hint: 6 reconstructions have their target's shape with the channels first (1x16x16 for 16x16x1): "
        "give --layout nchw"
    )
    assert invoke("compare", tmp_path / "t", tmp_path / "r", "--layout", "nchw").exit_code == 0
    # (1, 1, 16, 16): a batch of one, beside its image
    result = invoke("compare", tmp_path / "t", tmp_path / "r4")
    assert result.exit_code == 2 and "give --layout nchw" in result.stdout
    result = invoke("compare", tmp_path / "t", tmp_path / "r4", "--layout", "nchw")
    assert result.exit_code == 0, result.output


def write_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_no_hint_when_most_pairs_are_fine(tmp_path: Path, rng: np.random.Generator) -> None:
    targets = class_folders(tmp_path / "t", rng, per_class=3)
    for i, (name, pixels) in enumerate(targets.items()):
        write_image(tmp_path / "r" / (f"{name}_recon.png" if i < 2 else f"{name}.png"), pixels)
    result = invoke("compare", tmp_path / "t", tmp_path / "r")
    assert result.exit_code == 2 and "hint:" not in result.stdout
