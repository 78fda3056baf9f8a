"""Real parts for the object-storage and Dask tests: an S3 endpoint on 127.0.0.1 (moto's
server mode) and a Dask cluster of separate processes (``dask scheduler`` and ``dask worker``),
all on loopback, started here and stopped when the tests are done."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from .conftest import write_image

# Credentials moto accepts; the tests' processes and the Dask workers read S3 with them.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def need(*modules: str) -> None:
    """Skip, with the reason, where the [dask] extra (or moto) is not installed."""
    for module in modules:
        pytest.importorskip(module, reason=f"needs {module}: pip install '.[test,dask]' 'moto[server]'")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class S3:
    """A moto S3 server: its endpoint, and an s3fs filesystem on it."""

    endpoint: str
    fs: object

    @property
    def option(self) -> str:
        return f"endpoint_url={self.endpoint}"


@contextlib.contextmanager
def s3_server() -> Iterator[S3]:
    """moto's ThreadedMotoServer on a free port of 127.0.0.1, with a bucket named bucket."""
    need("moto.server", "s3fs")
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    try:
        import s3fs

        endpoint = f"http://127.0.0.1:{port}"
        # moto keeps its buckets per process, whichever server made them: start from none.
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).close()
        fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
        fs.mkdir("bucket")
        yield S3(endpoint, fs)
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class Cluster:
    """A Dask scheduler and its workers, each a process of its own."""

    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def dask_cluster(workers: int, log_dir: Path) -> Iterator[Cluster]:
    """``dask scheduler`` and ``workers`` x ``dask worker --nthreads 1 --no-nanny`` on 127.0.0.1,
    as separate processes; back once every worker has joined."""
    need("distributed")
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, **AWS_ENV}
    log_dir.mkdir(parents=True, exist_ok=True)

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (log_dir / f"{name}.log").open("wb")
        return subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log, stderr=log, env=env)

    scheduler = start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
    started: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(workers):
            options = ("--host", "127.0.0.1", "--nthreads", "1", "--no-nanny", "--no-dashboard")
            started.append(start(f"worker{i}", "worker", address, *options, "--name", f"worker{i}"))
        deadline = time.monotonic() + 60
        with Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=max(1.0, deadline - time.monotonic()))
        yield Cluster(address, scheduler, started)
    finally:
        for process in [*started, scheduler]:
            _stop(process)


def make_pairs(targets: Path, recons: Path, count: int, rng: np.random.Generator, size: int = 24) -> None:
    """count pairs of size x size RGB PNG (a few of other kinds: 16-bit PNG, float .npy
    reconstructions, grey), noisy copies of their targets."""
    for i in range(count):
        name = f"sub{i % 3}/img{i:04d}"
        kind = i % 10
        if kind == 7:  # 16-bit RGB
            target = rng.integers(0, 65536, (size, size, 3), dtype=np.uint16)
            noise = rng.integers(-900, 900, target.shape)
            recon = np.clip(target.astype(np.int64) + noise, 0, 65535).astype(np.uint16)
            write_image(targets / f"{name}.png", target)
            write_image(recons / f"{name}.png", recon)
        elif kind == 8:  # float reconstruction as .npy
            target = rng.integers(0, 256, (size, size), dtype=np.uint8)
            recon = np.clip(target / 255 + rng.normal(0, 0.05, target.shape), 0, 1).astype(np.float32)
            write_image(targets / f"{name}.png", target)
            write_image(recons / f"{name}.npy", recon)
        else:
            target = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            noise = rng.integers(-20, 20, target.shape)
            recon = np.clip(target.astype(np.int64) + noise, 0, 255).astype(np.uint8)
            write_image(targets / f"{name}.png", target)
            write_image(recons / f"{name}.png", recon)


def upload(fs: object, local: Path, remote: str) -> None:
    """Every file under local to remote (bucket/prefix), at the same relative paths."""
    files = {
        f"{remote}/{path.relative_to(local).as_posix()}": path.read_bytes()
        for path in sorted(local.rglob("*"))
        if path.is_file()
    }
    fs.pipe(files)  # type: ignore[attr-defined]
