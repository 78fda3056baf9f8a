"""A long fuzz campaign: tests/fuzz_corpus.py's cases through the engine, in one process per core,
and a share of them through whole `bce-eval compare` processes; prints the figures.

    python benchmarks/fuzz.py                          # 100,000 cases, a few thousand by command
    python benchmarks/fuzz.py --cases 20000 --seed 7
    python benchmarks/fuzz.py --cases 100000 --command-share 0.05

Each case depends only on (seed, index): `--first N --cases 1` reruns case N alone, and a case
named in the output as "case N (mutant of X)" is reproduced with tests.fuzz_corpus.cases(seed, N, 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/ as a package

from tests import fuzz_corpus
from tests.test_fuzz import SEED, Tally, run_in_process, run_processes

CHUNK = 500


def _in_process(seed: int, start: int, count: int) -> Tally:
    tally = Tally()
    corpus = fuzz_corpus.seeds(np.random.default_rng(seed))
    with tempfile.TemporaryDirectory(prefix="bce-eval-fuzz-") as folder:
        run_in_process(fuzz_corpus.cases(seed, start, count, corpus), Path(folder), tally)
    return tally


def _by_command(seed: int, start: int, count: int) -> tuple[Tally, list[int]]:
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="bce-eval-fuzz-cli-") as folder:
        exits = run_processes(fuzz_corpus.cases(seed, start, count), Path(folder), tally, workers=2)
    return tally, exits


def _merge(total: Tally, part: Tally) -> None:
    for name, value in vars(part).items():
        setattr(total, name, getattr(total, name) + value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cases", type=int, default=100_000, help="cases through the engine in process")
    parser.add_argument("--first", type=int, default=0, help="index of the first case")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--command-share", type=float, default=0.03, help="share of --cases also run through bce-eval compare"
    )
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"bce-eval fuzz campaign: seed {args.seed}, cases {args.first} to {args.first + args.cases - 1}")
    print(
        f"seeds: {len(fuzz_corpus.seeds(np.random.default_rng(args.seed)))} files, "
        f"bombs: {len(fuzz_corpus.bombs())}, hostile names: {len(fuzz_corpus.HOSTILE_NAMES) + 1}"
    )
    total = Tally()
    with ProcessPoolExecutor(args.workers) as pool:
        starts = range(args.first, args.first + args.cases, CHUNK)
        futures = [
            pool.submit(_in_process, args.seed, s, min(CHUNK, args.first + args.cases - s)) for s in starts
        ]
        for done, future in enumerate(as_completed(futures), 1):
            _merge(total, future.result())
            if done % 20 == 0:
                seconds = time.perf_counter() - started
                failures = len(total.failures())
                print(f"  {total.cases:,} cases, {failures} failures, {seconds:.0f} s", flush=True)
    elapsed = time.perf_counter() - started
    print(f"\nIn process: {total.cases:,} cases in {elapsed:.0f} s ({total.cases / elapsed:.0f} a second)")
    _report(total)

    command_cases = int(args.cases * args.command_share)
    exits: list[int] = []
    by_command = Tally()
    started = time.perf_counter()
    for start in range(0, command_cases, 150):
        part, codes = _by_command(args.seed + 1, args.first + start, min(150, command_cases - start))
        _merge(by_command, part)
        exits += codes
    if command_cases:
        elapsed = time.perf_counter() - started
        runs = f"{by_command.cases:,} cases in {len(exits)} runs, {elapsed:.0f} s"
        print(f"\nThrough `bce-eval compare` (2 workers): {runs}")
        print(f"  exit codes: {', '.join(f'{code}: {exits.count(code)}' for code in sorted(set(exits)))}")
        _report(by_command)
    failed = total.failures() + by_command.failures() + [f"exit {c}" for c in exits if c not in (0, 2)]
    sys.exit(1 if failed else 0)


def _report(tally: Tally) -> None:
    print(f"  scored {tally.scored:,}, refused with one line {tally.refused:,}")
    for label, found in (
        ("tracebacks", tally.tracebacks),
        ("hangs", tally.hangs),
        ("damaged files scored", tally.damaged_scored),
        ("errors over several lines", tally.multiline_errors),
        ("bombs refused after more than a second", tally.slow_bombs),
        ("stray warnings", tally.stray_warnings),
    ):
        print(f"  {label}: {len(found)}")
        for line in found[:10]:
            print(f"    {line}")


if __name__ == "__main__":
    main()
