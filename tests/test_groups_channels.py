"""Figures per group of pairs (--group-by) and per channel (--per-channel), from sums and counts."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bce_eval import metrics
from bce_eval.cli import app
from bce_eval.model import group_of

from .conftest import write_image

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def classes(root: Path, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """RGB pairs in class folders (one nested two deep) and one at the top; class b is worse."""
    pairs = {}
    for name, noise in (("a/0", 3), ("a/1", 3), ("b/0", 40), ("b/x/1", 40), ("top", 3)):
        target = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
        recon = np.clip(target.astype(np.int64) + rng.integers(-noise, noise + 1, target.shape), 0, 255)
        recon[:, :, 2] = np.clip(recon[:, :, 2] + 30, 0, 255)  # a colour shift in blue
        write_image(root / "t" / f"{name}.png", target)
        write_image(root / "r" / f"{name}.png", recon.astype(np.uint8))
        pairs[name] = (target, recon.astype(np.uint8))
    return pairs


def test_group_of_takes_the_first_folders() -> None:
    assert group_of("a/b/c/x", 1) == "a" and group_of("a/b/c/x", 2) == "a/b" and group_of("a/x", 3) == "a"
    assert group_of("x", 1) == "."


def test_group_figures_are_those_of_a_run_over_the_group(tmp_path: Path, rng: np.random.Generator) -> None:
    pairs = classes(tmp_path, rng)
    out = tmp_path / "o.json"
    result = invoke("compare", tmp_path / "t", tmp_path / "r", "--group-by", "folder", "--json", out,
                    "--csv", tmp_path / "o.csv")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "By group (nats per pixel)" in result.stdout
    groups = {g["group"]: g for g in json.loads(out.read_text())["groups"]}
    assert list(groups) == [".", "a", "b"]
    for group, members in ((".", ["top"]), ("a", ["a/0", "a/1"]), ("b", ["b/0", "b/x/1"])):
        sums = [metrics.byte_sums(*pairs[m]) for m in members]
        pixels = sum(s.pixels for s in sums)
        assert groups[group]["pairs"] == len(members) and groups[group]["pixels"] == pixels
        assert groups[group]["excess"] == pytest.approx(math.fsum(s.excess for s in sums) / pixels, rel=1e-15)
        per_image = sorted(s.excess / s.pixels for s in sums)
        assert groups[group]["excess_max"] == pytest.approx(per_image[-1], rel=1e-15)
        assert groups[group]["excess_median"] == pytest.approx(float(np.median(per_image)), rel=1e-15)
    with (tmp_path / "o.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:2] == ["name", "group"]
    assert {r["name"]: r["group"] for r in rows}["b/x/1"] == "b"
    deep = invoke("compare", tmp_path / "t", tmp_path / "r", "--group-by", "folder:2", "--json", out)
    assert deep.exit_code == 0
    assert [g["group"] for g in json.loads(out.read_text())["groups"]] == [".", "a", "b", "b/x"]


def test_max_group_excess_names_the_groups_over_it(tmp_path: Path, rng: np.random.Generator) -> None:
    classes(tmp_path, rng)
    out = tmp_path / "o.json"
    invoke("compare", tmp_path / "t", tmp_path / "r", "--group-by", "folder", "--json", out)
    excess = {g["group"]: g["excess"] for g in json.loads(out.read_text())["groups"]}
    threshold = (excess["a"] + excess["b"]) / 2
    result = invoke("compare", tmp_path / "t", tmp_path / "r", "--group-by", "folder", "--max-group-excess",
                    repr(threshold), "--format", "markdown")  # fmt: skip
    assert result.exit_code == 1
    assert (
        f"| `--max-group-excess` | {threshold:.6g} | 1 group over {threshold:.6g} nats per pixel"
        in result.stdout
    )
    assert f"over: b {excess['b']:.6g} | **FAIL** |" in result.stdout
    assert "| b | 2 | 0 | " in result.stdout  # the group's row
    alone = invoke("compare", tmp_path / "t", tmp_path / "r", "--max-group-excess", "0.1")
    assert (
        alone.exit_code == 2
        and alone.stderr == "error: --max-group-excess: needs --group-by to say what a group is\n"
    )
    bad = invoke("compare", tmp_path / "t", tmp_path / "r", "--group-by", "class")
    assert bad.exit_code == 2 and "error: --group-by: must be folder or folder:N" in bad.stderr


def test_per_channel_figures_match_each_channel_scored_alone(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    pairs = classes(tmp_path, rng)
    out = tmp_path / "o.json"
    result = invoke("compare", tmp_path / "t", tmp_path / "r", "--per-channel", "--json", out,
                    "--csv", tmp_path / "o.csv")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "By channel (nats per pixel)" in result.stdout
    assert "excess by channel" in result.stdout
    document = json.loads(out.read_text())
    channels = {c["channel"]: c for c in document["channels"]}
    assert list(channels) == ["R", "G", "B"]
    for c, name in enumerate("RGB"):
        sums = [metrics.byte_sums(t[:, :, c], r[:, :, c]) for t, r in pairs.values()]
        total = math.fsum(s.excess for s in sums)
        assert channels[name]["sums_nats"]["excess"] == pytest.approx(total, rel=1e-14)
        assert channels[name]["clipped"] == sum(s.clipped for s in sums)
    assert channels["B"]["excess"] > 2 * channels["R"]["excess"]  # the colour shift shows
    image = next(i for i in document["images"] if i["name"] == "a/0")
    t, r = pairs["a/0"]
    for c, per in enumerate(image["by_channel"]):
        s = metrics.byte_sums(t[:, :, c], r[:, :, c])
        assert per["sums_nats"]["excess"] == pytest.approx(s.excess, rel=1e-14) and per["pixels"] == 30
    with (tmp_path / "o.csv").open(newline="") as f:
        row = next(csv.DictReader(f))
    assert {"bce_R", "entropy_G", "excess_B"} <= set(row)
    without = invoke("compare", tmp_path / "t", tmp_path / "r")
    assert "By channel         -" in without.stdout and "--per-channel gives R, G, B" in without.stdout


def test_per_channel_sums_on_every_path_equal_the_direct_ones(rng: np.random.Generator) -> None:
    for shape in ((4, 5, 3), (64, 64, 4), (40, 40, 2)):  # gathered, histogram, gathered
        t = rng.integers(0, 256, shape, dtype=np.uint8)
        r = rng.integers(0, 256, shape, dtype=np.uint8)
        whole, per = metrics.byte_image_sums(t, r, convention="torch")
        direct = [metrics.sums(t[..., c] / 255, r[..., c] / 255, convention="torch") for c in range(shape[2])]
        for a, b in zip(per, direct, strict=True):
            assert a.pixels == b.pixels and a.clipped == b.clipped
            assert a.excess == pytest.approx(b.excess, rel=1e-12) and a.bce == pytest.approx(b.bce, rel=1e-12)
        assert whole.excess == pytest.approx(metrics.byte_sums(t, r, convention="torch").excess, rel=1e-13)
        assert metrics.byte_image_sums_many([(t, r), (t, t)])[0] == metrics.byte_image_sums(t, r)
        floats, per_float = metrics.image_sums(t / 255, r / 255)
        assert floats == metrics.sums(t / 255, r / 255)
        assert [p.excess for p in per_float] == pytest.approx(
            [p.excess for p in metrics.byte_image_sums(t, r)[1]]
        )


def test_merged_shards_keep_groups_and_channels_exact(tmp_path: Path, rng: np.random.Generator) -> None:
    classes(tmp_path, rng)
    args = ("compare", tmp_path / "t", tmp_path / "r", "--per-channel", "--group-by", "folder")
    invoke(*args, "--json", tmp_path / "all.json")
    for i in (1, 2):
        invoke(*args, "--shard", f"{i}/2", "--json", tmp_path / f"{i}.json")
    shards = (tmp_path / "1.json", tmp_path / "2.json")
    merged = invoke("merge", *shards, "--group-by", "folder", "--per-channel", "--json", tmp_path / "m.json")
    assert merged.exit_code == 0
    single, joined = (json.loads((tmp_path / f).read_text()) for f in ("all.json", "m.json"))
    for key in ("summary", "channels", "groups"):
        assert single[key] == joined[key]


def test_per_channel_sums_on_the_torch_backend_equal_numpy_s(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    pytest.importorskip("torch")
    classes(tmp_path, rng)
    for backend in ("numpy", "torch"):
        args = ("compare", tmp_path / "t", tmp_path / "r", "--per-channel", "--backend", backend)
        assert invoke(*args, "--json", tmp_path / f"{backend}.json").exit_code == 0
    numpy_run, torch_run = (json.loads((tmp_path / f"{b}.json").read_text()) for b in ("numpy", "torch"))
    for a, b in zip(numpy_run["channels"], torch_run["channels"], strict=True):
        assert a["channel"] == b["channel"] and a["clipped"] == b["clipped"]
        assert a["excess"] == pytest.approx(b["excess"], rel=1e-12)
