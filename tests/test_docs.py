"""The README's example outputs are what the commands print today."""

from __future__ import annotations

import os
import re
import shlex
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


def transcripts() -> list[str]:
    """README blocks that show bce-eval commands on sample_images (or explain) and their output."""
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```(?:text|console)\n(\$ bce-eval .*?)```", text, flags=re.DOTALL)
    return [b.rstrip() for b in blocks if "sample_images" in b or b.startswith("$ bce-eval explain")]


def replay(block: str, cwd: Path) -> str:
    """Run a transcript's commands in cwd: stdout and stderr as they interleave, ``$ echo $?``
    after a command that exits with another code than 0, stderr dropped after ``2>/dev/null``."""
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    shown = []
    for line in block.splitlines():
        if not line.startswith("$ bce-eval "):
            continue
        words = shlex.split(line[2:])
        quiet = words[-1] == "2>/dev/null"
        process = subprocess.run(
            [sys.executable, "-m", "bce_eval", *words[1 : len(words) - quiet]],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if quiet else subprocess.STDOUT,
            text=True,
        )
        shown += [line, *(x.rstrip() for x in process.stdout.rstrip().splitlines())]
        if process.returncode:
            shown += ["$ echo $?", str(process.returncode)]
    return "\n".join(shown)


def test_the_readme_has_transcripts_to_check() -> None:
    assert len(transcripts()) >= 5


@pytest.mark.skipif(not (ROOT / "sample_images" / "targets").is_dir(), reason="no sample_images")
@pytest.mark.parametrize("block", transcripts(), ids=lambda b: b.splitlines()[0][:60])
def test_readme_transcript_is_current(block: str, tmp_path: Path) -> None:
    (tmp_path / "sample_images").symlink_to(ROOT / "sample_images")
    assert replay(block, tmp_path) == block


def python_examples() -> list[str]:
    """The README's Python examples: ```pycon blocks of doctest lines."""
    return re.findall(r"```pycon\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_readme_has_python_examples() -> None:
    assert len(python_examples()) >= 3


@pytest.mark.skipif(not (ROOT / "sample_images" / "targets").is_dir(), reason="no sample_images")
def test_readme_python_examples_run_as_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ```pycon block, in order and sharing names, as doctests in a folder that has the
    sample images (the examples write reports there)."""
    import doctest

    if "import torch" in "".join(python_examples()):
        pytest.importorskip("torch")
    (tmp_path / "sample_images").symlink_to(ROOT / "sample_images")
    monkeypatch.chdir(tmp_path)
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    names: dict[str, object] = {}
    for i, block in enumerate(python_examples()):
        test = parser.get_doctest(block, names, f"README pycon block {i + 1}", str(README), 0)
        runner.run(test, clear_globs=False)
        names = test.globs  # the next block goes on with these names
    assert runner.summarize(verbose=False).failed == 0
