"""What probably went wrong when most pairs fail for one reason, and the option that fixes it;
failed pairs told apart by the kind of their error, so that a kind repeated many times can be
shown a few times.

The hints read the errors bce-eval itself wrote, so they work on a report read back (merge) as
on a run: a common suffix on reconstruction names (``--recon-suffix``), values outside [0, 1]
of both signs (``--logits``), the target's shape with its channels first (``--layout``).
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from collections.abc import Sequence

from .errors import printable
from .model import ImageResult, Settings

# How many errors of one kind are shown before "... and N more like this".
SHOWN_PER_KIND = 10

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|\bnan\b|\binf\b", re.IGNORECASE)
_OUT_OF_RANGE = re.compile(r"^value (\S+) at row \d+, column \d+, channel \d+ is not in \[0, 1\]$")
_SHAPES = re.compile(
    r"^shape (\d+)x(\d+)x(\d+) \(height x width x channels\) differs from the target's (\d+)x(\d+)x(\d+)$"
)


def problem(result: ImageResult) -> tuple[str, str]:
    """(culprit, problem) of a failed pair's error: the file it names, and what is wrong."""
    error = result.error or ""
    for path in (result.recon, result.target):
        prefix = f"{printable(path)}: "
        if path and error.startswith(prefix):
            return path, error[len(prefix) :]
    culprit, _, rest = error.partition(": ")
    return (culprit, rest) if rest else ("", error)


def kind(result: ImageResult) -> str:
    """The kind of a failed pair's error: its problem with every number as #, so that "value
    -7.53 at row 3 ..." and "value 9.1 at row 0 ..." are one kind."""
    return _NUMBER.sub("#", problem(result)[1])


def condensed(failed: Sequence[ImageResult], shown: int = SHOWN_PER_KIND) -> list[str]:
    """The errors of failed pairs, one line each, in order, but only the first ``shown`` of a
    kind; after each kind's last line shown, "... and N more like this" where some were left
    out."""
    kinds = [kind(r) for r in failed]
    totals = Counter(kinds)
    seen: Counter[str] = Counter()
    lines = []
    for result, k in zip(failed, kinds, strict=True):
        seen[k] += 1
        if seen[k] <= shown:
            lines.append(f"error: {result.error}")
        if seen[k] == shown and totals[k] > shown:
            lines.append(f"... and {totals[k] - shown} more like this")
    return lines


def hint(results: Sequence[ImageResult], settings: Settings) -> str | None:
    """One line saying what probably went wrong, when most pairs failed for one reason, and
    the option that fixes it; None otherwise."""
    failed = [r for r in results if not r.ok]
    if not failed or 2 * len(failed) <= len(results):
        return None
    for find in (_suffix, _logits, _layout):
        found = find(failed, settings)
        if found is not None:
            return found
    return None


def _suffix(failed: Sequence[ImageResult], settings: Settings) -> str | None:
    """Unpaired reconstructions whose names are unpaired targets' names plus one suffix."""
    lonely_targets = {r.name for r in failed if problem(r)[1].startswith("no reconstruction in ")}
    lonely_recons = [r.name for r in failed if problem(r)[1].startswith("no target in ")]
    suffixes: Counter[str] = Counter()
    example: dict[str, tuple[str, str]] = {}
    for name in lonely_recons:
        for cut in range(len(name) - 1, 0, -1):  # the longest target name that starts it
            if name[:cut] in lonely_targets:
                suffix = name[cut:]
                suffixes[suffix] += 1
                example.setdefault(suffix, (name, name[:cut]))
                break
    if not suffixes:
        return None
    suffix, count = suffixes.most_common(1)[0]
    if 2 * (2 * count) <= len(failed):  # each such name is two failed pairs
        return None
    recon, target = example[suffix]
    return (
        f"hint: {count} reconstructions are named as a target plus {suffix!r} "
        f"({printable(recon)} for {printable(target)}): give --recon-suffix {shlex.quote(suffix)}"
    )


def _logits(failed: Sequence[ImageResult], settings: Settings) -> str | None:
    """Reconstructions with values below 0 and above 1: logits, read without --logits."""
    if settings.scoring.logits:
        return None
    values = []
    for r in failed:
        culprit, text = problem(r)
        match = _OUT_OF_RANGE.match(text)
        if match and culprit == r.recon:
            values.append(float(match.group(1)))
    if 2 * len(values) <= len(failed) or not (min(values) < 0 and max(values) > 1):
        return None
    return (
        f"hint: {len(values)} reconstructions hold values outside [0, 1] of both signs "
        f"({min(values):.4g} to {max(values):.4g}), as logits do: if they are logits, give --logits"
    )


def _layout(failed: Sequence[ImageResult], settings: Settings) -> str | None:
    """Reconstructions whose shape is the target's with channels first (or the reverse)."""
    examples = []
    for r in failed:
        match = _SHAPES.match(problem(r)[1])
        if match is None:
            continue
        a, b, c, h, w, k = (int(n) for n in match.groups())
        if (a, b, c) == (k, h, w) or (h, w, k) == (c, a, b):
            examples.append((f"{a}x{b}x{c}", f"{h}x{w}x{k}"))
    if 2 * len(examples) <= len(failed):
        return None
    target_layout, recon_layout = settings.reading.layouts
    flipped = "nhwc" if recon_layout == "nchw" else "nchw"
    # Targets that are arrays too keep their layout, given or the default.
    arrays = any(r.target.endswith(("]", ".npy")) for r in failed if r.target)
    option = f"{target_layout or 'nhwc'},{flipped}" if arrays else flipped
    recon_shape, target_shape = examples[0]
    return (
        f"hint: {len(examples)} reconstructions have their target's shape with the channels first "
        f"({recon_shape} for {target_shape}): give --layout {option}"
    )
