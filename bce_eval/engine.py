"""Runs pairs through decoding and the metrics in parallel, streaming, yielding results in order.

NumPy backend: worker processes (decoders such as libspng hold the GIL) each decode and score a
chunk of pairs and send back only the per-image sums. A bounded window of chunks is in flight,
so memory does not grow with the number of pairs.

torch backend: on a GPU, worker processes decode; the main thread moves batches of images to
the device, one transfer a batch, and scores them there (uint8 pairs by a histogram on the
device, others by the float64 maps), so only one process touches the GPU. On the CPU it runs
the NumPy backend's workers and kernels, and never imports torch (``runs_torch``).
"""

from __future__ import annotations

import functools
import gc
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from . import guards, kernels, metrics
from .errors import BackendError, InputError
from .images import Decoded, Pair, decode, normalize, to_float
from .model import ImageResult, Settings

if TYPE_CHECKING:
    from .storage import Storage

T = TypeVar("T")
R = TypeVar("R")

# Chunks of work in flight per worker: enough to keep every core busy, few enough that memory
# stays flat and Ctrl-C is prompt.
_WINDOW_PER_WORKER = 4
_MAX_CHUNK = 128
# Pairs the torch backend's workers fetch together from object storage, at the least.
_STORAGE_CHUNK = 16
# Values moved to the device in one batch by the torch backend (float64 maps: ~20 temporaries).
_BATCH_VALUES = 1 << 22


def _on_cpu(device: str) -> bool:
    return device == "cpu" or (device.startswith("cpu:") and device[4:].isdigit())


def runs_torch(settings: Settings) -> bool:
    """Whether the math runs in torch: with the torch backend on a GPU. On the CPU, the torch
    backend runs the NumPy backend's kernels (compiled, and tables for 8-bit pairs), which give
    the same figures and are several times faster there than torch's CPU operations, without
    importing torch (about 2 s of a 2-core machine, more than scoring 500 256x256 RGB pairs)."""
    execution = settings.execution
    return execution.backend == "torch" and not _on_cpu(execution.device)


def _torch_installed() -> bool:
    """Whether torch can be imported, found without importing it."""
    import importlib.util

    try:
        return sys.modules.get("torch", True) is not None and importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def check_backend(settings: Settings) -> None:
    """Fail early, before any file is read, if the backend or device is unusable."""
    execution = settings.execution
    if execution.backend == "numpy":
        if execution.device != "cpu":
            raise BackendError(f"--device {execution.device} needs --backend torch")
        return
    if not _torch_installed():
        raise BackendError("--backend torch needs PyTorch: pip install 'bce-eval[torch]'")
    if _on_cpu(execution.device):
        return
    try:
        import torch
    except ImportError:
        raise BackendError("--backend torch needs PyTorch: pip install 'bce-eval[torch]'") from None
    try:
        device = torch.device(execution.device)
    except RuntimeError as e:
        raise BackendError(f"--device {execution.device}: {e}") from None
    if device.type == "mps":
        raise BackendError("--device mps: MPS has no float64, which exact BCE needs; use cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendError(f"--device {execution.device}: CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise BackendError(
            f"--device {execution.device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    if device.type not in ("cpu", "cuda"):
        raise BackendError(f"--device {execution.device}: use cpu, cuda or cuda:N")


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for the next image instead of handing it back to
    the kernel, which then faults every page in again (zeroed): each decoded image, histogram
    and temporary is many 4 KiB pages. Decoding 256x256 RGB PNG in one process takes 1.73 ms a
    pair instead of 2.30 (144 page faults a pair against 1); decode-only runs are 13-18 % faster
    (benchmarks/README.md). Memory stays bounded by one chunk's working set, and forked workers
    inherit the setting. Whether glibc took it; elsewhere (musl, macOS, Windows) nothing."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    # Blocks up to 32 MiB (glibc's documented maximum) come from the heap and are reused when
    # freed; the heap's free top goes back to the kernel only beyond 256 MiB.
    if not mallopt(m_mmap_threshold, 32 << 20):
        return False
    return bool(mallopt(m_trim_threshold, 256 << 20))


def default_workers() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------------------------
# One pair: decode both files and bring them to the form the math takes.


@dataclass(frozen=True)
class _Ready:
    """A decoded pair ready to score: both uint8 (the lookup path); with the NumPy backend, other
    pairs in their stored sample types (kernels.image_sums), with torch both float64."""

    pair: Pair
    target: np.ndarray
    recon: np.ndarray

    @property
    def bytes(self) -> bool:
        return self.target.dtype == np.uint8 and self.recon.dtype == np.uint8


def _names(pair: Pair) -> tuple[str, str]:
    return str(pair.target or ""), str(pair.recon or "")


def _failed(pair: Pair, error: InputError, shape: tuple[int, int, int] | None = None) -> ImageResult:
    return ImageResult(pair.name, *_names(pair), shape, error=str(error), culprit=error.path)


# Sample types kernels.image_sums takes as stored: scaling them to float64 first would cost more
# than scoring them.
_STORED = frozenset(np.dtype(t) for t in (np.uint8, np.uint16, np.float16, np.float32, np.float64))


def _prepare(decoded: Decoded, path: Any, settings: Settings, *, logits: bool = False) -> np.ndarray:
    reading, dtype = settings.reading, decoded.pixels.dtype
    stored = dtype == np.uint8 and not logits  # the lookup path
    if not runs_torch(settings):
        stored = dtype in _STORED and (dtype.kind == "f" or not logits)
    if stored and not reading.grayscale:
        return decoded.channels(reading.alpha)
    return to_float(decoded, path, alpha=reading.alpha, grayscale=reading.grayscale, logits=logits)


def _lookup(decoded: Decoded, settings: Settings, *, logits: bool = False) -> bool:
    """Whether _prepare keeps the image's bytes, for the lookup path."""
    return decoded.pixels.dtype == np.uint8 and not settings.reading.grayscale and not logits


def _fetched(fetched: Mapping[str, bytes | InputError] | None, path: str) -> bytes | None:
    """A file's bytes if they were fetched (from object storage); None for a local file."""
    data = None if fetched is None else fetched.get(path)
    if isinstance(data, InputError):
        raise data
    return data


def _ready(
    pair: Pair, settings: Settings, fetched: Mapping[str, bytes | InputError] | None = None
) -> _Ready | ImageResult:
    """Both files decoded (from ``fetched``, the bytes read from object storage, where they are
    there), or the result that says why they cannot be scored.

    The settings' max_image_bytes is checked from each file's header before it is decoded (as
    for the lookup path when it is 8-bit) and again for the float64 path before a pair goes
    there."""
    if pair.problem is not None or pair.target is None or pair.recon is None:
        return _failed(pair, InputError(pair.culprit or "", pair.problem or ""))
    logits, budget = settings.scoring.logits, settings.reading.max_image_bytes
    target_layout, recon_layout = settings.reading.layouts
    try:
        target = decode(
            pair.target, max_image_bytes=budget, layout=target_layout, data=_fetched(fetched, pair.target)
        )
        recon = decode(
            pair.recon,
            logits=logits,
            max_image_bytes=budget,
            layout=recon_layout,
            data=_fetched(fetched, pair.recon),
        )
        if budget is not None and not (_lookup(target, settings) and _lookup(recon, settings, logits=logits)):
            for path, decoded in ((pair.target, target), (pair.recon, recon)):
                guards.check_budget(path, decoded.pixels.shape, lookup=False, max_image_bytes=budget)
    except InputError as e:
        return _failed(pair, e)
    return _ready_decoded(pair, target, recon, settings)


@dataclass(frozen=True)
class ArrayPair:
    """One item of a batch in memory: its name, labels for the reports, and its two images
    as (height, width, channels) arrays in their stored dtype, or as decoded files (which
    know their alpha channel)."""

    name: str
    target: str
    recon: str
    target_pixels: np.ndarray | Decoded
    recon_pixels: np.ndarray | Decoded


def _ready_array(item: ArrayPair, settings: Settings) -> _Ready | ImageResult:
    """An array pair checked as a decoded file would be: no alpha flag, the dtype decides.
    Made contiguous (a channels-first batch gives strided views), so that the sums are added
    in the order a decoded file's are, and come out the same to the last bit."""
    pair = Pair(item.name, item.target, item.recon)
    target, recon = (
        a if isinstance(a, Decoded) else Decoded(np.ascontiguousarray(a), False)
        for a in (item.target_pixels, item.recon_pixels)
    )
    if settings.scoring.logits and recon.pixels.dtype.kind != "f":
        message = f"with logits, reconstructions must hold floats, not {recon.pixels.dtype}"
        return _failed(pair, InputError(item.recon, message))
    return _ready_decoded(pair, target, recon, settings)


def _ready_decoded(
    pair: Pair, target_decoded: Decoded, recon_decoded: Decoded, settings: Settings
) -> _Ready | ImageResult:
    """A decoded pair brought to the form the math takes, or why it cannot be scored."""
    recon_name = _names(pair)[1]
    logits = settings.scoring.logits
    try:
        target = _prepare(target_decoded, pair.target, settings)
        recon = _prepare(recon_decoded, pair.recon, settings, logits=logits)
    except InputError as e:
        return _failed(pair, e)
    if recon.shape != target.shape:
        shapes = (
            f"shape {'x'.join(map(str, recon.shape))} (height x width x channels) differs from the target's"
        )
        return _failed(pair, InputError(recon_name, f"{shapes} {'x'.join(map(str, target.shape))}"))
    # torch on a GPU: one side 8-bit, the other float64: score both in float64.
    if target.dtype != recon.dtype and runs_torch(settings):
        target, recon = (
            to_float(Decoded(a, False), p or "", alpha="include") if a.dtype == np.uint8 else a
            for a, p in ((target, pair.target), (recon, pair.recon))
        )
    return _Ready(pair, target, recon)


def _shape(array: Any) -> tuple[int, int, int]:
    h, w, c = array.shape
    return int(h), int(w), int(c)


def _located(error: metrics.ValueOutOfRange) -> str:
    row, column, channel = error.index
    return f"value {error.value!r} at row {row}, column {column}, channel {channel} is not {error.expected}"


def _scored(ready: _Ready, target: Any, recon: Any, settings: Settings) -> ImageResult:
    """Score one prepared pair; target and recon are its arrays on the backend."""
    pair, scoring = ready.pair, settings.scoring
    try:
        # Each channel's sums cost an extra histogram and lookup per channel on the 8-bit path
        # (about a third more for a 256x256 RGB pair's lookup), so they are summed only when asked.
        channels = None
        if ready.bytes and settings.display.per_channel:
            sums, channels = metrics.byte_image_sums(
                target, recon, eps=scoring.eps, convention=scoring.convention
            )
        elif ready.bytes:
            sums = metrics.byte_sums(target, recon, eps=scoring.eps, convention=scoring.convention)
        elif settings.display.per_channel:  # the direct path, in float64, channel by channel
            if isinstance(target, np.ndarray):  # kept in their stored types for kernels.image_sums
                target, recon = normalize(target, pair.target or ""), normalize(recon, pair.recon or "")
            sums, channels = metrics.image_sums(
                target, recon, eps=scoring.eps, convention=scoring.convention, from_logits=scoring.logits
            )
        elif isinstance(target, np.ndarray):
            sums = kernels.image_sums(
                target, recon, eps=scoring.eps, convention=scoring.convention, from_logits=scoring.logits
            )
        else:
            sums = metrics.sums(
                target, recon, eps=scoring.eps, convention=scoring.convention, from_logits=scoring.logits
            )
    except metrics.ValueOutOfRange as e:
        culprit = _names(pair)[0 if e.which == "target" else 1]
        return _failed(pair, InputError(culprit, _located(e)), _shape(ready.target))
    return ImageResult(pair.name, *_names(pair), _shape(ready.target), sums, channels=channels)


Ready = Callable[[T, Settings], "_Ready | ImageResult"]


def _evaluate_chunk(
    pairs: Sequence[T],
    settings: Settings,
    ready: Ready[T] = _ready,  # type: ignore[assignment]
) -> list[ImageResult]:
    """Decode pairs (``ready``: files, or arrays in memory) and score them on the CPU; any
    problem with a pair's files is its error.

    Small 8-bit pairs are kept and looked up together (metrics.byte_sums_many), so they do not
    each pay NumPy's per-call overhead; each gets the figures it would get alone, bit for bit.
    Larger pairs are scored as soon as they are decoded, while their pixels are in cache."""
    scoring = settings.scoring
    results: list[ImageResult | _Ready] = []
    for pair in pairs:
        item = ready(pair, settings)
        if isinstance(item, _Ready) and not (item.bytes and metrics.gathered(item.target.size)):
            item = _scored(item, item.target, item.recon, settings)  # a large image, scored at once
        results.append(item)
    small = [item for item in results if isinstance(item, _Ready)]
    arrays = [(r.target, r.recon) for r in small]
    sums: list[tuple[metrics.Sums, tuple[metrics.Sums, ...] | None]]
    if settings.display.per_channel:
        sums = list(metrics.byte_image_sums_many(arrays, eps=scoring.eps, convention=scoring.convention))
    else:
        sums = [
            (s, None) for s in metrics.byte_sums_many(arrays, eps=scoring.eps, convention=scoring.convention)
        ]
    scored = {
        id(r): ImageResult(r.pair.name, *_names(r.pair), _shape(r.target), total, channels=channels)
        for r, (total, channels) in zip(small, sums, strict=True)
    }
    return [scored[id(item)] if isinstance(item, _Ready) else item for item in results]


def _fetch(pairs: Sequence[Pair], storage: Storage) -> dict[str, bytes | InputError]:
    """The objects (files given as URLs) of the pairs that can be evaluated, read together."""
    from .storage import is_url

    urls = (p for pair in pairs if pair.problem is None for p in (pair.target, pair.recon) if is_url(p))
    return storage.fetch(urls)


def _evaluate_fetched(pairs: Sequence[Pair], settings: Settings, storage: Storage) -> list[ImageResult]:
    """_evaluate_chunk for pairs in object storage: the chunk's objects are fetched together,
    concurrently, and decoded from memory by the same code."""
    return _evaluate_chunk(pairs, settings, functools.partial(_ready, fetched=_fetch(pairs, storage)))


def evaluate_pair(pair: Pair, settings: Settings) -> ImageResult:
    """Decode one pair and score it on the CPU; any problem with its files is the result's error."""
    return _evaluate_chunk([pair], settings)[0]


# --------------------------------------------------------------------------------------------
# Many pairs.


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _in_order(
    pool: Executor, function: Callable[..., R], chunks: Iterable[Sequence[T]], window: int, *args: Any
) -> Iterator[R]:
    """function(chunk, *args) for each chunk, at most ``window`` in flight, results in order."""
    pending: deque[Future[R]] = deque()
    try:
        for chunk in chunks:
            pending.append(pool.submit(function, chunk, *args))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when the process that started it dies (Linux), however
    it dies: a worker whose parent was killed with SIGKILL would otherwise wait on the task
    queue forever, since every worker holds that pipe's other end. The signal is sent when the
    thread that forked the worker ends, which for bce-eval is the main thread (the pool's
    processes are all started at its first submission). If the parent died before this ran,
    the worker has already been adopted by another process: it ends at once."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _worker_setup(parent: int) -> None:
    """Workers leave Ctrl-C to the main process, which stops them, die of SIGTERM at once,
    whatever handler the main process set before forking them, and die with their parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent)


def _process_pool(workers: int) -> ProcessPoolExecutor:
    # fork starts a worker in milliseconds with bce_eval already imported; elsewhere (macOS,
    # Windows) the platform's default start method.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods and sys.platform == "linux" else None)
    return ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_setup, initargs=(os.getpid(),)
    )


def evaluate(
    pairs: Sequence[Pair],
    settings: Settings,
    *,
    workers: int | None = None,
    storage: Storage | None = None,
    scheduler: Any = None,
) -> Iterator[ImageResult]:
    """Results for every pair, in the order given, computed by ``workers`` (default: the
    settings') processes; memory stays flat however many pairs there are. ``storage``: the
    options to read the pairs' URLs with (object storage). ``scheduler``: run on a Dask cluster
    instead (bce_eval.cluster: an address, "local", or a distributed.Client).

    The settings' max_image_bytes is the memory one pair may take (guards.pair_bytes), checked
    from the headers before decoding; a larger pair is an error of its own. By default (None) a
    quarter of the memory available, shared by the pairs in flight at once
    (guards.default_max_image_bytes)."""
    if scheduler is not None:
        from .cluster import evaluate_on_cluster

        yield from evaluate_on_cluster(pairs, settings, scheduler=scheduler, storage=storage, workers=workers)
        return
    workers = max(1, min(workers or settings.execution.workers or default_workers(), len(pairs)))
    if settings.reading.max_image_bytes is None:
        budget = guards.default_max_image_bytes(workers)
        settings = replace(settings, reading=replace(settings.reading, max_image_bytes=budget))
    keep_freed_memory()
    scoring = settings.scoring
    if runs_torch(settings):
        yield from _evaluate_torch(pairs, settings, workers, storage)
        return
    size = max(1, min(_MAX_CHUNK, len(pairs) // (workers * 32)))
    evaluate_chunk: Callable[[Sequence[Pair], Settings], list[ImageResult]] = (
        _evaluate_chunk if storage is None else functools.partial(_evaluate_fetched, storage=storage)
    )
    if workers == 1:
        for chunk in _chunks(pairs, size):
            yield from evaluate_chunk(chunk, settings)
        return
    if not scoring.logits:  # built once here, inherited by forked workers
        metrics.byte_tables(scoring.eps, scoring.convention)
    # Objects made so far (the pairs, the modules) are left out of the collector's scans while
    # workers are forked, so that the workers' collections do not copy the pages that hold them.
    gc.freeze()
    pool = _process_pool(workers)
    try:
        for results in _in_order(
            pool, evaluate_chunk, _chunks(pairs, size), workers * _WINDOW_PER_WORKER, settings
        ):
            yield from results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        gc.unfreeze()


def evaluate_arrays(items: Iterable[ArrayPair], settings: Settings) -> Iterator[ImageResult]:
    """Results for pairs already in memory, in order, in this process: there is nothing to
    decode, and the arrays would have to be copied to reach worker processes."""
    chunks = _chunks(list(items), _MAX_CHUNK)
    if runs_torch(settings):
        decoded = (_ready_array(item, settings) for chunk in chunks for item in chunk)
        for batch in _batches(decoded):
            yield from _score_batch(batch, settings)
        return
    for chunk in chunks:
        yield from _evaluate_chunk(chunk, settings, _ready_array)


# --------------------------------------------------------------------------------------------
# The torch backend: batches on the device.


def _ready_chunk(
    pairs: Sequence[Pair], settings: Settings, storage: Storage | None = None
) -> list[_Ready | ImageResult]:
    fetched = None if storage is None else _fetch(pairs, storage)
    return [_ready(p, settings, fetched) for p in pairs]


def _batches(items: Iterable[_Ready | ImageResult]) -> Iterator[list[_Ready | ImageResult]]:
    """Consecutive items, cut where the prepared arrays reach _BATCH_VALUES values."""
    batch: list[_Ready | ImageResult] = []
    values = 0
    for item in items:
        batch.append(item)
        if isinstance(item, _Ready):
            values += item.target.size
        if values >= _BATCH_VALUES:
            yield batch
            batch, values = [], 0
    if batch:
        yield batch


def _to_device(arrays: list[np.ndarray], device: str) -> list[Any]:
    """One host-to-device transfer for many arrays of one dtype; views of it, shaped as given."""
    import torch

    flat = torch.from_numpy(np.concatenate([a.ravel() for a in arrays])).to(device)
    views, start = [], 0
    for a in arrays:
        views.append(flat[start : start + a.size].view(a.shape))
        start += a.size
    return views


def _score_batch(batch: list[_Ready | ImageResult], settings: Settings) -> list[ImageResult]:
    ready = [item for item in batch if isinstance(item, _Ready)]
    scored: dict[int, ImageResult] = {}
    for group in ([r for r in ready if r.bytes], [r for r in ready if not r.bytes]):
        if not group:
            continue
        targets = _to_device([r.target for r in group], settings.execution.device)
        recons = _to_device([r.recon for r in group], settings.execution.device)
        for r, t, p in zip(group, targets, recons, strict=True):
            scored[id(r)] = _scored(r, t, p, settings)
    return [scored[id(item)] if isinstance(item, _Ready) else item for item in batch]


def _evaluate_torch(
    pairs: Sequence[Pair], settings: Settings, workers: int, storage: Storage | None = None
) -> Iterator[ImageResult]:
    """Worker processes decode, and the main process, the only one to touch the GPU, scores
    batches. Processes, not threads: decoders such as libspng hold the GIL. Workers are forked
    before anything runs on the device, and never use it. From object storage (``storage``), each
    chunk's objects are fetched together, several pairs a chunk, so that reads overlap."""
    size = max(1, min(_MAX_CHUNK, len(pairs) // (workers * 32)))
    if storage is not None:
        size = max(size, _STORAGE_CHUNK)
    if workers == 1:
        chunks = (_ready_chunk(chunk, settings, storage) for chunk in _chunks(pairs, size))
        for batch in _batches(item for chunk in chunks for item in chunk):
            yield from _score_batch(batch, settings)
        return
    scoring = settings.scoring
    if not scoring.logits:  # built once here, inherited by forked workers
        metrics.byte_tables(scoring.eps, scoring.convention)
    gc.freeze()  # as in evaluate: workers' collections then do not copy the parent's pages
    pool = _process_pool(workers)
    try:
        done: Iterator[list[Any]] = _in_order(
            pool,
            _ready_chunk,
            _chunks(pairs, size),
            workers * _WINDOW_PER_WORKER,
            settings,
            storage,
        )
        for batch in _batches(item for chunk in done for item in chunk):
            yield from _score_batch(batch, settings)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        gc.unfreeze()


# --------------------------------------------------------------------------------------------
# Pixels again, after a run: the pairs that get heat maps and thumbnails (reports/maps.py).


def prepare(
    item: Pair | ArrayPair, settings: Settings, storage: Storage | None = None
) -> tuple[np.ndarray, np.ndarray] | str:
    """A pair's two images as the metrics take them (both uint8, or both float64), read and
    checked as a run reads them (its URLs fetched with ``storage``); or the one line that says
    why they cannot be."""
    if isinstance(item, ArrayPair):
        ready = _ready_array(item, settings)
    else:
        ready = _ready(item, settings, None if storage is None else _fetch([item], storage))
    if isinstance(ready, ImageResult):
        return ready.error or "error"
    if ready.bytes:
        return ready.target, ready.recon
    # The NumPy backend keeps other pairs in their stored types for kernels.image_sums: here
    # both become float64 in [0, 1] (logits as they are), scaled by dtype as the direct path is.
    return normalize(ready.target, ready.pair.target or ""), normalize(ready.recon, ready.pair.recon or "")


def each_chunk(
    function: Callable[[Sequence[T], Settings], list[R]],
    items: Sequence[T],
    settings: Settings,
    *,
    in_process: bool = False,
) -> Iterator[R]:
    """function(chunk, settings) over chunks of items, its results in order: in worker processes
    as ``evaluate`` runs pairs (files), or in this process (``in_process``: arrays in memory,
    which would have to be copied to reach a worker)."""
    workers = max(1, min(settings.execution.workers or default_workers(), len(items)))
    size = max(1, min(_MAX_CHUNK, len(items) // (workers * 4)))
    if in_process or workers == 1:
        for chunk in _chunks(items, size):
            yield from function(chunk, settings)
        return
    pool = _process_pool(workers)
    try:
        for results in _in_order(
            pool, function, _chunks(items, size), workers * _WINDOW_PER_WORKER, settings
        ):
            yield from results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
