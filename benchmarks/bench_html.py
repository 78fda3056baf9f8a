"""Cost of the HTML page and the heat maps, and how the page behaves in Chromium.

Measured side by side, as separate processes, in interleaved rounds (the median of each):

- on 500 pairs of 256x256 RGB PNG (bench_engine.py's set): `compare` as it was before the page
  and maps existed (the commit before reports/html.py was added, exported to a temporary
  folder), `compare` now, `compare --html`, `compare --maps --maps-top 50` and `compare --maps`
  (every pair), each in wall time and in CPU time (user + system, the process and its
  workers), which a machine shared with other jobs disturbs far less. Goals: now / before <= 1
  within noise, --html / now <= 1.5;
- 10,000 pairs (the 500 pairs hard-linked 20 times under other names, so that every pair is a
  file decoded as usual): the page's size with its 50 worst images' pictures (goal < 5 MB) and,
  in Chromium, the time from navigation until the script has drawn the table (goal < 2 s),
  then sorting by excess and filtering by name;
- 100,000 pairs of 16x16 grey from ``compare_arrays``: the same, goal: open in < 5 s.

Chromium is the system's (/usr/bin/chromium, or CHROMIUM=path), driven by Playwright; without
them the browser figures are skipped with a note.

    python benchmarks/bench_html.py              # about 10 minutes on 2 cores, data included
    python benchmarks/bench_html.py --repeats 9 --parts cost
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_engine import CHILD_ENV, HERE, IMAGE_SETS, ensure_data, machine_lines, warm_cache

ROOT = HERE.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
GOAL_RATIO, GOAL_10K_MB, GOAL_10K_S, GOAL_100K_S = 1.5, 5.0, 2.0, 5.0


def base_revision() -> str:
    """The commit before reports/html.py was added: bce-eval as it was before the page."""
    added = subprocess.run(
        ["git", "-C", str(ROOT), "log", "--diff-filter=A", "--format=%H", "--", "bce_eval/reports/html.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not added:
        raise SystemExit("reports/html.py is not committed: no revision to compare with")
    return added[-1] + "^"


def export(revision: str, into: Path) -> Path:
    """bce_eval of a revision, as files under into (importable with PYTHONPATH=into)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "bce_eval"], capture_output=True, check=True
    ).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds of one process, and the CPU seconds (user + system) of it and its workers:
    on a machine shared with other jobs, CPU time varies far less than wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode not in (0, 1):
        raise SystemExit(f"failed (exit {result.returncode}): {' '.join(command)}\n{result.stderr[-2000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def side_by_side(
    contenders: dict[str, tuple[list[str], dict[str, str]]], repeats: int
) -> dict[str, list[tuple[float, float]]]:
    seconds: dict[str, list[tuple[float, float]]] = {label: [] for label in contenders}
    for _ in range(repeats):
        for label, (command, env) in contenders.items():
            seconds[label].append(timed(command, env))
    return seconds


def cost_on_500(data: Path, repeats: int, work: Path) -> None:
    folder = ensure_data(IMAGE_SETS["rgb256"], data, 500, False)
    warm_cache(folder)
    before = export(base_revision(), work / "before")
    compare = [sys.executable, "-m", "bce_eval", "compare", str(folder / "targets"), str(folder / "recons")]
    compare += ["--quiet", "--top", "0"]
    now_env = {**CHILD_ENV, "PYTHONPATH": str(ROOT)}
    maps_dir = work / "maps"
    contenders = {
        "compare before the page (base)": (compare, {**CHILD_ENV, "PYTHONPATH": str(before)}),
        "compare now": (compare, now_env),
        "compare --html": ([*compare, "--html", str(work / "page500.html")], now_env),
        "compare --maps --maps-top 50": (
            [*compare, "--maps", str(maps_dir / "top"), "--maps-top", "50"],
            now_env,
        ),
        "compare --maps (all 500)": ([*compare, "--maps", str(maps_dir / "all")], now_env),
    }
    print(f"\n500 pairs of 256x256 RGB PNG, {repeats} interleaved rounds; median seconds (min-max)")
    print(f"  {'':32s} {'wall':>22s} {'CPU (user + system)':>24s}")
    seconds = side_by_side(contenders, repeats)
    wall = {label: statistics.median(w for w, _ in values) for label, values in seconds.items()}
    cpu = {label: statistics.median(c for _, c in values) for label, values in seconds.items()}
    for label, values in seconds.items():
        walls, cpus = [w for w, _ in values], [c for _, c in values]
        print(
            f"  {label:32s} {wall[label]:7.3f} ({min(walls):.3f}-{max(walls):.3f})"
            f"   {cpu[label]:7.3f} ({min(cpus):.3f}-{max(cpus):.3f})"
        )
    base, now, html = "compare before the page (base)", "compare now", "compare --html"
    for label, goal in ((now, "no slower"), (html, f"<= {GOAL_RATIO}")):
        reference = base if label == now else now
        print(
            f"  {label} / {reference}: wall {wall[label] / wall[reference]:.3f}, "
            f"CPU {cpu[label] / cpu[reference]:.3f} (goal: {goal})"
        )
    page = work / "page500.html"
    print(f"  page: {page.stat().st_size / 1e6:.2f} MB with 50 worst images' pictures")


def linked_10k(data: Path) -> Path:
    """10,000 pairs: the 500-pair set hard-linked 20 times under other names."""
    source = ensure_data(IMAGE_SETS["rgb256"], data, 500, False)
    folder = data / "rgb256_linked_10000"
    done = folder / "complete"
    if done.exists():
        return folder
    for sub in ("targets", "recons"):
        shutil.rmtree(folder / sub, ignore_errors=True)
        (folder / sub).mkdir(parents=True)
        for copy in range(20):
            for entry in sorted(os.scandir(source / sub), key=lambda e: e.name):
                os.link(entry.path, folder / sub / f"{copy:02d}_{entry.name}")
    done.write_text("hard links to rgb256_500, made by bench_html.py\n")
    return folder


def browse(page: Path, repeats: int) -> dict[str, float] | None:
    """Median seconds in Chromium: navigation until the table is drawn, sorting by excess, and
    filtering by name; None (with a note) where Chromium or Playwright is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("  (no browser figures: Playwright is not installed: pip install playwright)")
        return None
    if not Path(CHROMIUM).exists():
        print(f"  (no browser figures: no Chromium at {CHROMIUM}: apt-get install chromium)")
        return None
    figures: dict[str, list[float]] = {"open": [], "sort": [], "filter": []}
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        for _ in range(repeats):
            tab = browser.new_page()
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            started = time.perf_counter()
            tab.goto(page.as_uri())
            tab.wait_for_selector("body[data-ready]")
            figures["open"].append(time.perf_counter() - started)
            started = time.perf_counter()
            tab.click("#all th[data-key=excess]")
            tab.wait_for_selector("#all th[data-key=excess][aria-sort]")
            figures["sort"].append(time.perf_counter() - started)
            started = time.perf_counter()
            tab.fill("#filter", "0001")
            tab.wait_for_function("document.getElementById('position').textContent.includes('filtered')")
            figures["filter"].append(time.perf_counter() - started)
            tab.close()
        browser.close()
    if errors:
        print(f"  console errors: {errors[:3]}")
    return {k: statistics.median(v) for k, v in figures.items()}


def print_browsed(shown: dict[str, float] | None, repeats: int, goal: float) -> None:
    if shown:
        print(f"  Chromium, median of {repeats}: table drawn in {shown['open']:.2f} s (goal < {goal})")
        print(
            f"  sort by excess {shown['sort'] * 1000:.0f} ms; filter by name {shown['filter'] * 1000:.0f} ms"
        )


def page_10k(data: Path, repeats: int, work: Path) -> None:
    folder = linked_10k(data)
    warm_cache(folder)
    page = work / "page10k.html"
    command = [sys.executable, "-m", "bce_eval", "compare", str(folder / "targets"), str(folder / "recons")]
    seconds, _ = timed(
        [*command, "--quiet", "--top", "0", "--html", str(page)], {**CHILD_ENV, "PYTHONPATH": str(ROOT)}
    )
    size = page.stat().st_size / 1e6
    print(f"\n10,000 pairs of 256x256 RGB PNG: compare --html {seconds:.1f} s")
    print(f"  page {size:.2f} MB with the 50 worst images' pictures (goal < {GOAL_10K_MB})")
    print_browsed(browse(page, repeats), repeats, GOAL_10K_S)


def page_100k(repeats: int, work: Path) -> None:
    sys.path.insert(0, str(ROOT))
    import bce_eval

    rng = np.random.default_rng(100_000)
    targets = rng.integers(0, 256, size=(100_000, 16, 16), dtype=np.uint8)
    noise = rng.integers(-6, 7, size=targets.shape)
    recons = np.clip(targets.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    started = time.perf_counter()
    report = bce_eval.compare_arrays(targets, recons, layout="NHW")
    scored = time.perf_counter() - started
    page = work / "page100k.html"
    started = time.perf_counter()
    report.write(html=page)
    written = time.perf_counter() - started
    size = page.stat().st_size / 1e6
    print(
        f"\n100,000 pairs of 16x16 grey (compare_arrays): scored in {scored:.1f} s, page written in "
        f"{written:.1f} s, {size:.1f} MB"
    )
    print_browsed(browse(page, repeats), repeats, GOAL_100K_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=("cost", "10k", "100k"),
        default=["cost", "10k", "100k"],
        help="what to run",
    )
    args = parser.parse_args()
    for line in machine_lines():
        print(line)
    with tempfile.TemporaryDirectory(prefix="bench-html-") as scratch:
        work = Path(scratch)
        if "cost" in args.parts:
            cost_on_500(args.data, args.repeats, work)
        if "10k" in args.parts:
            page_10k(args.data, args.repeats, work)
        if "100k" in args.parts:
            page_100k(args.repeats, work)


if __name__ == "__main__":
    main()
