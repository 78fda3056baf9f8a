"""Batch files: .npy and .npz stacks paired item by item, read in chunks, with flat memory."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bce_eval import metrics
from bce_eval.cli import app

from .conftest import write_image

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def noisy(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    target = rng.integers(0, 256, shape, dtype=np.uint8)
    recon = np.clip(target.astype(np.int64) + rng.integers(-20, 21, shape), 0, 255).astype(np.uint8)
    return target, recon


def report(path: Path) -> dict:
    return json.loads(path.read_text())


def test_npy_stacks_give_each_item_the_figures_of_its_own_png(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    target, recon = noisy(rng, (6, 9, 7, 3))
    np.save(tmp_path / "t.npy", target)
    np.save(tmp_path / "r.npy", recon)
    files = tmp_path / "files"
    for i in range(6):
        write_image(files / "t" / f"t[{i}].png", target[i])
        write_image(files / "r" / f"t[{i}].png", recon[i])
    result = invoke("compare", tmp_path / "t.npy", tmp_path / "r.npy", "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    assert "batch layout: nhwc (items x height x width x channels), the default (--layout)" in result.stdout
    assert invoke("compare", files / "t", files / "r", "--json", tmp_path / "f.json").exit_code == 0
    stacked, single = report(tmp_path / "s.json"), report(tmp_path / "f.json")
    assert [i["name"] for i in stacked["images"]] == [f"t[{i}]" for i in range(6)]
    assert stacked["images"][2]["target"] == f"{tmp_path / 't.npy'}[2]"
    for a, b in zip(stacked["images"], single["images"], strict=True):
        assert a["sums_nats"] == b["sums_nats"] and a["clipped"] == b["clipped"]
    assert stacked["settings"]["layouts"] == ["nhwc", "nhwc"]


def test_layouts_are_given_never_guessed(tmp_path: Path, rng: np.random.Generator) -> None:
    target, recon = noisy(rng, (4, 5, 6, 2))
    np.save(tmp_path / "t.npy", target)
    np.save(tmp_path / "r.npy", recon)
    np.save(tmp_path / "tc.npy", np.ascontiguousarray(target.transpose(0, 3, 1, 2)))
    np.save(tmp_path / "rc.npy", np.ascontiguousarray(recon.transpose(0, 3, 1, 2)))
    invoke("compare", tmp_path / "t.npy", tmp_path / "r.npy", "--json", tmp_path / "hwc.json")
    expected = [i["sums_nats"] for i in report(tmp_path / "hwc.json")["images"]]
    for args in (("tc.npy", "rc.npy", "--layout", "nchw"), ("t.npy", "rc.npy", "--layout", "nhwc,nchw")):
        result = invoke(
            "compare", tmp_path / args[0], tmp_path / args[1], *args[2:], "--json", tmp_path / "o.json"
        )
        assert result.exit_code == 0, result.output
        assert [i["sums_nats"] for i in report(tmp_path / "o.json")["images"]] == expected
    result = invoke("compare", tmp_path / "t.npy", tmp_path / "rc.npy")  # channels first read as nhwc
    assert result.exit_code == 2
    assert "hint: 4 reconstructions have their target's shape with the channels first" in result.stdout
    assert result.stdout.rstrip().endswith("give --layout nhwc,nchw")
    grey = rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "g.npy", grey)
    result = invoke("compare", tmp_path / "g.npy", tmp_path / "g.npy", "--json", tmp_path / "g.json")
    assert result.exit_code == 0 and "nhw (items x height x width), the default" in result.stdout
    assert report(tmp_path / "g.json")["images"][0]["channels"] == 1
    assert invoke("compare", tmp_path / "g.npy", tmp_path / "g.npy", "--layout", "nhwc").exit_code == 2


def test_npz_members_pair_by_key_stored_or_compressed(tmp_path: Path, rng: np.random.Generator) -> None:
    a_t, a_r = noisy(rng, (3, 4, 4, 1))
    b_t, b_r = noisy(rng, (2, 5, 5, 3))
    np.savez(tmp_path / "t.npz", a=a_t, b=b_t, only_t=a_t)
    np.savez_compressed(tmp_path / "r.npz", b=b_r, a=a_r)
    with zipfile.ZipFile(tmp_path / "r.npz") as z:
        assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in z.infolist())
    result = invoke("compare", tmp_path / "t.npz", tmp_path / "r.npz", "--json", tmp_path / "o.json")
    assert result.exit_code == 2  # the member only the targets have
    images = {i["name"]: i for i in report(tmp_path / "o.json")["images"]}
    assert set(images) == {"t/a[0]", "t/a[1]", "t/a[2]", "t/b[0]", "t/b[1]", "t/only_t"}
    assert "no member 'only_t'" in images["t/only_t"]["error"]
    for key, t, r in (("a", a_t, a_r), ("b", b_t, b_r)):
        for i in range(len(t)):
            s = metrics.byte_sums(t[i], r[i])
            assert images[f"t/{key}[{i}]"]["sums_nats"] == {
                "bce": s.bce,
                "entropy": s.entropy,
                "excess": s.excess,
            }


def test_batches_in_folders_and_a_batch_of_one_beside_an_image(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    target, recon = noisy(rng, (3, 6, 6, 1))
    t, r = tmp_path / "t", tmp_path / "r"
    np.save(write_dir(t) / "epoch1.npy", target)
    np.save(write_dir(r) / "epoch1.npy", recon)
    write_image(t / "single.png", target[0, :, :, 0])
    np.save(r / "single.npy", np.ascontiguousarray(recon[:1].transpose(0, 3, 1, 2)))  # (1, 1, 6, 6)
    result = invoke("compare", t, r, "--layout", "nhwc,nchw", "--json", tmp_path / "o.json")
    assert result.exit_code == 2, result.output  # the recon epoch is NHWC, read as NCHW
    np.save(r / "epoch1.npy", np.ascontiguousarray(recon.transpose(0, 3, 1, 2)))
    result = invoke("compare", t, r, "--layout", "nhwc,nchw", "--json", tmp_path / "o.json")
    assert result.exit_code == 0, result.output
    names = [i["name"] for i in report(tmp_path / "o.json")["images"]]
    assert names == ["epoch1[0]", "epoch1[1]", "epoch1[2]", "single"]


def write_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_a_batch_file_facing_a_folder_pairs_only_by_order(tmp_path: Path, rng: np.random.Generator) -> None:
    target, recon = noisy(rng, (3, 4, 4, 3))
    for i in range(3):
        write_image(tmp_path / "t" / f"{i}.png", target[i])
    np.save(tmp_path / "r.npy", recon)
    result = invoke("compare", tmp_path / "t", tmp_path / "r.npy")
    assert result.exit_code == 2 and "is a batch file" in result.stderr and "--pairs order" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = invoke(
        "compare", tmp_path / "t", tmp_path / "r.npy", "--pairs", "order", "--json", tmp_path / "o.json"
    )
    assert result.exit_code == 0, result.output
    images = report(tmp_path / "o.json")["images"]
    assert [i["name"] for i in images] == ["0", "1", "2"]
    s = metrics.byte_sums(target[1], recon[1])
    assert images[1]["sums_nats"] == {"bce": s.bce, "entropy": s.entropy, "excess": s.excess}
    np.save(tmp_path / "short.npy", recon[:2])
    result = invoke("compare", tmp_path / "t", tmp_path / "short.npy", "--pairs", "order")
    assert (
        result.exit_code == 2
        and "no reconstruction: the reconstructions hold 2 items, the targets 3" in result.stderr
    )


def test_items_keep_the_dtype_rules_and_bad_files_are_refused(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    np.save(tmp_path / "t.npy", rng.integers(0, 256, (3, 4, 4, 1), dtype=np.uint8))
    np.save(tmp_path / "i16.npy", rng.integers(0, 100, (3, 4, 4, 1), dtype=np.int16))
    result = invoke("compare", tmp_path / "t.npy", tmp_path / "i16.npy")
    assert result.exit_code == 2 and result.stderr.count("unsupported sample type int16") == 3
    np.save(tmp_path / "f.npy", np.asfortranarray(rng.random((3, 4, 4, 1))))
    result = invoke("compare", tmp_path / "t.npy", tmp_path / "f.npy")
    assert result.exit_code == 2 and "Fortran order" in result.stderr
    data = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-10])
    result = invoke("compare", tmp_path / "t.npy", tmp_path / "cut.npy")
    assert result.exit_code == 2 and "holds less data" in result.stderr
    np.save(tmp_path / "u16.npy", (rng.integers(0, 65536, (3, 4, 4, 1))).astype(np.uint16))
    np.save(tmp_path / "above.npy", rng.random((3, 4, 4, 1)) + 1)
    assert invoke("compare", tmp_path / "t.npy", tmp_path / "u16.npy").exit_code == 0
    result = invoke("compare", tmp_path / "t.npy", tmp_path / "above.npy")
    assert result.exit_code == 2 and "is not in [0, 1]" in result.stderr


def test_logit_stacks_and_shards_of_items_merge_into_the_single_run(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    target = rng.random((40, 3, 3, 1))
    np.save(tmp_path / "t.npy", target)
    np.save(tmp_path / "x.npy", rng.normal(0, 3, target.shape))
    args = ("compare", tmp_path / "t.npy", tmp_path / "x.npy", "--logits", "--per-channel")
    assert invoke(*args, "--json", tmp_path / "all.json").exit_code == 0
    for i in (1, 2, 3):
        assert invoke(*args, "--shard", f"{i}/3", "--json", tmp_path / f"{i}.json").exit_code == 0
    assert (
        invoke("merge", *(tmp_path / f"{i}.json" for i in (1, 2, 3)), "--json", tmp_path / "m.json").exit_code
        == 0
    )
    single, merged = report(tmp_path / "all.json"), report(tmp_path / "m.json")
    assert single["summary"] == merged["summary"] and single["channels"] == merged["channels"]
    assert len({report(tmp_path / f"{i}.json")["summary"]["pairs"] for i in (1, 2, 3)}) > 1


# A stack larger than the address space its process may take: read in chunks, it is evaluated
# all the same, with a peak resident set a fraction of its size.
LIMIT_MIB = 320
ITEM = (256, 256, 3)


def test_a_stack_larger_than_the_memory_limit_is_evaluated_with_flat_memory(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    items = (LIMIT_MIB << 20) // int(np.prod(ITEM)) + 200  # each side larger than the limit
    scored = {0: None, items // 2: None, items - 1: None}  # random items; the rest are zeros
    for name in ("t", "r"):
        stack = np.lib.format.open_memmap(tmp_path / f"{name}.npy", "w+", np.uint8, (items, *ITEM))
        del stack  # a sparse file: zeros but where written
    t = np.lib.format.open_memmap(tmp_path / "t.npy", "r+")
    r = np.lib.format.open_memmap(tmp_path / "r.npy", "r+")
    for i in scored:
        t[i], r[i] = noisy(rng, ITEM)
        scored[i] = metrics.byte_sums(np.array(t[i]), np.array(r[i]))
    t.flush()
    r.flush()
    del t, r
    assert (tmp_path / "t.npy").stat().st_size > LIMIT_MIB << 20
    runner_code = (
        "import resource, subprocess, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({LIMIT_MIB << 20}, {LIMIT_MIB << 20}))\n"
        "code = subprocess.run(sys.argv[1:]).returncode\n"
        "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    command = [sys.executable, "-c", runner_code, sys.executable, "-m", "bce_eval", "compare"]
    command += [
        str(tmp_path / "t.npy"),
        str(tmp_path / "r.npy"),
        "--top",
        "0",
        "--json",
        str(tmp_path / "o.json"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    code, peak_kib = map(int, done.stdout.split()[-2:])
    assert code == 0, done.stdout + done.stderr
    document = report(tmp_path / "o.json")
    assert document["summary"]["pairs"] == items and document["summary"]["failed"] == 0
    for i, s in scored.items():
        assert document["images"][i]["sums_nats"] == {"bce": s.bce, "entropy": s.entropy, "excess": s.excess}
    assert peak_kib < (LIMIT_MIB << 10) // 2, f"peak RSS {peak_kib} KiB"


def test_the_engine_never_loads_a_batch_as_one_image(tmp_path: Path) -> None:
    from bce_eval.errors import InputError
    from bce_eval.images import decode

    np.save(tmp_path / "b.npy", np.zeros((2, 3, 3, 1), np.uint8))
    with pytest.raises(InputError, match=r"a batch of 2 images, not one image"):
        decode(tmp_path / "b.npy")
    np.save(tmp_path / "g.npy", np.zeros((2, 3, 3), np.uint8))
    assert decode(tmp_path / "g.npy").pixels.shape == (2, 3, 3)
    with pytest.raises(InputError, match=r"a batch of 2 images"):
        decode(tmp_path / "g.npy", layout="nhw")
    assert decode(tmp_path / "g.npy", layout="nchw").pixels.shape == (3, 3, 2)
