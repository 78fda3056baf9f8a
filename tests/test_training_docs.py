"""The README's training-loop examples run as shown, and so does the example training script."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEADING = "## In the training loop"


def training_section() -> str:
    """The section in README.md, or README.training.md until it is pasted there."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    if HEADING in readme:
        start = readme.index(HEADING)
        end = readme.find("\n## ", start + len(HEADING))
        return readme[start : end if end != -1 else len(readme)]
    return (ROOT / "README.training.md").read_text(encoding="utf-8")


def examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", training_section(), flags=re.DOTALL)


def test_the_section_has_its_examples() -> None:
    codes = examples()
    assert len(codes) == 3
    assert any("lightning" in c for c in codes) and any("keras" in c for c in codes)


@pytest.mark.parametrize("code", examples(), ids=["pytorch", "lightning", "keras"])
def test_example_runs(code: str, tmp_path: Path) -> None:
    for module in ("torch", "torchmetrics", "lightning", "keras"):
        uses = re.search(rf"^(import {module}\b|from {module}\b)", code, flags=re.MULTILINE)
        if (uses or (module == "torchmetrics" and "ExcessBCE" in code and "bce_eval.torch" in code)) and (
            importlib.util.find_spec(module) is None
        ):
            pytest.skip(f"{module} is not installed")
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_training_script_prints_the_table_the_readme_shows() -> None:
    pytest.importorskip("torchmetrics")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_autoencoder.py"), "--epochs", "3"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    lines = done.stdout.splitlines()
    shown = training_section()
    assert lines[0] in shown and lines[1] in shown  # the title and the column names
    rows = [line.split() for line in lines[2:5]]
    assert [int(r[0]) for r in rows] == [1, 2, 3]
    for _, loss, bce, entropy, excess, _naive in rows:
        assert float(loss) > 0
        assert float(bce) >= float(entropy) and float(excess) > 0
    assert float(rows[2][4]) < float(rows[0][4])  # the excess falls
    assert len({r[3] for r in rows}) == 1  # H does not depend on the model
