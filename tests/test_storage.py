"""Object storage: fsspec URLs for folders, pair lists, baselines and reports, read in batches
and decoded from memory by the same decoders as files; local runs never import fsspec.

memory:// needs only fsspec; the S3 tests run against a real S3 endpoint on 127.0.0.1 (moto's
server mode). Both skip, with the reason, without the [dask] extra."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bce_eval
from bce_eval import images
from bce_eval.errors import InputError, OptionError, ReportError
from bce_eval.storage import Storage, is_url, parse_options

from .cloud import AWS_ENV, S3, make_pairs, need, s3_server, upload
from .conftest import write_image

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_images"


def bce_eval_command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bce_eval", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "120", "NO_COLOR": "1", **(env or {})},
    )


def same_but_paths(local: dict[str, Any], remote: dict[str, Any], prefixes: dict[str, str]) -> None:
    """The two JSON reports are equal once remote paths are written as the local ones."""
    for image in remote["images"]:
        for key in ("target", "recon", "culprit"):
            for url, path in prefixes.items():
                if image.get(key) and image[key].startswith(url):
                    image[key] = path + image[key][len(url) :]
    assert remote == local


# ------------------------------------------------------------------------------------------------
# What needs nothing installed.


def test_urls_and_local_paths_are_told_apart() -> None:
    assert is_url("s3://bucket/x") and is_url("memory://x") and is_url("https://host/x")
    assert not is_url("x/y") and not is_url("/abs/path") and not is_url("C://data") and not is_url(Path("x"))


def test_storage_options_are_parsed_into_their_types() -> None:
    options = parse_options(
        ["anon=TRUE", "retries=3", "timeout=2.5", "token=none", "name=abc", 'secret="12"']
    )
    assert options == {
        "anon": True,
        "retries": 3,
        "timeout": 2.5,
        "token": None,
        "name": "abc",
        "secret": "12",
    }
    assert parse_options(["x=nan"]) == {"x": "nan"}  # not a number a store wants
    for bad in (["novalue"], ["=3"], ["a..b=1"], ["a=1", "a.b=2"], ["a.b=1", "a=2"]):
        with pytest.raises(OptionError, match="--storage-option"):
            parse_options(bad)


def _fsspec_modules(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    return json.loads(out.splitlines()[-1])


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="no sample_images")
def test_a_local_run_never_imports_fsspec_or_dask() -> None:
    """The library on local folders, in a fresh interpreter: no fsspec, s3fs or dask in
    sys.modules afterwards (start-up and the local fast path are unchanged)."""
    code = (
        "import json, sys, tempfile, bce_eval\n"
        "r = bce_eval.compare('sample_images/targets', 'sample_images/recons', workers=2)\n"
        "r.write(json=tempfile.mkdtemp() + '/r.json', csv='-')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('fsspec', 's3fs', 'dask', 'distributed', 'aiobotocore', 'botocore'))))"
    )
    assert _fsspec_modules(code) == []


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="no sample_images")
def test_the_command_on_local_folders_imports_no_fsspec() -> None:
    """python -X importtime lists every module the command imports."""
    run = bce_eval_command(
        "compare", "sample_images/targets", "sample_images/recons", "--top", "0",
        env={"PYTHONPROFILEIMPORTTIME": "1"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if "import time:" in line]
    assert "bce_eval.engine" in imported
    assert not [m for m in imported if m.split(".")[0] in ("fsspec", "s3fs", "dask", "distributed")]


# ------------------------------------------------------------------------------------------------
# Decoding from bytes: the same decoders as from a path.


def _kinds(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "rgb8.png": rng.integers(0, 256, (9, 7, 3), dtype=np.uint8),
        "rgba8.png": rng.integers(0, 256, (9, 7, 4), dtype=np.uint8),
        "grey16.png": rng.integers(0, 65536, (9, 7, 1), dtype=np.uint16),
        "greyalpha16.png": rng.integers(0, 65536, (9, 7, 2), dtype=np.uint16),
        "rgb16.tif": rng.integers(0, 65536, (9, 7, 3), dtype=np.uint16),
        "float32.tif": rng.random((9, 7)).astype(np.float32),
        "grey8.tif": rng.integers(0, 256, (9, 7), dtype=np.uint8),
        "float64.npy": rng.random((9, 7, 3)),
        "fortran.npy": np.asfortranarray(rng.random((9, 7))),
        "uint16.npy": rng.integers(0, 65536, (9, 7), dtype=np.uint16),
        "rgb.jpg": rng.integers(0, 256, (9, 7, 3), dtype=np.uint8),
        "rgb.bmp": rng.integers(0, 256, (9, 7, 3), dtype=np.uint8),
        "rgb.webp": rng.integers(0, 256, (9, 7, 3), dtype=np.uint8),
    }


def test_decoding_bytes_gives_what_decoding_the_file_gives(tmp_path: Path, rng: np.random.Generator) -> None:
    for name, pixels in _kinds(rng).items():
        path = write_image(tmp_path / name, pixels)
        from_file = images.decode(path)
        from_bytes = images.decode(f"memory://x/{name}", data=path.read_bytes())
        assert from_bytes.has_alpha == from_file.has_alpha, name
        assert from_bytes.pixels.dtype == from_file.pixels.dtype, name
        np.testing.assert_array_equal(from_bytes.pixels, from_file.pixels, err_msg=name)


def test_palette_png_from_bytes(tmp_path: Path) -> None:
    from PIL import Image

    image = Image.new("P", (5, 4))
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((1, 1), 1)
    image.save(tmp_path / "p.png")
    data = (tmp_path / "p.png").read_bytes()
    np.testing.assert_array_equal(
        images.decode("x.png", data=data).pixels, images.decode(tmp_path / "p.png").pixels
    )


def test_broken_bytes_are_named_errors(tmp_path: Path, rng: np.random.Generator) -> None:
    good = write_image(tmp_path / "a.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).read_bytes()
    with pytest.raises(InputError, match=r"^s3://b/a\.png: cannot decode: damaged PNG"):
        images.decode("s3://b/a.png", data=good[:-20])
    with pytest.raises(InputError, match="not a PNG file"):
        images.decode("s3://b/x.png", data=b"hello")
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((4, 4)))
    npy = buffer.getvalue()
    with pytest.raises(InputError, match="claims more data than the file holds"):
        images.decode("s3://b/x.npy", data=npy[:-8])
    forged = npy.replace(b"(4, 4)", b"(99999999, 99999)")
    with pytest.raises(InputError, match="claims more data than the file holds"):
        images.decode("s3://b/x.npy", data=forged)
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="Python objects, which are never loaded"):
        images.decode("s3://b/o.npy", data=buffer.getvalue())


def _outcome(decode: Any) -> tuple[str, Any]:
    try:
        decoded = decode()
    except InputError as e:
        return "error", e.problem
    return "ok", (decoded.pixels.dtype.str, decoded.pixels.shape, decoded.pixels.tobytes(), decoded.has_alpha)


def test_bytes_go_through_the_checks_files_go_through(tmp_path: Path) -> None:
    """Every case of the fuzz corpus (mutants of every format, bombs) decoded from its bytes gives
    what decoding its file gives: the same pixels, or a refusal (integrity, budget), in the same
    words but for a .npy file whose header claims more data than it holds (numpy's mmap says so
    in its own words)."""
    from . import fuzz_corpus

    outcomes = {"ok": 0, "error": 0}
    for case in fuzz_corpus.cases(3, 0, 400):
        path = tmp_path / f"c{case.index}{os.path.splitext(case.name)[1]}"
        path.write_bytes(case.target)
        for budget in (None, 4_000):
            from_file = _outcome(lambda: images.decode(path, max_image_bytes=budget))  # noqa: B023
            from_bytes = _outcome(
                lambda: images.decode(path.name, max_image_bytes=budget, data=case.target)  # noqa: B023
            )
            if from_file[0] == from_bytes[0] == "error" and from_file[1].startswith("cannot read .npy"):
                outcomes["error"] += 1
                continue
            assert from_bytes == from_file, (case.origin, budget)
            outcomes[from_file[0]] += 1
    assert outcomes["ok"] > 50 and outcomes["error"] > 50, outcomes  # both sides were exercised


def test_a_byte_budget_refuses_bytes_as_it_refuses_files(tmp_path: Path, rng: np.random.Generator) -> None:
    for name in ("a.png", "a.tif", "a.npy", "a.jpg"):
        pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        data = write_image(tmp_path / name, pixels).read_bytes()
        with pytest.raises(InputError, match=r"allowed per pair|--max-image-bytes") as e:
            images.decode(f"s3://b/{name}", max_image_bytes=2_000, data=data)
        assert str(e.value).startswith(f"s3://b/{name}: "), name
        decoded = images.decode(f"s3://b/{name}", max_image_bytes=10_000_000, data=data)
        assert decoded.pixels.shape[:2] == (40, 40)


def test_a_pair_list_may_not_lead_outside_its_prefix(memory: Any) -> None:
    memory.pipe_file(
        "/lists/out.csv",
        b"target,recon\na.png,a.png\n../secret/a.png,a.png\nmemory://elsewhere/a.png,a.png\n",
    )
    pairing = Storage().pairing("memory://t", "memory://r", pairs="memory://lists/out.csv")
    problems = [pair.problem for pair in pairing.pairs]
    assert problems[0] is None
    assert all(p is not None and "leads outside memory://t" in p for p in problems[1:]), problems
    listing = "memory://lists/out.csv"
    allowed = Storage().pairing("memory://t", "memory://r", pairs=listing, allow_outside=True)
    assert [pair.problem for pair in allowed.pairs] == [None, None, None]


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="no sample_images")
def test_maps_and_the_html_page_read_objects_again(memory: Any, tmp_path: Path) -> None:
    _to_memory(memory, SAMPLES / "targets", "/set/targets")
    _to_memory(memory, SAMPLES / "recons", "/set/recons")
    maps = tmp_path / "maps"
    report = bce_eval.compare("memory://set/targets", "memory://set/recons", workers=1, maps=maps)
    evaluated = [r.name for r in report.images if r.ok]
    assert evaluated
    assert all((maps / f"{name}.excess.png").is_file() for name in evaluated)
    assert not any("no maps" in note for note in report.notes), report.notes
    page = report.to_html(top=5)
    assert "no pictures" not in page and page.count("data:image/png") > 2 * len(evaluated)


# ------------------------------------------------------------------------------------------------
# memory://: fsspec alone.


@pytest.fixture
def memory() -> Iterator[Any]:
    need("fsspec")
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")
    yield fs
    fs.store.clear()


def _to_memory(fs: Any, local: Path, remote: str) -> None:
    for path in sorted(local.rglob("*")):
        if path.is_file():
            fs.pipe_file(f"{remote}/{path.relative_to(local).as_posix()}", path.read_bytes())


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="no sample_images")
@pytest.mark.parametrize("workers", [1, 2])
def test_memory_urls_give_the_local_figures(memory: Any, workers: int) -> None:
    """Worker processes (forked) fetch their chunks themselves; the report is the local one."""
    _to_memory(memory, SAMPLES / "targets", "/set/targets")
    _to_memory(memory, SAMPLES / "recons", "/set/recons")
    local = bce_eval.compare(SAMPLES / "targets", SAMPLES / "recons", workers=workers).to_json()
    remote = bce_eval.compare("memory://set/targets", "memory://set/recons", workers=workers).to_json()
    same_but_paths(
        local,
        remote,
        {"memory://set/targets": str(SAMPLES / "targets"), "memory://set/recons": str(SAMPLES / "recons")},
    )


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="no sample_images")
def test_memory_urls_on_the_torch_backend(memory: Any) -> None:
    """Decoding threads fetch their pairs too; the figures are the torch backend's on files."""
    pytest.importorskip("torch")
    _to_memory(memory, SAMPLES / "targets", "/set/targets")
    _to_memory(memory, SAMPLES / "recons", "/set/recons")
    local = bce_eval.compare(SAMPLES / "targets", SAMPLES / "recons", backend="torch", workers=2)
    remote = bce_eval.compare("memory://set/targets", "memory://set/recons", backend="torch", workers=2)
    assert [r.sums for r in remote.images] == [r.sums for r in local.images]
    assert remote.images[0].target == "memory://set/targets/astronaut.png"


def test_listing_pairs_as_folders_do(memory: Any, rng: np.random.Generator, tmp_path: Path) -> None:
    """Missing partners, ambiguous names, hidden and ignored files, --recon-suffix: the
    pairing of a folder, and the errors are per pair."""
    pixels = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    png = write_image(tmp_path / "a.png", pixels).read_bytes()
    for path in (
        "t/a.png",
        "t/sub/b.png",
        "t/only.png",
        "t/c.png",
        "t/c.jpg",
        "t/.hidden.png",
        "t/.git/x.png",
    ):
        memory.pipe_file(f"/{path}", png)
    memory.pipe_file("/t/notes.txt", b"x")
    for path in ("r/a_recon.png", "r/sub/b_recon.png", "r/c_recon.png", "r/extra_recon.png"):
        memory.pipe_file(f"/{path}", png)
    report = bce_eval.compare("memory://t", "memory://r", recon_suffix="_recon", workers=1)
    by_name = {r.name: r for r in report.images}
    assert sorted(by_name) == ["a", "c", "extra", "only", "sub/b"]
    assert by_name["a"].ok and by_name["sub/b"].ok and by_name["a"].target == "memory://t/a.png"
    assert by_name["only"].error == "memory://t/only.png: no reconstruction in memory://r"
    assert by_name["extra"].error == "memory://r/extra_recon.png: no target in memory://t"
    assert "ambiguous: c.jpg and c.png" in (by_name["c"].error or "")
    assert report.notes[0] == "note: memory://t/notes.txt: not an image file bce-eval reads; ignored"
    assert report.exit_code == 2


def test_a_pair_list_in_storage_and_missing_objects(
    memory: Any, rng: np.random.Generator, tmp_path: Path
) -> None:
    png = write_image(tmp_path / "a.png", rng.integers(0, 256, (6, 6), dtype=np.uint8)).read_bytes()
    memory.pipe_file("/t/a.png", png)
    memory.pipe_file("/r/a.png", png)
    memory.pipe_file("/t/bad.png", b"\x89PNG but not really")
    memory.pipe_file("/r/bad.png", png)
    memory.pipe_file("/lists/pairs.csv", b"target,recon\na.png,a.png\ngone.png,a.png\nbad.png,bad.png\n")
    report = bce_eval.compare("memory://t", "memory://r", pairs="memory://lists/pairs.csv", workers=1)
    errors = [r.error for r in report.images]
    assert errors == [
        None,
        "memory://t/gone.png: no such file",
        "memory://t/bad.png: not a PNG file (bad signature)",
    ]
    assert report.images[0].ok and report.exit_code == 2


def test_reports_and_baselines_in_storage(memory: Any, tmp_path: Path) -> None:
    if not SAMPLES.is_dir():
        pytest.skip("no sample_images")
    report = bce_eval.compare(SAMPLES / "targets", SAMPLES / "recons", shard="1/2")
    other = bce_eval.compare(SAMPLES / "targets", SAMPLES / "recons", shard="2/2")
    report.write(json="memory://out/1.json", csv="memory://out/1.csv", junit=tmp_path / "1.xml")
    other.write_json("memory://out/2.json")
    assert json.loads(memory.cat_file("/out/1.json")) == json.loads(json.dumps(report.to_json()))
    assert memory.cat_file("/out/1.csv").startswith(b"name,target,recon")
    assert (tmp_path / "1.xml").is_file()
    merged = bce_eval.merge(["memory://out/1.json", "memory://out/2.json"])
    whole = bce_eval.compare(SAMPLES / "targets", SAMPLES / "recons", baseline="memory://out/1.csv")
    assert merged.totals == whole.totals
    assert bce_eval.read_report("memory://out/1.json").totals == report.totals
    with pytest.raises(ReportError, match=r"memory://out/none\.json: cannot read: no such file"):
        bce_eval.read_report("memory://out/none.json")


def test_a_report_is_put_only_once_complete(memory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that fails half-way leaves no object, and nothing else is written."""
    if not SAMPLES.is_dir():
        pytest.skip("no sample_images")
    from bce_eval.reports import files

    report = bce_eval.compare(SAMPLES / "targets", SAMPLES / "recons")

    def half(document: Any, out: Any) -> None:
        out.write("{")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "write_json", half)
    with pytest.raises(OSError, match="No space"):
        report.write(json="memory://out/r.json", csv="memory://out/r.csv")
    assert not memory.exists("/out/r.json") and not memory.exists("/out/r.csv")


def test_storage_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    need("fsspec")
    run = bce_eval_command("compare", "nosuch://x/t", "nosuch://x/r")
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0, run.stderr
    assert run.stderr.startswith("error: nosuch://x/t: Protocol not known: nosuch")
    run = bce_eval_command("compare", "memory://none/t", "memory://none/r")
    assert (run.returncode, run.stderr) == (
        2,
        "error: memory://none/t: is not a folder (nothing is stored under it)\n",
    )
    run = bce_eval_command("compare", "memory://t", "memory://r", "--storage-option", "oops")
    assert (run.returncode, run.stderr) == (2, "error: --storage-option: expected KEY=VALUE, not 'oops'\n")


def test_fetch_reads_a_chunk_concurrently_and_names_failures(memory: Any) -> None:
    memory.pipe_file("/a/1.png", b"one")
    memory.pipe_file("/a/2.png", b"two")
    fetched = Storage().fetch(
        ["memory://a/1.png", "memory://a/2.png", "memory://a/3.png", "memory://a/1.png"]
    )
    assert fetched["memory://a/1.png"] == b"one" and fetched["memory://a/2.png"] == b"two"
    assert str(fetched["memory://a/3.png"]) == "memory://a/3.png: no such file"
    assert len(fetched) == 3


# ------------------------------------------------------------------------------------------------
# A real S3 endpoint (moto's server mode on 127.0.0.1).


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    with s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def s3_set(s3: S3, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 pairs of small images on disk and the same in s3://bucket/set/{targets,recons}."""
    root = tmp_path_factory.mktemp("s3set")
    make_pairs(root / "targets", root / "recons", 40, np.random.default_rng(7))
    upload(s3.fs, root / "targets", "bucket/set/targets")
    upload(s3.fs, root / "recons", "bucket/set/recons")
    return root


def test_s3_from_the_command_gives_the_local_json(s3: S3, s3_set: Path, tmp_path: Path) -> None:
    local = bce_eval_command(
        "compare", str(s3_set / "targets"), str(s3_set / "recons"), "--json", str(tmp_path / "local.json")
    )
    remote = bce_eval_command(
        "compare", "s3://bucket/set/targets", "s3://bucket/set/recons", "--storage-option", s3.option,
        "--json", "s3://bucket/out/remote.json", "--csv", str(tmp_path / "remote.csv"), env=AWS_ENV,
    )  # fmt: skip
    assert local.returncode == remote.returncode == 0, remote.stderr
    assert remote.stderr == ""
    same_but_paths(
        json.loads((tmp_path / "local.json").read_text()),
        json.loads(s3.fs.cat_file("bucket/out/remote.json")),  # type: ignore[attr-defined]
        {
            "s3://bucket/set/targets": str(s3_set / "targets"),
            "s3://bucket/set/recons": str(s3_set / "recons"),
        },
    )


def test_s3_reads_one_get_per_object(s3: S3, s3_set: Path) -> None:
    """A chunk's objects are fetched by one GET each (no HEAD first), all at once."""
    storage = Storage({"endpoint_url": s3.endpoint})
    urls = [f"s3://bucket/set/targets/sub0/img{i:04d}.png" for i in range(0, 30, 3)]
    fs, _ = storage.filesystem(urls[0])
    calls: list[str] = []
    original = fs._call_s3

    async def counted(method: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(method)
        return await original(method, *args, **kwargs)

    fs._call_s3 = counted
    try:
        fetched = storage.fetch(urls)
    finally:
        del fs._call_s3
    assert all(isinstance(v, bytes) for v in fetched.values())
    assert calls == ["get_object"] * len(urls)


def test_s3_errors_are_per_pair_or_one_line(s3: S3, s3_set: Path) -> None:
    run = bce_eval_command(
        "compare", "s3://nobucket/t", "s3://nobucket/r", "--storage-option", s3.option, env=AWS_ENV
    )
    assert (
        run.returncode == 2
        and run.stderr.count("\n") == 1
        and run.stderr.startswith("error: s3://nobucket/t")
    ), run.stderr
    s3.fs.pipe_file(
        "bucket/lists/pairs.csv", b"target,recon\nsub0/img0000.png,sub0/img0000.png\nnone.png,none.png\n"
    )  # type: ignore[attr-defined]
    run = bce_eval_command(
        "compare", "s3://bucket/set/targets", "s3://bucket/set/recons", "--pairs", "s3://bucket/lists/pairs.csv",
        "--storage-option", s3.option, "--top", "0", env=AWS_ENV,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        "error: s3://bucket/set/targets/none.png: no such file",
        "1 of 2 pairs could not be evaluated",
    ]


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="no sample_images")
def test_https_folders_with_an_index_page_read_as_folders() -> None:
    """An HTTP server's directory listing (Python's http.server) is listed by its links, read
    by fsspec's HTTP file system; a report cannot be put there, which is one named error."""
    need("fsspec", "aiohttp")
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(SAMPLES))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        remote = bce_eval.compare(f"{base}/targets", f"{base}/recons", workers=2)
        local = bce_eval.compare(SAMPLES / "targets", SAMPLES / "recons")
        same_but_paths(local.to_json(), remote.to_json(), {base: str(SAMPLES)})
        with pytest.raises(ReportError, match=f"^{base}/out.json: cannot write: "):
            remote.write_json(f"{base}/out.json")
    finally:
        server.shutdown()
        server.server_close()
