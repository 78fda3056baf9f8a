"""The programs bench_engine.py times beside `bce-eval compare`, each run as a whole process.

    python benchmarks/engine_contenders.py decode pillow TARGETS RECONS --workers 2 --pool threads
    python benchmarks/engine_contenders.py decode pyspng TARGETS RECONS --workers 2 --pool processes
    python benchmarks/engine_contenders.py naive TARGETS RECONS

`decode` is the physical floor of the work: it decodes every target and reconstruction to a NumPy
array and does nothing else (.npy files by np.load, TIFF by tifffile, images by the named decoder).
`naive` is the loop a user writes: per pair, PIL open (OpenCV for 16-bit PNG, which Pillow reads
as 8-bit; np.load or tifffile for arrays), / 255 or / 65535, and torch's float64
binary_cross_entropy (with_logits for --logits) for BCE and for H. Each program imports only what
it needs, so interpreter start-up and imports count as they would for a user.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

SUFFIXES = (".png", ".jpg", ".jpeg", ".npy", ".tif")


def image_names(folder: Path) -> list[str]:
    """File names of the images in a flat folder, sorted: the benchmark's folders pair by name."""
    return sorted(e.name for e in os.scandir(folder) if e.name.lower().endswith(SUFFIXES))


def decoder(name: str) -> Callable[[str], Any]:
    """A function from a file path to its pixels as a NumPy array: .npy by np.load, TIFF by
    tifffile, images by the named decoder."""
    import numpy as np

    images = image_decoder(name)
    arrays: dict[str, Callable[[str], Any]] = {".npy": np.load}

    def read(path: str) -> Any:
        suffix = path[-4:]
        if suffix == ".tif" and suffix not in arrays:
            import tifffile

            arrays[".tif"] = tifffile.imread
        return arrays.get(suffix, images)(path)

    return read


def image_decoder(name: str) -> Callable[[str], Any]:
    """A function from an image file's path to its pixels, for each decoder measured."""
    import numpy as np

    if name == "pillow":
        from PIL import Image

        def pillow(path: str) -> Any:
            with Image.open(path) as im:
                return np.asarray(im)

        return pillow
    if name == "pyspng":
        import pyspng

        def spng(path: str) -> Any:
            with open(path, "rb") as f:
                return pyspng.load(f.read())

        return spng
    if name == "simplejpeg":
        import simplejpeg

        def turbo(path: str) -> Any:
            with open(path, "rb") as f:
                return simplejpeg.decode_jpeg(f.read())

        return turbo
    if name == "opencv":
        import cv2

        cv2.setNumThreads(1)  # one decode per worker; its own thread pool would only compete

        def opencv(path: str) -> Any:
            return cv2.imread(path, cv2.IMREAD_UNCHANGED)

        return opencv
    raise ValueError(f"unknown decoder {name!r}")


_decode: Callable[[str], Any] | None = None


def _init_worker(name: str) -> None:
    global _decode
    _decode = decoder(name)


def _decode_chunk(paths: list[str]) -> int:
    """Decode a run of files in this worker; return the bytes decoded, so the work cannot be skipped."""
    assert _decode is not None
    return sum(_decode(path).nbytes for path in paths)


def decode_all(name: str, paths: list[str], workers: int, pool: str) -> int:
    """Decode every path with `workers` threads or processes, in contiguous chunks.

    Chunks (8 per worker) rather than one task per file: a task costs tens of microseconds of
    pool overhead, as much as decoding a 28x28 PNG.
    """
    from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

    per_chunk = max(1, -(-len(paths) // (8 * workers)))
    chunks = [paths[i : i + per_chunk] for i in range(0, len(paths), per_chunk)]
    executor: Executor
    if pool == "threads":
        _init_worker(name)
        executor = ThreadPoolExecutor(workers)
    else:
        import multiprocessing

        # fork: the cheapest start on Linux; each worker imports its decoder once.
        context = multiprocessing.get_context("fork")
        executor = ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(name,)
        )
    with executor:
        return sum(executor.map(_decode_chunk, chunks))


def naive(targets: Path, recons: Path, *, logits: bool = False) -> tuple[float, float]:
    """The loop a user writes: mean BCE and mean H per image with torch, averaged over images."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    def load(path: Path) -> Any:
        if path.suffix == ".npy":
            return np.load(path).astype(np.float64)
        if path.suffix == ".tif":
            import tifffile

            return tifffile.imread(path).astype(np.float64)
        if path.suffix == ".png" and _is_16_bit_png(path):  # Pillow would give 8 of the 16 bits
            import cv2

            return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[:, :, ::-1] / 65535
        with Image.open(path) as im:
            return np.asarray(im) / 255

    recon_files = {os.path.splitext(name)[0]: name for name in image_names(recons)}
    bce_total = entropy_total = 0.0
    names = image_names(targets)
    for name in names:
        y = torch.from_numpy(load(targets / name))
        p = torch.from_numpy(load(recons / recon_files[os.path.splitext(name)[0]]))
        if logits:
            bce_total += F.binary_cross_entropy_with_logits(p, y).item()
        else:
            bce_total += F.binary_cross_entropy(p, y).item()
        entropy_total += F.binary_cross_entropy(y, y).item()
    return bce_total / len(names), entropy_total / len(names)


def _is_16_bit_png(path: Path) -> bool:
    """Whether a PNG file's IHDR says 16 bits a sample."""
    with path.open("rb") as f:
        return f.read(25)[24] == 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    decode = commands.add_parser("decode", help="decode every file, nothing else")
    decode.add_argument("decoder", choices=("pillow", "pyspng", "simplejpeg", "opencv"))
    decode.add_argument("folders", nargs="+", type=Path)
    decode.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    decode.add_argument("--pool", choices=("threads", "processes"), default="threads")
    loop = commands.add_parser("naive", help="PIL + np.asarray / 255 + torch BCE and H, per pair")
    loop.add_argument("targets", type=Path)
    loop.add_argument("recons", type=Path)
    loop.add_argument("--logits", action="store_true", help="reconstructions are logits")
    args = parser.parse_args()
    if args.command == "decode":
        paths = [str(folder / name) for folder in args.folders for name in image_names(folder)]
        decoded = decode_all(args.decoder, paths, args.workers, args.pool)
        print(f"{len(paths)} files, {decoded} bytes decoded")
    else:
        bce, entropy = naive(args.targets, args.recons, logits=args.logits)
        print(f"mean BCE {bce:.9f} mean H {entropy:.9f}")


if __name__ == "__main__":
    main()
