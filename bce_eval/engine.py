"""Runs pairs through decoding and the metrics, a few at a time, yielding results in order."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from . import metrics
from .images import InputError, Pair, load
from .report import ImageResult, Settings


class BackendError(Exception):
    """The chosen backend or device cannot be used here (not installed, no such device)."""


def check_backend(settings: Settings) -> None:
    """Fail early, before any file is read, if the backend or device is unusable."""
    if settings.backend == "numpy":
        if settings.device != "cpu":
            raise BackendError(f"--device {settings.device} needs --backend torch")
        return
    try:
        import torch
    except ImportError:
        raise BackendError("--backend torch needs PyTorch: pip install 'bce-eval[torch]'") from None
    try:
        device = torch.device(settings.device)
    except RuntimeError as e:
        raise BackendError(f"--device {settings.device}: {e}") from None
    if device.type == "mps":
        raise BackendError("--device mps: MPS has no float64, which exact BCE needs; use cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendError(f"--device {settings.device}: CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise BackendError(
            f"--device {settings.device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    if device.type not in ("cpu", "cuda"):
        raise BackendError(f"--device {settings.device}: use cpu, cuda or cuda:N")


def _to_backend(array: np.ndarray, settings: Settings) -> Any:
    if settings.backend == "numpy":
        return array
    import torch

    return torch.from_numpy(array).to(settings.device)


def _located(error: metrics.ValueOutOfRange) -> str:
    row, column, channel = error.index
    return f"value {error.value!r} at row {row}, column {column}, channel {channel} is not {error.expected}"


def evaluate_pair(pair: Pair, settings: Settings) -> ImageResult:
    """Decode one pair and score it; any problem with its files becomes the result's error."""
    target_name = str(pair.target or "")
    recon_name = str(pair.recon or "")
    if pair.problem is not None or pair.target is None or pair.recon is None:
        return ImageResult(pair.name, target_name, recon_name, error=f"{pair.culprit}: {pair.problem}")
    try:
        target = load(pair.target, alpha=settings.alpha, grayscale=settings.grayscale)
        recon = load(pair.recon, alpha=settings.alpha, grayscale=settings.grayscale, logits=settings.logits)
    except InputError as e:
        return ImageResult(pair.name, target_name, recon_name, error=str(e))
    shape = target.shape
    if recon.shape != shape:
        error = (
            f"{recon_name}: shape {'x'.join(map(str, recon.shape))} (height x width x channels) "
            f"differs from the target's {'x'.join(map(str, shape))}"
        )
        return ImageResult(pair.name, target_name, recon_name, error=error)
    try:
        sums = metrics.sums(
            _to_backend(target, settings),
            _to_backend(recon, settings),
            eps=settings.eps,
            convention=settings.convention,
            from_logits=settings.logits,
        )
    except metrics.ValueOutOfRange as e:
        culprit = target_name if e.which == "target" else recon_name
        return ImageResult(pair.name, target_name, recon_name, shape, error=f"{culprit}: {_located(e)}")
    return ImageResult(pair.name, target_name, recon_name, (shape[0], shape[1], shape[2]), sums)


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def evaluate(
    pairs: Sequence[Pair], settings: Settings, *, workers: int | None = None
) -> Iterator[ImageResult]:
    """Results for every pair, in the order given; decoding and NumPy math release the GIL,
    so threads overlap them."""
    workers = workers or default_workers()
    if workers == 1:
        yield from (evaluate_pair(p, settings) for p in pairs)
        return
    with ThreadPoolExecutor(workers) as pool:
        yield from pool.map(evaluate_pair, pairs, [settings] * len(pairs))
