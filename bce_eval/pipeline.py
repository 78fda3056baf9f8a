"""The evaluation as one call: ``compare`` (folders), ``compare_arrays`` (a batch in memory),
``read_report`` and ``merge`` (reports written earlier) each give a ``Report``.

A Report holds the settings, every pair's result (failed pairs with their error), the summary,
the gate verdict and the exit code the command would use, and writes itself in every format.
The command, and every other front end, is a layer over these four functions.

>>> import numpy as np
>>> targets = np.array([[[0.5, 0.3], [0.5, 0.9]]])  # one 2x2 grey image (NHW)
>>> report = compare_arrays(targets, np.array([[[0.1, 0.3], [0.5, 0.8]]]), layout="NHW")
>>> round(report.summary.excess, 6), report.exit_code
(0.136879, 0)
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import EXIT_GATE, EXIT_INPUT, EXIT_OK, InputError, OptionError, printable
from .gates import Thresholds, Verdict, check, check_baseline, compare_with_baseline
from .metrics import KERAS_EPSILON, Sums
from .model import AlphaMode, Backend, Convention, Display, ImageResult, Settings, Summary, Units

if TYPE_CHECKING:
    from rich.console import Console

    from .engine import ArrayPair
    from .images import Pair
    from .reports.maps import MapScale, MapsFormat, MapsWritten
    from .reports.view import Overall, View
    from .stacks import Batch, Source

Notes = Callable[[str], None]


@dataclass(frozen=True, eq=False)
class Report:
    """The outcome of an evaluation: settings, per-image results, summary, verdict, exit code.

    ``images`` lists every pair in order, failed ones with their ``error``; ``summary`` has the
    overall figures in the report's unit (``pairs``, ``pixels``, ``bce``, ``entropy``,
    ``excess``, the spread of per-image excess); ``totals`` the sums in nats, which merge
    exactly. ``notes`` are what the run said on the way (ignored files, lossy targets).
    A report read back from a file has ``source``, its path; one of a batch in memory keeps
    its items (``arrays``, views of the caller's arrays) to draw maps and thumbnails from.
    """

    settings: Settings
    images: list[ImageResult]
    verdict: Verdict
    shard: tuple[int, int] | None = None
    notes: tuple[str, ...] = ()
    source: str | None = None
    exact: bool = True  # its sums in nats are exactly the run's (False: an old bits report)
    settings_recorded: bool = True  # False for a CSV report, which records only its unit
    arrays: dict[str, ArrayPair] | None = field(default=None, repr=False)
    layouts: tuple[str, ...] = ()  # of the batch files read (nhwc, nchw, nhw), stated in the summary
    version: int | None = None  # a report read back: its JSON format (reports.files.REPORT_FORMAT)
    # The fsspec options its images' URLs were read with (object storage), to read them again.
    storage_options: Mapping[str, Any] | None = field(default=None, repr=False)

    @cached_property
    def stats(self) -> Summary:
        """Totals in nats and the spread of per-image excess (in nats)."""
        return Summary.of(self.images)

    @cached_property
    def view(self) -> View:
        """The figures in display units, as every format shows them."""
        from .reports.view import View

        return View(self.images, self.stats, self.settings, self.verdict, layouts=self.layouts)

    @property
    def summary(self) -> Overall:
        return self.view.overall

    @property
    def totals(self) -> Sums:
        return self.stats.totals

    @property
    def failed(self) -> list[ImageResult]:
        return [r for r in self.images if not r.ok]

    @property
    def hint(self) -> str | None:
        """One line saying what probably went wrong when most pairs failed for one reason, and
        the option that fixes it (the summary ends with it); None otherwise."""
        return self.view.hint

    def error_lines(self, shown: int = 10) -> list[str]:
        """The failed pairs' errors, one line each, in order, with at most ``shown`` of each kind
        and "... and N more like this" for the rest (all of them are in the reports)."""
        from .hints import condensed

        return condensed(self.failed, shown)

    @property
    def exit_code(self) -> int:
        """2 if a pair could not be evaluated (it takes precedence), 1 if a gate failed, else 0."""
        if self.failed:
            return EXIT_INPUT
        return EXIT_OK if self.verdict.passed else EXIT_GATE

    def to_json(self) -> dict[str, Any]:
        """The JSON report as a dict (NaN where a figure has no value; written as null)."""
        from .reports.files import to_json

        return to_json(self.view, __version__, shard=self.shard)

    def write_json(self, path: str | os.PathLike[str]) -> None:
        self.write(json=path)

    def write_csv(self, path: str | os.PathLike[str]) -> None:
        self.write(csv=path)

    def write_junit(self, path: str | os.PathLike[str]) -> None:
        self.write(junit=path)

    def write(
        self,
        *,
        csv: str | os.PathLike[str] | None = None,
        json: str | os.PathLike[str] | None = None,
        junit: str | os.PathLike[str] | None = None,
        html: str | os.PathLike[str] | None = None,
        html_top: int = 50,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the reports asked for ('-' is stdout), all replaced together or none: each goes
        to a temporary file beside its path, and they are renamed into place only once all are
        complete. ReportError (and the old reports left as they were) if one cannot be written.
        ``html``: the page of ``to_html(top=html_top)``, made before any file is replaced.

        A path may be a URL (s3://...; fsspec, with ``storage_options``, by default the
        report's): such a report is rendered in memory with the others, and put in one request
        once the files are in place."""
        from .reports import ci, files
        from .storage import is_url

        page = self.to_html(top=html_top) if html is not None else ""
        writers = {
            csv: lambda out: files.write_csv(self.view, out),
            json: lambda out: files.write_json(self.to_json(), out),
            junit: lambda out: ci.write_junit(self.view, out),
            html: lambda out: out.write(page),
        }
        reports = [(os.fspath(p), w) for p, w in writers.items() if p is not None]
        remote = [(p, w) for p, w in reports if is_url(p)]
        if not remote:
            files.write_together(reports)
            return
        from .storage import Storage

        storage = Storage(self.storage_options if storage_options is None else storage_options)
        rendered = storage.render(remote)
        files.write_together([(p, w) for p, w in reports if not is_url(p)])
        storage.put(rendered)

    def write_html(self, path: str | os.PathLike[str], *, top: int = 50) -> None:
        self.write(html=path, html_top=top)

    def to_html(self, *, top: int = 50) -> str:
        """One self-contained HTML page (no network: images embedded, no external script, font
        or style): summary, settings, verdict, a histogram of per-image excess, every image in
        a sortable, filterable table, and the ``top`` worst with target, reconstruction, excess
        map and signed error side by side (pictures read again from the pairs' files, or the
        arrays of a batch; left out with a note where they cannot be)."""
        from .reports.html import page

        return page(self, top=top)

    def write_maps(
        self, folder: str | os.PathLike[str], *, top: int | None = None, format: MapsFormat = "png"
    ) -> MapsWritten:
        """Heat maps of the evaluated pairs (the ``top`` worst by excess; None: all) in folder,
        under each pair's name: ``NAME.excess.png`` (per-pixel excess, the mean over channels, on
        magma) and ``NAME.signed.png`` (p - y, on berlin, centred on 0), on one scale for the
        run with legend images; or, with format "npy", ``NAME.excess.npy``, the float64 excess
        per value in the report's unit. ReportError if they cannot be written; pairs whose
        files cannot be read again, or have changed, are left out (``MapsWritten.left_out``)."""
        from .reports.maps import write_maps

        return write_maps(self, folder, top=top, format=format)

    @property
    def map_scale(self) -> MapScale | None:
        """The colour scale of this report's maps, once the first have been drawn: one scale
        for every map and thumbnail of a run."""
        return self.__dict__.get("_map_scale")

    def fix_map_scale(self, scale: MapScale) -> MapScale:
        """The report's map scale: the one fixed earlier, else ``scale``, fixed from now on."""
        return self.__dict__.setdefault("_map_scale", scale)  # type: ignore[no-any-return]

    def to_markdown(self) -> str:
        """A GitHub-flavoured summary (for $GITHUB_STEP_SUMMARY or a merge request comment)."""
        from .reports.ci import markdown

        return markdown(self.view)

    def github_commands(self) -> list[str]:
        """GitHub Actions workflow commands: an ::error per failed gate and input error."""
        from .reports.ci import github_commands

        return github_commands(self.view)

    def verdict_lines(self) -> list[str]:
        """The verdict for people: a line per gate, the baseline comparison, the outcome."""
        from .reports.ci import verdict_lines

        return verdict_lines(self.verdict, self.view.scale)


def _shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    from .shards import parse_shard

    if shard is None or isinstance(shard, tuple):
        return None if shard is None else parse_shard(f"{shard[0]}/{shard[1]}")
    return parse_shard(shard)


@dataclass(frozen=True)
class _Plan:
    """What every front end checks before any image is read."""

    settings: Settings
    thresholds: Thresholds
    baseline: Report | None
    notes: list[str] = field(default_factory=list)


def _plan(
    settings: Settings,
    *,
    max_excess: float | None = None,
    max_image_excess: float | None = None,
    max_bce: float | None = None,
    max_regression: float | None = None,
    baseline: str | os.PathLike[str] | Report | None = None,
    max_group_excess: float | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> _Plan:
    """Gates and baseline checked: OptionError or ReportError before any image is read."""
    thresholds = Thresholds(max_excess, max_image_excess, max_bce, max_regression, max_group_excess)
    if max_regression is not None and baseline is None:
        raise OptionError("--max-regression", "needs --baseline REPORT to compare with")
    if max_group_excess is not None and settings.display.group_by is None:
        raise OptionError("--max-group-excess", "needs --group-by to say what a group is")
    stored = None
    if baseline is not None:
        stored = (
            baseline
            if isinstance(baseline, Report)
            else read_report(baseline, storage_options=storage_options)
        )
        check_baseline(stored, settings)
    return _Plan(settings, thresholds, stored)


def _conclude(
    images: list[ImageResult],
    plan: _Plan,
    *,
    shard: tuple[int, int] | None = None,
    arrays: dict[str, ArrayPair] | None = None,
    layouts: tuple[str, ...] = (),
    storage_options: Mapping[str, Any] | None = None,
) -> Report:
    """The summary, the baseline comparison and the gates' verdict over a run's results."""
    settings = plan.settings
    summary = Summary.of(images)
    comparison = compare_with_baseline(images, summary, settings, plan.baseline) if plan.baseline else None
    verdict = check(images, summary, settings, plan.thresholds, baseline=comparison)
    report = Report(
        settings, images, verdict, shard, tuple(plan.notes), arrays=arrays, layouts=layouts,
        storage_options=storage_options,
    )  # fmt: skip
    report.__dict__["stats"] = summary  # already computed: filled in as cached_property would
    return report


# Seconds a run goes on before its progress bar appears: quick runs print no bar at all.
PROGRESS_AFTER = 0.5


def _with_progress(results: Iterator[ImageResult], total: int, progress: Any) -> list[ImageResult]:
    """All results; with ``progress`` (True: on stderr; or a rich Console), a bar once the run
    has taken PROGRESS_AFTER seconds."""
    if not progress:
        return list(results)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    collected = []
    columns = (TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    console = progress if isinstance(progress, Console) else Console(stderr=True)
    bar = Progress(*columns, console=console, transient=True)
    task = bar.add_task("evaluating", total=total)
    started, shown = time.monotonic(), False
    try:
        for result in results:
            collected.append(result)
            bar.advance(task)
            if not shown and time.monotonic() - started >= PROGRESS_AFTER:
                bar.start()
                shown = True
    finally:
        bar.stop()
    return collected


def _note(plan: _Plan, notes: Notes | None, line: str) -> None:
    plan.notes.append(line)
    if notes is not None:
        notes(line)


def compare(
    targets: str | os.PathLike[str],
    recons: str | os.PathLike[str],
    *,
    recon_suffix: str = "",
    pairs: str | os.PathLike[str] | None = None,
    allow_outside: bool = False,
    layout: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    scheduler: str | Any | None = None,
    convention: Convention = "keras",
    eps: float = KERAS_EPSILON,
    logits: bool = False,
    units: Units = "nats",
    alpha: AlphaMode = "drop",
    grayscale: bool = False,
    max_image_bytes: int | None = None,
    backend: Backend = "numpy",
    device: str = "cpu",
    workers: int | None = None,
    shard: str | tuple[int, int] | None = None,
    group_by: str | None = None,
    per_channel: bool = False,
    max_excess: float | None = None,
    max_image_excess: float | None = None,
    max_bce: float | None = None,
    max_group_excess: float | None = None,
    baseline: str | os.PathLike[str] | Report | None = None,
    max_regression: float | None = None,
    top: int = 10,
    maps: str | os.PathLike[str] | None = None,
    maps_top: int | None = None,
    maps_format: MapsFormat = "png",
    progress: bool | Console = False,
    notes: Notes | None = None,
) -> Report:
    """Score every reconstruction in ``recons`` against its target in ``targets``.

    Takes every option of ``bce-eval compare`` (see its ``--help``), named as there with
    underscores. ``targets`` and ``recons`` are folders, or .npy / .npz batch files
    (``layout``: "nhwc", "nchw" or "nhw", or "TARGETS,RECONS" such as "nhwc,nchw"; by
    default nhwc for 4-D and nhw for 3-D arrays);
    ``pairs`` is a CSV file of pairs, or "order" to pair item i of one side with item i of the
    other. ``notes`` is called with each note the run makes on the way (ignored files, lossy
    targets, the shard's size); they are also kept in ``Report.notes``. ``progress`` shows a bar
    on stderr (or on the rich Console given) for runs longer than half a second.
    ``maps``: a folder for heat maps, drawn after the run (``Report.write_maps``).

    ``targets``, ``recons``, ``pairs`` and ``baseline`` may be fsspec URLs (s3://, gs://,
    az://, http(s)://, memory://, file://), opened with ``storage_options``. ``scheduler``
    runs the evaluation on a Dask cluster: a scheduler's address (tcp://host:8786), "local"
    for a LocalCluster on this machine, or a distributed.Client; the figures are the same.

    Raises OptionError (an option's value), ReportError (the baseline), BackendError (torch
    or the device) or InputError (the folders, batch files or the pair list) before any image
    is read; a pair that cannot be evaluated is a failed entry of ``Report.images``, not an
    exception.
    """
    from . import images
    from .engine import check_backend
    from .stacks import Plan, layouts_read, plan_pairs
    from .storage import is_url

    settings = Settings.of(
        convention=convention, eps=eps, logits=logits, alpha=alpha, grayscale=grayscale,
        max_image_bytes=max_image_bytes, backend=backend, device=device, workers=workers,
        units=units, top=top, layout=layout, group_by=group_by, per_channel=per_channel,
    )  # fmt: skip
    plan = _plan(
        settings, max_excess=max_excess, max_image_excess=max_image_excess, max_bce=max_bce,
        max_regression=max_regression, baseline=baseline, max_group_excess=max_group_excess,
        storage_options=storage_options,
    )  # fmt: skip
    shard_of_n = _shard(shard)
    if scheduler is not None:
        from .cluster import check_scheduler

        check_scheduler(scheduler, plan.settings, workers)
    check_backend(plan.settings)
    _check_maps(maps, maps_top, maps_format)
    storage = None
    if any(is_url(p) for p in (targets, recons, pairs)):  # object storage: files only, no batches
        from .storage import Storage

        storage = Storage(dict(storage_options or {}))
        pairing = storage.pairing(
            os.fspath(targets), os.fspath(recons), recon_suffix=recon_suffix,
            pairs=None if pairs is None else os.fspath(pairs), allow_outside=allow_outside,
        )  # fmt: skip
        planned = Plan(list(pairing.pairs), pairing.ignored)
    else:
        # A shard selects the items of a batch by their own names: .npy batches are told from
        # images by their headers first.
        planned = plan_pairs(
            Path(targets), Path(recons), recon_suffix=recon_suffix, pairs=pairs,
            layouts=plan.settings.reading.layouts, sniff=shard_of_n is not None, allow_outside=allow_outside,
        )  # fmt: skip
    total = sum(1 if isinstance(u, images.Pair) else u.pairs for u in planned.units)
    if not total:
        looked_for = ", ".join(images.SUFFIXES)
        raise InputError(f"{targets} or {recons}", f"no image files (looked for {looked_for})")
    for path in planned.ignored:
        _note(plan, notes, f"note: {printable(path)}: not an image file bce-eval reads; ignored")
    lossy = [u.target for u in planned.files if u.target and os.path.splitext(u.target)[1].lower() in
             images.LOSSY_SUFFIXES]  # fmt: skip
    if lossy:
        _note(
            plan,
            notes,
            f"warning: {len(lossy)} {'target is' if len(lossy) == 1 else 'targets are'} JPEG, "
            f"e.g. {printable(lossy[0])}: lossy targets carry compression artefacts into every figure",
        )
    keep = None
    selected = total
    if shard_of_n:
        from .shards import shard_of

        index, count = shard_of_n

        def keep(name: str) -> bool:
            return shard_of(name, count) == index

        kept = [u for u in planned.units if not isinstance(u, images.Pair) or keep(u.name)]
        selected = sum(
            1 if isinstance(u, images.Pair) else sum(1 for n in u.names() if keep(n)) for u in kept
        )
        planned = replace(planned, units=kept)
        _note(plan, notes, f"shard {index}/{count}: {selected} of {total} pairs")
    batches: list[Batch] = []
    results = _with_progress(
        _evaluate_units(planned.units, plan.settings, keep, batches, storage=storage, scheduler=scheduler),
        selected,
        progress,
    )
    report = _conclude(
        results, plan, shard=shard_of_n, layouts=layouts_read(batches),
        storage_options=None if storage is None else storage.options,
    )  # fmt: skip
    return _with_maps(report, maps, maps_top, maps_format, notes)


def _evaluate_units(
    units: Sequence[Pair | Batch],
    settings: Settings,
    keep: Callable[[str], bool] | None,
    batches: list[Batch],
    *,
    storage: Any = None,
    scheduler: Any = None,
) -> Iterator[ImageResult]:
    """Results in the order of units: file pairs from the engine's workers (or a Dask cluster,
    ``scheduler``; from object storage, ``storage``), batches read and scored here, item by
    item (``keep``: the items of a shard). Each batch evaluated is added to ``batches``, those
    found in local .npy files the workers could not read as images too."""
    from .engine import evaluate
    from .images import Pair

    files = [u for u in units if isinstance(u, Pair)]
    from_files = evaluate(files, settings, storage=storage, scheduler=scheduler) if files else iter(())
    for unit in units:
        if not isinstance(unit, Pair):
            batches.append(unit)
            yield from _evaluate_batch(unit, settings, keep)
            continue
        result = next(from_files)
        found = None if storage is not None else _batch_files(unit, result, settings)
        if found is None:
            yield result
            continue
        for batch in found:
            if isinstance(batch, Pair):  # a batch facing an image: the pair's problem
                culprit = batch.culprit or ""
                error = str(InputError(culprit, batch.problem or ""))
                yield ImageResult(batch.name, batch.target or "", batch.recon or "", error=error)
            else:
                batches.append(batch)
                yield from _evaluate_batch(batch, settings, keep)


def _batch_files(pair: Pair, result: ImageResult, settings: Settings) -> list[Pair | Batch] | None:
    """What a pair is when the engine could not read it as two images because a .npy side
    holds a batch (see stacks.classify); None for any other result."""
    from .stacks import classify

    if result.ok or not any(p and p.lower().endswith(".npy") for p in (pair.target, pair.recon)):
        return None
    units = classify(pair, settings.reading.layouts)
    return None if units == [pair] else units


# Pairs of a batch scored in one call of the engine.
_BATCH_PAIRS = 128


def _side_items(side: Sequence[Source], settings: Settings, recon: bool) -> Iterator[tuple[str, str, Any]]:
    """(name, label, Decoded item or the error that stands for it) of each item of a side of a
    batch, in order: a stack's items as (height, width, channels) views of the chunk read, by
    its layout (as compare_arrays reads an array), a file decoded as compare decodes it."""
    import numpy as np

    from .images import Decoded, decode, normalize
    from .stacks import File

    logits = recon and settings.scoring.logits
    layout = settings.reading.layouts[1 if recon else 0]
    for source in side:
        if isinstance(source, File):
            try:
                yield source.name, source.path, decode(source.path, logits=logits, layout=layout)
            except InputError as e:
                yield source.name, source.path, str(e)
            continue
        # A sample type no item can be read with fails every item without reading one.
        try:
            normalize(np.zeros((1, 1, 1), source.dtype), source.label)
            refused = None
            if logits and source.dtype.kind != "f":
                raise InputError(
                    source.label, f"with logits, reconstructions must hold floats, not {source.dtype}"
                )
        except InputError as e:
            refused = str(e)
        done = 0
        try:
            if refused is None:
                for start, chunk in source.chunks():
                    for i, item in enumerate(_items(chunk, source.layout.upper(), source.label), start):
                        yield source.item_name(i), source.item_label(i), Decoded(item, False)
                        done = i + 1
        except InputError as e:
            refused = str(e)
        for i in range(done, source.items):  # what could not be read
            yield source.item_name(i), source.item_label(i), refused


def _evaluate_batch(
    batch: Batch, settings: Settings, keep: Callable[[str], bool] | None
) -> Iterator[ImageResult]:
    """The results of a batch, item by item, scored _BATCH_PAIRS at a time by the engine's
    ArrayPair path (engine.evaluate_arrays): memory holds a chunk of each side at most."""
    import itertools

    from .engine import ArrayPair, evaluate_arrays

    targets = _side_items(batch.target, settings, recon=False)
    recons = _side_items(batch.recon, settings, recon=True)
    counts = (sum(s.items for s in batch.target), sum(s.items for s in batch.recon))
    pending: list[ImageResult | ArrayPair] = []

    def score() -> Iterator[ImageResult]:
        scored = iter(evaluate_arrays([p for p in pending if isinstance(p, ArrayPair)], settings))
        for p in pending:
            yield next(scored) if isinstance(p, ArrayPair) else p
        pending.clear()

    for target, recon in itertools.zip_longest(targets, recons):
        name = (target or recon)[0]
        if keep is not None and not keep(name):
            continue
        t_label, r_label = (target[1] if target else ""), (recon[1] if recon else "")
        if recon is None:
            problem = (
                f"no reconstruction: the reconstructions hold {counts[1]} items, the targets {counts[0]}"
            )
            pending.append(ImageResult(name, t_label, "", error=str(InputError(t_label, problem))))
        elif target is None:
            problem = f"no target: the targets hold {counts[0]} items, the reconstructions {counts[1]}"
            pending.append(ImageResult(name, "", r_label, error=str(InputError(r_label, problem))))
        elif isinstance(target[2], str) or isinstance(recon[2], str):
            error = target[2] if isinstance(target[2], str) else recon[2]
            pending.append(ImageResult(name, t_label, r_label, error=error))
        else:
            pending.append(ArrayPair(name, t_label, r_label, target[2], recon[2]))
        if len(pending) >= _BATCH_PAIRS:
            yield from score()
    yield from score()


def _check_maps(maps: str | os.PathLike[str] | None, top: int | None, format: str) -> None:
    if maps is not None or top is not None or format != "png":
        from .reports.maps import check_options

        check_options(maps, top, format)


def _with_maps(
    report: Report,
    maps: str | os.PathLike[str] | None,
    top: int | None,
    format: MapsFormat,
    notes: Notes | None,
) -> Report:
    """The report, its maps written first when a folder is given (their notes added)."""
    if maps is None:
        return report
    written = report.write_maps(maps, top=top, format=format)
    lines = [*written.left_out, written.describe()]
    for line in lines:
        if notes is not None:
            notes(line)
    return _with_notes(report, (*report.notes, *lines))


def _with_notes(report: Report, notes: tuple[str, ...]) -> Report:
    """The same report with other notes (its figures, scale and view kept)."""
    kept = {k: v for k, v in report.__dict__.items() if k in ("stats", "view", "_map_scale")}
    changed = replace(report, notes=notes)
    changed.__dict__.update(kept)
    return changed


# Layouts of compare_arrays, and where each puts the items, height, width and channels.
LAYOUTS: dict[str, str] = {
    "NHWC": "NHWC",
    "NCHW": "NCHW",
    "NHW": "NHW",
    "HWC": "HWC",
    "CHW": "CHW",
    "HW": "HW",
}


def _as_numpy(batch: Any, which: str) -> Any:
    """A NumPy view of an array or a (CPU or device) torch tensor, in its own dtype; bfloat16,
    which NumPy lacks, becomes float32, which holds every bfloat16 value exactly."""
    import numpy as np

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(batch, torch.Tensor):
        tensor = batch.detach()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        return tensor.cpu().numpy()
    array = np.asarray(batch)
    if array.dtype.kind not in "buif":
        raise OptionError(which, f"holds {array.dtype} values; expected numbers (uint8, uint16 or float)")
    return array


def _items(batch: Any, layout: str, which: str) -> list[Any]:
    """The images of a batch as (height, width, channels) views, by the layout given."""
    import numpy as np

    array = _as_numpy(batch, which)
    if array.ndim != len(layout):
        raise OptionError(
            which,
            f"has shape {tuple(array.shape)} ({array.ndim} dimensions) but layout {layout} has {len(layout)}",
        )
    if "N" not in layout:
        array = array[None]
    order = "N" + layout.replace("N", "")
    if "C" not in order:
        array, order = array[..., None], order + "C"
    return list(np.moveaxis(array, [order.index(axis) for axis in "NHWC"], [0, 1, 2, 3]))


def compare_arrays(
    targets: Any,
    recons: Any,
    *,
    layout: str,
    names: Sequence[str] | None = None,
    notes: Notes | None = None,
    progress: bool | Console = False,
    **options: Any,
) -> Report:
    """Score a batch of reconstructions in memory (NumPy arrays or torch tensors) as
    ``compare`` scores files, with the same figures as writing each image to a file would give
    (uint8 and uint16 scaled by their dtype, floats as they are, logits with ``logits=True``).

    ``layout`` says where the items, height, width and channels are: "NHWC", "NCHW", "NHW" for
    a batch, "HWC", "CHW", "HW" for one image; it is never guessed from the shape. ``names``
    name the items in the report (default "0", "1", ... zero-padded to sort in order). Arrays
    carry no alpha flag: every channel is scored. ``options``: the scoring, display and gate
    options of ``compare`` (convention, eps, logits, units, grayscale, backend, device, top,
    group_by, per_channel, max_excess, max_image_excess, max_bce, max_group_excess, baseline,
    max_regression) and maps options (maps, maps_top, maps_format). The report keeps the items,
    views of these arrays, to draw maps and thumbnails from.
    """
    from .engine import ArrayPair, check_backend, evaluate_arrays

    setting_names = {
        "convention", "eps", "logits", "units", "grayscale", "backend", "device", "top", "group_by",
        "per_channel",
    }  # fmt: skip
    gate_names = {
        "max_excess", "max_image_excess", "max_bce", "baseline", "max_regression", "max_group_excess",
    }  # fmt: skip
    map_names = {"maps", "maps_top", "maps_format"}
    unknown = sorted(options.keys() - setting_names - gate_names - map_names)
    if unknown:
        raise TypeError(f"compare_arrays() got unexpected keyword argument(s) {', '.join(unknown)}")
    settings = Settings.of(**{k: v for k, v in options.items() if k in setting_names})
    plan = _plan(settings, **{k: v for k, v in options.items() if k in gate_names})
    check_backend(plan.settings)
    maps, maps_top, maps_format = (options.get(k) for k in ("maps", "maps_top", "maps_format"))
    _check_maps(maps, maps_top, maps_format or "png")
    key = layout.upper() if isinstance(layout, str) else layout
    if key not in LAYOUTS:
        raise OptionError("layout", f"must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    target_items, recon_items = _items(targets, key, "targets"), _items(recons, key, "recons")
    if len(target_items) != len(recon_items):
        raise OptionError("recons", f"has {len(recon_items)} items and targets {len(target_items)}")
    count = len(target_items)
    if names is None:
        width = len(str(max(count - 1, 0)))
        names = [f"{i:0{width}d}" for i in range(count)]
    names = [str(n) for n in names]
    if len(names) != count:
        raise OptionError("names", f"has {len(names)} names for {count} items")
    if len(set(names)) != count:
        raise OptionError("names", "must be unique: a name is one image in every report")
    items = [
        ArrayPair(name, f"targets[{i}]", f"recons[{i}]", t, r)
        for i, (name, t, r) in enumerate(zip(names, target_items, recon_items, strict=True))
    ]
    results = _with_progress(evaluate_arrays(items, plan.settings), count, progress)
    report = _conclude(results, plan, arrays={item.name: item for item in items})
    return _with_maps(report, maps, maps_top, maps_format or "png", notes)


def read_report(
    path: str | os.PathLike[str],
    *,
    top: int | None = None,
    max_excess: float | None = None,
    max_image_excess: float | None = None,
    max_bce: float | None = None,
    baseline: str | os.PathLike[str] | Report | None = None,
    max_regression: float | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Report:
    """A CSV or JSON report written by bce-eval, read back: its settings (a CSV report records
    only its unit), images and shard; ReportError if it cannot be read or is not one. Gates
    are not re-checked unless given: then they are checked on the report's own figures, as
    ``compare`` checks them (``top``: how many worst images a view lists and a gate names).
    ``path`` and ``baseline`` may be URLs, read with ``storage_options``, which the report
    keeps to read its images again (maps, thumbnails)."""
    from .reports.files import read_report as read_file

    loaded = read_file(path, storage_options=storage_options)
    settings = loaded.settings
    if top is not None:
        settings = replace(settings, display=Display(settings.display.units, top))
    verdict = Verdict(settings.display.units)
    if any(x is not None for x in (max_excess, max_image_excess, max_bce, baseline, max_regression)):
        plan = _plan(
            settings, max_excess=max_excess, max_image_excess=max_image_excess, max_bce=max_bce,
            max_regression=max_regression, baseline=baseline, storage_options=storage_options,
        )  # fmt: skip
        verdict = _conclude(loaded.images, plan).verdict
    return Report(
        settings,
        loaded.images,
        verdict,
        loaded.shard,
        source=loaded.path,
        exact=loaded.exact,
        settings_recorded=loaded.settings_recorded,
        layouts=loaded.layouts,
        version=loaded.version,
        storage_options=storage_options,
    )


def merge(
    reports: Sequence[str | os.PathLike[str] | Report],
    *,
    max_excess: float | None = None,
    max_image_excess: float | None = None,
    max_bce: float | None = None,
    baseline: str | os.PathLike[str] | Report | None = None,
    max_regression: float | None = None,
    top: int = 10,
    group_by: str | None = None,
    per_channel: bool = False,
    max_group_excess: float | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Report:
    """Combine JSON reports (paths or Reports) of shards, or of runs over distinct images, into
    exactly the figures of a single run over all their images, with the gates asked for.

    Totals come from each image's sums in nats and pixel counts, never from averages (for each
    channel too, where the reports have them). Refused (ReportError): reports made with other
    settings, an image listed twice, a missing or repeated shard, reports of format 1 beside
    newer ones (their clipped counts mean another thing). Paths may be URLs, read with
    ``storage_options``.
    """
    from .shards import merged_images

    Thresholds(max_excess, max_image_excess, max_bce, max_regression, max_group_excess)  # options first
    display = Display(top=top, group_by=group_by, per_channel=per_channel)
    loaded = [
        r if isinstance(r, Report) else read_report(r, storage_options=storage_options) for r in reports
    ]
    images = merged_images(loaded)
    first = loaded[0].settings
    settings = replace(first, display=replace(display, units=first.display.units))
    plan = _plan(
        settings, max_excess=max_excess, max_image_excess=max_image_excess, max_bce=max_bce,
        max_regression=max_regression, baseline=baseline, max_group_excess=max_group_excess,
        storage_options=storage_options,
    )  # fmt: skip
    layouts = next((r.layouts for r in loaded if r.layouts), ())
    return _conclude(images, plan, layouts=layouts, storage_options=storage_options)
