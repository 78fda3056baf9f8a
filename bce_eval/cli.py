"""The bce-eval command: parse options, call the core, map errors to exit codes.

Exit codes: 0 every pair evaluated and every gate passed; 1 a quality gate failed; 2 a usage or
input error, reported only after every good pair has been evaluated and the reports written (it
takes precedence over a failed gate); 130 interrupted (Ctrl-C) and 143 terminated (SIGTERM, as CI
sends to a cancelled job), old reports left as they were.
"""

from __future__ import annotations

import functools
import io
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__

if TYPE_CHECKING:
    from collections.abc import Callable

    from .gates import Thresholds
    from .images import Pair
    from .report import ImageResult, Settings, StoredReport, Summary

EXIT_OK, EXIT_GATE, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143

app = typer.Typer(
    help="Exact BCE, target entropy and excess loss (BCE - H = KL) for autoencoder reconstructions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)


class OutputError(Exception):
    """stdout or stderr cannot be written (a closed pipe, a full disk)."""

    def __init__(self, stream: str, error: OSError) -> None:
        self.stream = stream
        super().__init__(f"{stream}: cannot write: {error.strerror or error}")


class _Stream:
    """sys.stdout or sys.stderr as it is at each write (tests replace them, and a closed
    descriptor makes it None), with write errors raised as OutputError, which the commands turn
    into one line and exit code 2, not a traceback."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _stream(self) -> Any:
        return getattr(sys, self.name)

    def __getattr__(self, attribute: str) -> Any:  # isatty, encoding, fileno ...
        return getattr(self._stream(), attribute)

    def write(self, text: str) -> int:
        stream = self._stream()
        try:
            return stream.write(text) if stream is not None else len(text)
        except OSError as e:
            raise OutputError(self.name, e) from None

    def flush(self) -> None:
        stream = self._stream()
        try:
            if stream is not None:
                stream.flush()
        except OSError as e:
            raise OutputError(self.name, e) from None


# No emoji codes: a file named a:cat:.png is printed as it is, not with a cat.
stdout = Console(file=_Stream("stdout"), highlight=False, emoji=False)  # type: ignore[arg-type]
stderr = Console(file=_Stream("stderr"), highlight=False, soft_wrap=True, emoji=False)  # type: ignore[arg-type]

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
MaxExcessOpt = Annotated[
    float | None,
    typer.Option(
        "--max-excess",
        metavar="X",
        help="Gate: fail (exit 1) if the overall pixel-weighted excess is above X, "
        "in the report's unit (--units) per pixel.",
    ),
]
MaxImageExcessOpt = Annotated[
    float | None,
    typer.Option(
        "--max-image-excess",
        metavar="X",
        help="Gate: fail if any single image's excess is above X, in the report's unit (--units) per pixel.",
    ),
]
MaxBceOpt = Annotated[
    float | None,
    typer.Option(
        "--max-bce",
        metavar="X",
        help="Gate: fail if the overall BCE is above X, in the report's unit (--units) per pixel.",
    ),
]
BaselineOpt = Annotated[
    Path | None,
    typer.Option(
        "--baseline",
        metavar="REPORT",
        help="A CSV or JSON report written earlier by bce-eval, made with the same settings: "
        "each image's change of excess goes into the reports.",
    ),
]
MaxRegressionOpt = Annotated[
    float | None,
    typer.Option(
        "--max-regression",
        metavar="FRAC",
        help="Gate, with --baseline: fail if the overall excess grew by more than FRAC (0.05 = 5 %) "
        "over the baseline's.",
    ),
]
JunitOpt = Annotated[
    str | None,
    typer.Option(
        "--junit",
        metavar="PATH",
        help="Write JUnit XML: a testcase per image (failed over --max-image-excess) and per gate.",
    ),
]
FormatOpt = Annotated[
    Literal["text", "markdown", "github"],
    typer.Option(
        "--format",
        help="text: the summary; markdown: a GitHub-flavoured summary on stdout (the text goes to "
        "stderr); github: the text and ::error workflow commands for failed gates and bad input.",
    ),
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


CommandT = TypeVar("CommandT", bound="Callable[..., Any]")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, so that it unwinds as Ctrl-C does."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _silence(name: str) -> None:
    """Point a failed stdout or stderr at the null device, so that the flush on the way out
    does not fail again (Python would print an "Exception ignored" message)."""
    stream = getattr(sys, name)
    try:  # what is left in its buffer then goes to the null device
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)
    except (OSError, AttributeError, ValueError):
        setattr(sys, name, None)


def _interruptible(command: CommandT) -> CommandT:
    """Ctrl-C ends the command with exit code 130 and one line, SIGTERM with 143; no traceback."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except Terminated:
            stderr.print("terminated", markup=False)
            raise typer.Exit(EXIT_TERMINATED) from None
        except OutputError as e:
            _silence(e.stream)
            if e.stream == "stdout":
                stderr.print(f"error: {e}", markup=False)
            raise typer.Exit(EXIT_INPUT) from None
        except KeyboardInterrupt:
            stderr.print("interrupted", markup=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return run  # type: ignore[return-value]  # same signature, by functools.wraps


def _check_outputs(csv_path: str | None, json_path: str | None, junit_path: str | None, form: str) -> None:
    """Refuse two outputs on stdout: they would interleave."""
    uses = {"--csv -": csv_path == "-", "--json -": json_path == "-", "--junit -": junit_path == "-"}
    uses[f"--format {form}"] = form != "text"
    on_stdout = [option for option, used in uses.items() if used]
    if len(on_stdout) > 1:
        raise fail(f"{' and '.join(on_stdout)} would all write to stdout; send all but one to a file")


def _thresholds(
    *,
    max_excess: float | None,
    max_image_excess: float | None,
    max_bce: float | None,
    max_regression: float | None,
    baseline: Path | None,
) -> Thresholds:
    """The gates asked for, checked: thresholds >= 0, and a baseline where a regression gate needs one."""
    from .gates import Thresholds

    thresholds = Thresholds(max_excess, max_image_excess, max_bce, max_regression)
    for option, value in vars(thresholds).items():
        if value is not None and not value >= 0:
            raise fail(f"--{option.replace('_', '-')}: must be a number >= 0, not {value!r}")
    if max_regression is not None and baseline is None:
        raise fail("--max-regression needs --baseline REPORT to compare with")
    return thresholds


def _fmt(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.6g}"


def _print_summary(
    console: Console, results: list[ImageResult], summary: Summary, settings: Settings, top: int
) -> None:
    from .images import printable
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
        overall.add_row("Worst image", escape(printable(summary.worst.name)))
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
            escape(printable(r.name)),
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
    from .engine import evaluate

    if not _show_progress(quiet):
        return list(evaluate(pairs, settings, workers=workers))

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    results = []
    columns = (TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    progress = Progress(*columns, console=stderr, transient=True)
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


def _read_baseline(path: Path | None, settings: Settings) -> StoredReport | None:
    """The baseline report, refused early (before any image is read) if it is unusable."""
    if path is None:
        return None
    from .gates import check_baseline
    from .report import ReportError, read_report

    try:
        baseline = read_report(path)
        check_baseline(baseline, settings)
    except ReportError as e:
        raise fail(str(e)) from None
    return baseline


def _conclude(
    results: list[ImageResult],
    settings: Settings,
    *,
    thresholds: Thresholds,
    baseline: StoredReport | None,
    top: int,
    csv_path: str | None,
    json_path: str | None,
    junit_path: str | None,
    form: str,
    shard: tuple[int, int] | None = None,
) -> None:
    """Gates and baseline, the reports, the summary and verdict, and the exit code."""
    from . import ci
    from .gates import check, compare_with_baseline
    from .report import ReportError, Summary, atomic_output, to_json, write_csv, write_json

    summary = Summary.of(results)
    comparison = compare_with_baseline(results, summary, settings, baseline) if baseline else None
    verdict = check(results, summary, settings, thresholds, baseline=comparison, top=top)
    columns = verdict.image_columns()
    try:
        if csv_path:
            with atomic_output(csv_path) as out:
                extra_columns = ("baseline_excess", "excess_delta") if comparison else ()
                write_csv(results, out, settings, extra=columns, extra_columns=extra_columns)
        if json_path:
            document = to_json(
                results,
                summary,
                settings,
                __version__,
                shard=shard,
                extra=columns,
                sections=verdict.to_json(),
            )
            with atomic_output(json_path) as out:
                write_json(document, out)
        if junit_path:
            with atomic_output(junit_path) as out:
                ci.write_junit(results, verdict, settings, out)
    except ReportError as e:
        raise fail(str(e)) from None
    human = stderr if "-" in (csv_path, json_path, junit_path) or form == "markdown" else stdout
    _print_summary(human, results, summary, settings, top)
    for line in ci.verdict_lines(verdict):
        human.print(line, markup=False, soft_wrap=True)
    if form == "markdown":
        print(ci.markdown(results, summary, settings, verdict, top), end="")
    elif form == "github":
        for line in ci.github_commands(results, verdict, settings):
            print(line)
    failed = [r for r in results if not r.ok]
    for r in failed:
        stderr.print(f"error: {r.error}", markup=False)
    if failed:
        stderr.print(f"{len(failed)} of {len(results)} pairs could not be evaluated", markup=False)
        raise typer.Exit(EXIT_INPUT)
    if not verdict.passed:
        raise typer.Exit(EXIT_GATE)


@app.command()
@_interruptible
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
    max_excess: MaxExcessOpt = None,
    max_image_excess: MaxImageExcessOpt = None,
    max_bce: MaxBceOpt = None,
    baseline: BaselineOpt = None,
    max_regression: MaxRegressionOpt = None,
    junit_path: JunitOpt = None,
    form: FormatOpt = "text",
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="I/N",
            help="Evaluate shard I of N (1 <= I <= N): the pairs whose name's CRC-32 modulo N is I - 1.",
        ),
    ] = None,
) -> None:
    """Score every reconstruction in RECONS against its target in TARGETS.

    Overall figures are pixel-weighted: the total over all pixels (every channel value counts as
    one) divided by the number of pixels, the same as torch's mean over the concatenated batch.
    """
    from . import images
    from .engine import BackendError, check_backend
    from .gates import select_shard
    from .report import Settings, parse_shard

    _check_eps(eps)
    _check_outputs(csv_path, json_path, junit_path, form)
    thresholds = _thresholds(
        max_excess=max_excess,
        max_image_excess=max_image_excess,
        max_bce=max_bce,
        max_regression=max_regression,
        baseline=baseline,
    )
    try:
        shard_of_n = parse_shard(shard) if shard else None
    except ValueError as e:
        raise fail(f"--shard: {e}") from None
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
    stored_baseline = _read_baseline(baseline, settings)
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
        stderr.print(
            f"note: {images.printable(path)}: not an image file bce-eval reads; ignored", markup=False
        )
    if pairing.lossy_targets:
        stderr.print(
            f"warning: {len(pairing.lossy_targets)} target(s) are JPEG, "
            f"e.g. {images.printable(pairing.lossy_targets[0])}: "
            "lossy targets carry compression artefacts into every figure",
            markup=False,
        )
    selected = pairing.pairs
    if shard_of_n:
        selected = select_shard(pairing.pairs, shard_of_n, lambda pair: pair.name)
        stderr.print(f"shard {shard}: {len(selected)} of {len(pairing.pairs)} pairs", markup=False)

    results = _run(selected, settings, workers=workers, quiet=quiet)
    _conclude(
        results,
        settings,
        thresholds=thresholds,
        baseline=stored_baseline,
        top=top,
        csv_path=csv_path,
        json_path=json_path,
        junit_path=junit_path,
        form=form,
        shard=shard_of_n,
    )


@app.command()
@_interruptible
def merge(
    reports: Annotated[
        list[Path],
        typer.Argument(
            metavar="REPORT.json...",
            help="JSON reports of shards (--shard) or of runs over distinct images, same settings.",
        ),
    ],
    top: Annotated[int, typer.Option(min=0, help="How many of the worst images to list.")] = 10,
    csv_path: Annotated[
        str | None, typer.Option("--csv", help="Write the merged CSV report here ('-' for stdout).")
    ] = None,
    json_path: Annotated[
        str | None, typer.Option("--json", help="Write the merged JSON report here ('-' for stdout).")
    ] = None,
    max_excess: MaxExcessOpt = None,
    max_image_excess: MaxImageExcessOpt = None,
    max_bce: MaxBceOpt = None,
    baseline: BaselineOpt = None,
    max_regression: MaxRegressionOpt = None,
    junit_path: JunitOpt = None,
    form: FormatOpt = "text",
) -> None:
    """Combine JSON reports into exactly the figures of a single run over all their images.

    Totals come from each image's sums and pixel counts, never from averages. Refused: reports
    made with other settings, an image listed twice, a missing or repeated shard.
    """
    from .merge import merge as merge_reports
    from .report import ReportError, read_report

    _check_outputs(csv_path, json_path, junit_path, form)
    thresholds = _thresholds(
        max_excess=max_excess,
        max_image_excess=max_image_excess,
        max_bce=max_bce,
        max_regression=max_regression,
        baseline=baseline,
    )
    try:
        merged = merge_reports([read_report(path) for path in reports])
    except ReportError as e:
        raise fail(str(e)) from None
    stored_baseline = _read_baseline(baseline, merged.settings)
    _conclude(
        merged.results,
        merged.settings,
        thresholds=thresholds,
        baseline=stored_baseline,
        top=top,
        csv_path=csv_path,
        json_path=json_path,
        junit_path=junit_path,
        form=form,
    )


def _values(text: str, option: str) -> list[float]:
    from decimal import Decimal, InvalidOperation

    values = []
    for literal in filter(None, (v.strip() for v in text.split(","))):
        try:
            value = float(literal)
        except ValueError:
            raise fail(f"{option} must be numbers separated by commas, not {text!r}") from None
        try:
            underflows = value == 0 and Decimal(literal) != 0
        except InvalidOperation:  # float() reads a few spellings Decimal does not
            underflows = False
        if underflows:
            raise fail(f"{option}: {literal} is too small for float64 and would read as 0")
        values.append(value)
    return values


def _figure(x: float) -> str:
    """Six decimals where they keep at least four significant digits; else six significant."""
    return f"{x:.6f}" if x == 0 or 1e-2 <= abs(x) < 1e6 else f"{x:.6g}"


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
            f"{y[i]:.10g}",
            f"{p[i]:.10g}",
            *(_figure(m[i] * scale) for m in (maps.bce, maps.entropy, maps.excess)),
        )
    table.add_section()
    table.add_row(
        "mean", "", *(f"[bold]{_figure(m.mean() * scale)}[/]" for m in (maps.bce, maps.entropy, maps.excess))
    )
    stdout.print(table)
    stdout.print("BCE cannot reach 0 for a soft target: its minimum over p is H(y) > 0, at p = y.")
    stdout.print("Excess = BCE - H = KL(Bernoulli(y) || Bernoulli(p)): the reconstruction error,")
    stdout.print("0 exactly when p = y.")


def console_main() -> None:
    """The ``bce-eval`` command (console script and ``python -m bce_eval``).

    Once the command is done and its output flushed, the process ends at once: tearing down the
    interpreter (every module, every per-image record) would add tens of milliseconds to each
    run, which is a tenth of a quick one. Reports are already closed and synced by then.

    SIGTERM unwinds the command as Ctrl-C does (workers stopped, old reports kept), exit 143.

    Text for people on stdout escapes what its encoding cannot hold (as Python's stderr does), so
    a name the locale cannot encode never stops a run; reports on stdout are UTF-8 regardless."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app(prog_name="bce-eval")
    except SystemExit as e:
        code = e.code
        if not isinstance(code, int | None) or _observed():
            raise  # a message for Python to print, or a profiler or coverage to finish
        try:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None:  # None where the descriptor was closed (2>&-)
                    stream.flush()
        except OSError:
            raise e from None  # let Python's exit report what it can
        os._exit(code or 0)


def _observed() -> bool:
    """Whether a profiler, tracer or coverage is watching: it reports at the normal exit. Since
    Python 3.12, cProfile and coverage may use sys.monitoring instead of setprofile/settrace."""
    if sys.getprofile() or sys.gettrace():
        return True
    monitoring = getattr(sys, "monitoring", None)
    return monitoring is not None and any(monitoring.get_tool(tool) for tool in range(6))
