"""Whole-process speed of `bce-eval compare` beside the decode-only floor and a naive loop.

For each image set (8-bit: 28x28 grey PNG, 256x256 RGB PNG, 1024x1024 RGB PNG, 256x256 RGB JPEG;
not 8-bit: 256x256 RGB PNG targets with float32 .npy reconstructions, with float32 .npy logits,
with float32 TIFF reconstructions, and 16-bit RGB PNG targets and reconstructions) it times, as
separate processes, interleaved, the median of a few rounds:

- `python -m bce_eval compare TARGETS RECONS` (with --quiet and --workers where they exist);
- decoding alone, every target and reconstruction to a NumPy array and nothing else, with each
  decoder installed: Pillow and OpenCV in one thread per core, pyspng (PNG) and simplejpeg (JPEG)
  in one process per core, since they hold the GIL (.npy files by np.load, TIFF by tifffile);
- the naive loop of engine_contenders.py: PIL (OpenCV for 16-bit PNG, which Pillow reads as
  8-bit), np.load or tifffile, / 255 or / 65535, torch float64 BCE and H, one process.

It also times start-up (`bce-eval --help` against `python -c "import numpy, PIL.Image"`), checks
that compare with the NumPy backend never imports torch, and measures the peak memory of compare
on 200 and 4,000 pairs of 28x28 grey. Images are generated once, deterministically, under
benchmarks/data/ (git-ignored).

    python benchmarks/bench_engine.py              # a few minutes on 2 cores, data included
    python benchmarks/bench_engine.py --quick      # smaller sets, for a smoke run
    python benchmarks/bench_engine.py --sets rgb256 startup --repeats 5
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from machine import cpu_model  # benchmarks/machine.py, beside this script
from PIL import Image, ImageFilter

HERE = Path(__file__).resolve().parent
CONTENDERS = HERE / "engine_contenders.py"
SEED = 20240611
CORES = len(os.sched_getaffinity(0))
# Every measured process runs as a user's would: with Python's bytecode cache, even where this
# shell turned it off (PYTHONDONTWRITEBYTECODE would recompile bce_eval's modules on every start).
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


@dataclass(frozen=True)
class ImageSet:
    key: str
    title: str
    side: int
    mode: str  # Pillow mode: "L" or "RGB"
    suffix: str  # ".png" or ".jpg"
    pairs: int
    quick_pairs: int
    floor_goal: float | None = None  # compare / best floor, where an issue sets a goal
    # What the reconstructions are: "8bit" (the target's format), "float32" (.npy), "logits"
    # (.npy, scored with --logits), "tiff" (float32 TIFF); "png16": both sides 16-bit PNG.
    recons: str = "8bit"

    def folder(self, data: Path, pairs: int) -> Path:
        return data / f"{self.key}_{pairs}"

    @property
    def recon_suffix(self) -> str:
        return {"float32": ".npy", "logits": ".npy", "tiff": ".tif"}.get(self.recons, self.suffix)


IMAGE_SETS = {
    s.key: s
    for s in (
        ImageSet("grey28", "28x28 grey PNG", 28, "L", ".png", 10_000, 1_000),
        ImageSet("rgb256", "256x256 RGB PNG", 256, "RGB", ".png", 500, 50, floor_goal=0.8),
        ImageSet("rgb1024", "1024x1024 RGB PNG", 1024, "RGB", ".png", 50, 6),
        ImageSet("jpeg256", "256x256 RGB JPEG (quality 90)", 256, "RGB", ".jpg", 500, 50),
        # Issue 14: reconstructions as networks write them; goals 0.6 of the floor, 4x naive.
        ImageSet("npy256", "256x256 RGB PNG, float32 .npy", 256, "RGB", ".png", 500, 50, 0.6, "float32"),
        ImageSet("logits256", "256x256 RGB PNG, float32 logits", 256, "RGB", ".png", 500, 50, 0.6, "logits"),
        ImageSet("png16", "256x256 RGB 16-bit PNG, both sides", 256, "RGB", ".png", 200, 20, 0.6, "png16"),
        ImageSet("tiff256", "256x256 RGB PNG, float32 TIFF recons", 256, "RGB", ".png", 200, 20, 0.6, "tiff"),
    )
}
MEMORY_PAIRS, QUICK_MEMORY_PAIRS = (200, 4_000), (200, 1_000)
EXTRAS = ("startup", "torch", "memory")
JPEG_QUALITY = 90

# Goals from issues 3 and 14, as ratios of whole-process figures on the 2-core machine (each set's
# floor goal is its own).
GOAL_NAIVE, GOAL_STARTUP, GOAL_MEMORY = 4.0, 1.3, 1.5


# ---------------------------------------------------------------------------------------------
# Data: natural-like images (smooth shading, texture, sensor noise), so PNG compresses as usual


def natural_image(rng: np.random.Generator, side: int, channels: int) -> np.ndarray:
    """Values in [0, 1], shape (side, side, channels): gradients and waves, blobs, fine grain, noise."""
    yy, xx = np.mgrid[0:side, 0:side] / side
    shading = rng.uniform(-1, 1) * xx + rng.uniform(-1, 1) * yy
    for _ in range(3):
        fx, fy = rng.uniform(0.3, 2.5, size=2)
        shading = shading + 0.5 * np.cos(2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 2 * np.pi))
    cells = max(2, side // 16)  # blobs a sixteenth of the image across, upsampled bicubically
    coarse = Image.fromarray(rng.normal(size=(cells, cells)).astype(np.float32), mode="F")
    blobs = np.asarray(coarse.resize((side, side), Image.Resampling.BICUBIC), dtype=np.float64)
    angle, period = rng.uniform(0, np.pi), rng.uniform(3, 8)
    grain = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) * side / period)
    luminance = shading / (np.ptp(shading) + 1e-9) + 0.25 * blobs / (np.ptp(blobs) + 1e-9) + 0.05 * grain
    tint = rng.uniform(0.6, 1.0, size=channels)
    offset = rng.uniform(-0.15, 0.15, size=channels)
    image = luminance[:, :, None] * tint + offset + rng.normal(0, 0.01, size=(side, side, channels))
    low, high = np.percentile(image, [1, 99])
    return np.clip(0.05 + 0.9 * (image - low) / (high - low), 0, 1)


def target_and_recon(image_set: ImageSet, index: int) -> tuple[Image.Image, Image.Image]:
    """One pair; its seed depends only on the set and the index, so any count is a prefix of more."""
    rng = np.random.default_rng([SEED, image_set.side, image_set.mode == "L", index])
    channels = 1 if image_set.mode == "L" else 3
    pixels = np.round(255 * natural_image(rng, image_set.side, channels)).astype(np.uint8)
    target = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode=image_set.mode)
    # A reconstruction is a little blurred and a little noisy, as an autoencoder's output is.
    blurred = np.asarray(target.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float64)
    recon = blurred + rng.normal(0, 4, size=blurred.shape)
    recon_image = Image.fromarray(np.clip(np.round(recon), 0, 255).astype(np.uint8), mode=image_set.mode)
    return target, recon_image


def float_recon(image_set: ImageSet, index: int) -> tuple[Image.Image, np.ndarray]:
    """An 8-bit target and its reconstruction as a network outputs it, float32 in [0, 1]: the same
    blur and noise as target_and_recon's, neither rounded nor quantised."""
    rng = np.random.default_rng([SEED, image_set.side, 14, index])
    target = Image.fromarray(np.round(255 * natural_image(rng, image_set.side, 3)).astype(np.uint8))
    blurred = np.asarray(target.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float64)
    return target, np.clip((blurred + rng.normal(0, 4, size=blurred.shape)) / 255, 0, 1).astype(np.float32)


def _blur(image: np.ndarray, sigma: float = 0.8) -> np.ndarray:
    """Gaussian blur of an (h, w, c) float array, radius 2, edges repeated (Pillow's has no 16-bit)."""
    taps = np.exp(-(np.arange(-2, 3) ** 2) / (2 * sigma**2))
    taps /= taps.sum()
    for axis in (0, 1):
        padded = np.pad(image, [(2, 2) if a == axis else (0, 0) for a in range(3)], mode="edge")
        size = image.shape[axis]
        image = sum(w * padded.take(range(i, i + size), axis=axis) for i, w in enumerate(taps))
    return image


def png16_pair(image_set: ImageSet, index: int) -> tuple[np.ndarray, np.ndarray]:
    """A 16-bit RGB target and reconstruction (blur and noise of 4/255 of the range), uint16."""
    rng = np.random.default_rng([SEED, image_set.side, 16, index])
    target = np.round(65535 * natural_image(rng, image_set.side, 3))
    recon = _blur(target) + rng.normal(0, 4 * 257, size=target.shape)
    return target.astype(np.uint16), np.clip(np.round(recon), 0, 65535).astype(np.uint16)


def _write_png16(path: Path, pixels: np.ndarray) -> None:
    import png  # pypng, a dependency of bce-eval

    h, w, c = pixels.shape
    with path.open("wb") as f:
        png.Writer(w, h, greyscale=False, bitdepth=16).write(f, pixels.reshape(h, w * c))


def _write_pairs(image_set: ImageSet, folder: Path, indices: range) -> None:
    import tifffile

    for i in indices:
        name = f"{i:05d}"
        target_path = folder / "targets" / f"{name}{image_set.suffix}"
        recon_path = folder / "recons" / f"{name}{image_set.recon_suffix}"
        if image_set.recons == "png16":
            target16, recon16 = png16_pair(image_set, i)
            _write_png16(target_path, target16)
            _write_png16(recon_path, recon16)
            continue
        if image_set.recons != "8bit":
            target, recon_values = float_recon(image_set, i)
            target.save(target_path)
            if image_set.recons == "logits":
                p = np.clip(recon_values.astype(np.float64), 1e-6, 1 - 1e-6)
                np.save(recon_path, np.log(p / (1 - p)).astype(np.float32))
            elif image_set.recons == "tiff":
                tifffile.imwrite(recon_path, recon_values, photometric="rgb")
            else:
                np.save(recon_path, recon_values)
            continue
        target, recon = target_and_recon(image_set, i)
        if image_set.suffix == ".jpg":
            target.save(target_path, quality=JPEG_QUALITY)
            recon.save(recon_path, quality=JPEG_QUALITY)
        else:  # Pillow's default zlib level and filters, as most tools write PNG
            target.save(target_path)
            recon.save(recon_path)


def ensure_data(image_set: ImageSet, data: Path, pairs: int, regenerate: bool) -> Path:
    """The set's folder with targets/ and recons/, generated (on all cores) if missing."""
    folder = image_set.folder(data, pairs)
    done = folder / "complete"
    if done.exists() and not regenerate:
        return folder
    started = time.perf_counter()
    print(f"  generating {pairs} pairs of {image_set.title} in {folder} ...", flush=True)
    for sub in ("targets", "recons"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for old in (folder / sub).iterdir():
            old.unlink()
    step = max(1, -(-pairs // (4 * CORES)))
    with ProcessPoolExecutor(CORES) as pool:
        jobs = [
            pool.submit(_write_pairs, image_set, folder, range(i, min(i + step, pairs)))
            for i in range(0, pairs, step)
        ]
        for job in jobs:
            job.result()
    done.write_text("generated by bench_engine.py\n")
    print(f"  ... done in {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def folder_bytes(folder: Path) -> int:
    return sum(entry.stat().st_size for sub in ("targets", "recons") for entry in os.scandir(folder / sub))


def warm_cache(folder: Path) -> None:
    """Read every file once, so that no contender pays for the disk and all find the page cache."""
    for sub in ("targets", "recons"):
        for entry in os.scandir(folder / sub):
            Path(entry.path).read_bytes()


# ---------------------------------------------------------------------------------------------
# Machine and the bce-eval under test


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_head() -> str:
    """The last commit that changed bce_eval/, and whether it has changes since."""
    root = str(HERE.parent)
    try:
        last = subprocess.run(
            ["git", "-C", root, "log", "-1", "--format=%h %s", "--", "bce_eval"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--", "bce_eval"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    shown = last[:64] + "..." if len(last) > 67 else last
    return shown + (" (with uncommitted changes)" if dirty else "")


def machine_lines() -> list[str]:
    decoders = ", ".join(
        f"{name} {version(package) or 'not installed'}"
        for name, package in (
            ("pyspng", "pyspng"),
            ("simplejpeg", "simplejpeg"),
            ("OpenCV", "opencv-python-headless"),
        )
    )
    return [
        f"CPU:      {cpu_model()}, {CORES} cores ({os.cpu_count()} online)",
        f"Python:   {platform.python_version()} ({platform.system()} {platform.machine()})",
        f"NumPy {version('numpy')}, Pillow {version('pillow')}, torch {version('torch') or 'not installed'}",
        f"Decoders: {decoders}",
        f"bce-eval: {version('bce-eval')}, bce_eval/ last changed in {git_head()}",
    ]


@dataclass(frozen=True)
class CompareOptions:
    quiet: bool
    workers: bool
    backend: bool


def compare_options() -> CompareOptions:
    """Which of the options the benchmark would use `bce-eval compare` has (they are being added)."""
    result = subprocess.run(
        [sys.executable, "-m", "bce_eval", "compare", "--help"],
        capture_output=True,
        text=True,
        env={**CHILD_ENV, "COLUMNS": "200"},
    )
    text = result.stdout
    return CompareOptions("--quiet" in text, "--workers" in text, "--backend" in text)


def compare_command(
    folder: Path, options: CompareOptions, workers: int | None, *, logits: bool = False
) -> list[str]:
    command = [sys.executable, "-m", "bce_eval", "compare", str(folder / "targets"), str(folder / "recons")]
    if logits:
        command.append("--logits")
    if options.quiet:
        command.append("--quiet")
    if options.workers and workers:
        command += ["--workers", str(workers)]
    return command


# ---------------------------------------------------------------------------------------------
# Timing whole processes


@dataclass(frozen=True)
class Contender:
    label: str
    command: list[str]
    kind: str  # "compare", "earlier" (compare from another checkout), "floor" or "naive"
    env: dict[str, str] = field(default_factory=dict)  # added to the child's environment
    cwd: str | None = None  # where the child runs: `python -m bce_eval` imports the package found there


# glibc's malloc keeping freed memory for the next image, as bce_eval.engine.keep_freed_memory
# asks it through mallopt; a floor decoder given them decodes without faulting pages in again.
KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


@dataclass(frozen=True)
class Timing:
    contender: Contender
    seconds: float  # median
    spread: float  # max - min over the rounds, in seconds
    output: str
    cpu: float = 0.0  # median CPU seconds (user + system) of the process and its workers


def run(
    command: list[str], env: dict[str, str] | None = None, cwd: str | None = None
) -> tuple[float, str, float]:
    """Wall time of one whole process, its stdout, and the CPU time it and its workers took
    (less sensitive than wall time to other programs on a shared machine); a failure stops the
    benchmark."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        command, capture_output=True, text=True, env={**CHILD_ENV, **(env or {})}, cwd=cwd
    )
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise SystemExit(f"failed (exit {result.returncode}): {' '.join(command)}\n{tail}")
    return seconds, result.stdout, cpu


def time_side_by_side(contenders: list[Contender], repeats: int) -> list[Timing]:
    """Rounds in which every contender runs once, so drift in the machine hits all of them alike."""
    seconds: dict[str, list[float]] = {c.label: [] for c in contenders}
    cpu: dict[str, list[float]] = {c.label: [] for c in contenders}
    outputs: dict[str, str] = {}
    for _ in range(repeats):
        for contender in contenders:
            elapsed, outputs[contender.label], used = run(contender.command, contender.env, contender.cwd)
            seconds[contender.label].append(elapsed)
            cpu[contender.label].append(used)
    return [
        Timing(
            c,
            statistics.median(seconds[c.label]),
            max(seconds[c.label]) - min(seconds[c.label]),
            outputs[c.label],
            statistics.median(cpu[c.label]),
        )
        for c in contenders
    ]


def floor_decoders(image_set: ImageSet) -> list[tuple[str, str, str]]:
    """(decoder, pool, package) for the set's format: Pillow first, as the reference."""
    if image_set.recons == "png16":  # Pillow reads 16-bit RGB PNG as 8-bit: not the same work
        return [("pyspng", "processes", "pyspng"), ("opencv", "threads", "opencv-python-headless")]
    if image_set.suffix == ".png":
        return [
            ("pillow", "threads", "pillow"),
            ("pyspng", "processes", "pyspng"),
            ("opencv", "threads", "opencv-python-headless"),
        ]
    return [
        ("pillow", "threads", "pillow"),
        ("simplejpeg", "processes", "simplejpeg"),
        ("opencv", "threads", "opencv-python-headless"),
    ]


def contenders_for(
    image_set: ImageSet,
    folder: Path,
    options: CompareOptions,
    workers: int | None,
    earlier: Path | None = None,
) -> tuple[list[Contender], list[str]]:
    compare = compare_command(folder.resolve(), options, workers, logits=image_set.recons == "logits")
    shown = "bce-eval compare" + "".join(f" {a}" for a in compare[6:])
    contenders = [Contender(shown, compare, "compare")]
    if earlier is not None:  # the same command, with the bce_eval package of another checkout
        contenders.append(Contender(f"compare from {earlier.name}", compare, "earlier", cwd=str(earlier)))
    skipped = []
    for decoder, pool, package in floor_decoders(image_set):
        if version(package) is None:
            skipped.append(f"{decoder} is not installed (pip install {package}); its floor is skipped")
            continue
        unit = "thread" if pool == "threads" else "process"
        label = f"decode only: {decoder}, {CORES} {unit}{'es' if unit == 'process' else 's'}"
        command = [
            sys.executable,
            str(CONTENDERS),
            "decode",
            decoder,
            str(folder / "targets"),
            str(folder / "recons"),
            "--workers",
            str(CORES),
            "--pool",
            pool,
        ]
        contenders.append(Contender(label, command, "floor"))
        if pool == "processes":  # the fastest decoders, also with compare's malloc settings
            contenders.append(Contender(label + ", malloc kept", command, "floor", KEEP_FREED_MEMORY))
    if version("torch") is None:
        skipped.append("torch is not installed; the naive loop is skipped")
    else:
        naive = [sys.executable, str(CONTENDERS), "naive", str(folder / "targets"), str(folder / "recons")]
        reader = {"float32": "np.load", "logits": "np.load", "tiff": "tifffile", "png16": "OpenCV"}
        label = f"naive loop: {reader.get(image_set.recons, 'PIL')} + torch BCE, H"
        if image_set.recons == "logits":
            naive.append("--logits")
            label = "naive loop: np.load + torch BCE with logits, H"
        contenders.append(Contender(label, naive, "naive"))
    return contenders, skipped


def bce_from_compare(output: str) -> str | None:
    for line in output.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "BCE":
            return words[1]
    return None


@dataclass(frozen=True)
class SetResult:
    image_set: ImageSet
    pairs: int
    compare: float  # pairs/s
    best_floor: tuple[str, float] | None
    naive: float | None


def print_set(
    image_set: ImageSet, pairs: int, folder: Path, timings: list[Timing], skipped: list[str]
) -> SetResult:
    megabytes = folder_bytes(folder) / 1e6
    print(f"\n{image_set.title}: {pairs:,} pairs ({2 * pairs:,} files, {megabytes:,.1f} MB)")
    naive = next((t for t in timings if t.contender.kind == "naive"), None)
    print(f"  {'':<48} {'pairs/s':>9} {'seconds':>8} {'+-':>6} {'x naive':>8}")
    for t in timings:
        rate = pairs / t.seconds
        vs_naive = f"{naive.seconds / t.seconds:8.2f}" if naive else f"{'-':>8}"
        print(f"  {t.contender.label:<48} {rate:9,.0f} {t.seconds:8.3f} {t.spread / 2:6.3f} {vs_naive}")
    for note in skipped:
        print(f"  note: {note}")
    compare = timings[0]
    for t in timings:
        if t.contender.kind == "earlier":
            print(
                f"  compare / {t.contender.label}: {t.seconds / compare.seconds:.3f} of its pairs/s; "
                f"CPU seconds {compare.cpu:.3f} against {t.cpu:.3f} ({compare.cpu / t.cpu:.3f})"
            )
    floors = [t for t in timings if t.contender.kind == "floor"]
    best = min(floors, key=lambda t: t.seconds) if floors else None
    if best:
        ratio = best.seconds / compare.seconds
        goal = ""
        if image_set.floor_goal:
            mark = "met" if ratio >= image_set.floor_goal else "not met"
            goal = f"  (goal >= {image_set.floor_goal}: {mark})"
        print(
            f"  compare / best floor ({best.contender.label.removeprefix('decode only: ')}):"
            f" {ratio:.2f} of its pairs/s{goal}"
        )
    if naive:
        ratio = naive.seconds / compare.seconds
        mark = "met" if ratio >= GOAL_NAIVE else "not met"
        print(f"  compare / naive loop: {ratio:.2f}x its pairs/s  (goal >= {GOAL_NAIVE:g}: {mark})")
        print(
            f"  same work: compare BCE {bce_from_compare(compare.output) or '(not printed)'}, "
            f"naive {naive.output.strip()} (torch convention: logs floored at -100, no clipping)"
        )
    return SetResult(
        image_set,
        pairs,
        pairs / compare.seconds,
        (best.contender.label, pairs / best.seconds) if best else None,
        pairs / naive.seconds if naive else None,
    )


# ---------------------------------------------------------------------------------------------
# Decoders used as the floor must give Pillow's pixels


def check_identity(image_set: ImageSet, folder: Path, sample: int = 10) -> None:
    """Compare each floor decoder's arrays with the first one's (Pillow's, or pyspng's for 16-bit
    PNG) on the first image files of both folders."""
    import importlib.util

    sys.path.insert(0, str(HERE))
    from engine_contenders import decoder, image_names

    paths = [
        str(folder / sub / name)
        for sub in ("targets", "recons")
        for name in image_names(folder / sub)[:sample]
        if name.endswith((".png", ".jpg"))  # .npy and TIFF files have one reader each
    ]
    decoders = floor_decoders(image_set)
    reference = decoder(decoders[0][0])
    for name, _, _ in decoders[1:]:
        module = {"pyspng": "pyspng", "simplejpeg": "simplejpeg", "opencv": "cv2"}[name]
        if importlib.util.find_spec(module) is None:
            continue
        decode = decoder(name)
        worst, notes = 0, set()
        for path in paths:
            expected, got = reference(path), decode(path)
            if name == "opencv" and got.ndim == 3:
                got = got[:, :, ::-1]  # OpenCV gives BGR
            if decoders[0][0] == "opencv" and expected.ndim == 3:
                expected = expected[:, :, ::-1]
            if expected.ndim == 2 and got.ndim == 3:
                notes.add(f"{name} adds {got.shape[2] - 1} channel(s) to grey")
                got = got[:, :, 0]
            if got.ndim == expected.ndim == 3 and got.shape[2] != expected.shape[2]:
                # libspng gives 16-bit RGB with an opaque alpha channel added
                notes.add("alpha channel added by libspng left out")
                channels = min(got.shape[2], expected.shape[2])
                got, expected = got[:, :, :channels], expected[:, :, :channels]
            if got.shape != expected.shape:
                raise SystemExit(
                    f"{name} decodes {path} to shape {got.shape}, {decoders[0][0]} to {expected.shape}"
                )
            worst = max(worst, int(np.abs(got.astype(np.int64) - expected.astype(np.int64)).max()))
        verdict = "identical" if worst == 0 else f"NOT identical, max abs difference {worst}"
        extra = f" ({'; '.join(sorted(notes))})" if notes else ""
        print(f"  {name} vs {decoders[0][0]} on {len(paths)} files: {verdict}{extra}")


# ---------------------------------------------------------------------------------------------
# Start-up, torch imports, memory


def startup(repeats: int) -> float:
    script = Path(sys.executable).parent / "bce-eval"
    help_command = (
        [str(script), "--help"] if script.exists() else [sys.executable, "-m", "bce_eval", "--help"]
    )
    floor_command = [sys.executable, "-c", "import numpy, PIL.Image"]
    timings = time_side_by_side(
        [
            Contender("bce-eval --help", help_command, "compare"),
            Contender('python -c "import numpy, PIL.Image"', floor_command, "floor"),
        ],
        max(repeats, 7),
    )
    print(f"\nStart-up (median of {max(repeats, 7)})")
    for t in timings:
        print(f"  {t.contender.label:<44} {t.seconds:8.3f} s")
    ratio = timings[0].seconds / timings[1].seconds
    mark = "met" if ratio <= GOAL_STARTUP else "not met"
    print(f"  ratio {ratio:.2f}  (goal <= {GOAL_STARTUP:g}: {mark})")
    return ratio


def imports_torch(folder: Path, options: CompareOptions) -> bool:
    """Whether compare with the NumPy backend imports torch, from python -X importtime."""
    command = compare_command(folder, options, None)
    command[1:1] = ["-X", "importtime"]
    if options.backend:
        command += ["--backend", "numpy"]
    result = subprocess.run(command, capture_output=True, text=True, env=CHILD_ENV)
    modules = [
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    ]
    torch_modules = [m for m in modules if m.split(".")[0] == "torch"]
    imported = bool(torch_modules)
    print(
        f"\nDoes compare with the NumPy backend import torch? {'yes' if imported else 'no'}"
        f"  ({len(modules) - 1} modules imported, {len(torch_modules)} of them torch's; python -X importtime)"
    )
    return imported


# A small parent for the measured process: RUSAGE_CHILDREN then holds that one child's peak RSS
# alone (the benchmark's own children would mix into it otherwise).
PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def peak_rss_mib(command: list[str], repeats: int) -> float:
    peaks = [int(run([sys.executable, "-c", PEAK_RSS, *command])[1]) / 1024 for _ in range(repeats)]
    return statistics.median(peaks)


def memory(
    folders: list[Path], counts: tuple[int, int], options: CompareOptions, workers: int | None, repeats: int
) -> float:
    peaks = [peak_rss_mib(compare_command(f, options, workers), repeats) for f in folders]
    print(f"\nPeak memory of compare (max RSS of the process, median of {repeats})")
    for n, peak in zip(counts, peaks, strict=True):
        print(f"  {n:>5,} pairs of 28x28 grey {peak:8.1f} MiB")
    ratio = peaks[1] / peaks[0]
    mark = "met" if ratio <= GOAL_MEMORY else "not met"
    print(f"  ratio {ratio:.2f}  (goal <= {GOAL_MEMORY:g}: {mark})")
    return ratio


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    choices = (*IMAGE_SETS, *EXTRAS)
    parser.add_argument(
        "--sets",
        nargs="+",
        choices=choices,
        default=list(choices),
        metavar="SET",
        help=f"what to measure, any of: {', '.join(choices)} (default: all)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="rounds per measurement; the median is shown")
    parser.add_argument("--quick", action="store_true", help="smaller sets, for a smoke run")
    parser.add_argument("--data", type=Path, default=HERE / "data", help="where the images are generated")
    parser.add_argument("--regenerate", action="store_true", help="write the images again")
    parser.add_argument("--workers", type=int, help="passed to compare as --workers, if it has that option")
    parser.add_argument(
        "--compare-with",
        type=Path,
        metavar="DIR",
        help="also time compare with the bce_eval package in DIR (another commit's checkout), side by side",
    )
    args = parser.parse_args()
    started = time.perf_counter()

    print("bce-eval engine benchmark" + (" (--quick)" if args.quick else ""))
    print("\n".join(machine_lines()))
    options = compare_options()
    print(
        f"compare options found: --quiet {'yes' if options.quiet else 'no'}, "
        f"--workers {'yes' if options.workers else 'no'}"
    )
    print(f"Whole processes, wall time; median of {args.repeats} interleaved rounds (+- is half the range).")
    print("Load average at start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    # Load the interpreter's and libraries' files once, so the first contender does not pay for it.
    subprocess.run(
        [sys.executable, "-c", "import numpy, PIL.Image, typer, rich, bce_eval.cli"],
        check=True,
        env=CHILD_ENV,
    )
    if version("torch"):
        subprocess.run([sys.executable, "-c", "import torch"], check=True, env=CHILD_ENV)

    results: list[SetResult] = []
    for key in (k for k in IMAGE_SETS if k in args.sets):
        image_set = IMAGE_SETS[key]
        pairs = image_set.quick_pairs if args.quick else image_set.pairs
        folder = ensure_data(image_set, args.data, pairs, args.regenerate)
        warm_cache(folder)
        contenders, skipped = contenders_for(image_set, folder, options, args.workers, args.compare_with)
        timings = time_side_by_side(contenders, args.repeats)
        results.append(print_set(image_set, pairs, folder, timings, skipped))
        check_identity(image_set, folder)

    startup_ratio = startup(args.repeats) if "startup" in args.sets else None
    memory_ratio = torch_imported = None
    counts = QUICK_MEMORY_PAIRS if args.quick else MEMORY_PAIRS
    if "torch" in args.sets:
        folder = ensure_data(IMAGE_SETS["grey28"], args.data, counts[0], args.regenerate)
        torch_imported = imports_torch(folder, options)
    if "memory" in args.sets:
        folders = [ensure_data(IMAGE_SETS["grey28"], args.data, n, args.regenerate) for n in counts]
        memory_ratio = memory(folders, counts, options, args.workers, args.repeats)

    print("\nGoals (issues 3 and 14)")
    for r in results:
        if r.best_floor and r.image_set.floor_goal:
            ratio = r.compare / r.best_floor[1]
            print(
                f"  {r.image_set.title:<38} compare / best floor {ratio:5.2f} (>= {r.image_set.floor_goal})"
                f"{'' if ratio >= r.image_set.floor_goal else '  NOT MET'}"
            )
        if r.naive:
            ratio = r.compare / r.naive
            print(
                f"  {r.image_set.title:<38} compare / naive      {ratio:5.2f} (>= {GOAL_NAIVE:g})"
                f"{'' if ratio >= GOAL_NAIVE else '  NOT MET'}"
            )
    if startup_ratio is not None:
        print(
            f"  start-up ratio {startup_ratio:.2f} (<= {GOAL_STARTUP:g})"
            f"{'' if startup_ratio <= GOAL_STARTUP else '  NOT MET'}"
        )
    if torch_imported is not None:
        print(f"  NumPy backend imports torch: {'yes  NOT MET' if torch_imported else 'no'}")
    if memory_ratio is not None:
        print(
            f"  peak memory {counts[1]:,} / {counts[0]:,} pairs {memory_ratio:.2f} (<= {GOAL_MEMORY:g})"
            f"{'' if memory_ratio <= GOAL_MEMORY else '  NOT MET'}"
        )
    print("Load average at end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"\nTotal run time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
