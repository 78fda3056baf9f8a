"""Combine the JSON reports of shards (or of any runs over distinct images) into one.

The merged figures are exactly those of a single run over all the images: the summary is rebuilt
from each image's sums in nats and its pixel count, never from the shards' averages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .gates import settings_difference
from .report import ImageResult, ReportError, Settings, StoredReport


@dataclass(frozen=True)
class Merged:
    results: list[ImageResult]  # sorted by name, the order of a run over the folders
    settings: Settings  # the first report's; backend and device may differ between reports


def _check_shards(reports: Sequence[StoredReport], *, complete: bool) -> None:
    """Shards must come from one split, each once, and (``complete``) all be there."""
    shards = [(r.shard, r.path) for r in reports if r.shard is not None]
    if not shards:
        return
    counts = {shard[1] for shard, _ in shards}
    if len(counts) > 1:
        raise ReportError(
            shards[0][1], f"shards of different splits: {', '.join(sorted(f'1/{n}' for n in counts))} ..."
        )
    (count,) = counts
    seen: dict[int, str] = {}
    for (index, _), path in shards:
        if index in seen:
            raise ReportError(path, f"shard {index}/{count} again (also in {seen[index]})")
        seen[index] = path
    missing = [f"{i}/{count}" for i in range(1, count + 1) if i not in seen]
    if complete and missing:
        raise ReportError(shards[0][1], f"the split has {count} shards; missing {', '.join(missing)}")


def merge(reports: Sequence[StoredReport]) -> Merged:
    """The results of all reports, refusing any that could make the merged figures wrong:
    a CSV report (no settings), one without exact sums, other settings, an image listed twice,
    shards of different splits or a missing shard."""
    first = reports[0]
    for report in reports:
        if report.settings is None:
            raise ReportError(report.path, "merge reads JSON reports, which record their settings")
        if not report.exact:
            raise ReportError(report.path, "has no sums in nats (written before report format 1): re-run it")
    assert first.settings is not None
    for report in reports[1:]:
        assert report.settings is not None
        difference = settings_difference(first.settings, report.settings)
        if report.units != first.units:
            difference = ", ".join(filter(None, [difference, f"units {first.units} vs {report.units}"]))
        if difference:
            raise ReportError(report.path, f"made with other settings than {first.path} ({difference})")
    _check_shards(reports, complete=False)
    owner: dict[str, str] = {}
    results = []
    for report in reports:
        for result in report.results:
            if result.name in owner:
                raise ReportError(
                    report.path,
                    f"lists {result.name} which {owner[result.name]} lists too (overlapping runs)",
                )
            owner[result.name] = report.path
            results.append(result)
    _check_shards(reports, complete=True)
    return Merged(sorted(results, key=lambda r: r.name), first.settings)
