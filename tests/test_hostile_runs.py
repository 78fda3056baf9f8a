"""Hostile input through whole `bce-eval compare` processes: one bad file never stops a run, and
no worker process outlives a run killed with SIGKILL."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from .conftest import write_image
from .test_hostile_input import (
    _jpeg_claiming,
    _stored_png_with_a_changed_pixel,
    _tiff_with_tag,
    _tiff_with_tag_data_past_the_end,
)


def _compare(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bce_eval", "compare", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "CI": "1"},
    )


def test_bad_files_of_every_kind_are_one_line_each_and_the_run_goes_on(
    folders: tuple[Path, Path], tmp_path: Path, rng: np.random.Generator
) -> None:
    targets, recons = folders
    for name in ("good1", "good2"):
        for folder in folders:
            write_image(folder / f"{name}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    bad = {
        "rows_per_strip_0": _tiff_with_tag(
            targets / "rows_per_strip_0.tif", 278, 0, compression="zlib", rowsperstrip=8
        ),
        "lzma": _tiff_with_tag(targets / "lzma.tif", 259, 34925),
        "adler": _stored_png_with_a_changed_pixel(targets / "adler.png", rng, "RGB"),
        "tag_past_end": _tiff_with_tag_data_past_the_end(targets / "tag_past_end.tif"),
        "bomb": _jpeg_claiming(tmp_path, 65500, 2730).rename(targets / "bomb.jpg"),
    }
    for name in bad:
        write_image(recons / f"{name}.png", np.zeros((8, 8, 3), np.uint8))
    result = _compare(targets, recons, "--workers", "2", "--csv", tmp_path / "out.csv", "--top", "0")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(bad)  # one line each
    for path in bad.values():
        assert sum(str(path) in line for line in errors) == 1
    with (tmp_path / "out.csv").open() as f:
        rows = {row["name"]: row["status"] for row in csv.DictReader(f)}
    assert rows == {"good1": "ok", "good2": "ok", **{name: "error" for name in bad}}


def _children(pid: int) -> set[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return {int(p) for p in f.read().split()}
    except OSError:
        return set()


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent that may never reap it (PID 1 in a container)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_no_worker_outlives_a_parent_killed_with_sigkill(folders: tuple[Path, Path]) -> None:
    targets, recons = folders
    rng = np.random.default_rng(7)
    for i in range(60):  # float64 pairs: about a tenth of a second each
        np.save(targets / f"{i:02}.npy", rng.random((512, 512, 3)))
        np.save(recons / f"{i:02}.npy", rng.random((512, 512, 3)))
    run = subprocess.Popen(
        [sys.executable, "-m", "bce_eval", "compare", str(targets), str(recons), "--workers", "2", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while len(workers := _children(run.pid)) < 2 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(workers) == 2, "the workers never started"
        time.sleep(0.3)  # mid-run
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        deadline = time.monotonic() + 10
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(map(_alive, workers)), f"workers {workers} outlived their parent"
    finally:
        for pid in (run.pid, *workers, *_children(run.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
