"""Quality gates, baselines, CI formats, shards and merge, atomic reports and Ctrl-C, end to end."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from bce_eval.reports import ci
from bce_eval.shards import shard_of

from . import reference
from .conftest import write_image
from .test_cli import invoke, make_set, read_csv


def run_json(*args: object) -> dict:
    result = invoke("compare", *args, "--json", "-")
    return json.loads(result.stdout)


def uniform_set(targets: Path, recons: Path, values: dict[str, tuple[int, int]]) -> dict[str, float]:
    """One 4x4 grey pair per name, target and recon each one 8-bit level; the excess of each."""
    excess = {}
    for name, (t, r) in values.items():
        write_image(targets / f"{name}.png", np.full((4, 4), t, np.uint8))
        write_image(recons / f"{name}.png", np.full((4, 4), r, np.uint8))
        excess[name] = float(reference.element(t / 255, r / 255)[2])
    return excess


SET = {"good": (100, 101), "fair": (100, 110), "bad": (100, 140), "worst": (60, 200)}
NOT_UTF8 = os.fsdecode(b"x\xff")  # a file name whose bytes are not UTF-8, as Python gives it


def named_set(targets: Path, recons: Path, values: dict[str, tuple[int, int]]) -> dict[str, float]:
    """uniform_set for names a file system may refuse (bytes that are not UTF-8, control characters)."""
    try:
        return uniform_set(targets, recons, values)
    except OSError as e:
        pytest.skip(f"this file system refuses such names ({e})")


def test_max_excess_gate_passes_below_and_fails_above(folders: tuple[Path, Path]) -> None:
    excess = uniform_set(*folders, SET)
    overall = sum(excess.values()) / len(excess)  # equal pixel counts
    passed = invoke("compare", *folders, "--max-excess", repr(overall * 1.001))
    assert passed.exit_code == 0
    assert f"pass  --max-excess {overall * 1.001:.6g}" in passed.stdout
    assert "verdict: pass, 1 gate passed" in passed.stdout
    failed = invoke("compare", *folders, "--max-excess", repr(overall * 0.999), "--top", "2")
    assert failed.exit_code == 1
    line = next(x for x in failed.stdout.splitlines() if "FAIL  --max-excess" in x)
    assert f"overall excess {overall:.6g} > {overall * 0.999:.6g} nats per pixel" in line
    assert line.endswith(f"worst: worst {excess['worst']:.6g}, bad {excess['bad']:.6g}")
    assert "verdict: FAIL, 1 of 1 gate failed" in failed.stdout


def test_max_image_excess_names_every_image_over_it_worst_first(folders: tuple[Path, Path]) -> None:
    excess = uniform_set(*folders, SET)
    threshold = (excess["fair"] + excess["bad"]) / 2
    result = invoke("compare", *folders, "--max-image-excess", repr(threshold))
    assert result.exit_code == 1
    line = next(x for x in result.stdout.splitlines() if "--max-image-excess" in x)
    assert f"2 images over {threshold:.6g} nats per pixel (largest {excess['worst']:.6g})" in line
    assert line.endswith(f"over: worst {excess['worst']:.6g}, bad {excess['bad']:.6g}")
    # A gate fails only strictly above its threshold: at the largest excess as reported it
    # passes, one float below it fails.
    largest = run_json(*folders)["summary"]["excess_max"]
    assert math.isclose(largest, excess["worst"], rel_tol=1e-14)
    assert invoke("compare", *folders, "--max-image-excess", repr(largest)).exit_code == 0
    just_below = math.nextafter(largest, 0)
    assert invoke("compare", *folders, "--max-image-excess", repr(just_below)).exit_code == 1


def test_top_limits_the_offenders_listed(folders: tuple[Path, Path]) -> None:
    uniform_set(*folders, SET)
    result = invoke("compare", *folders, "--max-image-excess", "0", "--top", "1")
    line = next(x for x in result.stdout.splitlines() if "--max-image-excess" in x)
    assert "4 images over 0" in line and line.count(",") == 0 and "over: worst" in line


def test_max_bce_gate(folders: tuple[Path, Path], rng: np.random.Generator) -> None:
    make_set(*folders, rng)
    bce = run_json(*folders)["summary"]["bce"]
    assert invoke("compare", *folders, "--max-bce", repr(bce * 1.0001)).exit_code == 0
    result = invoke("compare", *folders, "--max-bce", repr(bce * 0.9999))
    assert result.exit_code == 1 and f"overall BCE {bce:.6g} >" in result.stdout
    assert "worst by BCE: " in result.stdout


def test_thresholds_are_in_the_report_units(folders: tuple[Path, Path]) -> None:
    excess = uniform_set(*folders, SET)
    nats = sum(excess.values()) / len(excess)
    between = repr(nats * 1.2)  # above the figure in nats, below it in bits (x 1.44)
    assert invoke("compare", *folders, "--max-excess", between).exit_code == 0
    in_bits = invoke("compare", *folders, "--max-excess", between, "--units", "bits")
    assert in_bits.exit_code == 1
    assert f"overall excess {nats / math.log(2):.6g} > {nats * 1.2:.6g} bits per pixel" in in_bits.stdout


def test_input_error_takes_precedence_over_a_failed_gate(folders: tuple[Path, Path]) -> None:
    uniform_set(*folders, SET)
    write_image(folders[0] / "orphan.png", np.zeros((2, 2), np.uint8))
    result = invoke("compare", *folders, "--max-excess", "0")
    assert result.exit_code == 2
    assert "FAIL  --max-excess 0" in result.stdout  # the verdict is still given
    assert "error: " in result.stderr and "no reconstruction" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-excess", "-0.1"], "error: --max-excess: must be a number >= 0, not -0.1"),
        (["--max-image-excess", "nan"], "error: --max-image-excess: must be a number >= 0, not nan"),
        (["--max-regression", "0.1"], "error: --max-regression: needs --baseline REPORT"),
        (["--shard", "0/3"], "error: --shard: expected I/N with 1 <= I <= N"),
        (["--shard", "4/3"], "error: --shard: expected I/N"),
        (["--shard", "1/0"], "error: --shard: expected I/N"),
        (["--shard", "x"], "error: --shard: expected I/N"),
        (["--csv", "-", "--json", "-"], "error: --csv - and --json - would all write to stdout"),
        (["--json", "-", "--format", "markdown"], "error: --json - and --format markdown would all"),
        (["--junit", "-", "--format", "github"], "error: --junit - and --format github would all"),
        (["--baseline", "missing.json"], "error: missing.json: cannot read the report: no such file"),
    ],
)
def test_usage_errors_are_one_line_exit_2(folders: tuple[Path, Path], args: list[str], message: str) -> None:
    uniform_set(*folders, {"a": (1, 2)})
    result = invoke("compare", *folders, *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message) and len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


# Baselines


def test_baseline_deltas_added_and_removed(folders: tuple[Path, Path], tmp_path: Path) -> None:
    targets, recons = folders
    before = uniform_set(targets, recons, SET)
    invoke("compare", *folders, "--json", tmp_path / "base.json")
    after = uniform_set(targets, recons, {"fair": (100, 120), "new": (50, 60)})
    (targets / "good.png").unlink()
    (recons / "good.png").unlink()
    result = invoke("compare", *folders, "--baseline", tmp_path / "base.json", "--csv", tmp_path / "now.csv")
    assert result.exit_code == 0  # no --max-regression: figures only
    rows = {r["name"]: r for r in read_csv(tmp_path / "now.csv")}
    assert float(rows["fair"]["baseline_excess"]) == pytest.approx(before["fair"], rel=1e-12)
    assert float(rows["fair"]["excess_delta"]) == pytest.approx(after["fair"] - before["fair"], rel=1e-9)
    assert float(rows["bad"]["excess_delta"]) == 0
    assert rows["new"]["baseline_excess"] == rows["new"]["excess_delta"] == ""
    assert "1 image added since the baseline: new" in result.stdout
    assert "1 image gone since the baseline: good" in result.stdout
    document = run_json(*folders, "--baseline", tmp_path / "base.json")
    assert document["baseline"]["added"] == ["new"] and document["baseline"]["removed"] == ["good"]
    image = next(i for i in document["images"] if i["name"] == "fair")
    assert image["excess_delta"] == pytest.approx(after["fair"] - before["fair"], rel=1e-9)


def test_max_regression_gate(folders: tuple[Path, Path], tmp_path: Path) -> None:
    targets, recons = folders
    excess = uniform_set(targets, recons, SET)
    invoke("compare", *folders, "--json", tmp_path / "base.json")
    worse = uniform_set(targets, recons, {"fair": (100, 125)})
    growth = (worse["fair"] - excess["fair"]) / sum(excess.values())
    base = ("--baseline", tmp_path / "base.json")
    assert invoke("compare", *folders, *base, "--max-regression", repr(growth * 1.01)).exit_code == 0
    result = invoke("compare", *folders, *base, "--max-regression", repr(growth * 0.99))
    assert result.exit_code == 1
    line = next(x for x in result.stdout.splitlines() if "--max-regression" in x)
    assert f"overall excess grew {growth * 100:.3g} % against the baseline" in line
    assert line.endswith(f"largest increases: fair +{worse['fair'] - excess['fair']:.6g}")


def test_baseline_with_zero_excess_fails_on_any_growth(folders: tuple[Path, Path], tmp_path: Path) -> None:
    targets, recons = folders
    uniform_set(targets, recons, {"a": (100, 100), "b": (7, 7)})
    invoke("compare", *folders, "--json", tmp_path / "base.json")
    base = ("--baseline", tmp_path / "base.json", "--max-regression", "10")
    assert invoke("compare", *folders, *base).exit_code == 0  # still 0: no growth
    uniform_set(targets, recons, {"b": (7, 8)})
    result = invoke("compare", *folders, *base)
    assert result.exit_code == 1 and "grew from 0" in result.stdout


def test_baseline_in_other_units_is_converted(folders: tuple[Path, Path], tmp_path: Path) -> None:
    uniform_set(*folders, SET)
    invoke("compare", *folders, "--json", tmp_path / "bits.json", "--units", "bits")
    invoke("compare", *folders, "--csv", tmp_path / "bits.csv", "--units", "bits")
    for baseline in ("bits.json", "bits.csv"):
        document = run_json(*folders, "--baseline", tmp_path / baseline, "--max-regression", "0")
        assert document["verdict"] == "pass", baseline
        assert document["baseline"]["growth"] == pytest.approx(0, abs=1e-14)
        assert all(i["excess_delta"] == pytest.approx(0, abs=1e-15) for i in document["images"])


@pytest.mark.parametrize(
    ("args", "difference"),
    [
        (["--convention", "torch"], "convention torch (BCELoss: each log floored at -100) vs keras"),
        (["--eps", "1e-5"], "convention keras (pred clipped to [1e-05, 0.99999]) vs keras"),
        (["--logits"], "convention logits (BCEWithLogitsLoss"),
        (["--grayscale"], "grayscale true vs false"),
    ],
)
def test_baseline_with_other_settings_is_refused(
    folders: tuple[Path, Path], tmp_path: Path, args: list[str], difference: str
) -> None:
    uniform_set(*folders, {"a": (1, 2)})
    np.save(folders[1] / "a.npy", np.zeros((4, 4)))  # a logit recon for --logits
    (folders[1] / "a.png").unlink()
    assert invoke("compare", *folders, *args, "--json", tmp_path / "base.json").exit_code == 0
    result = invoke("compare", *folders, "--baseline", tmp_path / "base.json")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"made with other settings than this run ({difference}" in result.stderr


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"a": 1}', "not a bce-eval JSON report"),
        ('{"format": 99, "settings": {}, "images": []}', "report format 99 is newer than the 2"),
        ("name,excess\nx,1\n", "not a bce-eval CSV report"),
        ("\udcff", "not UTF-8"),
        ("[" * 100_000, "nested too deeply to read"),
        ("name,status,pixels,bce_sum,entropy_sum,excess_sum,clipped,unit\n", "no image was evaluated in it"),
    ],
)
def test_unusable_baseline_is_one_line_exit_2(
    folders: tuple[Path, Path], tmp_path: Path, content: str, problem: str
) -> None:
    uniform_set(*folders, {"a": (1, 2)})
    path = tmp_path / ("base.csv" if content.startswith("name") else "base.json")
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    result = invoke("compare", *folders, "--baseline", path, "--max-regression", "0")
    assert result.exit_code == 2 and problem in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""  # refused before any image was read


def test_baseline_in_which_every_pair_failed_is_refused(folders: tuple[Path, Path], tmp_path: Path) -> None:
    targets, recons = folders
    write_image(targets / "orphan.png", np.zeros((2, 2), np.uint8))
    assert invoke("compare", *folders, "--json", tmp_path / "base.json").exit_code == 2
    (targets / "orphan.png").unlink()
    uniform_set(targets, recons, SET)
    result = invoke("compare", *folders, "--baseline", tmp_path / "base.json", "--max-regression", "0")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        f"error: {tmp_path / 'base.json'}: no image was evaluated in it: there is no excess to compare with"
    )


@pytest.mark.parametrize("name", ["a\nb", "a\r\nb", NOT_UTF8])
def test_a_csv_baseline_keeps_every_name_as_it_is(
    folders: tuple[Path, Path], tmp_path: Path, name: str
) -> None:
    named_set(*folders, {name: (100, 140), "plain": (100, 110)})
    assert invoke("compare", *folders, "--csv", tmp_path / "base.csv").exit_code == 0
    document = run_json(*folders, "--baseline", tmp_path / "base.csv", "--max-regression", "0")
    assert document["baseline"]["added"] == [] and document["baseline"]["removed"] == []
    assert {i["name"]: i["excess_delta"] for i in document["images"]} == {name: 0.0, "plain": 0.0}


# CI formats


def test_junit_has_a_testcase_per_image_and_per_gate(folders: tuple[Path, Path], tmp_path: Path) -> None:
    excess = uniform_set(*folders, SET)
    write_image(folders[0] / "orphan.png", np.zeros((2, 2), np.uint8))
    threshold = (excess["fair"] + excess["bad"]) / 2
    result = invoke(
        "compare", *folders, "--junit", tmp_path / "j.xml", "--max-image-excess", repr(threshold),
        "--max-excess", "10",
    )  # fmt: skip
    assert result.exit_code == 2  # the orphan
    root = ET.parse(tmp_path / "j.xml").getroot()
    images, gates = root.findall("testsuite")
    cases = {c.get("name"): c for c in images.findall("testcase")}
    assert set(cases) == set(SET) | {"orphan"}
    assert {n for n, c in cases.items() if c.find("failure") is not None} == {"bad", "worst"}
    assert cases["orphan"].find("error") is not None
    assert (images.get("tests"), images.get("failures"), images.get("errors")) == ("5", "2", "1")
    gate_cases = {c.get("name"): c.find("failure") for c in gates.findall("testcase")}
    assert set(gate_cases) == {f"--max-image-excess {threshold:.6g}", "--max-excess 10"}
    assert gate_cases["--max-excess 10"] is None
    failure = gate_cases[f"--max-image-excess {threshold:.6g}"]
    assert failure is not None and "worst" in failure.get("message", "")
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("7", "3", "1")


def test_markdown_summary_on_stdout(folders: tuple[Path, Path]) -> None:
    excess = uniform_set(*folders, SET)
    overall = sum(excess.values()) / len(excess)
    result = invoke(
        "compare", *folders, "--format", "markdown", "--max-excess", "1", "--max-image-excess", "0.01"
    )
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "### bce-eval: FAIL (1 of 2 gates failed)"
    assert f"| **Excess BCE - H** | **{overall:.6g}** |" in lines
    assert any(x.startswith("| `--max-excess` | 1 |") and x.endswith("| pass |") for x in lines)
    assert any(x.startswith("| `--max-image-excess` | 0.01 |") and x.endswith("| **FAIL** |") for x in lines)
    assert "| 1 | worst |" in result.stdout
    assert "Overall, pixel-weighted" in result.stderr and "Overall" not in result.stdout


def test_markdown_escapes_table_cells(folders: tuple[Path, Path]) -> None:
    uniform_set(*folders, {"a|b": (1, 9)})
    result = invoke("compare", *folders, "--format", "markdown")
    assert "| 1 | a\\|b |" in result.stdout


def test_github_commands_for_failed_gates_and_bad_input(folders: tuple[Path, Path]) -> None:
    uniform_set(*folders, SET)
    write_image(folders[0] / "orphan.png", np.zeros((2, 2), np.uint8))
    result = invoke("compare", *folders, "--format", "github", "--max-excess", "0", "--max-bce", "100")
    assert result.exit_code == 2
    commands = [x for x in result.stdout.splitlines() if x.startswith("::")]
    assert commands[0].startswith("::error title=bce-eval%3A --max-excess 0 failed::overall excess ")
    orphan = str(folders[0] / "orphan.png").replace(":", "%3A").replace(",", "%2C")
    assert commands[1] == (
        f"::error file={orphan},title=bce-eval%3A input error::no reconstruction in {folders[1]}"
    )
    assert commands[2] == "::notice title=bce-eval::1 of 2 gates failed"
    assert len(commands) == 3  # a passing gate makes no error


@pytest.mark.parametrize("form", ["text", "markdown", "github"])
def test_names_are_printable_in_every_text_output(
    folders: tuple[Path, Path], tmp_path: Path, form: str
) -> None:
    targets, recons = folders
    named_set(targets, recons, {"gone\x1b[2J": (100, 140), "kept": (100, 110)})
    invoke("compare", *folders, "--json", tmp_path / "base.json")
    for side in folders:
        (side / "gone\x1b[2J.png").unlink()
    named_set(targets, recons, {"new\nline": (60, 200)})
    result = invoke(
        "compare", *folders, "--baseline", tmp_path / "base.json", "--max-excess", "0", "--format", form
    )
    assert result.exit_code == 1
    assert "\x1b" not in result.stdout and "new\nline" not in result.stdout
    if form == "text":
        line = next(x for x in result.stdout.splitlines() if x.startswith("baseline "))
        assert line.endswith(
            "; 1 image added since the baseline: 'new\\nline'; "
            "1 image gone since the baseline: 'gone\\x1b[2J'"
        )
        verdict = next(x for x in result.stdout.splitlines() if "FAIL  --max-excess" in x)
        assert "; worst: 'new\\nline' " in verdict


def test_junit_is_well_formed_whatever_the_names(folders: tuple[Path, Path], tmp_path: Path) -> None:
    names = {"esc\x1b[31m": (100, 140), "form\x0cfeed": (100, 110), NOT_UTF8: (60, 200)}
    named_set(*folders, names)
    result = invoke("compare", *folders, "--junit", tmp_path / "j.xml", "--max-image-excess", "0")
    assert result.exit_code == 1
    images, gates = ET.parse(tmp_path / "j.xml").getroot().findall("testsuite")
    assert {c.get("name") for c in images.findall("testcase")} == {
        "esc\\x1b[31m",
        "form\\x0cfeed",
        "x\\udcff",
    }
    failure = gates.find("testcase/failure")
    assert failure is not None and "'x\\udcff'" in failure.get("message", "")


def test_github_escaping() -> None:
    assert ci._data("50%\r\nnext: a, b") == "50%25%0D%0Anext: a, b"
    assert ci._property("a: b, c%") == "a%3A b%2C c%25"


# Shards and merge


def shard_runs(folders: tuple[Path, Path], tmp_path: Path, count: int, *args: str) -> list[Path]:
    paths = []
    for index in range(1, count + 1):
        path = tmp_path / f"shard{index}.json"
        result = invoke("compare", *folders, "--shard", f"{index}/{count}", "--json", path, *args)
        assert result.exit_code == 0, result.output
        paths.append(path)
    return paths


def many_images(folders: tuple[Path, Path], rng: np.random.Generator, n: int = 13) -> None:
    for i in range(n):
        shape = (int(rng.integers(2, 9)), int(rng.integers(2, 9)), 3)
        write_image(folders[0] / f"d{i % 3}" / f"img{i}.png", rng.integers(0, 256, shape, dtype=np.uint8))
        write_image(folders[1] / f"d{i % 3}" / f"img{i}.npy", rng.random(shape))


def test_shards_partition_the_pairs(
    folders: tuple[Path, Path], tmp_path: Path, rng: np.random.Generator
) -> None:
    many_images(folders, rng)
    whole = [i["name"] for i in run_json(*folders)["images"]]
    parts = [
        [i["name"] for i in json.loads(p.read_text())["images"]] for p in shard_runs(folders, tmp_path, 4)
    ]
    assert sorted(n for part in parts for n in part) == sorted(whole)
    assert sum(len(part) for part in parts) == len(whole)
    assert all(shard_of(name, 4) == k for k, part in enumerate(parts, start=1) for name in part)


def test_adding_images_moves_no_pair_to_another_shard(
    folders: tuple[Path, Path], rng: np.random.Generator
) -> None:
    many_images(folders, rng)
    before = {i["name"]: i for i in run_json(*folders, "--shard", "2/3")["images"]}
    uniform_set(*folders, {f"extra{i}": (1, 2) for i in range(6)})
    after = {i["name"] for i in run_json(*folders, "--shard", "2/3")["images"]}
    assert set(before) <= after and all(n.startswith("extra") for n in after - set(before))


@pytest.mark.parametrize("units", ["nats", "bits"])
def test_merged_shards_equal_a_single_run_exactly(
    folders: tuple[Path, Path], tmp_path: Path, rng: np.random.Generator, units: str
) -> None:
    many_images(folders, rng, 17)
    single = run_json(*folders, "--units", units)
    shards = shard_runs(folders, tmp_path, 3, "--units", units)
    merged = invoke("merge", *reversed(shards), "--json", "-")
    assert merged.exit_code == 0, merged.output
    document = json.loads(merged.stdout)
    assert document["summary"] == single["summary"]  # exact: sums, counts, median, p95, max, worst
    assert document["images"] == single["images"]
    assert document["settings"] == single["settings"]
    invoke("merge", *shards, "--csv", tmp_path / "merged.csv")
    invoke("compare", *folders, "--units", units, "--csv", tmp_path / "single.csv")
    assert (tmp_path / "merged.csv").read_text() == (tmp_path / "single.csv").read_text()


def test_an_empty_shard_merges(folders: tuple[Path, Path], tmp_path: Path) -> None:
    uniform_set(*folders, {"only": (1, 5)})
    shards = shard_runs(folders, tmp_path, 3)
    assert sorted(len(json.loads(p.read_text())["images"]) for p in shards) == [0, 0, 1]
    assert json.loads(invoke("merge", *shards, "--json", "-").stdout)["summary"]["pairs"] == 1


def test_merge_applies_gates(folders: tuple[Path, Path], tmp_path: Path) -> None:
    excess = uniform_set(*folders, SET)
    shards = shard_runs(folders, tmp_path, 2)
    result = invoke("merge", *shards, "--max-image-excess", repr(excess["bad"]))
    assert result.exit_code == 1 and f"over: worst {excess['worst']:.6g}" in result.stdout


def test_merge_of_a_run_with_bad_input_exits_2(folders: tuple[Path, Path], tmp_path: Path) -> None:
    uniform_set(*folders, SET)
    write_image(folders[0] / "orphan.png", np.zeros((2, 2), np.uint8))
    invoke("compare", *folders, "--json", tmp_path / "all.json")
    result = invoke("merge", tmp_path / "all.json")
    assert result.exit_code == 2 and "no reconstruction" in result.stderr


def test_merge_refuses_what_would_make_wrong_figures(
    folders: tuple[Path, Path], tmp_path: Path, rng: np.random.Generator
) -> None:
    many_images(folders, rng)
    one, two, three = shard_runs(folders, tmp_path, 3)
    invoke("compare", *folders, "--shard", "3/3", "--json", tmp_path / "torch.json", "--convention", "torch")
    invoke("compare", *folders, "--shard", "3/3", "--json", tmp_path / "bits.json", "--units", "bits")
    invoke("compare", *folders, "--shard", "1/2", "--json", tmp_path / "half.json")
    invoke("compare", *folders, "--json", tmp_path / "all.json", "--csv", tmp_path / "all.csv")
    newer = json.loads(one.read_text()) | {"format": 3}
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    older = json.loads(one.read_text()) | {"format": 1}  # clipped counted every clip then
    (tmp_path / "older.json").write_text(json.dumps(older))
    cases = {
        (one, two, tmp_path / "torch.json"): "made with other settings than",
        (one, two, tmp_path / "bits.json"): "units nats vs bits",
        (one, two): "the split has 3 shards; missing 3/3",
        (one, two, three, three): "shard 3/3 again",
        (one, two, tmp_path / "half.json"): "shards of different splits",
        (tmp_path / "all.json", one): "which",  # the same images twice
        (tmp_path / "all.csv",): "merge reads JSON reports",
        (tmp_path / "newer.json", two, three): "report format 3 is newer",
        (tmp_path / "older.json", two, three): "is a report of format 1, the others of format 2",
        (tmp_path / "missing.json",): "cannot read",
        (tmp_path / "deep.json",): "nested too deeply to read",
    }
    (tmp_path / "deep.json").write_text("[" * 100_000)
    for reports, problem in cases.items():
        result = invoke("merge", *reports)
        assert result.exit_code == 2, reports
        assert result.stderr.startswith("error: ") and problem in result.stderr, (reports, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1


def test_merge_needs_a_report() -> None:
    assert invoke("merge").exit_code == 2


# Writing reports


def test_failed_write_leaves_the_old_report(
    folders: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uniform_set(*folders, SET)
    report = tmp_path / "out.csv"
    report.write_text("the old report\n")

    def fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    result = invoke("compare", *folders, "--csv", report)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {report}: cannot write: No space left on device"
    assert report.read_text() == "the old report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "recons", "targets"]


def test_names_that_are_not_utf8_are_written_as_their_bytes(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    named_set(*folders, {NOT_UTF8: (10, 20)})
    reports = ("--csv", tmp_path / "o.csv", "--json", tmp_path / "o.json", "--junit", tmp_path / "o.xml")
    assert invoke("compare", *folders, *reports).exit_code == 0
    assert (tmp_path / "o.csv").read_bytes().splitlines()[1].startswith(b"x\xff,")
    text = (tmp_path / "o.json").read_text(encoding="ascii")  # \\udcff escapes: valid JSON
    document = json.loads(text)
    assert document["images"][0]["name"] == document["summary"]["worst"] == NOT_UTF8
    ET.parse(tmp_path / "o.xml")


def test_csv_on_stdout_keeps_names_that_are_not_utf8(folders: tuple[Path, Path]) -> None:
    named_set(*folders, {NOT_UTF8: (10, 20)})
    result = invoke("compare", *folders, "--csv", "-")  # the runner's stdout is strict UTF-8
    assert result.exit_code == 0
    assert result.stdout_bytes.splitlines()[1].startswith(b"x\xff,")


def test_a_name_no_encoding_can_write_is_one_line_exit_2(folders: tuple[Path, Path], tmp_path: Path) -> None:
    uniform_set(*folders, {"a": (10, 20)})
    invoke("compare", *folders, "--json", tmp_path / "run.json")
    # A lone high surrogate: valid in a JSON string, not a name any file system gives
    text = (tmp_path / "run.json").read_text().replace('"name": "a"', '"name": "\\ud800"')
    (tmp_path / "odd.json").write_text(text)
    result = invoke("merge", tmp_path / "odd.json", "--csv", tmp_path / "out.csv")
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"error: {tmp_path / 'out.csv'}: cannot write '\\ud800': not encodable as utf-8"
    )
    assert not (tmp_path / "out.csv").exists()


def test_text_on_a_stdout_that_cannot_encode_a_name_is_escaped(folders: tuple[Path, Path]) -> None:
    named_set(*folders, {"caf\xe9": (10, 20)})
    out = subprocess.run(
        [sys.executable, "-m", "bce_eval", "compare", *folders, "--format", "github", "--max-excess", "0"],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
    )
    assert out.returncode == 1 and b"Traceback" not in out.stderr
    assert b"worst: caf\\xe9 " in out.stdout


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_write_error_on_a_device_is_one_line_exit_2(folders: tuple[Path, Path]) -> None:
    uniform_set(*folders, SET)
    for option in ("--csv", "--json", "--junit"):
        result = invoke("compare", *folders, option, "/dev/full")
        assert result.exit_code == 2, option
        assert result.stderr.strip() == "error: /dev/full: cannot write: No space left on device"


def test_reports_replace_old_ones_with_the_usual_mode(folders: tuple[Path, Path], tmp_path: Path) -> None:
    uniform_set(*folders, SET)
    umask = os.umask(0o022)
    try:
        invoke("compare", *folders, "--json", tmp_path / "new.json")
    finally:
        os.umask(umask)
    assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o644
    assert json.loads((tmp_path / "new.json").read_text())["summary"]["pairs"] == len(SET)


def _children(pid: int) -> list[int]:
    """The process's children, from /proc (Linux); none elsewhere."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    ("signum", "code", "message"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_ctrl_c_and_sigterm_stop_the_run_and_keep_the_old_report(
    tmp_path: Path, rng: np.random.Generator, signum: int, code: int, message: str
) -> None:
    targets, recons = tmp_path / "t", tmp_path / "r"
    targets.mkdir()
    recons.mkdir()
    # Float pairs of 786,432 values (about 5 ms each to read and score) as hard links to one file
    # each: about 15 s of work on 2 cores, which the interrupt cuts short, for almost no disk.
    pixels = rng.random((512, 512, 3))
    np.save(tmp_path / "t.npy", pixels)
    np.save(tmp_path / "r.npy", pixels[::-1])
    for i in range(6000):
        os.link(tmp_path / "t.npy", targets / f"{i:04d}.npy")
        os.link(tmp_path / "r.npy", recons / f"{i:04d}.npy")
    report = tmp_path / "report.csv"
    report.write_text("the old report\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "bce_eval", "compare", targets, recons, "--csv", report],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)
    assert process.poll() is None, "finished before it could be interrupted"
    workers = _children(process.pid)
    if sys.platform == "linux" and len(os.sched_getaffinity(0)) > 1:
        assert workers, "compare runs its worker processes"
    process.send_signal(signum)
    sent = time.monotonic()
    _, err = process.communicate(timeout=30)
    assert process.returncode == code
    assert time.monotonic() - sent < 5
    assert err.strip() == message and "Traceback" not in err
    assert all(_gone(worker) for worker in workers)  # no worker outlives the run
    assert report.read_text() == "the old report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r", "r.npy", "report.csv", "t", "t.npy"]
