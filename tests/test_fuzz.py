"""Fuzzing: thousands of mutants, bombs and hostile names (tests/fuzz_corpus.py) through the engine
in this process, and a smaller set through whole `bce-eval compare` processes.

What must hold for every case: no exception escapes (a traceback), none hangs, every error is one
line, every bomb is refused within a second, and no mutant is scored that strict decoders refuse
(pypng with its CRCs, zlib with the Adler-32, Pillow, libjpeg with warnings as errors). The
number of cases comes from BCE_EVAL_FUZZ_CASES (default 3,000 in process, a tenth of it in
processes); benchmarks/fuzz.py runs 100,000 and more.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from bce_eval.engine import evaluate
from bce_eval.images import Pair
from bce_eval.model import Settings

from . import fuzz_corpus

SEED = 20260615
CASES = int(os.environ.get("BCE_EVAL_FUZZ_CASES", "3000"))
# The budget per pair: the default on a machine with 8 GiB available and 2 workers, so that the
# bombs are refused whatever memory this machine has.
BUDGET = 8 * (1 << 30) // 8
HANG_SECONDS = 20
OWN_LINE = re.compile(
    r"[\d,]+ of [\d,]+ pairs? could not be evaluated|shard \d+/\d+: .*|\.\.\. and [\d,]+ more like this"
)
BOMB_SECONDS = 1.0


class Hang(Exception):
    pass


@dataclass
class Tally:
    """What a campaign found: the figures benchmarks/fuzz.py reports."""

    cases: int = 0
    scored: int = 0
    refused: int = 0
    tracebacks: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    damaged_scored: list[str] = field(default_factory=list)
    multiline_errors: list[str] = field(default_factory=list)
    slow_bombs: list[str] = field(default_factory=list)
    stray_warnings: list[str] = field(default_factory=list)

    def failures(self) -> list[str]:
        return (
            self.tracebacks
            + self.hangs
            + self.damaged_scored
            + self.multiline_errors
            + self.slow_bombs
            + self.stray_warnings
        )


def _on_alarm(signum: int, frame: object) -> None:
    raise Hang


def run_in_process(cases: list[fuzz_corpus.Case], folder: Path, tally: Tally) -> None:
    """Each case as one pair through the engine (one process, so that an exception is seen as
    such and a hang is cut by SIGALRM). Whatever anything writes on file descriptors 1 and 2
    meanwhile (a library's log line, a C library's message) is a stray line for its case."""
    settings = Settings.of(max_image_bytes=BUDGET)
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    spill = open(folder / "spill", "w+b")  # noqa: SIM115  # closed in finally
    saved = [os.dup(1), os.dup(2)]
    try:
        for case in cases:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(spill.fileno(), 1)
            os.dup2(spill.fileno(), 2)
            try:
                _one_case(case, folder, settings, tally)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
            if spill.tell():
                spill.seek(0)
                text = spill.read().decode("utf-8", "backslashreplace").strip()
                tally.stray_warnings.append(f"case {case.index} ({case.origin}) printed: {text[:200]!r}")
                spill.seek(0)
                spill.truncate()
    finally:
        signal.signal(signal.SIGALRM, previous)
        for fd in saved:
            os.close(fd)
        spill.close()


def _one_case(case: fuzz_corpus.Case, folder: Path, settings: Settings, tally: Tally) -> None:
    where = folder / str(case.index)
    (where / "t").mkdir(parents=True)
    (where / "r").mkdir()
    target, recon = where / "t" / case.name, where / "r" / case.name
    target.write_bytes(case.target)
    recon.write_bytes(case.recon)
    label = f"case {case.index} ({case.origin})"
    started = time.perf_counter()
    signal.alarm(HANG_SECONDS)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            (result,) = evaluate([Pair(case.name, str(target), str(recon))], settings, workers=1)
        tally.stray_warnings += [f"{label}: {w.category.__name__}: {w.message}" for w in caught]
    except Hang:
        tally.hangs.append(label)
        return
    except Exception as e:  # what a user would see as a traceback
        tally.tracebacks.append(f"{label}: {type(e).__name__}: {e}")
        return
    finally:
        signal.alarm(0)
    elapsed = time.perf_counter() - started
    tally.cases += 1
    if result.error is None:
        tally.scored += 1
        if not fuzz_corpus.strictly_valid(case.target):
            tally.damaged_scored.append(label)
    else:
        tally.refused += 1
        if "\n" in result.error or "\r" in result.error:
            tally.multiline_errors.append(f"{label}: {result.error!r}")
        if case.origin == "bomb" and elapsed > BOMB_SECONDS:
            tally.slow_bombs.append(f"{label}: {elapsed:.2f} s")


def test_fuzz_in_process(tmp_path: Path) -> None:
    tally = Tally()
    run_in_process(fuzz_corpus.cases(SEED, 0, CASES), tmp_path, tally)
    assert tally.cases == CASES
    assert tally.scored and tally.refused  # the corpus exercises both
    assert not tally.failures(), "\n".join(tally.failures()[:20])


def run_processes(
    cases: list[fuzz_corpus.Case], folder: Path, tally: Tally, *, workers: int = 2
) -> list[int]:
    """The cases as one `bce-eval compare` run over two folders; its exit code, and the tally."""
    targets, recons = folder / "targets", folder / "recons"
    targets.mkdir(parents=True)
    recons.mkdir()
    origin = {}
    for case in cases:
        (targets / case.name).write_bytes(case.target)
        (recons / case.name).write_bytes(case.recon)
        origin[os.path.splitext(case.name)[0]] = case
    for raw in fuzz_corpus.HOSTILE_BYTE_NAMES:  # a name whose bytes are not UTF-8
        seed = cases[1]
        name = os.fsdecode(raw) + os.path.splitext(seed.name)[1]
        (targets / name).write_bytes(seed.recon)
        (recons / name).write_bytes(seed.recon)
        origin[os.path.splitext(name)[0]] = fuzz_corpus.Case(
            -1, name, seed.recon, seed.recon, "seed under a byte name"
        )
    report = folder / "report.json"
    command = [sys.executable, "-m", "bce_eval", "compare", str(targets), str(recons), "--json", str(report)]
    try:
        done = subprocess.run(
            [*command, "--workers", str(workers), "--top", "3"],
            capture_output=True,
            timeout=HANG_SECONDS * 10,
            env={**os.environ, "CI": "1"},
        )
    except subprocess.TimeoutExpired:
        tally.hangs.append(f"run over {folder}")
        return []
    stderr = done.stderr.decode("utf-8", "backslashreplace")
    # bce-eval's own lines on stderr; anything else (a traceback, a Python warning, a library's
    # message) is stray. An error line may quote a decoder ("damaged JPEG: Warning: ...").
    stray = [
        line
        for line in stderr.splitlines()
        if not line.startswith(("error: ", "note: ", "warning: ", "hint: ")) and not OWN_LINE.fullmatch(line)
    ]
    if done.returncode not in (0, 2) or stray:
        tally.tracebacks.append(f"run over {folder}: exit {done.returncode}\n{stderr[-3000:]}")
        return [done.returncode]
    with report.open(encoding="utf-8") as f:
        images = json.load(f)["images"]
    for image in images:
        case = origin[image["name"]]
        tally.cases += 1
        if image["status"] == "ok":
            tally.scored += 1
            if not fuzz_corpus.strictly_valid(case.target):
                tally.damaged_scored.append(f"case {case.index} ({case.origin}) in {folder}")
        else:
            tally.refused += 1
    return [done.returncode]


def test_fuzz_through_the_command(tmp_path: Path) -> None:
    tally = Tally()
    count = max(100, CASES // 10)
    exits = []
    for start in range(0, count, 150):
        cases = fuzz_corpus.cases(SEED + 1, start, min(150, count - start))
        exits += run_processes(cases, tmp_path / f"run{start}", tally)
    assert not tally.failures(), "\n".join(tally.failures()[:10])
    assert set(exits) <= {0, 2} and exits
    assert tally.cases >= count


@pytest.mark.parametrize("name", sorted(fuzz_corpus.bombs()))
def test_every_bomb_is_refused_at_once(tmp_path: Path, name: str) -> None:
    data = fuzz_corpus.bombs()[name]
    tally = Tally()
    recon = fuzz_corpus.seeds(np.random.default_rng(0))["rgb8.png"]
    run_in_process([fuzz_corpus.Case(0, name, data, recon, "bomb")], tmp_path, tally)
    assert tally.refused == 1 and not tally.failures(), tally
