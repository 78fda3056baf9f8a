"""Splitting a run into shards, and merging the reports of shards (or of any runs over distinct
images) into exactly the figures of a single run.

A pair's shard is a stable hash of its name alone, so the split is the same on every machine and
adding images never moves the others. Merged figures are rebuilt from each image's sums in nats
and its pixel count, never from the shards' averages.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from .errors import OptionError, ReportError
from .model import ImageResult

if TYPE_CHECKING:
    from .pipeline import Report

T = TypeVar("T")


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' as (I, N), 1 <= I <= N."""
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise OptionError("--shard", f"expected I/N with 1 <= I <= N, e.g. 1/4, not {text!r}")
    return int(index), int(count)


def shard_of(name: str, count: int) -> int:
    """The shard (1 to count) a pair belongs to: CRC-32 of its name, modulo count, plus 1.

    A stable hash of the name alone: the same on every machine and Python version, and adding or
    removing images never moves the others to another shard.
    """
    return zlib.crc32(name.encode("utf-8", "surrogateescape")) % count + 1


def select_shard(items: Sequence[T], shard: tuple[int, int], name: Callable[[T], str]) -> list[T]:
    """The items of shard (index, count), in their order; ``name`` gives an item's name."""
    index, count = shard
    return [item for item in items if shard_of(name(item), count) == index]


def _check_shards(reports: Sequence[Report], *, complete: bool) -> None:
    """Shards must come from one split, each once, and (``complete``) all be there."""
    shards = [(r.shard, r.source or "report") for r in reports if r.shard is not None]
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


def merged_images(reports: Sequence[Report]) -> list[ImageResult]:
    """The images of all reports, sorted by name (the order of a run over the folders), refusing
    any report that could make the merged figures wrong: a CSV report (no settings), one without
    exact sums, other settings, an image listed twice, shards of different splits or a missing
    shard."""
    if not reports:
        raise OptionError("REPORT", "merge needs at least one report")
    first = reports[0]
    for report in reports:
        where = report.source or "report"
        if not report.settings_recorded:
            raise ReportError(where, "merge reads JSON reports, which record their settings")
        if not report.exact:
            raise ReportError(where, "has no sums in nats (written before report format 1): re-run it")
    for report in reports[1:]:
        difference = first.settings.difference(report.settings)
        a, b = first.settings.display.units, report.settings.display.units
        if a != b:
            difference = ", ".join(filter(None, [difference, f"units {a} vs {b}"]))
        if difference:
            raise ReportError(
                report.source or "report", f"made with other settings than {first.source} ({difference})"
            )
    formats = {r.version for r in reports if r.version is not None}
    if len(formats) > 1:
        old = next(r for r in reports if r.version == min(formats))
        raise ReportError(
            old.source or "report",
            f"is a report of format {min(formats)}, the others of format {max(formats)}, whose clipped "
            "counts mean another thing: re-run it with this bce-eval",
        )
    _check_shards(reports, complete=False)
    owner: dict[str, str] = {}
    images = []
    for report in reports:
        for result in report.images:
            if result.name in owner:
                raise ReportError(
                    report.source or "report",
                    f"lists {result.name} which {owner[result.name]} lists too (overlapping runs)",
                )
            owner[result.name] = report.source or "report"
            images.append(result)
    _check_shards(reports, complete=True)
    return sorted(images, key=lambda r: r.name)
