"""Hostile names in every output, and reports or lists that are not what they claim to be."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import bce_eval
from bce_eval import ReportError
from bce_eval.cli import app

from .conftest import write_image

HOSTILE = [
    "line\rbreak",
    "line\nfeed",
    'quote"d',
    "com,ma",
    '=HYPERLINK("http://x")',
    "+1",
    "-1",
    "@SUM(A1)",
    "'=already quoted",
    "\ttab",
    "<img src=x onerror=alert(1)>",
    "![](http://x/y.png)",
    "x ::error::X",
]


def invoke(*args: object) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def _batch(count: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    y = rng.random((count, 3, 3))
    return y, np.clip(y + 0.1 * rng.standard_normal(y.shape), 0, 1)


def test_any_name_round_trips_through_csv(tmp_path: Path) -> None:
    report = bce_eval.compare_arrays(*_batch(len(HOSTILE)), layout="NHW", names=HOSTILE)
    report.write_csv(tmp_path / "r.csv")
    assert [r.name for r in bce_eval.read_report(tmp_path / "r.csv").images] == HOSTILE
    rows = list(csv.reader(io.StringIO((tmp_path / "r.csv").read_text(), newline="")))
    assert len(rows) == 1 + len(HOSTILE)  # one record per pair: CR and LF are quoted


def test_csv_cells_never_start_a_formula(tmp_path: Path) -> None:
    report = bce_eval.compare_arrays(*_batch(len(HOSTILE)), layout="NHW", names=HOSTILE)
    report.write_csv(tmp_path / "r.csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text(), newline="")))
    for row in rows:
        assert not row["name"].startswith(("=", "+", "-", "@", "\t", "\r")), row["name"]
    assert rows[4]["name"] == '\'=HYPERLINK("http://x")' and rows[8]["name"] == "''=already quoted"


def test_a_csv_with_hostile_names_works_as_a_baseline(tmp_path: Path) -> None:
    y, p = _batch(len(HOSTILE))
    bce_eval.compare_arrays(y, p, layout="NHW", names=HOSTILE).write_csv(tmp_path / "r.csv")
    again = bce_eval.compare_arrays(y, p, layout="NHW", names=HOSTILE, baseline=tmp_path / "r.csv")
    assert again.verdict.baseline is not None and len(again.verdict.baseline.per_image) == len(HOSTILE)
    assert again.verdict.baseline.added == [] and again.verdict.baseline.growth == 0


def test_markdown_shows_names_as_text(tmp_path: Path) -> None:
    names = ["<img src=x onerror=alert(1)>", "![](http://x/y.png)", "a|b"]
    markdown = bce_eval.compare_arrays(*_batch(3), layout="NHW", names=names).to_markdown()
    assert not re.search(r"(?<!\\)<img", markdown) and "![](" not in markdown
    assert r"\<img src=x onerror=alert\(1\)\>" in markdown and r"\!\[\]\(http://x/y.png\)" in markdown
    assert r"a\|b" in markdown


def test_github_annotations_name_the_real_file(folders: tuple[Path, Path]) -> None:
    targets, recons = folders
    write_image(targets / "a: b.png", np.zeros((2, 2), np.uint8))  # no reconstruction
    write_image(targets / "ok.png", np.zeros((2, 2), np.uint8))
    write_image(recons / "ok.png", np.zeros((2, 2), np.uint8))
    result = invoke("compare", targets, recons, "--format", "github")
    assert result.exit_code == 2
    [line] = [x for x in result.stdout.splitlines() if x.startswith("::error")]
    expected = str(targets / "a: b.png").replace(":", "%3A").replace(",", "%2C")
    assert line.startswith(f"::error file={expected},title=")
    assert line.endswith("::no reconstruction in " + str(recons))


def _report_with(tmp_path: Path, **image_fields: object) -> Path:
    report = bce_eval.compare_arrays(*_batch(2), layout="NHW")
    document = report.to_json()
    document["images"][0].update(image_fields)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"sums_nats": {"bce": 1.0, "entropy": 0.5, "excess": float("nan")}}, "NaN is not a number JSON has"),
        ({"sums_nats": {"bce": 1.0, "entropy": 0.5, "excess": -2.6e296}}, "not a number >= 0"),
        ({"sums_nats": {"bce": 1.0, "entropy": 0.5, "excess": 3.0}}, "above its BCE"),
        ({"pixels": -1}, "not a whole number >= 0"),
        ({"pixels": 10}, "not height x width x channels = 9"),
        ({"clipped": 12}, "clipped of 9 pixels"),
        ({"clipped": 1.5}, "not a whole number"),
        ({"status": "fine"}, "not ok or error"),
    ],
)
def test_reports_with_absurd_figures_are_refused(tmp_path: Path, fields: dict, problem: str) -> None:
    path = _report_with(tmp_path, **fields)
    with pytest.raises(ReportError) as error:
        bce_eval.read_report(path)
    assert str(error.value).startswith(f"{path}: not ") and problem in str(error.value)


def test_a_nan_baseline_in_csv_is_refused_not_passed(tmp_path: Path) -> None:
    y, p = _batch(2)
    bce_eval.compare_arrays(y, p, layout="NHW").write_csv(tmp_path / "b.csv")
    text = (tmp_path / "b.csv").read_text().splitlines()
    cells = text[1].split(",")
    cells[text[0].split(",").index("excess_sum")] = "nan"
    (tmp_path / "b.csv").write_text("\n".join([text[0], ",".join(cells), *text[2:]]) + "\n")
    with pytest.raises(ReportError, match="excess_sum is 'nan', not a number >= 0"):
        bce_eval.compare_arrays(y, p, layout="NHW", baseline=tmp_path / "b.csv", max_regression=0.1)


def test_nan_literals_in_json_are_refused(tmp_path: Path) -> None:
    path = _report_with(tmp_path)
    path.write_text(path.read_text().replace('"excess_sum": ', '"excess_sum": NaN, "x": ', 1))
    with pytest.raises(ReportError, match="NaN is not a number JSON has"):
        bce_eval.read_report(path)


def test_a_truncated_csv_row_is_one_line(tmp_path: Path) -> None:
    bce_eval.compare_arrays(*_batch(2), layout="NHW").write_csv(tmp_path / "b.csv")
    lines = (tmp_path / "b.csv").read_text().splitlines()
    (tmp_path / "b.csv").write_text("\n".join([*lines[:-1], lines[-1][:20]]) + "\n")
    with pytest.raises(ReportError, match="columns where the header has others"):
        bce_eval.read_report(tmp_path / "b.csv")


def test_huge_sums_overflow_to_inf_and_fail_the_gate(tmp_path: Path) -> None:
    y, p = _batch(4)
    for i in (1, 2):
        shard = bce_eval.compare_arrays(y[i - 1 :: 2], p[i - 1 :: 2], layout="NHW", names=[f"{i}a", f"{i}b"])
        document = shard.to_json()
        for image in document["images"]:
            image["sums_nats"] = {"bce": 1e308, "entropy": 0.0, "excess": 1e308}
        (tmp_path / f"{i}.json").write_text(json.dumps(document))
    merged = bce_eval.merge([tmp_path / "1.json", tmp_path / "2.json"], max_excess=1.0)
    assert merged.totals.excess == float("inf") and merged.exit_code == 1
    merged.write_json(tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["summary"]["excess_sum"] is None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_or_a_device_as_a_report_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    done = threading.Event()
    errors: list[str] = []

    def read() -> None:
        for path in (fifo, Path("/dev/zero")):
            try:
                bce_eval.read_report(path)
            except ReportError as e:
                errors.append(str(e))
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(10), "reading a FIFO blocked"
    problem = "cannot read the report: not a regular file (a pipe or a device)"
    assert errors == [f"{fifo}: {problem}", f"/dev/zero: {problem}"]


def test_reports_are_replaced_together_or_not_at_all(folders: tuple[Path, Path], tmp_path: Path) -> None:
    targets, recons = folders
    write_image(targets / "a.png", np.full((2, 2), 100, np.uint8))
    write_image(recons / "a.png", np.full((2, 2), 110, np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    for name in ("r.csv", "r.json"):
        (out / name).write_text("old\n")
    # The JUnit report cannot be written (its folder is a file): the other two stay old.
    result = invoke(
        "compare",
        targets,
        recons,
        "--csv",
        out / "r.csv",
        "--json",
        out / "r.json",
        "--junit",
        out / "r.csv" / "x",
    )
    assert result.exit_code == 2 and "cannot write" in result.stderr
    assert "bce-eval: 1 pair," in result.stdout  # the summary is still printed
    assert (out / "r.csv").read_text() == "old\n" and (out / "r.json").read_text() == "old\n"
    assert sorted(p.name for p in out.iterdir()) == ["r.csv", "r.json"]  # no .partial left


def test_stale_partial_files_of_a_killed_run_are_cleaned(folders: tuple[Path, Path], tmp_path: Path) -> None:
    targets, recons = folders
    write_image(targets / "a.png", np.full((2, 2), 100, np.uint8))
    write_image(recons / "a.png", np.full((2, 2), 110, np.uint8))
    dead = tmp_path / ".r.json.999999999.x1y2.partial"  # no process has this id
    live = tmp_path / f".r.json.{os.getpid()}.x1y2.partial"  # a run writing right now
    dead.write_text("{")
    live.write_text("{")
    assert invoke("compare", targets, recons, "--json", tmp_path / "r.json").exit_code == 0
    assert not dead.exists() and live.exists()


def test_no_line_of_the_human_summary_starts_a_workflow_command(tmp_path: Path) -> None:
    """In a CI log (stdout not a terminal) names are never wrapped, so a name holding
    " ::error::X" cannot start a line that a GitHub runner would take as a command."""
    names = ["x" * 70 + " ::error::X", "y ::warning::Y"]
    for i, name in enumerate(names):
        write_image(tmp_path / "t" / f"{name}.png", np.full((2, 2), 10 * i, np.uint8))
        write_image(tmp_path / "r" / f"{name}.png", np.full((2, 2), 10 * i + 5, np.uint8))
    result = invoke("compare", tmp_path / "t", tmp_path / "r", "--format", "github", "--max-excess", "0")
    assert result.exit_code == 1
    commands = [line for line in result.stdout.splitlines() if line.lstrip().startswith("::")]
    assert commands and all(line.startswith(("::error title=", "::notice title=")) for line in commands)
