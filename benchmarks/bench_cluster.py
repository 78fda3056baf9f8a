"""`bce-eval compare` on local worker processes, on `--scheduler local` (a Dask LocalCluster)
and on an external Dask cluster (`dask scheduler` and two `dask worker --nthreads 1` processes
on 127.0.0.1), reading 500 pairs of 256x256 RGB PNG from local disk and from an S3 endpoint on
127.0.0.1 (moto's server mode): every configuration a whole process, interleaved in rounds, the
median of the rounds.

It also measures what the model of benchmarks/README.md and the README's table needs:

- the client's start-up cost: the same command on a single pair, per executor;
- per-worker throughput: one process scoring chunks of pairs already in memory (decode and
  score, no reading), and what each worker of the external cluster did;
- the client's cost per per-image record it receives (unpickling a chunk's results);
- the S3 endpoint's rate: one chunk of objects fetched as a worker fetches it.

Images are bench_engine.py's (generated once under benchmarks/data/, git-ignored). Needs the
[dask] extra and moto[server]:

    pip install '.[dask]' 'moto[server]'
    python benchmarks/bench_cluster.py               # about 5 minutes on 2 cores
    python benchmarks/bench_cluster.py --repeats 1   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench_engine import CHILD_ENV, CORES, IMAGE_SETS, ensure_data, machine_lines, version

HERE = Path(__file__).resolve().parent
AWS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
ENV = {**CHILD_ENV, **AWS}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextmanager
def external_cluster(workers: int, logs: Path) -> Iterator[str]:
    """A scheduler and ``workers`` single-thread workers, each a process, on 127.0.0.1."""
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs.mkdir(parents=True, exist_ok=True)

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (logs / f"{name}.log").open("wb")
        return subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log, stderr=log, env=ENV)

    processes = [
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
    ]
    for i in range(workers):
        options = ("--host", "127.0.0.1", "--nthreads", "1", "--no-nanny", "--no-dashboard")
        processes.append(start(f"worker{i}", "worker", address, *options, "--name", f"worker{i}"))
    try:
        with Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=60)
        yield address
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def compare(targets: str, recons: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bce_eval", "compare", targets, recons, "--quiet", "--top", "0", *extra]


def run(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=ENV)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"failed (exit {result.returncode}): {' '.join(command)}\n{result.stderr[-2000:]}")
    return seconds, result.stdout


@dataclass
class Row:
    label: str
    command: list[str]
    seconds: list[float]
    output: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def side_by_side(rows: list[Row], repeats: int) -> None:
    for _ in range(repeats):
        for row in rows:
            elapsed, row.output = run(row.command)
            row.seconds.append(elapsed)


def overall(output: str) -> str:
    """The summary's overall lines: every configuration must print the same figures."""
    return "\n".join(line for line in output.splitlines() if line.startswith((" BCE", " Entropy", " Excess")))


def upload(endpoint: str, folder: Path) -> float:
    import s3fs

    fs = s3fs.S3FileSystem(
        endpoint_url=endpoint, key=AWS["AWS_ACCESS_KEY_ID"], secret=AWS["AWS_SECRET_ACCESS_KEY"]
    )
    fs.mkdir("bench")
    started = time.perf_counter()
    for sub in ("targets", "recons"):
        files = {f"bench/{sub}/{p.name}": p.read_bytes() for p in sorted((folder / sub).iterdir())}
        fs.pipe(files)
    return time.perf_counter() - started


def per_worker(folder: Path, repeats: int) -> tuple[float, float]:
    """Pairs per second of one process deciding and scoring chunks of 128 pairs, from files
    (engine._evaluate_chunk) and from bytes in memory (what a worker does after a fetch)."""
    from functools import partial

    from bce_eval import engine, images
    from bce_eval.model import Settings

    pairs = images.pair_folders(folder / "targets", folder / "recons").pairs[:256]
    settings = Settings.of()
    blobs = {p: Path(p).read_bytes() for pair in pairs for p in (pair.target, pair.recon)}
    engine._evaluate_chunk(pairs[:8], settings)  # tables built, caches warm
    from_files, from_bytes = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        for chunk in engine._chunks(pairs, 128):
            engine._evaluate_chunk(chunk, settings)
        from_files.append(len(pairs) / (time.perf_counter() - started))
        started = time.perf_counter()
        for chunk in engine._chunks(pairs, 128):
            engine._evaluate_chunk(chunk, settings, partial(engine._ready, fetched=blobs))
        from_bytes.append(len(pairs) / (time.perf_counter() - started))
    return statistics.median(from_files), statistics.median(from_bytes)


def record_cost(folder: Path) -> float:
    """Microseconds the client spends per per-image record it receives (unpickling a chunk)."""
    from bce_eval import engine, images
    from bce_eval.model import Settings

    pairs = images.pair_folders(folder / "targets", folder / "recons").pairs[:128]
    data = pickle.dumps(engine._evaluate_chunk(pairs, Settings.of()))
    rounds = 200
    started = time.perf_counter()
    for _ in range(rounds):
        pickle.loads(data)
    return (time.perf_counter() - started) / (rounds * len(pairs)) * 1e6


def fetch_rate(endpoint: str, repeats: int) -> tuple[float, float]:
    """Objects per second and ms per chunk of 128 pairs (256 objects) fetched from the S3 endpoint
    as a worker fetches them (bce_eval.storage.Storage.fetch)."""
    from bce_eval.storage import Storage

    storage = Storage({"endpoint_url": endpoint})
    urls = [f"s3://bench/{sub}/{i:05d}.png" for i in range(128) for sub in ("targets", "recons")]
    storage.fetch(urls[:4])
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        fetched = storage.fetch(urls)
        seconds.append(time.perf_counter() - started)
        assert all(isinstance(v, bytes) for v in fetched.values())
    best = statistics.median(seconds)
    return len(urls) / best, best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    image_set = IMAGE_SETS["rgb256"]
    folder = ensure_data(image_set, args.data, image_set.pairs, regenerate=False)
    single = args.data / "rgb256_single"
    for sub in ("targets", "recons"):
        (single / sub).mkdir(parents=True, exist_ok=True)
        (single / sub / "00000.png").write_bytes((folder / sub / "00000.png").read_bytes())
    pairs = image_set.pairs
    print("\n".join(machine_lines()))
    packages = ("distributed", "s3fs", "fsspec", "moto")
    print(", ".join(f"{p} {version(p)}" for p in packages))
    print("The machine is shared: other jobs ran beside this benchmark; compare within a round.\n")

    results: dict[str, object] = {}
    with s3_endpoint() as endpoint, external_cluster(2, args.data / "dask-logs") as address:
        upload_seconds = upload(endpoint, folder)
        print(f"uploaded {2 * pairs} objects to the S3 endpoint in {upload_seconds:.1f} s")
        s3 = ["--storage-option", f"endpoint_url={endpoint}"]
        disk = (str(folder / "targets"), str(folder / "recons"))
        bucket = ("s3://bench/targets", "s3://bench/recons")
        executors = {
            f"local workers ({CORES} processes)": [],
            "--scheduler local (2 workers)": ["--scheduler", "local", "--workers", "2"],
            "external cluster (2 workers)": ["--scheduler", address],
        }
        rows = [Row(f"{name}, local disk", compare(*disk, *extra), []) for name, extra in executors.items()]
        rows += [Row(f"{name}, S3", compare(*bucket, *s3, *extra), []) for name, extra in executors.items()]
        one = (str(single / "targets"), str(single / "recons"))
        startup = [Row(f"{name}, 1 pair", compare(*one, *extra), []) for name, extra in executors.items()]
        side_by_side(rows + startup, args.repeats)

        figures = {overall(r.output) for r in rows}
        assert len(figures) == 1, figures  # every configuration printed the same overall figures
        print(f"\n{pairs} pairs of {image_set.title}, whole processes, median of {args.repeats} rounds:\n")
        print("| configuration | seconds | pairs/s | / local workers, same source |")
        print("|---|---:|---:|---:|")
        for i, row in enumerate(rows):
            base = rows[0 if i < 3 else 3]
            rate, ratio = pairs / row.median, base.median / row.median
            print(f"| {row.label} | {row.median:.2f} | {rate:,.0f} | {ratio:.2f} |")
        print(
            "\nS3 against local disk, same executor: "
            + ", ".join(
                f"{rows[i].label.split(',')[0]} {rows[i].median / rows[i + 3].median:.2f}" for i in range(3)
            )
        )
        print("\nStart-up: the same command on 1 pair (the fixed cost of each executor):")
        for row in startup:
            print(f"  {row.label}: {row.median:.2f} s")

        from_files, from_bytes = per_worker(folder, args.repeats)
        cost = record_cost(folder)
        objects_per_second, chunk_ms = fetch_rate(endpoint, args.repeats)
        cluster = rows[2]
        each = pairs / cluster.median / 2
        print(f"\nPer worker: one process scores {from_files:,.0f} pairs/s from files, {from_bytes:,.0f}")
        print(f"  from bytes in memory; on the external cluster each of 2 workers did {each:,.0f} pairs/s")
        print("  (whole command, start-up included, on 2 cores shared with the client and the scheduler)")
        print(f"Client: {cost:.1f} us per per-image record received (unpickled)")
        print(
            f"S3 endpoint (moto, Python, on these 2 cores): {objects_per_second:,.0f} objects/s, "
            f"{chunk_ms:.0f} ms for a chunk of 128 pairs (256 objects)"
        )
        results = {
            "pairs": pairs,
            "rows": {r.label: r.seconds for r in rows},
            "startup": {r.label: r.seconds for r in startup},
            "per_worker_pairs_per_s_files": from_files,
            "per_worker_pairs_per_s_bytes": from_bytes,
            "client_us_per_record": cost,
            "s3_objects_per_s": objects_per_second,
            "s3_chunk_ms": chunk_ms,
        }
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.update(AWS)
    main()
