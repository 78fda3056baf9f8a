"""What per-channel sums cost on the 8-bit lookup path, side by side in one process.

For uint8 pairs of a few shapes it times, in interleaved rounds (median of 9), the lookup as
compare runs it by default (metrics.byte_sums, or byte_sums_many for small images gathered in
batches) against the same with each channel's sums (metrics.byte_image_sums and
byte_image_sums_many, what --per-channel runs): microseconds an image, and their ratio.

    python benchmarks/bench_channels.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from bce_eval import metrics

SEED = 20240611
ROUNDS = 9


def pairs(
    rng: np.random.Generator, shape: tuple[int, ...], count: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    made = []
    for _ in range(count):
        target = rng.integers(0, 256, shape, dtype=np.uint8)
        recon = np.clip(target.astype(np.int64) + rng.integers(-8, 9, shape), 0, 255).astype(np.uint8)
        made.append((target, recon))
    return made


def one_by_one(lookup: Callable[..., object]) -> Callable[[list[tuple[np.ndarray, np.ndarray]]], None]:
    def run(batch: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for target, recon in batch:
            lookup(target, recon)

    return run


def main() -> None:
    rng = np.random.default_rng(SEED)
    metrics.byte_tables()  # built once, as a run builds them before its workers start
    single = (one_by_one(metrics.byte_sums), one_by_one(metrics.byte_image_sums))
    gathered = (metrics.byte_sums_many, metrics.byte_image_sums_many)
    Pairs = list[tuple[np.ndarray, np.ndarray]]
    cases: list[tuple[str, Pairs, Callable[[Pairs], object], Callable[[Pairs], object]]] = [
        ("256x256x3, one at a time", pairs(rng, (256, 256, 3), 50), *single),
        ("1024x1024x3, one at a time", pairs(rng, (1024, 1024, 3), 4), *single),
        ("28x28x1, gathered", pairs(rng, (28, 28, 1), 2000), *gathered),
        ("32x32x3, gathered", pairs(rng, (32, 32, 3), 1000), *gathered),
    ]
    print("8-bit lookup: totals only (default) vs with each channel's sums (--per-channel)")
    print(f"median of {ROUNDS} interleaved rounds, microseconds an image")
    for title, batch, totals, per_channel in cases:
        times: dict[str, list[float]] = {"totals": [], "channels": []}
        for _ in range(ROUNDS):
            for key, run in (("totals", totals), ("channels", per_channel)):
                started = time.perf_counter()
                run(batch)
                times[key].append(time.perf_counter() - started)
        a, b = (statistics.median(times[k]) / len(batch) * 1e6 for k in ("totals", "channels"))
        print(f"  {title:28s} {a:9.1f}  {b:9.1f}  ratio {b / a:.2f}")


if __name__ == "__main__":
    main()
