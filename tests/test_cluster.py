"""Dask: the evaluation on a real cluster of separate processes (``dask scheduler`` and two
``dask worker`` on 127.0.0.1), reading from a real S3 endpoint (moto's server mode) or local
disk, gives the local run's report bit for bit; a worker killed mid-run costs only its chunks.
Skipped, with the reason, without the [dask] extra."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import bce_eval
from bce_eval import cluster as cluster_module
from bce_eval import engine, images
from bce_eval.cluster import evaluate_on_cluster
from bce_eval.errors import BackendError, OptionError
from bce_eval.model import ImageResult, Settings

from .cloud import AWS_ENV, S3, Cluster, dask_cluster, free_port, make_pairs, need, s3_server, upload
from .conftest import write_image

ROOT = Path(__file__).resolve().parent.parent


def command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bce_eval", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "120", "NO_COLOR": "1", **AWS_ENV},
        timeout=300,
    )


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    with s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with dask_cluster(2, tmp_path_factory.mktemp("dask-logs")) as running:
        yield running


@pytest.fixture(scope="module")
def image_set(s3: S3, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 pairs on disk and in s3://bucket/{targets,recons}, with a pair whose reconstruction
    is not an image and a target without a reconstruction."""
    root = tmp_path_factory.mktemp("set")
    make_pairs(root / "targets", root / "recons", 60, np.random.default_rng(11))
    (root / "recons" / "sub1" / "img0004.png").write_bytes(b"not a png")
    write_image(root / "targets" / "lonely.png", np.zeros((4, 4), dtype=np.uint8))
    upload(s3.fs, root / "targets", "bucket/targets")
    upload(s3.fs, root / "recons", "bucket/recons")
    return root


def test_s3_on_the_cluster_gives_the_local_json(
    s3: S3, cluster: Cluster, image_set: Path, tmp_path: Path
) -> None:
    """The issue's acceptance: compare s3://... --storage-option endpoint_url=... --scheduler
    tcp://... --json out.json is the local run's JSON; exit code and error lines too."""
    gates = ["--max-excess", "1e-9", "--top", "3"]
    local = command(
        "compare",
        str(image_set / "targets"),
        str(image_set / "recons"),
        "--json",
        str(tmp_path / "local.json"),
        *gates,
    )
    on_s3 = command(
        "compare", "s3://bucket/targets", "s3://bucket/recons", "--storage-option", s3.option,
        "--json", str(tmp_path / "s3.json"), *gates,
    )  # fmt: skip
    on_cluster = command(
        "compare", "s3://bucket/targets", "s3://bucket/recons", "--storage-option", s3.option,
        "--scheduler", cluster.address, "--json", str(tmp_path / "cluster.json"), *gates,
    )  # fmt: skip
    assert local.returncode == on_s3.returncode == on_cluster.returncode == 2, on_cluster.stderr
    from_cluster = json.loads((tmp_path / "cluster.json").read_text())
    assert from_cluster == json.loads((tmp_path / "s3.json").read_text())  # settings included
    assert on_cluster.stdout == on_s3.stdout and on_cluster.stderr == on_s3.stderr
    from_disk = json.loads((tmp_path / "local.json").read_text())
    for image in from_cluster["images"]:
        for key in ("target", "recon", "error", "culprit"):
            if image.get(key):
                image[key] = image[key].replace("s3://bucket", str(image_set))
    assert from_cluster == from_disk
    assert len(from_disk["images"]) == 61 and from_disk["summary"]["failed"] == 2
    assert from_disk["verdict"] == "fail"
    errors = [line.replace(str(image_set), "s3://bucket") for line in local.stderr.splitlines()]
    assert errors == on_cluster.stderr.splitlines()


def test_local_disk_on_the_cluster_through_the_library(cluster: Cluster, image_set: Path) -> None:
    """A distributed.Client given to compare is used as it is (and left open)."""
    from distributed import Client

    targets, recons = image_set / "targets", image_set / "recons"
    local = bce_eval.compare(targets, recons, max_image_excess=0.01)
    with Client(cluster.address, set_as_default=False) as client:
        remote = bce_eval.compare(targets, recons, max_image_excess=0.01, scheduler=client)
        assert client.status == "running"
    assert remote.to_json() == local.to_json()
    assert remote.exit_code == local.exit_code == 2


def test_workers_with_another_bce_eval_are_refused(
    cluster: Cluster, image_set: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workers' bce-eval is checked before any chunk is sent: one named error."""
    monkeypatch.setattr(cluster_module, "__version__", "99.0")
    message = f"--scheduler {cluster.address}: workers run bce-eval {bce_eval.__version__}, this is 99.0"
    with pytest.raises(BackendError, match=re.escape(message)):
        bce_eval.compare(image_set / "targets", image_set / "recons", scheduler=cluster.address)


def test_a_local_cluster_gives_the_local_json(image_set: Path, tmp_path: Path) -> None:
    need("distributed")
    args = ["compare", str(image_set / "targets"), str(image_set / "recons"), "--top", "0"]
    local = command(*args, "--json", str(tmp_path / "local.json"))
    dask = command(*args, "--json", str(tmp_path / "dask.json"), "--scheduler", "local", "--workers", "2")
    assert dask.returncode == local.returncode == 2
    assert (dask.stdout, dask.stderr) == (local.stdout, local.stderr)
    assert json.loads((tmp_path / "dask.json").read_text()) == json.loads(
        (tmp_path / "local.json").read_text()
    )


def test_a_killed_worker_costs_only_its_chunks(tmp_path: Path) -> None:
    """SIGKILL to one of two workers while it holds chunks: the scheduler reruns them on the
    other, and every result is there, in order, identical to the local run's."""
    need("distributed")
    from distributed import Client

    make_pairs(tmp_path / "t", tmp_path / "r", 300, np.random.default_rng(5), size=48)
    pairs = images.pair_folders(tmp_path / "t", tmp_path / "r").pairs
    settings = Settings.of()
    local = list(engine.evaluate(pairs, settings, workers=1))
    with (
        dask_cluster(2, tmp_path / "logs") as running,
        Client(running.address, set_as_default=False) as client,
    ):
        results = evaluate_on_cluster(pairs, settings, scheduler=client, chunk_size=2)
        names = {
            a: int(str(w["name"]).removeprefix("worker"))
            for a, w in client.scheduler_info()["workers"].items()
        }
        collected: list[ImageResult] = []
        victim = None
        while victim is None and len(collected) < 100:  # each result taken sends another chunk
            collected.append(next(results))
            busy = [address for address, keys in client.processing().items() if keys]
            victim = next((names[address] for address in busy), None)
        assert victim is not None, "no worker was ever seen holding a chunk"
        running.workers[victim].send_signal(signal.SIGKILL)
        running.workers[victim].wait(10)
        collected += list(results)
        assert len(client.scheduler_info()["workers"]) == 1  # the other one did the rest
    assert len(collected) == len(pairs)
    assert collected == local  # names, paths, shapes, and every sum to the last bit


def test_cluster_options_are_checked_first(tmp_path: Path) -> None:
    folders = (tmp_path / "t", tmp_path / "r")
    make_pairs(*folders, 2, np.random.default_rng(1))
    with pytest.raises(OptionError, match="--scheduler: expected local or a scheduler's address"):
        bce_eval.compare(*folders, scheduler="not an address")
    with pytest.raises(OptionError, match="--scheduler: runs the NumPy backend"):
        bce_eval.compare(*folders, scheduler="local", backend="torch")
    with pytest.raises(OptionError, match="--workers: sets the processes"):
        bce_eval.compare(*folders, scheduler="tcp://127.0.0.1:8786", workers=3)


def test_without_dask_a_scheduler_is_a_named_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folders = (tmp_path / "t", tmp_path / "r")
    make_pairs(*folders, 2, np.random.default_rng(1))
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    with pytest.raises(BackendError, match=r"--scheduler needs Dask: pip install 'bce-eval\[dask\]'"):
        bce_eval.compare(*folders, scheduler="local")


def test_an_unreachable_scheduler_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need("distributed")

    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT", 1)
    folders = (tmp_path / "t", tmp_path / "r")
    make_pairs(*folders, 2, np.random.default_rng(1))
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(BackendError, match=f"--scheduler {address}: cannot connect"):
        bce_eval.compare(*folders, scheduler=address)


def test_a_chunk_that_kills_its_workers_fails_its_pairs_only() -> None:
    """After the scheduler's allowed failures, KilledWorker: each pair of that chunk is an
    error naming its file, and the run goes on."""
    need("distributed")
    from distributed import KilledWorker

    class Lost:
        def result(self) -> None:
            raise KilledWorker("evaluate-chunk", "tcp://127.0.0.1:1", allowed_failures=3)

    chunk = [images.Pair("a", "s3://b/t/a.png", "s3://b/r/a.png"), images.Pair("b", "t/b.png", "r/b.png")]
    results = cluster_module._Task(Lost(), chunk).result()
    assert [r.name for r in results] == ["a", "b"] and not any(r.ok for r in results)
    assert (results[0].error or "").startswith("s3://b/t/a.png: the Dask workers that evaluated it died")
