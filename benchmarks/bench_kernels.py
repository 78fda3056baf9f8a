"""Per-value cost of the kernels the engine could use to turn a uint8 pair into BCE, H and excess sums.

An 8-bit target and reconstruction take only 256 x 256 value pairs, so the exact float64 figures
of every pair (t, r) fit in tables of 65,536 entries, computed once by bce_eval.metrics. An image's
sums are then its joint histogram of (t, r) dotted with the tables, or the tables gathered at its
indices and summed. Each term is the same float64 number as the direct math's; only the order of
summation differs, and the last column shows by how much that moves the sums.

Kernels, on a 256x256x3 pair and on a 28x28 grey one (inputs made outside the timing):

1. bce_eval.metrics.sums on float64 arrays already normalised (t / 255, r / 255);
   1b. the same with the normalisation inside the timing;
2. np.bincount of the joint index t * 256 + r (minlength 65,536), then counts @ tables, the
   index built as uint16 or as intp;
3. gather-sum: the tables at the index, summed;
4. with numba installed: a compiled joint histogram, and a compiled fused gather-sum (one pass,
   no temporaries); numba's import and compile times are shown apart.

Times are the best of 5 rounds of enough calls to take about 0.1 s each, in one thread.

    python benchmarks/bench_kernels.py
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bce_eval import metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import IMAGE_SETS, target_and_recon
from machine import cpu_model

JOINT = 256 * 256


@dataclass(frozen=True)
class Tables:
    """The figures of every 8-bit pair (t, r) at index t * 256 + r, in nats."""

    figures: np.ndarray  # (65536, 3) float64: bce, entropy, excess
    bce: np.ndarray
    entropy: np.ndarray
    excess: np.ndarray
    clipped: np.ndarray  # (65536,) int64, 0 or 1
    clipped_bins: np.ndarray  # the indices where clipped is 1


def build_tables() -> Tables:
    index = np.arange(JOINT)
    maps = metrics.pixel_maps(index // 256 / np.float64(255), index % 256 / np.float64(255))
    figures = np.ascontiguousarray(np.stack([maps.bce, maps.entropy, maps.excess], axis=1))
    clipped = maps.clipped.astype(np.int64)
    return Tables(figures, maps.bce, maps.entropy, maps.excess, clipped, np.flatnonzero(clipped))


def seconds_per_call(fn: Callable[[], Any], rounds: int = 5, round_seconds: float = 0.1) -> float:
    """Best of `rounds` rounds, each of enough calls to last about round_seconds."""
    calls = 1
    while True:
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - started
        if elapsed >= round_seconds / 4:
            break
        calls *= 4
    calls = max(1, math.ceil(calls * round_seconds / elapsed))
    best = math.inf
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - started) / calls)
    return best


def as_figures(result: Any) -> tuple[float, float, float]:
    if isinstance(result, metrics.Sums):
        return result.bce, result.entropy, result.excess
    return float(result[0]), float(result[1]), float(result[2])


def kernels(
    t: np.ndarray, r: np.ndarray, tables: Tables, numba_kernels: dict[str, Callable[..., Any]]
) -> list[tuple[str, Callable[[], Any]]]:
    """(name, fn) for every kernel on this pair; each fn returns (bce, entropy, excess, clipped) sums."""
    y, p = t / np.float64(255), r / np.float64(255)
    t_flat, r_flat = t.ravel(), r.ravel()
    figures, clipped_bins = tables.figures, tables.clipped_bins

    def from_counts(counts: np.ndarray) -> tuple[Any, ...]:
        bce, entropy, excess = counts @ figures
        return bce, entropy, excess, int(counts[clipped_bins].sum())

    def bincount_uint16() -> tuple[Any, ...]:
        index = (t_flat.astype(np.uint16) << 8) | r_flat
        return from_counts(np.bincount(index, minlength=JOINT))

    def bincount_intp() -> tuple[Any, ...]:
        index = (t_flat.astype(np.intp) << 8) | r_flat
        return from_counts(np.bincount(index, minlength=JOINT))

    def gather_tables() -> tuple[Any, ...]:
        index = (t_flat.astype(np.intp) << 8) | r_flat
        return (
            tables.bce[index].sum(),
            tables.entropy[index].sum(),
            tables.excess[index].sum(),
            int(tables.clipped[index].sum()),
        )

    def gather_rows() -> tuple[Any, ...]:
        index = (t_flat.astype(np.intp) << 8) | r_flat
        bce, entropy, excess = figures[index].sum(axis=0)
        return bce, entropy, excess, int(tables.clipped[index].sum())

    found: list[tuple[str, Callable[[], Any]]] = [
        ("1  metrics.sums, float64 inputs", lambda: metrics.sums(y, p)),
        (
            "1b metrics.sums, with t/255, r/255",
            lambda: metrics.sums(t / np.float64(255), r / np.float64(255)),
        ),
        ("2a bincount, uint16 index, @ tables", bincount_uint16),
        ("2b bincount, intp index, @ tables", bincount_intp),
        ("3a gather-sum, 4 tables[index].sum()", gather_tables),
        ("3b gather-sum, (65536, 3)[index].sum(0)", gather_rows),
    ]
    if numba_kernels:
        histogram, fused = numba_kernels["histogram"], numba_kernels["fused"]

        def numba_histogram() -> tuple[Any, ...]:
            counts = np.zeros(JOINT, dtype=np.int64)
            histogram(t_flat, r_flat, counts)
            return from_counts(counts)

        found += [
            ("4a numba histogram, @ tables", numba_histogram),
            ("4b numba fused gather-sum", lambda: fused(t_flat, r_flat, figures, tables.clipped)),
        ]
    return found


def compile_numba() -> tuple[dict[str, Callable[..., Any]], str]:
    """The numba kernels, compiled, and a line on what importing and compiling took."""
    started = time.perf_counter()
    try:
        import numba
    except ImportError:
        return {}, "numba: not installed (pip install numba), kernels 4 skipped"
    imported = time.perf_counter() - started

    @numba.njit(nogil=True, cache=False)
    def histogram(t: np.ndarray, r: np.ndarray, counts: np.ndarray) -> None:
        for i in range(t.size):
            counts[(np.intp(t[i]) << 8) | r[i]] += 1

    @numba.njit(nogil=True, cache=False)
    def fused(
        t: np.ndarray, r: np.ndarray, figures: np.ndarray, clipped: np.ndarray
    ) -> tuple[float, float, float, int]:
        bce = entropy = excess = 0.0
        n_clipped = 0
        for i in range(t.size):
            k = (np.intp(t[i]) << 8) | r[i]
            bce += figures[k, 0]
            entropy += figures[k, 1]
            excess += figures[k, 2]
            n_clipped += clipped[k]
        return bce, entropy, excess, n_clipped

    started = time.perf_counter()
    sample = np.zeros(4, dtype=np.uint8)
    histogram(sample, sample, np.zeros(JOINT, dtype=np.int64))
    fused(sample, sample, np.zeros((JOINT, 3)), np.zeros(JOINT, dtype=np.int64))
    compiled = time.perf_counter() - started
    line = (
        f"numba {numba.__version__}: import {imported * 1e3:.0f} ms, "
        f"compile of both kernels {compiled * 1e3:.0f} ms (once a process; cache=True keeps it on disk)"
    )
    return {"histogram": histogram, "fused": fused}, line


def measure(
    title: str, t: np.ndarray, r: np.ndarray, tables: Tables, numba_kernels: dict[str, Callable[..., Any]]
) -> None:
    values = t.size
    print(f"\n{title}: {values:,} values a pair")
    print(f"  {'kernel':<42} {'ns/value':>9} {'ms/image':>9} {'x 1':>6}  {'max rel diff vs 1':>17}")
    reference = as_figures(metrics.sums(t / np.float64(255), r / np.float64(255)))
    first = None
    for name, fn in kernels(t, r, tables, numba_kernels):
        result = fn()
        figures = as_figures(result)
        difference = max(abs(a - b) / abs(b) for a, b in zip(figures, reference, strict=True))
        seconds = seconds_per_call(fn)
        first = first or seconds
        print(
            f"  {name:<42} {seconds / values * 1e9:9.2f} {seconds * 1e3:9.4f} "
            f"{first / seconds:6.1f}  {difference:17.1e}"
        )


def main() -> None:
    print("bce-eval kernel micro-benchmark (one thread; best of 5 rounds)")
    print(
        f"CPU: {cpu_model()}, {len(os.sched_getaffinity(0))} cores; "
        f"Python {platform.python_version()}, NumPy {importlib.metadata.version('numpy')}"
    )
    started = time.perf_counter()
    tables = build_tables()
    elapsed = time.perf_counter() - started
    print(f"tables for the 65,536 pairs (t, r) through metrics.pixel_maps: {elapsed * 1e3:.0f} ms, once")
    numba_kernels, numba_line = compile_numba()
    print(numba_line)
    for key, title in (("rgb256", "256x256x3 uint8 pair"), ("grey28", "28x28x1 uint8 pair")):
        target, recon = target_and_recon(IMAGE_SETS[key], 0)
        t, r = np.asarray(target), np.asarray(recon)
        if t.ndim == 2:
            t, r = t[:, :, None], r[:, :, None]
        measure(title, np.ascontiguousarray(t), np.ascontiguousarray(r), tables, numba_kernels)


if __name__ == "__main__":
    main()
