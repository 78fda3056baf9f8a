"""The evaluation on a Dask cluster: ``--scheduler tcp://host:8786`` runs it on an existing
cluster, ``--scheduler local`` on a LocalCluster started on this machine, and the Python API
also takes a ``distributed.Client``.

Pairs go to the workers in chunks, a bounded window of them in flight, as they go to local
worker processes, so the client's memory stays flat in the number of pairs. Each worker decodes
and scores a chunk with the same code as a local worker process (engine._evaluate_chunk; for
object storage engine._evaluate_fetched, which reads the chunk's objects itself, so no image
passes through the client) and sends back the per-image records with their sums. The client
takes them in the order of the pairs: the reports, the gates and every figure are those of a
local run, bit for bit.

A task is a pure function of its chunk. A worker lost mid-run costs only the chunks it held,
which the scheduler gives to other workers; a chunk that kills worker after worker (an image
that needs more memory than a worker has) becomes an error for each of its pairs once the
scheduler gives up on it (``distributed.scheduler.allowed-failures``, 3 by default), and the
run goes on.

Dask is imported only here, and only when a run asks for a scheduler.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from typing import TYPE_CHECKING, Any, cast

from . import __version__, engine
from .errors import BackendError, InputError, OptionError
from .model import ImageResult, Settings

if TYPE_CHECKING:
    from .images import Pair
    from .storage import Storage

# Seconds to wait for the scheduler to answer, and for a first worker to join it.
CONNECT_TIMEOUT = 10
# Chunks in flight per worker thread: one running, the next ones already on the worker.
_WINDOW_PER_THREAD = 4
# Chunks per worker thread the pairs are cut into, at most engine._MAX_CHUNK pairs each: fewer
# than local runs make (32), since a task costs the scheduler about a millisecond; chunks of 7
# pairs took 15 % longer than chunks of 32 (500 256x256 RGB PNG pairs, 2 workers).
_CHUNKS_PER_THREAD = 8

_ADDRESS = re.compile(r"[a-z][a-z0-9+.-]*://\S+|[^\s:/]+:\d+|\[[0-9a-fA-F:]+\]:\d+")


def check_scheduler(scheduler: Any, settings: Settings, workers: int | None = None) -> None:
    """Refuse, before anything starts, what a cluster run cannot do: OptionError."""
    if settings.execution.backend != "numpy":
        raise OptionError("--scheduler", "runs the NumPy backend; --backend torch runs on this machine")
    if not isinstance(scheduler, str):
        return  # a distributed.Client, checked when it is used
    if scheduler != "local" and not _ADDRESS.fullmatch(scheduler):
        raise OptionError(
            "--scheduler",
            f"expected local or a scheduler's address such as tcp://host:8786, not {scheduler!r}",
        )
    if scheduler != "local" and workers is not None:
        raise OptionError(
            "--workers",
            "sets the processes of this machine or of --scheduler local; a cluster has its own workers",
        )


def _worker_version() -> str:
    """Run on each worker: the bce-eval it has (it cannot run this without one)."""
    from . import __version__ as version

    return version


def _check_workers(client: Any, label: str) -> int:
    """Wait for a first worker, check that every worker runs this bce-eval; their threads."""
    try:
        client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
    except TimeoutError:
        raise BackendError(
            f"--scheduler {label}: no worker joined the cluster in {CONNECT_TIMEOUT} s"
        ) from None
    try:
        versions = client.run(_worker_version)
    # Whatever a worker raised, deserialising or running the function: it cannot run bce-eval.
    except Exception as e:
        raise BackendError(
            f"--scheduler {label}: a worker cannot run bce-eval ({type(e).__name__}: {e}); "
            f"install bce-eval {__version__} on every worker"
        ) from None
    other = sorted({v for v in versions.values() if v != __version__})
    if other:
        raise BackendError(
            f"--scheduler {label}: workers run bce-eval {', '.join(other)}, this is {__version__}; "
            "install the same version on every worker"
        )
    return max(1, sum(client.nthreads().values()))


@contextmanager
def connect(scheduler: Any, workers: int | None = None) -> Iterator[Any]:
    """A distributed.Client for scheduler ("local": a LocalCluster of ``workers`` processes of
    one thread each, started here and stopped on the way out); a Client given is used as it is."""
    try:
        import distributed
    except ImportError:
        raise BackendError("--scheduler needs Dask: pip install 'bce-eval[dask]'") from None
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    with ExitStack() as stack:
        target: Any = scheduler
        if scheduler == "local":
            # Processes of one thread: decoders such as libspng hold the GIL. No dashboard, and
            # log lines only for errors: the command's stderr is its own messages.
            target = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=workers or engine.default_workers(),
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    # The scheduler's HTTP server (health, metrics) on a free loopback port:
                    # the default, 8787, may be taken, which Dask warns about on stderr.
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                    silence_logs=logging.ERROR,
                )
            )
        try:
            client = stack.enter_context(
                distributed.Client(target, timeout=CONNECT_TIMEOUT, set_as_default=False)
            )
        except (OSError, TimeoutError, ValueError) as e:
            raise BackendError(f"--scheduler {scheduler}: cannot connect: {e}") from None
        yield client


def _evaluate_on_worker(
    chunk: Sequence[Pair], settings: Settings, storage: Storage | None
) -> list[ImageResult]:
    """A chunk on a Dask worker: the local worker processes' code, with glibc's malloc set as
    theirs is. Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which hands every
    freed image back to the kernel to be faulted in again: 256x256 RGB PNG pairs took twice as
    long (benchmarks/README.md). Memory stays bounded by one chunk's working set."""
    engine.keep_freed_memory()
    if storage is None:
        return engine._evaluate_chunk(chunk, settings)
    return engine._evaluate_fetched(chunk, settings, storage)


class _Task:
    """A chunk's future as engine._in_order uses one: result() and cancel()."""

    def __init__(self, future: Any, chunk: Sequence[Pair]) -> None:
        self.future, self.chunk = future, chunk

    def result(self) -> list[ImageResult]:
        from distributed import KilledWorker

        try:
            return self.future.result()  # type: ignore[no-any-return]
        except KilledWorker as e:
            return [_lost(pair, e) for pair in self.chunk]

    def cancel(self) -> None:
        self.future.cancel()


def _lost(pair: Pair, error: Exception) -> ImageResult:
    """The result of a pair whose chunk killed every worker that took it."""
    problem = (
        "the Dask workers that evaluated it died "
        f"({type(error).__name__}; an image larger than a worker's memory?)"
    )
    culprit = pair.target or pair.recon or pair.name
    return ImageResult(
        pair.name, pair.target or "", pair.recon or "", error=str(InputError(culprit, problem))
    )


class _Tasks:
    """client.submit as engine._in_order calls pool.submit. pure=False: each chunk is a task of
    its own, never merged with an equal chunk and never hashed."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def submit(self, function: Callable[..., Any], chunk: Sequence[Pair], *args: Any) -> _Task:
        return _Task(self.client.submit(function, chunk, *args, pure=False), chunk)


def evaluate_on_cluster(
    pairs: Sequence[Pair],
    settings: Settings,
    *,
    scheduler: Any,
    storage: Storage | None = None,
    workers: int | None = None,
    chunk_size: int | None = None,
) -> Iterator[ImageResult]:
    """Results for every pair, in the order given, computed by the workers of a Dask cluster
    (scheduler: an address, "local" for a LocalCluster of ``workers`` processes, or a
    distributed.Client); at most a window of chunks in flight. ``chunk_size``: pairs per task
    (default: _CHUNKS_PER_THREAD chunks per worker thread, up to engine._MAX_CHUNK pairs)."""
    label = scheduler if isinstance(scheduler, str) else "client"
    with connect(scheduler, workers) as client:
        threads = _check_workers(client, label)
        size = chunk_size or max(1, min(engine._MAX_CHUNK, len(pairs) // (threads * _CHUNKS_PER_THREAD)))
        window = threads * _WINDOW_PER_THREAD
        chunks = engine._chunks(pairs, size)
        tasks = _Tasks(client)
        ordered = cast(
            "Generator[list[ImageResult], None, None]",
            engine._in_order(tasks, _evaluate_on_worker, chunks, window, settings, storage),  # type: ignore[arg-type]
        )
        with closing(ordered):  # chunks still in flight are cancelled while the client is open
            for results in ordered:
                yield from results
