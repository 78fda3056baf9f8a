"""The README's example outputs are what the commands print today."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def run(*args: str) -> str:
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "bce_eval", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return "\n".join(line.rstrip() for line in out.rstrip().splitlines())


def block_after(marker: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(marker) + len(marker)
    return text[start : text.index("```", start)].rstrip()


@pytest.mark.skipif(not (ROOT / "sample_images" / "targets").is_dir(), reason="no sample_images")
def test_quickstart_output_is_current() -> None:
    shown = block_after("from and how the reconstructions were made):\n\n```text\n")
    assert run("compare", "sample_images/targets", "sample_images/recons") == shown


def test_explain_output_is_current() -> None:
    command = "bce-eval explain --target 0.5,0.3,0.5,0.9 --pred 0.1,0.3,0.5,0.8"
    shown = block_after(f"$ {command}\n")
    assert run(*command.split()[1:]) == shown


def test_every_option_of_compare_is_in_the_readme() -> None:
    help_text = run("compare", "--help")
    readme = README.read_text(encoding="utf-8")
    options = set(re.findall(r"(--[a-z][a-z-]+)", help_text)) - {"--help"}
    assert options and all(f"`{o}" in readme for o in options), sorted(
        o for o in options if f"`{o}" not in readme
    )
