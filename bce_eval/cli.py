"""The bce-eval command: parse options, call the core, map errors to exit codes.

Exit codes: 0 every pair evaluated; 1 a quality gate failed (reserved); 2 a usage or input
error, reported only after every good pair has been evaluated and the reports written.
"""

from __future__ import annotations

import math
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .images import Pair
    from .report import ImageResult, Settings, Summary

EXIT_OK, EXIT_GATE, EXIT_INPUT = 0, 1, 2

app = typer.Typer(
    help="Exact BCE, target entropy and excess loss (BCE - H = KL) for autoencoder reconstructions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)
stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

ConventionOpt = Annotated[
    Literal["keras", "torch"],
    typer.Option(
        help="keras: clip pred to [eps, 1-eps] (Keras BinaryCrossentropy); "
        "torch: floor each log at -100 (torch.nn.BCELoss)."
    ),
]
EpsOpt = Annotated[float, typer.Option(help="Clipping bound of the keras convention, in (0, 0.5).")]
LogitsOpt = Annotated[
    bool,
    typer.Option(
        "--logits", help="Predictions are logits (BCEWithLogitsLoss: stable log-sigmoid, no clipping)."
    ),
]
UnitsOpt = Annotated[
    Literal["nats", "bits"], typer.Option(help="Unit of every figure: nats (natural log) or bits.")
]


def fail(message: str) -> typer.Exit:
    stderr.print(f"error: {message}", markup=False)
    return typer.Exit(EXIT_INPUT)


def _check_eps(eps: float) -> None:
    if not 0 < eps < 0.5:
        raise fail(f"--eps must be in (0, 0.5), not {eps!r}")


def _version(value: bool) -> None:
    if value:
        stdout.print(f"bce-eval {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Exact BCE, target entropy and excess loss (BCE - H = KL) for autoencoder reconstructions."""


@contextmanager
def _output(path: str) -> Iterator[IO[str]]:
    """An open text stream for a report: '-' is stdout."""
    if path == "-":
        yield sys.stdout
        return
    try:
        f = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as e:
        raise fail(f"{path}: cannot write: {e.strerror}") from None
    with f:
        yield f


def _fmt(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.6g}"


def _print_summary(
    console: Console, results: list[ImageResult], summary: Summary, settings: Settings, top: int
) -> None:
    from .report import unit_scale, worst

    scale = unit_scale(settings.units)
    t = summary.totals
    console.print(
        f"[bold]bce-eval[/]: {summary.pairs + summary.failed} pairs, {summary.pairs} evaluated, "
        f"{summary.failed} failed; "
        f"{t.pixels:,} values (pixels x channels)"
    )
    console.print(f"convention: {escape(settings.describe_convention())}")
    overall = Table(
        title=f"Overall, pixel-weighted ({settings.units} per pixel)",
        title_justify="left",
        show_header=False,
        box=None,
        padding=(0, 1),
    )
    overall.add_row("BCE", _fmt(summary.mean("bce") * scale))
    overall.add_row("Entropy H(target)", _fmt(summary.mean("entropy") * scale), "the floor of BCE")
    overall.add_row(
        "[bold]Excess BCE - H[/]",
        f"[bold]{_fmt(summary.mean('excess') * scale)}[/]",
        "KL(target || pred), the reconstruction error",
    )
    overall.add_row("Per-image excess", _fmt(summary.excess_median * scale), "median")
    overall.add_row("", _fmt(summary.excess_p95 * scale), "95th percentile")
    overall.add_row("", _fmt(summary.excess_max * scale), "max")
    if summary.worst:
        overall.add_row("Worst image", escape(summary.worst.name))
    overall.add_row("Clipped preds", f"{t.clipped:,}", f"of {t.pixels:,}, moved into range by the convention")
    console.print(overall)
    ranked = worst(results, top)
    if not ranked:
        return
    table = Table(title=f"Worst {len(ranked)} by excess ({settings.units} per pixel)", title_justify="left")
    for column in ("#", "image", "size", "BCE", "H", "excess", "clipped"):
        table.add_column(column, justify="left" if column == "image" else "right")
    for rank, r in enumerate(ranked, start=1):
        assert r.sums is not None and r.shape is not None
        n = r.sums.pixels
        table.add_row(
            str(rank),
            escape(r.name),
            "x".join(map(str, r.shape)),
            _fmt(r.sums.bce / n * scale),
            _fmt(r.sums.entropy / n * scale),
            _fmt(r.excess * scale),
            str(r.sums.clipped),
        )
    console.print(table)


def _show_progress(quiet: bool) -> bool:
    """A progress bar only for a person watching: not with --quiet, in CI logs or when piped."""
    return not quiet and stderr.is_terminal and not os.environ.get("CI")


# Seconds a run goes on before its progress bar appears: quick runs print no bar at all.
PROGRESS_AFTER = 0.5


def _run(pairs: list[Pair], settings: Settings, *, workers: int | None, quiet: bool) -> list[ImageResult]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .engine import evaluate

    results = []
    columns = (TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    progress = Progress(*columns, console=stderr, transient=True, disable=not _show_progress(quiet))
    task = progress.add_task("evaluating", total=len(pairs))
    started, shown = time.monotonic(), False
    try:
        for result in evaluate(pairs, settings, workers=workers):
            results.append(result)
            progress.advance(task)
            if not shown and time.monotonic() - started >= PROGRESS_AFTER:
                progress.start()
                shown = True
    finally:
        progress.stop()
    return results


@app.command()
def compare(
    targets: Annotated[
        Path, typer.Argument(metavar="TARGETS", help="Folder of target images (searched recursively).")
    ],
    recons: Annotated[
        Path,
        typer.Argument(
            metavar="RECONS",
            help="Folder of reconstructions, paired with targets by relative path without extension.",
        ),
    ],
    recon_suffix: Annotated[
        str,
        typer.Option(
            help="Suffix to strip from reconstruction names, e.g. _recon pairs a_recon.png with a.png."
        ),
    ] = "",
    pairs: Annotated[
        Path | None,
        typer.Option(
            "--pairs",
            help="CSV with columns target,recon listing the pairs; paths relative to TARGETS and RECONS.",
        ),
    ] = None,
    top: Annotated[int, typer.Option(min=0, help="How many of the worst images to list.")] = 10,
    csv_path: Annotated[
        str | None, typer.Option("--csv", help="Write one row per pair to this CSV file ('-' for stdout).")
    ] = None,
    json_path: Annotated[
        str | None,
        typer.Option(
            "--json", help="Write settings, summary and per-image figures as JSON ('-' for stdout)."
        ),
    ] = None,
    units: UnitsOpt = "nats",
    eps: EpsOpt = 1e-7,
    convention: ConventionOpt = "keras",
    logits: LogitsOpt = False,
    backend: Annotated[
        Literal["numpy", "torch"],
        typer.Option(help="Array library for the math; torch needs the [torch] extra."),
    ] = "numpy",
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda or cuda:N.")] = "cpu",
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Processes (NumPy) or decoding threads (torch); default: one per core."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    alpha: Annotated[
        Literal["drop", "include"],
        typer.Option(help="Drop the alpha channel or score it as one more channel."),
    ] = "drop",
    grayscale: Annotated[
        bool,
        typer.Option("--grayscale", help="Convert both sides to luminance (ITU-R 601-2, in float64) first."),
    ] = False,
) -> None:
    """Score every reconstruction in RECONS against its target in TARGETS.

    Overall figures are pixel-weighted: the total over all pixels (every channel value counts as
    one) divided by the number of pixels, the same as torch's mean over the concatenated batch.
    """
    from . import images
    from .engine import BackendError, check_backend
    from .report import Settings, Summary, to_json, write_csv, write_json

    _check_eps(eps)
    settings = Settings(
        convention=convention,
        eps=eps,
        logits=logits,
        units=units,
        alpha=alpha,
        grayscale=grayscale,
        backend=backend,
        device=device,
    )
    try:
        check_backend(settings)
        pairing = (
            images.pairs_from_csv(pairs, targets, recons)
            if pairs
            else images.pair_folders(targets, recons, recon_suffix=recon_suffix)
        )
    except (BackendError, images.InputError) as e:
        raise fail(str(e)) from None
    if not pairing.pairs:
        raise fail(f"no image files in {targets} or {recons} (looked for {', '.join(images.SUFFIXES)})")
    for path in pairing.ignored:
        stderr.print(f"note: {path}: not an image file bce-eval reads; ignored", markup=False)
    if pairing.lossy_targets:
        stderr.print(
            f"warning: {len(pairing.lossy_targets)} target(s) are JPEG, e.g. {pairing.lossy_targets[0]}: "
            "lossy targets carry compression artefacts into every figure",
            markup=False,
        )

    results = _run(pairing.pairs, settings, workers=workers, quiet=quiet)
    summary = Summary.of(results)
    if csv_path:
        with _output(csv_path) as out:
            write_csv(results, out, settings)
    if json_path:
        with _output(json_path) as out:
            write_json(to_json(results, summary, settings, __version__), out)
    human = stderr if "-" in (csv_path, json_path) else stdout
    _print_summary(human, results, summary, settings, top)
    failed = [r for r in results if not r.ok]
    for r in failed:
        stderr.print(f"error: {r.error}", markup=False)
    if failed:
        stderr.print(f"{len(failed)} of {len(results)} pairs could not be evaluated", markup=False)
        raise typer.Exit(EXIT_INPUT)


def _values(text: str, option: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise fail(f"{option} must be numbers separated by commas, not {text!r}") from None


@app.command()
def explain(
    target: Annotated[str, typer.Option(help="Target values, comma-separated, e.g. 0.5,0.3,0.5,0.9.")],
    pred: Annotated[str, typer.Option(help="Predictions (or logits with --logits), comma-separated.")],
    units: UnitsOpt = "nats",
    eps: EpsOpt = 1e-7,
    convention: ConventionOpt = "keras",
    logits: LogitsOpt = False,
) -> None:
    """Show BCE, entropy and excess element by element, and why BCE cannot reach 0."""
    from . import metrics
    from .report import Settings, unit_scale

    _check_eps(eps)
    y, p = _values(target, "--target"), _values(pred, "--pred")
    if len(y) != len(p) or not y:
        raise fail(f"--target has {len(y)} values and --pred {len(p)}; give the same number, at least one")
    try:
        maps = metrics.pixel_maps(y, p, eps=eps, convention=convention, from_logits=logits)
    except metrics.ValueOutOfRange as e:
        raise fail(
            f"--{e.which}: value {e.value!r} (position {e.index[0] + 1}) is not {e.expected}"
        ) from None
    settings = Settings(convention=convention, eps=eps, logits=logits, units=units)
    scale = unit_scale(units)
    stdout.print(f"convention {escape(settings.describe_convention())}; figures in {units}")
    table = Table()
    for column in ("target y", "logit" if logits else "pred p", "BCE", "H(y)", "excess"):
        table.add_column(column, justify="right")
    for i in range(len(y)):
        table.add_row(
            f"{y[i]:g}", f"{p[i]:g}", *(f"{m[i] * scale:.6f}" for m in (maps.bce, maps.entropy, maps.excess))
        )
    table.add_section()
    table.add_row(
        "mean", "", *(f"[bold]{m.mean() * scale:.6f}[/]" for m in (maps.bce, maps.entropy, maps.excess))
    )
    stdout.print(table)
    stdout.print("BCE cannot reach 0 for a soft target: its minimum over p is H(y) > 0, at p = y.")
    stdout.print("Excess = BCE - H = KL(Bernoulli(y) || Bernoulli(p)): the reconstruction error,")
    stdout.print("0 exactly when p = y.")
