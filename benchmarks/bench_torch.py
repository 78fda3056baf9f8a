"""The torch path side by side with torch's own BCE and with the NumPy backend.

A. The exact math on a CPU tensor of 1024 x 1024 x 3 values (3.1 million), float64:
   ``bce_eval.metrics.sums`` from logits beside ``F.binary_cross_entropy_with_logits`` (issue
   goal: within 3x), and from probabilities beside ``F.binary_cross_entropy``; NumPy's sums on
   the same values for scale.
B. The training loss (when ``bce_eval.torch`` exists): forward and backward of
   ``BCEExcessLoss(from_logits=True)`` beside ``nn.BCEWithLogitsLoss`` on a float32 batch, and
   the float32 value's error against float64 on a near-perfect reconstruction, beside float32
   BCE - H's.
C. Whole runs: ``engine.evaluate`` in this process, and ``python -m bce_eval compare`` as a
   separate process (torch's import included), NumPy backend beside ``--backend torch --device
   cpu``, on the 256x256 RGB PNG and 28x28 grey PNG sets of bench_engine.py (issue goal: torch
   within 1.5x of NumPy).

Each table runs its contenders in interleaved rounds and gives the median seconds, half the
range (+-), and the ratio to its first row.

    python benchmarks/bench_torch.py              # a few minutes on 2 cores, data included
    python benchmarks/bench_torch.py --quick      # smaller sets and fewer rounds
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from machine import cpu_model  # benchmarks/machine.py, beside this script

from bce_eval import engine, metrics
from bce_eval.images import pair_folders
from bce_eval.model import Settings

HERE = Path(__file__).resolve().parent
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def rounds(
    contenders: list[tuple[str, Callable[[], object]]], repeats: int
) -> list[tuple[str, float, float]]:
    """(name, median seconds, half range) of each contender, run in interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name, _ in contenders}
    for _ in range(repeats):
        for name, fn in contenders:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return [(name, statistics.median(t), (max(t) - min(t)) / 2) for name, t in times.items()]


def table(title: str, rows: list[tuple[str, float, float]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\n{title}")
    print(f"  {'':{width}}  {'seconds':>8}  {'+-':>7}  {'ratio':>6}")
    base = rows[0][1]
    for name, seconds, spread in rows:
        print(f"  {name:{width}}  {seconds:8.4f}  {spread:7.4f}  {seconds / base:6.2f}")


def math_section(repeats: int, side: int) -> None:
    g = torch.Generator().manual_seed(0)
    shape = (side, side, 3)
    y = torch.rand(shape, generator=g, dtype=torch.float64)
    x = 3 * torch.randn(shape, generator=g, dtype=torch.float64)
    p = torch.sigmoid(x)
    yn, xn, pn = y.numpy(), x.numpy(), p.numpy()
    n = y.numel()
    print(f"\nA. {n:,} float64 values on the CPU, torch threads: {torch.get_num_threads()}")
    table(
        "A1. from logits",
        rounds(
            [
                ("F.binary_cross_entropy_with_logits", lambda: F.binary_cross_entropy_with_logits(x, y)),
                ("metrics.sums, torch tensor, logits", lambda: metrics.sums(y, x, from_logits=True)),
                ("metrics.sums, NumPy array, logits", lambda: metrics.sums(yn, xn, from_logits=True)),
            ],
            repeats,
        ),
    )
    table(
        "A2. from probabilities (keras convention)",
        rounds(
            [
                ("F.binary_cross_entropy", lambda: F.binary_cross_entropy(p, y)),
                ("metrics.sums, torch tensor", lambda: metrics.sums(y, p)),
                ("metrics.sums, NumPy array", lambda: metrics.sums(yn, pn)),
            ],
            repeats,
        ),
    )
    ours, theirs = metrics.sums(y, x, from_logits=True), metrics.sums(yn, xn, from_logits=True)
    difference = abs(ours.excess - theirs.excess) / theirs.excess
    print(f"  torch and NumPy excess sums differ by {difference:.1e} relative")


def loss_section(repeats: int, batch: int) -> None:
    if importlib.util.find_spec("bce_eval.torch") is None:
        print("\nB. bce_eval.torch is not in this version: skipped")
        return
    from bce_eval.torch import BCEExcessLoss

    g = torch.Generator().manual_seed(1)
    target = torch.rand(batch, 3 * 64 * 64, generator=g)
    logits = torch.logit(target.clamp(1e-4, 1 - 1e-4)) + 0.3 * torch.randn(target.shape, generator=g)

    def step(loss: torch.nn.Module) -> Callable[[], object]:
        def run() -> None:
            x = logits.clone().requires_grad_(True)
            loss(x, target).backward()

        return run

    table(
        f"B1. loss forward + backward, float32 logits, {batch} x {3 * 64 * 64:,}",
        rounds(
            [
                ("nn.BCEWithLogitsLoss", step(torch.nn.BCEWithLogitsLoss())),
                ("BCEExcessLoss", step(BCEExcessLoss(from_logits=True))),
            ],
            repeats,
        ),
    )
    y = target.clamp(0.01, 0.99)
    near = (y + 1e-4 * torch.randn(y.shape, generator=g)).clamp(0, 1)
    truth = float(metrics.excess(y.double(), near.double(), convention="torch"))
    ours = float(BCEExcessLoss()(near, y))
    naive = float(F.binary_cross_entropy(near, y) - F.binary_cross_entropy(y, y))
    print("\nB2. float32 value on a near-perfect reconstruction (noise 1e-4), against float64")
    print(f"  truth {truth:.6e}; BCEExcessLoss {ours:.6e} (rel. error {abs(ours - truth) / truth:.1e});")
    print(f"  float32 BCE - H {naive:.6e} (rel. error {abs(naive - truth) / truth:.1e})")


def runs_section(repeats: int, sets: list[tuple[str, int]]) -> None:
    sys.path.insert(0, str(HERE))
    import bench_engine

    for key, pairs in sets:
        image_set = bench_engine.IMAGE_SETS[key]
        run_set(image_set.title, bench_engine.ensure_data(image_set, HERE / "data", pairs, False), repeats)


def run_set(title: str, folder: Path, repeats: int) -> None:
    found = pair_folders(folder / "targets", folder / "recons").pairs
    workers = engine.default_workers()
    table(
        f"C1. engine.evaluate in this process, {title}, {len(found)} pairs, {workers} workers",
        rounds(
            [
                ("numpy", lambda: list(engine.evaluate(found, Settings(), workers=workers))),
                (
                    "torch cpu",
                    lambda: list(engine.evaluate(found, Settings.of(backend="torch"), workers=workers)),
                ),
            ],
            repeats,
        ),
    )
    command = [sys.executable, "-m", "bce_eval", "compare", str(folder / "targets"), str(folder / "recons")]
    command += ["--quiet", "--top", "0"]

    def whole(*extra: str) -> Callable[[], object]:
        return lambda: subprocess.run([*command, *extra], env=CHILD_ENV, capture_output=True, check=True)

    table(
        f"C2. bce-eval compare as a process, {title}, {len(found)} pairs",
        rounds(
            [
                ("--backend numpy", whole()),
                ("--backend torch --device cpu", whole("--backend", "torch", "--device", "cpu")),
                (
                    'python -c "import torch"',
                    lambda: subprocess.run([sys.executable, "-c", "import torch"], check=True),
                ),
            ],
            repeats,
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller sets, fewer rounds")
    parser.add_argument("--repeats", type=int, help="rounds per table (median shown)")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    started = time.perf_counter()
    print("bce-eval torch benchmark" + (" (--quick)" if args.quick else ""))
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}")
    print(f"NumPy {np.__version__}, torch {torch.__version__}; load average at start: {os.getloadavg()}")
    math_section(repeats, 256 if args.quick else 1024)
    loss_section(repeats, 16 if args.quick else 64)
    runs_section(
        repeats, [("rgb256", 50), ("grey28", 1_000)] if args.quick else [("rgb256", 500), ("grey28", 10_000)]
    )
    print(f"\nLoad average at end: {os.getloadavg()}; total run time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
