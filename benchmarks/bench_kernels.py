"""Per-value cost of the kernels the engine could use to turn a pair into BCE, H and excess sums.

Part 1: uint8 pairs.

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

Part 2: pairs that are not both 8-bit (issue 14), on a 256x256x3 uint8 target with a float32
reconstruction as a network writes it (bench_engine.py's npy256 set), and variants: logits,
16-bit, near-perfect and uniformly random predictions:

1. bce_eval.metrics.sums on the float64 arrays the engine used to make (the / 255 and the
   float32 -> float64 copy inside the timing);
5. bce_eval.kernels.image_sums on the stored arrays by its NumPy blocks (compiled=False): what
   the engine uses where the compiled kernel is not built;
8. bce_eval.kernels.image_sums by the compiled kernel (bce_eval/_kernel.c): what the engine uses;
6. numexpr (if installed): the same direct form and series in one expression, one thread;
7. numba (if installed): one fused loop over the values, compiled with cache=True; its import,
   first compile and cached start in a fresh process are shown apart.
Rows 6 and 7 have no exact path for saturated values, so they run on a copy of the pair with
p in [0.002, 0.998] and target levels in [1, 254] ("clean"), beside row 1 on the same copy.

Times are the best of 5 rounds of enough calls to take about 0.1 s each, in one thread, as CPU
time of the process (time.process_time): on a shared machine it is steadier than wall time.

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

from bce_eval import kernels as stored_kernels
from bce_eval import metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import IMAGE_SETS, float_recon, png16_pair, target_and_recon
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
        started = time.process_time()
        for _ in range(calls):
            fn()
        elapsed = time.process_time() - started
        if elapsed >= round_seconds / 4:
            break
        calls *= 4
    calls = max(1, math.ceil(calls * round_seconds / elapsed))
    best = math.inf
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - started) / calls)
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


# ---------------------------------------------------------------------------------------------
# Part 2: pairs that are not both 8-bit

NEAR = stored_kernels.NEAR
SERIES = tuple(1.0 / (2 * k + 3) for k in range(4))

NUMBA_SOURCE = """
import math
import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def fused(levels, pred, entropy, eps, near):
    # BCE = H + excess; excess by the direct form, or the atanh series where it would cancel, or
    # the log form for saturated values, in one pass with no temporaries.
    excess = 0.0
    h = 0.0
    for i in range(levels.size):
        k = levels[i]
        y = k / 255.0
        w = 1.0 - y
        p = min(max(np.float64(pred[i]), eps), 1.0 - eps)
        h += entropy[k]
        d = p - y
        if k == 0:
            excess -= math.log1p(-p)
        elif k == 255:
            excess -= math.log(p)
        elif p < 1e-3 * y or (1.0 - p) < 1e-3 * w:
            excess += y * (math.log(y) - math.log(p)) + w * (math.log1p(-y) - math.log1p(-p))
        elif abs(d) < near * y * w:
            s1 = d / (y + y + d)
            s2 = d / (2.0 - (y + y + d))
            u1 = s1 * s1
            u2 = s2 * s2
            a1 = s1 * u1 * (1 / 3 + u1 * (1 / 5 + u1 * (1 / 7 + u1 / 9)))
            a2 = s2 * u2 * (1 / 3 + u2 * (1 / 5 + u2 * (1 / 7 + u2 / 9)))
            excess += d * (s1 + s2) - 2.0 * y * a1 + 2.0 * w * a2
        else:
            excess -= y * math.log1p(d / y) + w * math.log1p(-d / w)
    return h + excess, h, excess
"""


def load_numba(folder: Path) -> tuple[Callable[..., Any] | None, str]:
    """The numba kernel, compiled (cache=True, in folder), and what importing, compiling and a
    cached start in a fresh process cost."""
    import importlib.util
    import subprocess

    if importlib.util.find_spec("numba") is None:
        return None, "numba: not installed (pip install numba), row 7 skipped"
    folder.mkdir(parents=True, exist_ok=True)
    module_path = folder / "fused_kernel.py"
    module_path.write_text(NUMBA_SOURCE)
    for cached in folder.glob("__pycache__/fused_kernel*"):
        cached.unlink()
    probe = (
        "import sys, time; t0 = time.perf_counter(); import numba; t1 = time.perf_counter();"
        f"sys.path.insert(0, {str(folder)!r}); import numpy as np; from fused_kernel import fused;"
        "fused(np.zeros(4, np.uint8), np.full(4, 0.5, np.float32), np.zeros(256), 1e-7, 0.04);"
        "t2 = time.perf_counter(); print(f'{(t1 - t0) * 1e3:.0f} {(t2 - t1) * 1e3:.0f}')"
    )
    cold = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    warm = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    (import_cold, compile_cold), (import_warm, load_warm) = cold.split(), warm.split()
    sys.path.insert(0, str(folder))
    import numba
    from fused_kernel import fused  # type: ignore[import-not-found]

    line = (
        f"numba {numba.__version__}: in a fresh process, import {import_cold} ms and first compile "
        f"{compile_cold} ms; with the cache written, import {import_warm} ms and cached load {load_warm} ms"
    )
    return fused, line


def numexpr_kernel() -> tuple[Callable[..., Any] | None, str]:
    """The direct form and series as one numexpr expression, in blocks, one thread."""
    import importlib.util

    if importlib.util.find_spec("numexpr") is None:
        return None, "numexpr: not installed (pip install numexpr), row 6 skipped"
    started = time.perf_counter()
    import numexpr

    imported = time.perf_counter() - started
    numexpr.set_num_threads(1)
    s1, s2 = "(d / (y + y + d))", "(d / (2 - (y + y + d)))"

    def tail(s: str) -> str:
        u = f"({s} * {s})"
        return f"({s} * {u} * ({SERIES[0]} + {u} * ({SERIES[1]} + {u} * ({SERIES[2]} + {u} * {SERIES[3]}))))"

    series = f"(d * ({s1} + {s2}) - 2 * y * {tail(s1)} + 2 * (1 - y) * {tail(s2)})"
    direct = "(-(y * log1p(d / y) + (1 - y) * log1p(-d / (1 - y))))"
    expression = f"sum(where(abs(d) < {NEAR} * y * (1 - y), {series}, {direct}))"
    compiled = numexpr.NumExpr(expression, signature=[("d", np.float64), ("y", np.float64)])

    def run(levels: np.ndarray, pred: np.ndarray, entropy: np.ndarray) -> tuple[float, float, float]:
        h = float(np.bincount(levels, minlength=256) @ entropy)
        excess = 0.0
        for start in range(0, levels.size, stored_kernels.BLOCK):
            y = levels[start : start + stored_kernels.BLOCK] / 255.0
            d = pred[start : start + stored_kernels.BLOCK] - y
            excess += float(compiled(d, y))
        return h + excess, h, excess

    return run, f"numexpr {numexpr.__version__}: import {imported * 1e3:.0f} ms (NumPy already imported)"


def stored_pairs() -> list[tuple[str, np.ndarray, np.ndarray, dict[str, Any]]]:
    """(title, target, prediction, settings) for part 2, from bench_engine.py's generators."""
    target_image, recon = float_recon(IMAGE_SETS["npy256"], 0)
    target = np.asarray(target_image)
    y = target / np.float64(255)
    p = np.clip(recon.astype(np.float64), 1e-6, 1 - 1e-6)
    logits = np.log(p / (1 - p)).astype(np.float32)
    target16, recon16 = png16_pair(IMAGE_SETS["png16"], 0)
    rng = np.random.default_rng(14)
    return [
        ("uint8 target, float32 recon (npy256)", target, recon, {}),
        ("uint8 target, float32 logits (logits256)", target, logits, {"from_logits": True}),
        ("uint16 target, uint16 recon (png16)", target16, recon16, {}),
        ("uint8 target, float32(y): near-perfect", target, y.astype(np.float32), {}),
        ("uint8 target, uniformly random float32", target, rng.random(target.shape, dtype=np.float32), {}),
    ]


def as_float64(a: np.ndarray) -> np.ndarray:
    """What the engine used to make of a stored array before scoring it (images.normalize)."""
    if a.dtype == np.uint8:
        return a / np.float64(255)
    if a.dtype == np.uint16:
        return a / np.float64(65535)
    return a.astype(np.float64)


def measure_stored(numba_fused: Callable[..., Any] | None, numexpr_run: Callable[..., Any] | None) -> None:
    compiled = stored_kernels.COMPILED
    print(
        f"  {'pair':<46} {'1 ns/value':>10} {'5 ns/value':>10} {'8 ns/value':>10} {'x 1':>6}"
        f"  {'max rel diff 8 vs 1':>19}"
    )
    for title, target, pred, settings in stored_pairs():
        direct = metrics.sums(as_float64(target), as_float64(pred), **settings)
        fast = stored_kernels.image_sums(target, pred, compiled=compiled, **settings)
        difference = max(
            abs(getattr(fast, f) - getattr(direct, f)) / abs(getattr(direct, f))
            for f in ("bce", "entropy", "excess")
        )
        before = seconds_per_call(lambda: metrics.sums(as_float64(target), as_float64(pred), **settings))  # noqa: B023
        blocks = seconds_per_call(lambda: stored_kernels.image_sums(target, pred, compiled=False, **settings))  # noqa: B023
        after = (
            seconds_per_call(lambda: stored_kernels.image_sums(target, pred, **settings))  # noqa: B023
            if compiled
            else None
        )
        n = target.size
        best = after or blocks
        print(
            f"  {title:<46} {before / n * 1e9:10.2f} {blocks / n * 1e9:10.2f} "
            + (f"{after / n * 1e9:10.2f}" if after else f"{'-':>10}")
            + f" {before / best:6.1f}  {difference:19.1e}"
        )
    if not compiled:
        print("  (bce_eval._kernel is not built here: row 8 skipped, and its columns are the NumPy blocks')")
    # The means compared, on the clean copy of the first pair (no saturated value, no y = 0 or 1).
    _, target, pred, _ = stored_pairs()[0]
    target = np.clip(target, 1, 254).reshape(-1)
    pred = np.clip(pred, np.float32(0.002), np.float32(0.998)).reshape(-1)
    entropy = stored_kernels.level_entropy(255)
    rows: list[tuple[str, Callable[[], Any]]] = [
        (
            "1  metrics.sums, float64 inputs",
            lambda: metrics.sums(target / np.float64(255), pred.astype(np.float64)),
        ),
        (
            "5  kernels.image_sums (NumPy, blocks)",
            lambda: stored_kernels.image_sums(target, pred, compiled=False),
        ),
    ]
    if numexpr_run:
        rows.append(("6  numexpr, one expression, blocks", lambda: numexpr_run(target, pred, entropy)))
    if numba_fused:
        rows.append(("7  numba, fused loop", lambda: numba_fused(target, pred, entropy, 1e-7, NEAR)))
    if stored_kernels.COMPILED:
        rows.append(
            ("8  kernels.image_sums (compiled, _kernel.c)", lambda: stored_kernels.image_sums(target, pred))
        )
    print(f"\n  clean copy of the npy256 pair, {target.size:,} values")
    print(f"  {'kernel':<46} {'ns/value':>10} {'x 1':>6}  {'max rel diff vs 1':>19}")
    reference = as_figures(rows[0][1]())
    first = None
    for name, fn in rows:
        figures = as_figures(fn())
        difference = max(abs(a - b) / abs(b) for a, b in zip(figures, reference, strict=True))
        seconds = seconds_per_call(fn)
        first = first or seconds
        print(f"  {name:<46} {seconds / target.size * 1e9:10.2f} {first / seconds:6.1f}  {difference:19.1e}")


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

    print("\nPart 2: pairs that are not both 8-bit, 256x256x3 (196,608 values a pair)")
    numexpr_run, numexpr_line = numexpr_kernel()
    numba_fused, numba_line = load_numba(Path(__file__).resolve().parent / "data" / "numba_kernel")
    print(numexpr_line)
    print(numba_line)
    measure_stored(numba_fused, numexpr_run)


if __name__ == "__main__":
    main()
