"""The bce-eval command: parse options, make one call into the library (bce_eval.pipeline),
render the Report, exit with its code. Errors the user can cause become one line and exit 2.

Exit codes: 0 every pair evaluated and every gate passed; 1 a quality gate failed; 2 a usage or
input error, reported only after every good pair has been evaluated and the reports written (it
takes precedence over a failed gate); 130 interrupted (Ctrl-C) and 143 terminated (SIGTERM, as CI
sends to a cancelled job), old reports left as they were.
"""

from __future__ import annotations

import functools
import io
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .errors import EXIT_GATE, EXIT_INPUT, EXIT_OK, BceEvalError

try:  # Typer carries its own copy of Click from 0.2x on; before, it uses Click itself
    from typer._click import core as click_core
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older Typer
    from click import core as click_core  # type: ignore[no-redef]
    from click import exceptions as click_errors  # type: ignore[no-redef]
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .pipeline import Report

EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
__all__ = ["EXIT_GATE", "EXIT_INPUT", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_TERMINATED", "app"]


def usage_error_line(error: click_errors.UsageError) -> str:
    """Click's usage error as one line, ``error: --OPTION: problem``, its suggestion kept."""
    if isinstance(error, click_errors.NoSuchOption):
        line = f"error: {error.option_name}: no such option"
        if error.possibilities:
            options = list(error.possibilities)  # the closest first
            choices = options[0] if len(options) == 1 else f"{', '.join(options[:-1])} or {options[-1]}"
            line += f"; did you mean {choices}?"
        return line
    message = " ".join(error.format_message().split()).rstrip(".")
    if isinstance(error, click_errors.BadParameter) and error.param is not None:
        param = error.param
        is_option = getattr(param, "param_type_name", "") == "option" and param.opts
        name = param.opts[0] if is_option else param.human_readable_name
        if isinstance(error, click_errors.MissingParameter):
            kind = "option" if is_option else "argument"
            return f"error: {name}: missing {kind}; see bce-eval {_command(error)}--help"
        if error.ctx is not None:
            message = message.removeprefix(f"Invalid value for {param.get_error_hint(error.ctx)}: ")
        return f"error: {name}: {message}"
    if isinstance(error, click_errors.BadOptionUsage) and "requires an argument" in message:
        return f"error: {error.option_name}: needs a value"
    if isinstance(error, click_errors.BadOptionUsage):
        return f"error: {error.option_name}: {message}"
    return f"error: {message[:1].lower()}{message[1:].replace('. Did you mean', '; did you mean')}"


def _command(error: click_errors.UsageError) -> str:
    ctx = error.ctx
    return f"{ctx.info_name} " if ctx is not None and ctx.parent is not None and ctx.info_name else ""


class _Group(TyperGroup):
    """The app's command group: Click's usage errors (an unknown option, a value of the wrong
    type, a missing argument) as one line on stderr and exit code 2, like every other error,
    instead of Click's usage block."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        call = {"args": args, "prog_name": prog_name, "complete_var": complete_var, **extra}
        call["windows_expand_args"] = windows_expand_args
        if not standalone_mode:
            return super().main(**call, standalone_mode=False)
        try:
            code = super().main(**call, standalone_mode=False)
        except _NO_ARGS_IS_HELP as e:  # the command alone: its help, as Click shows it
            e.show()
            sys.exit(e.exit_code)
        except click_errors.UsageError as e:
            stderr.print(usage_error_line(e), markup=False)
            sys.exit(EXIT_INPUT)
        except click_errors.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except typer.Abort:
            stderr.print("interrupted", markup=False)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)


_NO_ARGS_IS_HELP: Any = getattr(click_errors, "NoArgsIsHelpError", ())


class _Command(TyperCommand):
    """A command whose usage line names its arguments plainly: TARGETS, not {TARGETS}."""

    def collect_usage_pieces(self, ctx: click_core.Context) -> list[str]:
        return [piece.strip("{}") for piece in super().collect_usage_pieces(ctx)]


app = typer.Typer(
    cls=_Group,
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
    str | None,
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
MaxGroupExcessOpt = Annotated[
    float | None,
    typer.Option(
        "--max-group-excess",
        metavar="X",
        help="Gate, with --group-by: fail if any group's pixel-weighted excess is above X, in the "
        "report's unit (--units) per pixel; the groups over X are named.",
    ),
]
GroupByOpt = Annotated[
    str | None,
    typer.Option(
        "--group-by",
        metavar="folder|folder:N",
        help="Figures per group of pairs: by the first folder of each name (folder), or its first N "
        "folders (folder:N); a table in the summary, groups in JSON, a group column in CSV.",
    ),
]
PerChannelOpt = Annotated[
    bool,
    typer.Option(
        "--per-channel",
        help="Figures per channel (R, G, B, A; grey; or an index) in the summary and JSON, and CSV "
        "columns bce_C, entropy_C, excess_C; an 8-bit image then takes a histogram per channel.",
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
StorageOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--storage-option",
        metavar="KEY=VALUE",
        help="An fsspec option for every URL (s3://, gs://, az://, ...), e.g. "
        "endpoint_url=http://127.0.0.1:9000; repeat for more. true/false and numbers are read as such.",
    ),
]
MapsOpt = Annotated[
    Path | None,
    typer.Option(
        "--maps",
        metavar="DIR",
        help="Write heat maps under each pair's name in DIR: NAME.excess.png (excess per pixel, "
        "mean over channels) and NAME.signed.png (p - y, centred on 0), one scale for the run, "
        "with legend images.",
    ),
]
MapsTopOpt = Annotated[
    int | None,
    typer.Option("--maps-top", metavar="N", min=0, help="Maps of the N worst images only (default: all)."),
]
MapsFormatOpt = Annotated[
    Literal["png", "npy"],
    typer.Option(
        "--maps-format",
        help="png: coloured maps; npy: NAME.excess.npy, the float64 excess per value, for scripts.",
    ),
]
HtmlOpt = Annotated[
    str | None,
    typer.Option(
        "--html",
        metavar="PATH",
        help="Write one self-contained HTML page: summary, verdict, histogram, every image "
        "(sortable, filterable) and the worst with their maps.",
    ),
]
HtmlTopOpt = Annotated[
    int,
    typer.Option(
        "--html-top", metavar="N", min=0, help="How many of the worst images the page shows with pictures."
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


def _check_outputs(
    csv_path: str | None,
    json_path: str | None,
    junit_path: str | None,
    form: str,
    html_path: str | None = None,
) -> None:
    """Refuse two outputs on stdout: they would interleave."""
    uses = {"--csv -": csv_path == "-", "--json -": json_path == "-", "--junit -": junit_path == "-"}
    uses["--html -"] = html_path == "-"
    uses[f"--format {form}"] = form != "text"
    on_stdout = [option for option, used in uses.items() if used]
    if len(on_stdout) > 1:
        raise fail(f"{' and '.join(on_stdout)} would all write to stdout; send all but one to a file")


def _show_progress(quiet: bool) -> bool:
    """A progress bar only for a person watching: not with --quiet, in CI logs or when piped."""
    return not quiet and stderr.is_terminal and not os.environ.get("CI")


def _note(line: str) -> None:
    stderr.print(line, markup=False)


def _check_maps(maps: Path | None, maps_top: int | None, maps_format: str) -> None:
    if maps is not None:
        from .reports.maps import check_options

        check_options(maps, maps_top, maps_format)


def _write_maps(report: Report, maps: Path, maps_top: int | None, maps_format: Any) -> None:
    """The maps, and their notes on stderr; ReportError if they cannot be written."""
    written = report.write_maps(maps, top=maps_top, format=maps_format)
    for line in (*written.left_out, written.describe()):
        _note(line)


def _render(
    report: Report,
    *,
    csv_path: str | None,
    json_path: str | None,
    junit_path: str | None,
    form: str,
    html_path: str | None = None,
    html_top: int = 50,
    maps: Path | None = None,
    maps_top: int | None = None,
    maps_format: str = "png",
    storage_options: dict[str, Any] | None = None,
) -> None:
    """The maps, the reports, the summary and verdict, the errors of failed pairs; exit with
    the report's code (2 for bad input takes precedence over 1 for a failed gate). Reports that
    cannot be written (a full disk) leave the old ones in place; the summary is still printed,
    then the error, and the exit code is 2. Maps come first: they fix the scale the HTML
    page's maps share."""
    from .errors import ReportError
    from .reports.ci import plural
    from .reports.text import print_summary

    unwritten = None
    if maps is not None:
        try:
            _write_maps(report, maps, maps_top, maps_format)
        except ReportError as e:
            unwritten = e
    try:
        report.write(
            csv=csv_path, json=json_path, junit=junit_path, html=html_path, html_top=html_top,
            storage_options=storage_options,
        )  # fmt: skip
    except ReportError as e:
        unwritten = unwritten or e
    human = stderr if "-" in (csv_path, json_path, junit_path, html_path) or form == "markdown" else stdout
    print_summary(human, report.view)
    if form == "markdown":
        print(report.to_markdown(), end="")
    elif form == "github":
        for line in report.github_commands():
            print(line)
    failed = report.failed
    for line in report.error_lines():  # a kind of error repeated many times: the first few
        stderr.print(line, markup=False)
    if failed:
        stderr.print(
            f"{len(failed):,} of {plural(len(report.images), 'pair')} could not be evaluated", markup=False
        )
    if unwritten is not None:
        raise fail(str(unwritten))
    if report.exit_code != EXIT_OK:
        raise typer.Exit(report.exit_code)


@app.command(cls=_Command)
@_interruptible
def compare(
    targets: Annotated[
        str,
        typer.Argument(
            metavar="TARGETS",
            help="Folder of target images (searched recursively), a .npy or .npz batch file, or a URL "
            "(s3://...).",
        ),
    ],
    recons: Annotated[
        str,
        typer.Argument(
            metavar="RECONS",
            help="Folder of reconstructions, paired with targets by relative path without extension; "
            "or a batch file, paired item by item with the targets' batch file.",
        ),
    ],
    recon_suffix: Annotated[
        str,
        typer.Option(
            help="Suffix to strip from reconstruction names, e.g. _recon pairs a_recon.png with a.png."
        ),
    ] = "",
    pairs: Annotated[
        str | None,
        typer.Option(
            "--pairs",
            metavar="FILE.csv|order",
            help="CSV with columns target,recon listing the pairs (paths relative to TARGETS and RECONS); "
            "or 'order': item i of TARGETS with item i of RECONS, files in name order and batch files "
            "item by item, as when a batch file faces a folder.",
        ),
    ] = None,
    allow_outside: Annotated[
        bool,
        typer.Option(
            "--allow-outside",
            help="Let --pairs rows name files outside TARGETS and RECONS (absolute paths, ../).",
        ),
    ] = False,
    layout: Annotated[
        str | None,
        typer.Option(
            "--layout",
            metavar="nhwc|nchw|nhw",
            help="Axes of .npy and .npz batch files, never guessed: nhwc (the default for 4-D arrays), "
            "nchw, or nhw (one channel; the default for 3-D arrays); TARGETS,RECONS (e.g. nhwc,nchw) "
            "where they differ. With nchw, a 3-D .npy image is channels first.",
        ),
    ] = None,
    top: Annotated[int, typer.Option(help="How many of the worst images to list.")] = 10,
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
        typer.Option(help="Processes (NumPy) or decoding threads (torch); default: one per core."),
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
    max_image_bytes: Annotated[
        int | None,
        typer.Option(
            "--max-image-bytes",
            metavar="BYTES",
            help="Memory one pair may take, checked from the headers before decoding (larger pairs "
            "are an error of their own); default: a quarter of the available memory over the workers.",
        ),
    ] = None,
    group_by: GroupByOpt = None,
    per_channel: PerChannelOpt = False,
    max_excess: MaxExcessOpt = None,
    max_image_excess: MaxImageExcessOpt = None,
    max_bce: MaxBceOpt = None,
    max_group_excess: MaxGroupExcessOpt = None,
    baseline: BaselineOpt = None,
    max_regression: MaxRegressionOpt = None,
    junit_path: JunitOpt = None,
    form: FormatOpt = "text",
    maps: MapsOpt = None,
    maps_top: MapsTopOpt = None,
    maps_format: MapsFormatOpt = "png",
    html_path: HtmlOpt = None,
    html_top: HtmlTopOpt = 50,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="I/N",
            help="Evaluate shard I of N (1 <= I <= N): the pairs whose name's CRC-32 modulo N is I - 1.",
        ),
    ] = None,
    storage_option: StorageOpt = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            metavar="ADDRESS",
            help="Run on a Dask cluster: its scheduler's address (tcp://host:8786), or local for a "
            "LocalCluster here; needs the [dask] extra.",
        ),
    ] = None,
) -> None:
    """Score every reconstruction in RECONS against its target in TARGETS.

    Overall figures are pixel-weighted: the total over all pixels (every channel value counts as
    one) divided by the number of pixels, the same as torch's mean over the concatenated batch.
    """
    from .pipeline import compare as run_compare
    from .reports.files import clean_stale
    from .storage import parse_options

    _check_outputs(csv_path, json_path, junit_path, form, html_path)
    clean_stale(p for p in (csv_path, json_path, junit_path, html_path) if p)
    try:
        options = parse_options(storage_option or ())
        _check_maps(maps, maps_top, maps_format)
        report = run_compare(
            targets, recons, recon_suffix=recon_suffix, pairs=pairs, allow_outside=allow_outside,
            layout=layout, convention=convention, eps=eps, logits=logits, units=units, alpha=alpha,
            grayscale=grayscale, max_image_bytes=max_image_bytes, backend=backend, device=device,
            workers=workers, shard=shard, group_by=group_by, per_channel=per_channel,
            max_excess=max_excess, max_image_excess=max_image_excess, max_bce=max_bce,
            max_group_excess=max_group_excess, baseline=baseline, max_regression=max_regression, top=top,
            progress=_show_progress(quiet) and stderr, notes=_note, storage_options=options,
            scheduler=scheduler,
        )  # fmt: skip
        _render(
            report, csv_path=csv_path, json_path=json_path, junit_path=junit_path, form=form,
            html_path=html_path, html_top=html_top, maps=maps, maps_top=maps_top, maps_format=maps_format,
            storage_options=options,
        )  # fmt: skip
    except BceEvalError as e:
        raise fail(str(e)) from None


@app.command(cls=_Command)
@_interruptible
def merge(
    reports: Annotated[
        list[str],
        typer.Argument(
            metavar="REPORT.json...",
            help="JSON reports of shards (--shard) or of runs over distinct images, same settings.",
        ),
    ],
    top: Annotated[int, typer.Option(help="How many of the worst images to list.")] = 10,
    csv_path: Annotated[
        str | None, typer.Option("--csv", help="Write the merged CSV report here ('-' for stdout).")
    ] = None,
    json_path: Annotated[
        str | None, typer.Option("--json", help="Write the merged JSON report here ('-' for stdout).")
    ] = None,
    group_by: GroupByOpt = None,
    per_channel: PerChannelOpt = False,
    max_excess: MaxExcessOpt = None,
    max_image_excess: MaxImageExcessOpt = None,
    max_bce: MaxBceOpt = None,
    max_group_excess: MaxGroupExcessOpt = None,
    baseline: BaselineOpt = None,
    max_regression: MaxRegressionOpt = None,
    junit_path: JunitOpt = None,
    form: FormatOpt = "text",
    storage_option: StorageOpt = None,
) -> None:
    """Combine JSON reports into exactly the figures of a single run over all their images.

    Totals come from each image's sums and pixel counts, never from averages. Refused: reports
    made with other settings, an image listed twice, a missing or repeated shard.
    """
    from .pipeline import merge as run_merge
    from .reports.files import clean_stale
    from .storage import parse_options

    _check_outputs(csv_path, json_path, junit_path, form)
    clean_stale(p for p in (csv_path, json_path, junit_path) if p)
    try:
        options = parse_options(storage_option or ())
        report = run_merge(
            reports, max_excess=max_excess, max_image_excess=max_image_excess, max_bce=max_bce,
            max_group_excess=max_group_excess, baseline=baseline, max_regression=max_regression, top=top,
            group_by=group_by, per_channel=per_channel, storage_options=options,
        )  # fmt: skip
        _render(
            report, csv_path=csv_path, json_path=json_path, junit_path=junit_path, form=form,
            storage_options=options,
        )  # fmt: skip
    except BceEvalError as e:
        raise fail(str(e)) from None


@app.command()
@_interruptible
def report(
    saved: Annotated[
        Path,
        typer.Argument(metavar="REPORT", help="A JSON (or CSV) report written by bce-eval compare or merge."),
    ],
    html_path: HtmlOpt = None,
    html_top: HtmlTopOpt = 50,
    maps: MapsOpt = None,
    maps_top: MapsTopOpt = None,
    maps_format: MapsFormatOpt = "png",
    top: Annotated[int, typer.Option(min=0, help="How many of the worst images to list.")] = 10,
    max_excess: MaxExcessOpt = None,
    max_image_excess: MaxImageExcessOpt = None,
    max_bce: MaxBceOpt = None,
    baseline: BaselineOpt = None,
    max_regression: MaxRegressionOpt = None,
) -> None:
    """Show a saved report, and build its HTML page or maps from it.

    Pictures and maps are read again from the images the report names, where they are still
    there (and unchanged); the others are left out with a note. Gates given here are checked
    on the report's figures.
    """
    from .errors import ReportError
    from .pipeline import read_report
    from .reports.text import print_summary

    _check_outputs(None, None, None, "text", html_path)
    try:
        _check_maps(maps, maps_top, maps_format)
        loaded = read_report(
            saved, top=top, max_excess=max_excess, max_image_excess=max_image_excess, max_bce=max_bce,
            baseline=baseline, max_regression=max_regression,
        )  # fmt: skip
        unwritten = None
        if maps is not None:
            try:
                _write_maps(loaded, maps, maps_top, maps_format)
            except ReportError as e:
                unwritten = e
        try:
            loaded.write(html=html_path, html_top=html_top)
        except ReportError as e:
            unwritten = unwritten or e
        print_summary(stderr if html_path == "-" else stdout, loaded.view)
        if unwritten is not None:
            raise fail(str(unwritten))
        if not loaded.verdict.passed:
            raise typer.Exit(EXIT_GATE)
    except BceEvalError as e:
        raise fail(str(e)) from None


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


@app.command(cls=_Command)
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
    from .model import Scoring, unit_scale

    try:
        scoring = Scoring(convention, eps, logits)
    except BceEvalError as e:
        raise fail(str(e)) from None
    y, p = _values(target, "--target"), _values(pred, "--pred")
    if len(y) != len(p) or not y:
        raise fail(f"--target has {len(y)} values and --pred {len(p)}; give the same number, at least one")
    try:
        maps = metrics.pixel_maps(y, p, eps=eps, convention=convention, from_logits=logits)
    except metrics.ValueOutOfRange as e:
        raise fail(
            f"--{e.which}: value {e.value!r} (position {e.index[0] + 1}) is not {e.expected}"
        ) from None
    scale = unit_scale(units)
    stdout.print(f"convention {escape(scoring.describe())}; figures in {units}")
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
