"""A batch file larger than the memory its process may use, evaluated with flat memory.

Writes two uint8 .npy stacks (items x 512 x 512 x 3) of --gigabytes each under --data (every
byte written: random targets, reconstructions the targets plus noise), then runs
`python -m bce_eval compare targets.npy recons.npy --json ...` in a child whose address space is
limited to --limit-gib (RLIMIT_AS, inherited from a small Python parent that reads the child's
peak RSS from RUSAGE_CHILDREN). It prints the wall time, the peak RSS and the check that a few
items' figures equal metrics.byte_sums on the same items read directly.

    python benchmarks/bench_stack.py                    # 4 GB a side, limit 1 GiB
    python benchmarks/bench_stack.py --gigabytes 1 --limit-gib 0.5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ITEM = (512, 512, 3)
SEED = 20240611

PARENT = """
import resource, subprocess, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
code = subprocess.run(sys.argv[2:]).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def write(folder: Path, items: int) -> None:
    """The two stacks, chunk by chunk (memory: one chunk)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    targets = np.lib.format.open_memmap(folder / "targets.npy", "w+", np.uint8, (items, *ITEM))
    recons = np.lib.format.open_memmap(folder / "recons.npy", "w+", np.uint8, (items, *ITEM))
    for start in range(0, items, 64):
        stop = min(start + 64, items)
        t = rng.integers(0, 256, (stop - start, *ITEM), dtype=np.uint8)
        noise = rng.integers(-6, 7, t.shape, dtype=np.int16)
        targets[start:stop] = t
        recons[start:stop] = np.clip(t + noise, 0, 255).astype(np.uint8)
    targets.flush()
    recons.flush()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gigabytes", type=float, default=4.0, help="size of each stack (10^9 bytes)")
    parser.add_argument("--limit-gib", type=float, default=1.0, help="address-space limit of the run")
    parser.add_argument("--data", type=Path, default=HERE / "data", help="where the stacks are written")
    args = parser.parse_args()
    items = int(args.gigabytes * 1e9) // int(np.prod(ITEM))
    folder = args.data / f"stack_{items}"
    if not (folder / "recons.npy").exists():
        started = time.perf_counter()
        write(folder, items)
        print(f"wrote 2 x {items:,} items in {time.perf_counter() - started:.0f} s")
    size = (folder / "targets.npy").stat().st_size
    limit = int(args.limit_gib * (1 << 30))
    command = [sys.executable, "-c", PARENT, str(limit), sys.executable, "-m", "bce_eval", "compare"]
    command += [str(folder / "targets.npy"), str(folder / "recons.npy"), "--top", "0", "--quiet"]
    command += ["--json", str(folder / "report.json")]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    code, peak_kib = map(int, done.stdout.split()[-2:])
    document = json.loads((folder / "report.json").read_text())
    from bce_eval import metrics

    targets = np.load(folder / "targets.npy", mmap_mode="r")
    recons = np.load(folder / "recons.npy", mmap_mode="r")
    same = all(
        document["images"][i]["sums_nats"]["excess"]
        == metrics.byte_sums(np.array(targets[i]), np.array(recons[i])).excess
        for i in (0, items // 2, items - 1)
    )
    print(f"stacks: 2 x {size / 1e9:.2f} GB ({items:,} items of {'x'.join(map(str, ITEM))} uint8)")
    print(f"address-space limit: {limit / (1 << 30):.2f} GiB")
    print(f"exit code {code}; {document['summary']['pairs']:,} pairs evaluated in {seconds:.1f} s")
    print(f"peak RSS: {peak_kib / 1024:.0f} MiB ({peak_kib * 1024 / size:.3f} of one stack)")
    print(f"items 0, middle and last as metrics.byte_sums gives them: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
