"""Fixtures that write real image files of every supported kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import png
import pytest
import tifffile
from PIL import Image


def write_image(path: Path, pixels: np.ndarray) -> Path:
    """Write pixels to path in the format its suffix names, keeping every bit of the dtype."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, pixels)
    elif suffix in (".tif", ".tiff"):
        photometric = "rgb" if pixels.ndim == 3 and pixels.shape[2] in (3, 4) else "minisblack"
        extrasamples = ("unassalpha",) if pixels.ndim == 3 and pixels.shape[2] == 4 else None
        tifffile.imwrite(path, pixels, photometric=photometric, extrasamples=extrasamples)
    elif suffix == ".png" and pixels.dtype == np.uint16 and pixels.ndim == 3:
        h, w, c = pixels.shape
        writer = png.Writer(w, h, greyscale=c in (1, 2), alpha=c in (2, 4), bitdepth=16)
        with path.open("wb") as f:
            writer.write(f, pixels.reshape(h, w * c).tolist())
    else:
        Image.fromarray(pixels).save(path, quality=95) if suffix in (".jpg", ".jpeg") else Image.fromarray(
            pixels
        ).save(path)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    targets, recons = tmp_path / "targets", tmp_path / "recons"
    targets.mkdir()
    recons.mkdir()
    return targets, recons
