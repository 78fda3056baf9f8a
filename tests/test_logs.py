"""Logs CI can read: whole names, no padding or wrapping off a terminal, one-line option errors;
the clipped count; counts in words."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bce_eval.cli import app

from .conftest import write_image

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
LONG = "a_rather_long_image_name_that_a_terminal_would_cut_" * 3


def invoke(*args: object, env: dict[str, str] | None = None):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, env=env)


def run(*args: object, columns: str | None = None) -> subprocess.CompletedProcess[str]:
    """The command as CI runs it: stdout a pipe."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    return subprocess.run(
        [sys.executable, "-m", "bce_eval", *map(str, args)], capture_output=True, text=True, env=env, cwd=ROOT
    )


@pytest.fixture
def long_names(folders: tuple[Path, Path], rng: np.random.Generator) -> tuple[Path, Path]:
    for name in (LONG, "short"):
        target = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        write_image(folders[0] / f"{name}.png", target)
        write_image(folders[1] / f"{name}.png", 255 - target if name == LONG else target)
    return folders


@pytest.mark.parametrize("columns", [None, "80", "40"])
def test_off_a_terminal_names_are_whole_and_lines_unpadded(
    long_names: tuple[Path, Path], columns: str | None
) -> None:
    done = run("compare", *long_names, "--group-by", "folder", columns=columns)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(line == line.rstrip() for line in lines)
    assert f" Worst image        {LONG}" in lines
    assert "…" not in done.stdout
    worst_row = next(line for line in lines if LONG in line and line.lstrip().startswith(("1", "│ 1")))
    assert worst_row.split()[0] in ("1", "│")
    if columns is None:  # no width: boxed tables at their natural width, never wrapped
        assert "┏" in done.stdout
    else:  # too wide for COLUMNS: the plain layout, names whole
        worst_table = done.stdout.split("Worst 2 by excess")[1]
        assert "┏" not in worst_table and " #  image" in worst_table


def test_option_errors_are_one_line_with_exit_code_2(folders: tuple[Path, Path]) -> None:
    cases = {
        ("--max-exces", "0.1"): "error: --max-exces: no such option; did you mean --max-excess",
        ("--top", "-1"): "error: --top: must be a whole number >= 0, not -1",
        ("--workers", "0"): "error: --workers: must be a whole number >= 1, not 0",
        ("--units", "furlongs"): "error: --units: 'furlongs' is not one of 'nats', 'bits'",
        ("--top", "x"): "error: --top: 'x' is not a valid int",
        ("--eps", "0.7"): "error: --eps: must be in (0, 0.5), not 0.7",
        ("--layout", "hwc"): "error: --layout: must be one of nhwc, nchw, nhw",
    }
    for options, line in cases.items():
        done = run("compare", *folders, *options)
        assert done.returncode == 2, options
        assert done.stderr.startswith(line) and len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stdout == ""
    missing = run("compare", folders[0])
    assert (
        missing.returncode == 2
        and missing.stderr == "error: RECONS: missing argument; see bce-eval compare --help\n"
    )
    command = run("compar")
    assert (
        command.returncode == 2
        and command.stderr == "error: no such command 'compar'; did you mean 'compare'?\n"
    )


def test_usage_names_the_arguments_plainly() -> None:
    done = run("compare", "--help")
    assert done.stdout.splitlines()[0] == "Usage: bce-eval compare [OPTIONS] TARGETS RECONS"
    assert "{" not in done.stdout.splitlines()[0]
    alone = run()  # the command alone: its help, as Click gives it
    assert "Usage: bce-eval [OPTIONS] COMMAND" in alone.stdout + alone.stderr


def test_counts_are_in_words(folders: tuple[Path, Path], tmp_path: Path, rng: np.random.Generator) -> None:
    target = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    write_image(folders[0] / "x.png", target)
    write_image(folders[1] / "x.png", np.clip(target.astype(int) + 60, 0, 255).astype(np.uint8))
    base = tmp_path / "base.json"
    result = invoke("compare", *folders, "--json", base, "--max-image-excess", "0")
    assert result.stdout.startswith("bce-eval: 1 pair, 1 evaluated, 0 failed;")
    assert (
        "1 image over 0 nats per pixel" in result.stdout
        and "verdict: FAIL, 1 of 1 gate failed" in result.stdout
    )
    write_image(folders[1] / "x.png", np.clip(target.astype(int) + 6, 0, 255).astype(np.uint8))
    better = invoke("compare", *folders, "--baseline", base, "--max-regression", "0")
    assert better.exit_code == 0
    document = json.loads(base.read_text())
    assert (
        " pass  --max-regression 0: overall excess fell " in better.stdout and "grew -" not in better.stdout
    )
    assert document["format"] == 2
    write_image(folders[0] / "y.png", target)
    missing = invoke("compare", *folders)
    assert "1 of 2 pairs could not be evaluated" in missing.stderr


def test_clipped_counts_only_predictions_whose_bce_the_convention_changed(
    folders: tuple[Path, Path], tmp_path: Path, rng: np.random.Generator
) -> None:
    target = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    recon = target.copy()
    recon[:8] = 0  # saturated dark rows ...
    recon[8:12] = 255  # ... and bright ones
    target[:2] = 0  # where the target is 0 as well, nothing changes
    write_image(folders[0] / "x.png", target)
    write_image(folders[1] / "x.png", recon)
    changed = int(((recon == 0) & (target > 0)).sum() + ((recon == 255) & (target < 255)).sum())
    for convention in ("torch", "keras"):
        out = tmp_path / f"{convention}.json"
        result = invoke("compare", *folders, "--convention", convention, "--json", out)
        assert json.loads(out.read_text())["summary"]["clipped"] == changed
        note = "p < e^-100 under y > 0, p = 1 under y < 1" if convention == "torch" else "p < eps under y > 0"
        assert f" Clipped preds      {changed:,}" in result.stdout and note in result.stdout
    assert changed < int(((recon == 0) | (recon == 255)).sum())
