"""The Python API: compare, compare_arrays, read_report and merge give the command's figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import bce_eval
from bce_eval import OptionError, ReportError
from bce_eval.cli import app

from .conftest import write_image


def _folder_set(targets: Path, recons: Path, rng: np.random.Generator) -> None:
    for i in range(5):
        y = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
        write_image(targets / f"img{i}.png", y)
        write_image(
            recons / f"img{i}.png",
            np.clip(y.astype(int) + rng.integers(-9, 9, y.shape), 0, 255).astype(np.uint8),
        )
    write_image(recons / "broken.png", np.zeros((2, 2), np.uint8))  # no target: a failed pair


def test_compare_gives_the_json_the_command_writes(folders: tuple[Path, Path], rng, tmp_path: Path) -> None:
    _folder_set(*folders, rng)
    out = tmp_path / "cli.json"
    result = CliRunner().invoke(app, ["compare", *map(str, folders), "--json", str(out), "--units", "bits"])
    assert result.exit_code == 2  # the pair without a target
    report = bce_eval.compare(*folders, units="bits")
    assert report.exit_code == 2 and [r.name for r in report.failed] == ["broken"]
    assert report.to_json() == json.loads(out.read_text())
    report.write_json(tmp_path / "api.json")
    assert (tmp_path / "api.json").read_text() == out.read_text()
    assert report.summary.pairs == 5 and report.summary.failed == 1
    assert report.summary.pixels == 5 * 6 * 5 * 3 == report.totals.pixels
    assert report.summary.excess == pytest.approx(
        report.totals.excess / report.totals.pixels / math.log(2), rel=1e-15
    )


def test_compare_reports_gates_in_its_exit_code(folders: tuple[Path, Path], rng) -> None:
    _folder_set(*folders, rng)
    (folders[1] / "broken.png").unlink()
    assert bce_eval.compare(*folders).exit_code == 0
    failed = bce_eval.compare(*folders, max_excess=0.0)
    assert failed.exit_code == 1 and not failed.verdict.passed
    assert failed.verdict.gates[0].option == "--max-excess"


def test_option_errors_are_named_exceptions(folders: tuple[Path, Path]) -> None:
    with pytest.raises(OptionError, match=r"--eps: must be in \(0, 0.5\)"):
        bce_eval.compare(*folders, eps=0.7)
    with pytest.raises(OptionError, match="--shard"):
        bce_eval.compare(*folders, shard="3/2")
    with pytest.raises(OptionError, match="--max-regression: needs --baseline"):
        bce_eval.compare(*folders, max_regression=0.1)
    with pytest.raises(bce_eval.InputError, match="no image files"):
        bce_eval.compare(*folders)


def test_compare_arrays_matches_the_same_batch_written_as_files(tmp_path: Path, rng) -> None:
    """An NxCxHxW float batch scored in memory and as .npy files: the same sums, bit for bit."""
    torch = pytest.importorskip("torch")
    y = rng.random((4, 3, 7, 6))
    p = np.clip(y + rng.normal(0, 0.05, y.shape), 0, 1).astype(np.float32)
    for i in range(4):
        write_image(tmp_path / "t" / f"{i}.npy", y[i].transpose(1, 2, 0))
        write_image(tmp_path / "r" / f"{i}.npy", p[i].transpose(1, 2, 0))
    from_files = bce_eval.compare(tmp_path / "t", tmp_path / "r", workers=1)
    in_memory = bce_eval.compare_arrays(torch.from_numpy(y), torch.from_numpy(p), layout="NCHW")
    assert [r.name for r in in_memory.images] == ["0", "1", "2", "3"]
    assert [r.sums for r in in_memory.images] == [r.sums for r in from_files.images]
    assert in_memory.totals == from_files.totals


def test_compare_arrays_uint8_uses_the_files_byte_path(tmp_path: Path, rng) -> None:
    y = rng.integers(0, 256, (3, 40, 30, 3), dtype=np.uint8)
    p = rng.integers(0, 256, (3, 40, 30, 3), dtype=np.uint8)
    names = ["cat", "dog", "eel"]
    for name, t, r in zip(names, y, p, strict=True):
        write_image(tmp_path / "t" / f"{name}.png", t)
        write_image(tmp_path / "r" / f"{name}.png", r)
    from_files = bce_eval.compare(tmp_path / "t", tmp_path / "r", convention="torch")
    in_memory = bce_eval.compare_arrays(y, p, layout="NHWC", names=names, convention="torch")
    assert [r.sums for r in in_memory.images] == [r.sums for r in from_files.images]


def test_compare_arrays_uint16_is_scaled_by_its_dtype(tmp_path: Path, rng) -> None:
    y = rng.integers(0, 65536, (2, 5, 4, 3), dtype=np.uint16)
    p = rng.integers(0, 65536, (2, 5, 4, 3), dtype=np.uint16)
    for i in range(2):
        write_image(tmp_path / "t" / f"{i}.png", y[i])
        write_image(tmp_path / "r" / f"{i}.png", p[i])
    from_files = bce_eval.compare(tmp_path / "t", tmp_path / "r")
    in_memory = bce_eval.compare_arrays(y, p, layout="NHWC")
    assert [r.sums for r in in_memory.images] == [r.sums for r in from_files.images]


def test_every_layout_reads_the_same_images(rng) -> None:
    y, p = rng.random((2, 3, 4, 5)), rng.random((2, 3, 4, 5))  # NCHW
    expected = bce_eval.compare_arrays(y, p, layout="NCHW")
    nhwc = bce_eval.compare_arrays(y.transpose(0, 2, 3, 1), p.transpose(0, 2, 3, 1), layout="nhwc")
    assert [r.sums for r in nhwc.images] == [r.sums for r in expected.images]
    single = bce_eval.compare_arrays(y[1], p[1], layout="CHW")
    assert single.images[0].sums == expected.images[1].sums
    hwc = bce_eval.compare_arrays(y[1].transpose(1, 2, 0), p[1].transpose(1, 2, 0), layout="HWC")
    assert hwc.images[0].sums == expected.images[1].sums
    grey = bce_eval.compare_arrays(y[:, 0], p[:, 0], layout="NHW")
    assert grey.images[0].shape == (4, 5, 1)
    assert bce_eval.compare_arrays(y[0, 0], p[0, 0], layout="HW").images[0].sums == grey.images[0].sums


def test_compare_arrays_refuses_what_it_cannot_read(rng) -> None:
    y = rng.random((2, 4, 4))
    with pytest.raises(OptionError, match=r"layout NCHW has 4"):
        bce_eval.compare_arrays(y, y, layout="NCHW")
    with pytest.raises(OptionError, match="layout: must be one of"):
        bce_eval.compare_arrays(y, y, layout="WHN")
    with pytest.raises(OptionError, match="names: has 1 names for 2 items"):
        bce_eval.compare_arrays(y, y, layout="NHW", names=["a"])
    with pytest.raises(OptionError, match="recons: has 3 items and targets 2"):
        bce_eval.compare_arrays(y, rng.random((3, 4, 4)), layout="NHW")
    with pytest.raises(TypeError, match="workers"):
        bce_eval.compare_arrays(y, y, layout="NHW", workers=2)


def test_bad_values_in_a_batch_fail_their_item_only(rng) -> None:
    y, p = rng.random((3, 4, 4)), rng.random((3, 4, 4))
    p[1, 2, 3] = 1.5
    report = bce_eval.compare_arrays(y, p, layout="NHW")
    assert report.exit_code == 2 and [r.name for r in report.failed] == ["1"]
    assert report.failed[0].error == "recons[1]: value 1.5 at row 2, column 3, channel 0 is not in [0, 1]"
    ints = bce_eval.compare_arrays(y, (p * 100).astype(np.int32), layout="NHW")
    assert all("unsupported sample type int32" in (r.error or "") for r in ints.images)


def test_logits_from_a_bfloat16_tensor(rng) -> None:
    torch = pytest.importorskip("torch")
    y = torch.from_numpy(rng.random((2, 1, 3, 3)))
    logits = torch.from_numpy(rng.normal(0, 2, (2, 1, 3, 3))).to(torch.bfloat16)
    report = bce_eval.compare_arrays(y, logits, layout="NCHW", logits=True)
    expected = bce_eval.excess(y, logits.float().double(), from_logits=True, reduction="sum")
    assert report.totals.excess == pytest.approx(float(expected), rel=1e-14)


def test_read_report_and_merge_give_a_single_run(folders: tuple[Path, Path], rng, tmp_path: Path) -> None:
    _folder_set(*folders, rng)
    (folders[1] / "broken.png").unlink()
    whole = bce_eval.compare(*folders)
    for i in (1, 2):
        bce_eval.compare(*folders, shard=f"{i}/2").write_json(tmp_path / f"{i}.json")
    merged = bce_eval.merge([tmp_path / "1.json", bce_eval.read_report(tmp_path / "2.json")])
    assert merged.images == whole.images and merged.totals == whole.totals
    assert merged.summary == whole.summary
    with pytest.raises(ReportError, match="missing 2/2"):
        bce_eval.merge([tmp_path / "1.json"])


def test_a_baseline_may_be_a_report_in_memory(folders: tuple[Path, Path], rng) -> None:
    _folder_set(*folders, rng)
    (folders[1] / "broken.png").unlink()
    before = bce_eval.compare(*folders)
    write_image(folders[1] / "img0.png", np.zeros((6, 5, 3), np.uint8))
    after = bce_eval.compare(*folders, baseline=before, max_regression=0.0)
    assert after.exit_code == 1
    assert after.verdict.baseline is not None and after.verdict.baseline.growth > 0


@pytest.mark.parametrize("units", ["nats", "bits"])
def test_per_sample_reduction_and_units(units: str, rng) -> None:
    y, p = rng.random((3, 2, 4, 4)), rng.random((3, 2, 4, 4))
    scale = 1 if units == "nats" else 1 / math.log(2)
    for function in (bce_eval.bce, bce_eval.excess):
        per_sample = function(y, p, reduction="per_sample", units=units)
        elements = function(y, p, reduction="none")
        assert per_sample.shape == (3,)
        np.testing.assert_allclose(per_sample, elements.reshape(3, -1).mean(axis=1) * scale, rtol=1e-14)
        assert float(function(y, p, units=units)) == pytest.approx(float(elements.mean()) * scale, rel=1e-14)
    h = bce_eval.entropy(y, reduction="per_sample", units=units)
    np.testing.assert_allclose(
        h, bce_eval.entropy(y, reduction="none").reshape(3, -1).mean(1) * scale, rtol=1e-14
    )
    s = bce_eval.sums(y, p, units=units)
    assert s.excess == pytest.approx(float(bce_eval.excess(y, p, reduction="sum")) * scale, rel=1e-14)


def test_per_sample_on_torch_stays_a_tensor(rng) -> None:
    torch = pytest.importorskip("torch")
    y, p = torch.from_numpy(rng.random((2, 3, 3))), torch.from_numpy(rng.random((2, 3, 3)))
    per_sample = bce_eval.excess(y, p, reduction="per_sample", units="bits")
    assert isinstance(per_sample, torch.Tensor) and per_sample.dtype == torch.float64
    expected = bce_eval.excess(y.numpy(), p.numpy(), reduction="per_sample", units="bits")
    np.testing.assert_allclose(per_sample.numpy(), expected, rtol=1e-15)


def test_bad_reduction_and_units_are_value_errors() -> None:
    with pytest.raises(ValueError, match="reduction must be one of"):
        bce_eval.bce([0.5], [0.5], reduction="batch")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="units must be one of"):
        bce_eval.entropy([0.5], units="dits")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="per_sample"):
        bce_eval.bce(0.5, 0.5, reduction="per_sample")
