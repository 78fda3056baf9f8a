"""The engine: the 8-bit lookup path equals the direct float64 path; workers keep order and
memory flat; the torch backend's batches give the NumPy figures."""

from __future__ import annotations

import itertools
import math
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from bce_eval import engine, metrics
from bce_eval.images import pair_folders
from bce_eval.model import ImageResult, Settings, total

from .conftest import write_image

FIGURES = ("bce", "entropy", "excess")


def _noisy_pair(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    target = rng.integers(0, 256, shape, dtype=np.uint8)
    noise = rng.integers(-4, 5, shape)
    target[..., 0] = 0  # exercise the ends: y = 0 and y = 1, clipped predictions
    target[0, ..., -1] = 255
    recon = np.clip(target.astype(int) + noise, 0, 255).astype(np.uint8)
    return target, recon


def _assert_sums_close(a: metrics.Sums, b: metrics.Sums, rtol: float = 1e-12) -> None:
    assert a.pixels == b.pixels and a.clipped == b.clipped
    for figure in FIGURES:
        assert getattr(a, figure) == pytest.approx(getattr(b, figure), rel=rtol, abs=0)


@pytest.mark.parametrize("shape", [(28, 28, 1), (40, 50, 3), (256, 256, 3)])  # gather and histogram
@pytest.mark.parametrize(("convention", "eps"), [("keras", 1e-7), ("keras", 0.01), ("torch", 1e-7)])
def test_byte_lookup_equals_direct_float64(
    rng: np.random.Generator, shape: tuple[int, ...], convention: metrics.Convention, eps: float
) -> None:
    target, recon = _noisy_pair(rng, shape)
    looked_up = metrics.byte_sums(target, recon, eps=eps, convention=convention)
    direct = metrics.sums(target / np.float64(255), recon / np.float64(255), eps=eps, convention=convention)
    _assert_sums_close(looked_up, direct)


def test_byte_lookup_counts_clipped_predictions(rng: np.random.Generator) -> None:
    target = rng.integers(1, 255, (64, 64, 1), dtype=np.uint8)
    recon = np.zeros_like(target)
    recon[:10] = 255
    assert metrics.byte_sums(target, recon).clipped == target.size  # 0 and 1 are both clipped by keras
    assert metrics.byte_sums(target, target).clipped == 0
    assert metrics.byte_sums(target, target).excess == 0.0


def test_many_byte_pairs_get_each_pair_s_own_figures_bit_for_bit(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "_GATHER_BATCH", 5000)  # several batches, cut mid-list
    shapes = [(28, 28, 1), (1, 1, 1), (0, 4, 3), (40, 50, 3), (90, 91, 1), (3, 7, 3)] * 4 + [(128, 64, 1)]
    pairs = [
        _noisy_pair(rng, shape) if 0 not in shape else (np.zeros(shape, np.uint8),) * 2 for shape in shapes
    ]
    together = metrics.byte_sums_many(pairs, eps=0.01)
    assert together == [metrics.byte_sums(t, r, eps=0.01) for t, r in pairs]
    assert together[2] == metrics.Sums(0, 0.0, 0.0, 0.0, 0)
    with pytest.raises(ValueError, match="differ"):
        metrics.byte_sums_many([pairs[0], (pairs[0][0], pairs[1][1])])


def test_byte_lookup_on_torch_equals_numpy(rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    target, recon = _noisy_pair(rng, (64, 80, 3))
    _assert_sums_close(
        metrics.byte_sums(torch.from_numpy(target), torch.from_numpy(recon)), metrics.byte_sums(target, recon)
    )


def _folder_of_pairs(folders: tuple[Path, Path], rng: np.random.Generator, n: int) -> list:
    """n pairs: 8-bit PNG, some 16-bit recons, some grey, one wrong shape and one missing recon."""
    targets, recons = folders
    for i in range(n):
        target, recon = _noisy_pair(rng, (12 + i % 5, 9, 3) if i % 2 else (12 + i % 5, 9))
        write_image(targets / f"{i:03}.png", target)
        if i == 3:
            recon = recon[:-1]
        if i % 4 == 1:
            recon = recon.astype(np.uint16) * 257 + 100
        if i != 5:
            write_image(recons / f"{i:03}.png", recon)
    return pair_folders(targets, recons).pairs


def _figures(results: list[ImageResult]) -> list[tuple]:
    return [(r.name, r.shape, r.sums, r.error) for r in results]


def test_workers_give_the_same_results_in_the_same_order(
    folders: tuple[Path, Path], rng: np.random.Generator
) -> None:
    pairs = _folder_of_pairs(folders, rng, 40)
    alone = list(engine.evaluate(pairs, Settings(), workers=1))
    parallel = list(engine.evaluate(pairs, Settings(), workers=2))
    assert [r.name for r in parallel] == [p.name for p in pairs]
    assert _figures(parallel) == _figures(alone)  # bit for bit: each pair is scored the same way
    errors = {r.name: r.error for r in parallel if r.error}
    assert set(errors) == {"003", "005"}
    assert "differs from the target's" in errors["003"] and "no reconstruction" in errors["005"]


def test_8bit_pairs_take_the_lookup_and_agree_with_float_files(
    folders: tuple[Path, Path], rng: np.random.Generator, tmp_path: Path
) -> None:
    targets, recons = folders
    target, recon = _noisy_pair(rng, (30, 20, 3))
    write_image(targets / "a.png", target)
    write_image(recons / "a.png", recon)
    (tmp_path / "float").mkdir()
    write_image(tmp_path / "float" / "a.npy", recon / np.float64(255))
    [by_bytes] = engine.evaluate(pair_folders(targets, recons).pairs, Settings(), workers=1)
    [by_floats] = engine.evaluate(pair_folders(targets, tmp_path / "float").pairs, Settings(), workers=1)
    assert by_bytes.sums is not None and by_floats.sums is not None
    _assert_sums_close(by_bytes.sums, by_floats.sums)


def test_mixed_bit_depths_are_scored_in_float64(folders: tuple[Path, Path], rng: np.random.Generator) -> None:
    targets, recons = folders
    target, recon = _noisy_pair(rng, (10, 10, 3))
    write_image(targets / "a.png", target)
    recon16 = recon.astype(np.uint16) * 257
    write_image(recons / "a.png", recon16)
    [result] = engine.evaluate(pair_folders(targets, recons).pairs, Settings(), workers=1)
    expected = metrics.sums(target / np.float64(255), recon16 / np.float64(65535))
    assert result.sums is not None
    _assert_sums_close(result.sums, expected)


def test_only_a_window_of_work_is_in_flight() -> None:
    drawn = itertools.count()

    def chunks():
        for i in range(1000):
            next(drawn)
            yield [i]

    with ThreadPoolExecutor(2) as pool:
        results = engine._in_order(pool, lambda chunk: chunk[0], chunks(), 8)
        assert next(results) == 0
        assert next(drawn) <= 9  # 8 in flight when the first result came back; not all 1000
        assert list(results) == list(range(1, 1000))


@pytest.mark.parametrize("workers", [1, 2])
def test_torch_backend_batches_give_the_numpy_figures(
    folders: tuple[Path, Path], rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """The GPU path (batches moved to the device, scored there by torch), run on the CPU device:
    with --device cpu, the command takes the NumPy backend's path instead (engine.runs_torch)."""
    pytest.importorskip("torch")
    pairs = _folder_of_pairs(folders, rng, 24)
    expected = list(engine.evaluate(pairs, Settings(), workers=1))
    monkeypatch.setattr(engine, "_BATCH_VALUES", 2000)  # several batches, some split mid-way
    monkeypatch.setattr(engine, "runs_torch", lambda settings: settings.execution.backend == "torch")
    got = list(engine.evaluate(pairs, Settings.of(backend="torch"), workers=workers))
    assert [r.name for r in got] == [r.name for r in expected]
    assert [r.error for r in got] == [r.error for r in expected]
    for a, b in zip(got, expected, strict=True):
        if b.sums is not None:
            assert a.sums is not None
            _assert_sums_close(a.sums, b.sums)


def test_torch_backend_on_the_cpu_runs_the_numpy_kernels_without_importing_torch(
    folders: tuple[Path, Path], rng: np.random.Generator
) -> None:
    pytest.importorskip("torch")
    pairs = _folder_of_pairs(folders, rng, 6)
    options = "backend='torch', device='cpu'"
    script = (
        "import sys, bce_eval\n"
        f"report = bce_eval.compare({str(folders[0])!r}, {str(folders[1])!r}, {options})\n"
        "print(report.totals.excess, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    excess, imported = out.split()
    assert imported == "False"
    expected = total([r.sums for r in engine.evaluate(pairs, Settings(), workers=1) if r.sums])
    assert float(excess) == pytest.approx(expected.excess, rel=1e-12)


def test_histogram_dot_is_within_a_few_ulp_of_the_exact_sum(rng: np.random.Generator) -> None:
    figures = metrics.byte_tables().figures
    for counts in (
        rng.integers(0, 1000, metrics.BYTE_PAIRS),  # every bin filled: the longest sum
        np.bincount(rng.integers(0, metrics.BYTE_PAIRS, 10**6), minlength=metrics.BYTE_PAIRS),
    ):
        fast = figures @ counts.astype(np.float64)
        for row, got in zip(figures, fast, strict=True):
            exact = math.fsum(row * counts)  # each product rounded once, then summed exactly
            assert abs(got - exact) <= 1e-14 * exact


def test_errors_stay_on_one_line_whatever_the_file_name(
    folders: tuple[Path, Path], rng: np.random.Generator
) -> None:
    targets, recons = folders
    target, recon = _noisy_pair(rng, (6, 6, 3))
    write_image(targets / "a\nb.png", target)
    write_image(targets / "c\rd.png", target)
    write_image(recons / "c\rd.png", recon[:-1])
    results = list(engine.evaluate(pair_folders(targets, recons).pairs, Settings(), workers=1))
    assert len(results) == 2 and all(r.error for r in results)
    for r in results:
        assert r.error is not None and r.error.isprintable()
    assert "'" in results[0].error  # escaped as repr() does


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_decoding_reuses_freed_memory_instead_of_faulting_it_in(tmp_path: Path) -> None:
    """After keep_freed_memory(), decoding image after image takes its memory from what the last
    one freed: without it, glibc hands large blocks back and each decode faults about 120 pages
    (4 KiB each) in again."""
    rng = np.random.default_rng(0)
    for i in range(2):
        write_image(tmp_path / f"{i}.png", rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    script = f"""
import resource, sys
from bce_eval import engine, images
if sys.argv[1] == "keep":
    assert engine.keep_freed_memory()
paths = [{str(tmp_path / "0.png")!r}, {str(tmp_path / "1.png")!r}]
for path in paths:
    images.decode(path)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    for path in paths:
        images.decode(path)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 100)
"""
    faults = {
        mode: float(
            subprocess.run(
                [sys.executable, "-c", script, mode], capture_output=True, text=True, check=True
            ).stdout
        )
        for mode in ("keep", "default")
    }
    assert faults["keep"] < 2
    assert faults["default"] > 10 * max(faults["keep"], 1)  # what the setting is for
