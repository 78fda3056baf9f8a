"""The progress bar is for a person at a terminal: never with --quiet, in CI or when piped."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from bce_eval import cli, pipeline

from .conftest import write_image


def _run_on_a_terminal(folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    targets, recons = folders
    for i in range(3):
        write_image(targets / f"{i}.png", np.full((4, 4), 10 * i, dtype=np.uint8))
        write_image(recons / f"{i}.png", np.full((4, 4), 10 * i + 1, dtype=np.uint8))
    terminal = io.StringIO()
    monkeypatch.setattr(cli, "stderr", Console(file=terminal, force_terminal=True, width=80))
    result = CliRunner().invoke(
        cli.app, ["compare", str(targets), str(recons), *args], catch_exceptions=False
    )
    assert result.exit_code == 0
    return terminal.getvalue()


def test_progress_bar_on_a_terminal(folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(pipeline, "PROGRESS_AFTER", 0.0)
    assert "3/3" in _run_on_a_terminal(folders, monkeypatch)


def test_no_progress_bar_with_quiet(folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(pipeline, "PROGRESS_AFTER", 0.0)
    assert "evaluating" not in _run_on_a_terminal(folders, monkeypatch, "--quiet")


def test_no_progress_bar_in_ci(folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(pipeline, "PROGRESS_AFTER", 0.0)
    assert "evaluating" not in _run_on_a_terminal(folders, monkeypatch)


def test_no_progress_bar_for_a_quick_run(folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(pipeline, "PROGRESS_AFTER", 60.0)
    assert "evaluating" not in _run_on_a_terminal(folders, monkeypatch)
