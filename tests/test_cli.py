"""The command line end to end: figures against independent references, reports, exit codes."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bce_eval.cli import app

from . import reference
from .conftest import write_image

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def make_set(
    targets: Path, recons: Path, rng: np.random.Generator
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """8-bit, 16-bit and float pairs; returns the exact [0, 1] values behind each file."""
    truth = {}
    t8 = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    r16 = np.clip(t8.astype(np.int64) * 257 + rng.integers(-3000, 3000, t8.shape), 0, 65535).astype(np.uint16)
    write_image(targets / "rgb8.png", t8)
    write_image(recons / "rgb8.png", r16)
    truth["rgb8"] = (t8 / 255, r16 / 65535)
    t16 = rng.integers(0, 65536, (9, 11), dtype=np.uint16)
    rf = np.clip(t16 / 65535 + rng.normal(0, 0.02, t16.shape), 0, 1).astype(np.float32)
    write_image(targets / "sub" / "grey16.png", t16)
    write_image(recons / "sub" / "grey16.npy", rf)
    truth["sub/grey16"] = (t16 / 65535, rf.astype(np.float64))
    tf = rng.random((8, 8, 3), dtype=np.float32)
    rt = np.clip(tf + rng.normal(0, 1e-4, tf.shape), 0, 1).astype(np.float32)  # near-perfect
    write_image(targets / "float.tif", tf)
    write_image(recons / "float.tif", rt)
    truth["float"] = (tf.astype(np.float64), rt.astype(np.float64))
    return truth


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_compare_matches_independent_references(
    folders: tuple[Path, Path], tmp_path: Path, rng: np.random.Generator
) -> None:
    truth = make_set(*folders, rng)
    result = invoke("compare", *folders, "--csv", tmp_path / "out.csv", "--json", tmp_path / "out.json")
    assert result.exit_code == 0, result.output
    rows = {
        Path(r["target"]).relative_to(folders[0]).with_suffix("").as_posix(): r
        for r in read_csv(tmp_path / "out.csv")
    }
    assert set(rows) == set(truth)
    all_y, all_p = [], []
    for name, (y, p) in truth.items():
        b, h, e = reference.totals(y.ravel(), p.ravel())
        row = rows[name]
        assert row["status"] == "ok" and int(row["pixels"]) == y.size
        assert float(row["bce_sum"]) == pytest.approx(b, rel=1e-9)
        assert float(row["bce"]) == pytest.approx(b / y.size, rel=1e-9)
        assert float(row["entropy"]) == pytest.approx(h / y.size, rel=1e-9)
        assert float(row["excess"]) == pytest.approx(e / y.size, rel=1e-9)
        all_y += y.ravel().tolist()
        all_p += p.ravel().tolist()
    summary = json.loads((tmp_path / "out.json").read_text())["summary"]
    b, h, e = reference.totals(all_y, all_p)
    assert summary["pixels"] == len(all_y)
    assert summary["excess"] == pytest.approx(e / len(all_y), rel=1e-9)
    assert summary["bce"] == pytest.approx(b / len(all_y), rel=1e-9)
    assert summary["entropy"] == pytest.approx(h / len(all_y), rel=1e-9)


def test_summary_is_printed_with_unit_and_convention(
    folders: tuple[Path, Path], rng: np.random.Generator
) -> None:
    make_set(*folders, rng)
    result = invoke("compare", *folders, "--top", "2")
    assert "3 pairs, 3 evaluated, 0 failed" in result.stdout
    assert "keras (pred clipped to [1e-07, 0.9999999])" in result.stdout
    assert "nats per pixel" in result.stdout
    assert "Worst 2 by excess" in result.stdout
    assert "median" in result.stdout and "95th percentile" in result.stdout


def test_names_are_printed_as_they_are_not_as_emoji_or_markup(folders: tuple[Path, Path]) -> None:
    targets, recons = folders
    for name in ("a:cat:", "[bold]b"):
        write_image(targets / f"{name}.png", np.full((4, 4), 100, np.uint8))
        write_image(recons / f"{name}.png", np.full((4, 4), 110, np.uint8))
    result = invoke("compare", targets, recons)
    assert result.exit_code == 0
    assert "a:cat:" in result.stdout and "\N{CAT}" not in result.stdout
    assert "[bold]b" in result.stdout


def test_json_schema(folders: tuple[Path, Path], rng: np.random.Generator) -> None:
    make_set(*folders, rng)
    result = invoke("compare", *folders, "--json", "-", "--units", "bits", "--convention", "torch")
    document = json.loads(result.stdout)
    assert set(document) == {
        "format",
        "version",
        "settings",
        "shard",
        "summary",
        "images",
        "verdict",
        "gates",
        "hint",
    }
    assert document["hint"] is None
    assert document["settings"]["units"] == "bits" and document["settings"]["convention"] == "torch"
    assert len(document["images"]) == 3
    image = document["images"][0]
    assert {
        "target",
        "recon",
        "height",
        "width",
        "channels",
        "pixels",
        "bce",
        "entropy",
        "excess",
        "bce_sum",
        "clipped",
        "status",
    } <= set(image)
    totals = document["summary"]
    assert totals["excess"] == pytest.approx(totals["excess_sum"] / totals["pixels"], rel=1e-15)
    assert "3 pairs, 3 evaluated" in result.stderr  # the human summary moves off stdout


def test_bits_are_nats_over_log_2(
    folders: tuple[Path, Path], tmp_path: Path, rng: np.random.Generator
) -> None:
    make_set(*folders, rng)
    invoke("compare", *folders, "--csv", tmp_path / "nats.csv")
    invoke("compare", *folders, "--csv", tmp_path / "bits.csv", "--units", "bits")
    for n, b in zip(read_csv(tmp_path / "nats.csv"), read_csv(tmp_path / "bits.csv"), strict=True):
        assert (n["unit"], b["unit"]) == ("nats", "bits")
        for column in ("bce", "entropy", "excess", "bce_sum"):
            assert float(b[column]) == pytest.approx(float(n[column]) / math.log(2), rel=1e-14)


def test_bad_inputs_exit_2_after_reporting_the_good_pairs(
    folders: tuple[Path, Path], tmp_path: Path, rng: np.random.Generator
) -> None:
    targets, recons = folders
    make_set(targets, recons, rng)
    write_image(targets / "no_partner.png", np.zeros((2, 2), np.uint8))
    write_image(targets / "shape.png", np.zeros((4, 4), np.uint8))
    write_image(recons / "shape.png", np.zeros((4, 5), np.uint8))
    (targets / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    write_image(recons / "corrupt.png", np.zeros((2, 2), np.uint8))
    write_image(targets / "range.npy", np.zeros((2, 2)))
    write_image(recons / "range.npy", np.array([[0.0, 0.5], [1.5, 0.2]]))
    write_image(targets / "nan.npy", np.array([[0.0, np.nan]]))
    write_image(recons / "nan.npy", np.zeros((1, 2)))

    result = invoke("compare", *folders, "--csv", tmp_path / "out.csv")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 5
    assert "Traceback" not in result.output
    expected = {
        "no_partner": f"error: {targets / 'no_partner.png'}: no reconstruction in {recons}",
        "shape": f"error: {recons / 'shape.png'}: shape 4x5x1 (height x width x channels) differs from the "
        "target's 4x4x1",
        "corrupt": f"error: {targets / 'corrupt.png'}: ",
        "range": f"error: {recons / 'range.npy'}: value 1.5 at row 1, column 0, channel 0 is not in [0, 1]",
        "nan": f"error: {targets / 'nan.npy'}: value nan at row 0, column 1, channel 0 is not in [0, 1]",
    }
    for name, start in expected.items():
        assert any(line.startswith(start) for line in errors), (name, errors)
    rows = read_csv(tmp_path / "out.csv")
    assert sorted(r["status"] for r in rows) == ["error"] * 5 + ["ok"] * 3
    assert all(r["error"] for r in rows if r["status"] == "error")
    assert "8 pairs, 3 evaluated, 5 failed" in result.stdout


def test_unpaired_recon_and_ambiguous_stems_exit_2(folders: tuple[Path, Path]) -> None:
    targets, recons = folders
    for folder, name in ((targets, "a.png"), (targets, "a.bmp"), (recons, "a.png"), (recons, "extra.png")):
        write_image(folder / name, np.zeros((2, 2), np.uint8))
    result = invoke("compare", *folders)
    assert result.exit_code == 2
    assert f"error: {targets / 'a.bmp'}: ambiguous" in result.stderr
    assert f"error: {recons / 'extra.png'}: no target in {targets}" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--eps", "0.7"], "error: --eps: must be in (0, 0.5)"),
        (["--eps", "0"], "error: --eps: must be in (0, 0.5)"),
        (["--device", "cuda:0"], "needs --backend torch"),
        (["--pairs", "missing.csv"], "missing.csv: cannot read the pair list"),
    ],
)
def test_usage_errors_exit_2_with_one_line(folders: tuple[Path, Path], args: list[str], message: str) -> None:
    write_image(folders[0] / "a.png", np.zeros((2, 2), np.uint8))
    write_image(folders[1] / "a.png", np.zeros((2, 2), np.uint8))
    result = invoke("compare", *folders, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_empty_folders_exit_2(folders: tuple[Path, Path]) -> None:
    result = invoke("compare", *folders)
    assert result.exit_code == 2 and "no image files" in result.stderr


def test_missing_folder_exits_2(tmp_path: Path) -> None:
    result = invoke("compare", tmp_path / "nope", tmp_path)
    assert result.exit_code == 2 and "is not a folder" in result.stderr


def test_unwritable_report_exits_2(folders: tuple[Path, Path], tmp_path: Path) -> None:
    write_image(folders[0] / "a.png", np.zeros((2, 2), np.uint8))
    write_image(folders[1] / "a.png", np.zeros((2, 2), np.uint8))
    result = invoke("compare", *folders, "--csv", tmp_path / "no" / "such" / "dir.csv")
    assert result.exit_code == 2 and "cannot write" in result.stderr


def test_pairs_csv_and_recon_suffix(folders: tuple[Path, Path], tmp_path: Path) -> None:
    targets, recons = folders
    write_image(targets / "a.png", np.full((2, 2), 100, np.uint8))
    write_image(recons / "a_recon.png", np.full((2, 2), 110, np.uint8))
    by_suffix = invoke("compare", *folders, "--recon-suffix", "_recon", "--json", "-")
    listing = tmp_path / "pairs.csv"
    listing.write_text("target,recon\na.png,a_recon.png\n")
    by_list = invoke("compare", *folders, "--pairs", listing, "--json", "-")
    assert by_suffix.exit_code == by_list.exit_code == 0
    excess = [json.loads(r.stdout)["summary"]["excess"] for r in (by_suffix, by_list)]
    assert (
        excess[0] == excess[1] == pytest.approx(float(reference.element(100 / 255, 110 / 255)[2]), rel=1e-12)
    )


def test_logits_recons(folders: tuple[Path, Path], rng: np.random.Generator) -> None:
    targets, recons = folders
    y = rng.integers(0, 256, (4, 4), dtype=np.uint8)
    x = rng.normal(0, 3, (4, 4))
    write_image(targets / "a.png", y)
    write_image(recons / "a.npy", x)
    result = invoke("compare", *folders, "--logits", "--json", "-")
    summary = json.loads(result.stdout)["summary"]
    truth = reference.totals((y / 255).ravel(), x.ravel(), logits=True)
    assert summary["bce_sum"] == pytest.approx(truth[0], rel=1e-12)
    assert summary["excess_sum"] == pytest.approx(truth[2], rel=1e-9)
    assert json.loads(result.stdout)["settings"]["described"].startswith("logits")


def test_jpeg_targets_warn_once(folders: tuple[Path, Path]) -> None:
    for name in ("a.jpg", "b.jpg"):
        write_image(folders[0] / name, np.zeros((8, 8), np.uint8))
        write_image(folders[1] / name.replace(".jpg", ".png"), np.zeros((8, 8), np.uint8))
    result = invoke("compare", *folders)
    assert result.exit_code == 0
    assert result.stderr.count("warning:") == 1 and "2 targets are JPEG" in result.stderr


def test_torch_backend_gives_the_numpy_figures(folders: tuple[Path, Path], rng: np.random.Generator) -> None:
    pytest.importorskip("torch")
    make_set(*folders, rng)
    on_numpy = json.loads(invoke("compare", *folders, "--json", "-").stdout)
    on_torch = json.loads(invoke("compare", *folders, "--json", "-", "--backend", "torch").stdout)
    for a, b in zip(on_numpy["images"], on_torch["images"], strict=True):
        assert b["excess_sum"] == pytest.approx(a["excess_sum"], rel=1e-12)
        assert b["bce_sum"] == pytest.approx(a["bce_sum"], rel=1e-13)


def test_explain_prints_the_example() -> None:
    result = invoke("explain", "--target", "0.5,0.3,0.5,0.9", "--pred", "0.1,0.3,0.5,0.8")
    assert result.exit_code == 0
    mean = next(line for line in result.stdout.splitlines() if "mean" in line)
    assert [w for w in mean.replace("│", " ").split() if "." in w] == ["0.717439", "0.580560", "0.136879"]
    assert "minimum over p is H(y)" in result.stdout


def test_explain_in_bits() -> None:
    result = invoke("explain", "--target", "0.5", "--pred", "0.5", "--units", "bits")
    assert "1.000000" in result.stdout  # H(1/2) is one bit


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "0.5,1.2", "--pred", "0.5,0.5"], "--target: value 1.2 (position 2) is not in [0, 1]"),
        (["--target", "0.5", "--pred", "0.5,0.5"], "--target has 1 values and --pred 2"),
        (["--target", "a", "--pred", "0.5"], "--target must be numbers"),
    ],
)
def test_explain_bad_values_exit_2(args: list[str], message: str) -> None:
    result = invoke("explain", *args)
    assert result.exit_code == 2 and message in result.stderr


def test_every_command_has_help() -> None:
    for command in ("compare", "explain", "merge"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "Usage" in result.stdout
    compare_help = invoke("compare", "--help").stdout
    assert "pixel-weighted" in compare_help
    assert "[eps, 1-eps]" in compare_help and "[torch] extra" in compare_help  # brackets are not markup


def test_help_and_version_do_not_import_torch() -> None:
    code = (
        "import sys\nfrom bce_eval.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")


def test_python_m_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bce_eval", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("bce-eval ")


def test_csv_is_parseable_from_stdout(folders: tuple[Path, Path], rng: np.random.Generator) -> None:
    make_set(*folders, rng)
    result = invoke("compare", *folders, "--csv", "-")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 3 and rows[0]["status"] == "ok"


def test_torch_backend_without_torch_is_a_usage_error(
    folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_image(folders[0] / "a.png", np.zeros((2, 2), np.uint8))
    write_image(folders[1] / "a.png", np.zeros((2, 2), np.uint8))
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    result = invoke("compare", *folders, "--backend", "torch")
    assert result.exit_code == 2 and "needs PyTorch: pip install 'bce-eval[torch]'" in result.stderr


@pytest.mark.parametrize(
    ("device", "message"),
    [("cuda:0", "CUDA is not available"), ("mps", "MPS has no float64"), ("tpu", "--device tpu")],
)
def test_unusable_devices_are_usage_errors(folders: tuple[Path, Path], device: str, message: str) -> None:
    torch = pytest.importorskip("torch")
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    write_image(folders[0] / "a.png", np.zeros((2, 2), np.uint8))
    write_image(folders[1] / "a.png", np.zeros((2, 2), np.uint8))
    result = invoke("compare", *folders, "--backend", "torch", "--device", device)
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.cuda
def test_cuda_backend_gives_the_numpy_figures(folders: tuple[Path, Path], rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    make_set(*folders, rng)
    on_numpy = json.loads(invoke("compare", *folders, "--json", "-").stdout)
    on_cuda = json.loads(
        invoke("compare", *folders, "--json", "-", "--backend", "torch", "--device", "cuda").stdout
    )
    for a, b in zip(on_numpy["images"], on_cuda["images"], strict=True):
        assert b["excess_sum"] == pytest.approx(a["excess_sum"], rel=1e-12)


def test_alpha_and_grayscale_options(folders: tuple[Path, Path], rng: np.random.Generator) -> None:
    rgba = rng.integers(0, 256, (4, 4, 4), dtype=np.uint8)
    write_image(folders[0] / "a.png", rgba)
    write_image(folders[1] / "a.png", np.clip(rgba.astype(int) + 9, 0, 255).astype(np.uint8))
    channels = {
        args: json.loads(invoke("compare", *folders, "--json", "-", *args).stdout)["images"][0]["channels"]
        for args in ((), ("--alpha", "include"), ("--grayscale",), ("--grayscale", "--alpha", "include"))
    }
    assert list(channels.values()) == [3, 4, 1, 2]


def test_explain_keeps_significant_digits_of_tiny_and_huge_figures() -> None:
    result = invoke("explain", "--target", "1e-300,1", "--pred", "1e-300,1e-300", "--convention", "torch")
    rows = [line.replace("│", " ").split() for line in result.stdout.splitlines() if "1e-300" in line]
    # tiny: H(1e-300) = 1e-300 (1 + 300 ln 10) = 6.91776e-298; the torch floor: BCE 100 for p = 1e-300
    assert rows[0][3] == f"{1e-300 * (1 + 300 * math.log(10)):.6g}" == "6.91776e-298"
    assert rows[1][2] == "100.000000"


def test_explain_refuses_a_literal_that_underflows_to_0() -> None:
    result = invoke("explain", "--target", "0.5,1e-400", "--pred", "0.5,0.5")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --target: 1e-400 is too small for float64 and would read as 0"
    assert invoke("explain", "--target", "0e-400,0.0", "--pred", "0.5,0.5").exit_code == 0


def test_explain_shows_the_inputs_in_full() -> None:
    result = invoke("explain", "--target", "0.4999999", "--pred", "0.5", "--eps", "0.4999999")
    assert result.stdout.splitlines()[4].split()[1] == "0.4999999"
    assert "[0.4999999, 0.5000001]" in result.stdout


@pytest.mark.parametrize("closed", ["1", "2"])
def test_a_closed_stdout_or_stderr_does_not_change_the_exit_code(closed: str) -> None:
    """Python sets sys.stdout (or stderr) to None for a closed descriptor; nothing to flush."""
    compare = f"{sys.executable!r} -m bce_eval compare -q sample_images/targets sample_images/recons"
    command = f"exec {closed}>&-; exec {compare}"
    run = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, cwd=Path(__file__).parents[1]
    )
    assert run.returncode == 0, run.stderr


def test_a_profiler_on_sys_monitoring_keeps_the_normal_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.12's cProfile and coverage use sys.monitoring, not setprofile or settrace."""
    from bce_eval import cli

    class Monitoring:
        @staticmethod
        def get_tool(tool: int) -> str | None:
            return "cProfile" if tool == 2 else None

    monkeypatch.setattr(sys, "monitoring", Monitoring, raising=False)
    assert cli._observed()
    monkeypatch.setattr(Monitoring, "get_tool", staticmethod(lambda tool: None))
    assert not cli._observed()


def _compare_sample(**popen: object) -> subprocess.Popen:
    command = [sys.executable, "-m", "bce_eval", "compare", "sample_images/targets", "sample_images/recons"]
    return subprocess.Popen(command, cwd=Path(__file__).parents[1], text=True, **popen)  # type: ignore[call-overload]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_stdout_is_one_line_and_exit_2_not_a_traceback() -> None:
    with open("/dev/full", "w") as full:
        process = _compare_sample(stdout=full, stderr=subprocess.PIPE)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert err == "error: stdout: cannot write: No space left on device\n"


def test_a_closed_pipe_on_stdout_is_one_line_and_exit_2_not_gate_failed() -> None:
    """What `bce-eval compare ... | head -1` meets: exit 1 would read as a failed gate."""
    process = _compare_sample(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the summary is written
    err = process.stderr.read()
    process.wait(timeout=60)
    assert process.returncode == 2
    assert err == "error: stdout: cannot write: Broken pipe\n"
