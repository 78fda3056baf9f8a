"""Side-by-side timings of bce-eval against the usual ways of computing BCE.

Section A times the math alone on arrays already in memory; section B times whole runs over PNG
files. Every time is the median of a few repeats, in seconds; "ratio" is relative to the first row
of its table. Data for section B is generated once, deterministically, under benchmarks/data/.

    python benchmarks/bench_compare.py            # about 2 minutes on 2 cores
    python benchmarks/bench_compare.py --quick    # a few seconds, smaller inputs
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import png
import torch
import torch.nn.functional as F
from machine import cpu_model  # benchmarks/machine.py, beside this script
from numpy.typing import NDArray
from PIL import Image

from bce_eval import engine, metrics
from bce_eval.images import Pair, pair_folders
from bce_eval.model import Settings, Summary

DATA = Path(__file__).resolve().parent / "data"
SEED = 20240607
EPS = metrics.KERAS_EPSILON
# Targets stay in [LOW, HIGH] and predictions within NOISE_LIMIT of them, so no prediction
# reaches 0 or 1: Keras' clipping and torch's log floor never act, and every row below computes
# the same quantity. Timings do not depend on the values.
LOW, HIGH = 0.1, 0.9
NOISE, NOISE_LIMIT = 0.02, 0.05
NEAR_PERFECT_NOISE = 1e-5


@dataclass(frozen=True)
class Config:
    math_images: int  # section A: images in the batch
    math_side: int  # section A: height = width
    file_pairs: int  # section B: pairs in each set
    file_side: int  # section B: height = width
    repeats: int


FULL = Config(math_images=8, math_side=512, file_pairs=64, file_side=256, repeats=5)
QUICK = Config(math_images=2, math_side=256, file_pairs=16, file_side=128, repeats=3)


@dataclass(frozen=True)
class Row:
    name: str
    seconds: float
    note: str = ""


# ---------------------------------------------------------------------------------------------
# Machine and output


def machine_lines() -> list[str]:
    return [
        f"CPU:     {cpu_model()}, {os.cpu_count()} cores (torch threads: {torch.get_num_threads()})",
        f"Python:  {platform.python_version()} ({platform.system()} {platform.machine()})",
        f"NumPy:   {np.__version__}",
        f"torch:   {torch.__version__}",
        f"bce_eval workers by default: {engine.default_workers()}",
    ]


def print_table(title: str, rows: list[Row]) -> None:
    width = max(len(r.name) for r in rows)
    base = rows[0].seconds
    print(f"\n{title}")
    print(f"  {'':{width}}  {'time (s)':>9}  {'ratio':>6}  note")
    for r in rows:
        print(f"  {r.name:{width}}  {r.seconds:9.3f}  {r.seconds / base:6.2f}  {r.note}")


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------
# Synthetic images


def smooth_image(rng: np.random.Generator, side: int) -> NDArray[np.float64]:
    """A smooth RGB image in [LOW, HIGH]: a few random plane waves per channel."""
    yy, xx = np.mgrid[0:side, 0:side] / side
    image = np.zeros((side, side, 3))
    for channel in range(3):
        for _ in range(4):
            fx, fy = rng.uniform(0.5, 4.0, size=2)
            phase = rng.uniform(0.0, 2 * np.pi)
            image[:, :, channel] += np.cos(2 * np.pi * (fx * xx + fy * yy) + phase)
    image = (image - image.min()) / (image.max() - image.min())
    return LOW + (HIGH - LOW) * image


def target_uint8(rng: np.random.Generator, side: int) -> NDArray[np.uint8]:
    return np.round(255 * smooth_image(rng, side)).astype(np.uint8)


def noisy(rng: np.random.Generator, target: NDArray[np.float64], sigma: float) -> NDArray[np.float64]:
    """target + N(0, sigma), the noise cut at +-NOISE_LIMIT, then clipped to [0, 1]."""
    noise = np.clip(rng.normal(0.0, sigma, size=target.shape), -NOISE_LIMIT, NOISE_LIMIT)
    return np.clip(target + noise, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Section A: the math on arrays in memory


def naive_numpy_excess(y: NDArray[np.float64], p: NDArray[np.float64]) -> float:
    """What a careful user writes: float64, clipped logs, excess = mean BCE - mean H."""
    p = np.clip(p, EPS, 1 - EPS)
    bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    entropy = -np.mean(y * np.log(np.clip(y, EPS, None)) + (1 - y) * np.log(np.clip(1 - y, EPS, None)))
    return float(bce - entropy)


def torch32_excess(y: torch.Tensor, p: torch.Tensor) -> float:
    """What most users run: torch's float32 BCE, and H as BCE(y, y), subtracted in float32."""
    return float(F.binary_cross_entropy(p, y) - F.binary_cross_entropy(y, y))


def exact_excess(y: NDArray[np.float64], p: NDArray[np.float64]) -> float:
    s = metrics.sums(y, p)
    return s.excess / s.pixels


def math_timings(cfg: Config, rng: np.random.Generator) -> list[Row]:
    targets = np.stack([target_uint8(rng, cfg.math_side) for _ in range(cfg.math_images)])
    y64 = targets / np.float64(255)
    p32 = noisy(rng, y64, NOISE).astype(np.float32)  # a model's output is float32
    p64 = p32.astype(np.float64)
    y64_t, p64_t = torch.from_numpy(y64), torch.from_numpy(p64)
    y32_t, p32_t = torch.from_numpy(y64.astype(np.float32)), torch.from_numpy(p32)
    n = cfg.repeats
    return [
        Row("1 bce_eval sums, numpy float64", median_seconds(lambda: metrics.sums(y64, p64), n), "exact"),
        Row("2 bce_eval sums, torch cpu float64", median_seconds(lambda: metrics.sums(y64_t, p64_t), n)),
        Row("3 naive numpy float64, BCE - H", median_seconds(lambda: naive_numpy_excess(y64, p64), n)),
        Row(
            "4 torch F.binary_cross_entropy float32",
            median_seconds(lambda: F.binary_cross_entropy(p32_t, y32_t), n),
            "BCE only, no H",
        ),
    ]


def print_accuracy(cfg: Config, rng: np.random.Generator) -> None:
    """Mean excess of one pair from rows 1, 3 and 4, for a typical and a near-perfect prediction."""
    y64 = target_uint8(rng, cfg.math_side) / np.float64(255)
    y32_t = torch.from_numpy(y64.astype(np.float32))
    side = cfg.math_side
    print(f"\nA2. Mean excess (nats/pixel) of one {side}x{side}x3 pair; rel. error vs row 1")
    header = f"  {'prediction':<28}  {'1 exact':>10}  {'3 naive f64':>11}  {'rel err':>8}"
    print(f"{header}  {'4 torch f32':>11}  {'rel err':>8}")
    for label, sigma in (("typical, N(0, 0.02)", NOISE), ("near-perfect, N(0, 1e-5)", NEAR_PERFECT_NOISE)):
        p32 = noisy(rng, y64, sigma).astype(np.float32)
        p64 = p32.astype(np.float64)
        exact = exact_excess(y64, p64)
        naive = naive_numpy_excess(y64, p64)
        torch32 = torch32_excess(y32_t, torch.from_numpy(p32))
        naive_err, torch_err = abs(naive - exact) / exact, abs(torch32 - exact) / exact
        print(f"  {label:<28}  {exact:10.3e}  {naive:11.3e}  {naive_err:8.1e}", end="")
        print(f"  {torch32:11.3e}  {torch_err:8.1e}")


# ---------------------------------------------------------------------------------------------
# Section B: end to end over PNG files


def write_png16(path: Path, pixels: NDArray[np.uint16]) -> None:
    """16-bit RGB PNG through pypng (Pillow cannot write it)."""
    height, width, _ = pixels.shape
    writer = png.Writer(width, height, greyscale=False, bitdepth=16)
    with path.open("wb") as f:
        writer.write(f, pixels.reshape(height, width * 3).tolist())


def data_folder(cfg: Config) -> Path:
    return DATA / f"pairs{cfg.file_pairs}_{cfg.file_side}px"


def ensure_data(cfg: Config) -> Path:
    """Targets (8-bit PNG), recons8 (8-bit PNG) and recons16 (16-bit PNG); made once."""
    root = data_folder(cfg)
    done = root / "complete"
    if done.exists():
        return root
    print(f"\nGenerating {cfg.file_pairs} pairs of {cfg.file_side}x{cfg.file_side} PNGs in {root} ...")
    folders = [root / "targets", root / "recons8", root / "recons16"]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED + 1)
    for i in range(cfg.file_pairs):
        target = target_uint8(rng, cfg.file_side)
        recon = noisy(rng, target / np.float64(255), NOISE)
        name = f"img{i:03d}.png"
        Image.fromarray(target).save(folders[0] / name)
        Image.fromarray(np.round(255 * recon).astype(np.uint8)).save(folders[1] / name)
        write_png16(folders[2] / name, np.round(65535 * recon).astype(np.uint16))
    done.write_text("generated by bench_compare.py\n")
    return root


def run_bce_eval(pairs: list[Pair], settings: Settings, workers: int | None = None) -> float:
    """Mean BCE over all pairs through bce_eval.engine.evaluate; fails loudly on any error."""
    results = list(engine.evaluate(pairs, settings, workers=workers))
    errors = [r.error for r in results if not r.ok]
    if errors:
        raise RuntimeError(f"bce_eval failed on {len(errors)} pairs, first: {errors[0]}")
    return Summary.of(results).mean("bce")


def run_naive(pairs: list[Pair]) -> float:
    """PIL.Image.open + np.asarray + torch float32 BCE per image, one after another."""
    total = 0.0
    for pair in pairs:
        assert pair.target is not None and pair.recon is not None
        target = np.asarray(Image.open(pair.target))
        recon = np.asarray(Image.open(pair.recon))  # Pillow gives 8 bits even for 16-bit RGB PNG
        y = torch.tensor(target, dtype=torch.float32) / 255
        p = torch.tensor(recon, dtype=torch.float32) / 255
        total += float(F.binary_cross_entropy(p, y))
    return total / len(pairs)


def timed_value(fn: Callable[[], float], repeats: int) -> tuple[float, float]:
    """Median seconds over repeats, and the value of the last call."""
    value = 0.0

    def call() -> None:
        nonlocal value
        value = fn()

    return median_seconds(call, repeats), value


def file_timings(pairs: list[Pair], repeats: int) -> list[Row]:
    numpy_settings, torch_settings = Settings(), Settings(backend="torch")
    workers = engine.default_workers()
    runs: list[tuple[str, Callable[[], float]]] = [
        (f"1 evaluate, numpy, {workers} processes", lambda: run_bce_eval(pairs, numpy_settings)),
        ("2 evaluate, numpy, workers=1", lambda: run_bce_eval(pairs, numpy_settings, workers=1)),
        (f"3 evaluate, torch cpu, {workers} decoding threads", lambda: run_bce_eval(pairs, torch_settings)),
        ("4 naive PIL + torch f32 BCE, sequential", lambda: run_naive(pairs)),
    ]
    rows = []
    for name, fn in runs:
        seconds, mean_bce = timed_value(fn, repeats)
        rows.append(Row(name, seconds, f"mean BCE {mean_bce:.9f}"))
    return rows


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a fast check")
    parser.add_argument("--repeats", type=int, help="timed repeats per row (median is shown)")
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    if args.repeats:
        cfg = Config(cfg.math_images, cfg.math_side, cfg.file_pairs, cfg.file_side, args.repeats)
    started = time.perf_counter()
    print("bce-eval benchmark" + (" (--quick)" if args.quick else ""))
    print("\n".join(machine_lines()))
    print(f"Times: median of {cfg.repeats} runs, in seconds; ratio: time / first row of the table.")

    rng = np.random.default_rng(SEED)
    side = cfg.math_side
    title = f"A. Math only: {cfg.math_images} images of {side}x{side}x3 in memory (float64 unless noted)"
    print_table(title, math_timings(cfg, rng))
    print_accuracy(cfg, rng)

    root = ensure_data(cfg)
    recon_sets = {"recons8": "8-bit RGB PNG recons", "recons16": "16-bit RGB PNG recons"}
    for folder, label in recon_sets.items():
        pairs = pair_folders(root / "targets", root / folder).pairs
        title = f"B. End to end: {len(pairs)} pairs, {cfg.file_side}x{cfg.file_side} 8-bit targets, {label}"
        print_table(title, file_timings(pairs, cfg.repeats))

    print(f"\nTotal run time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
