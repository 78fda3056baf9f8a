"""One self-contained HTML page of a run, rendered from the view.

The page needs no network at all: images are embedded as data URIs, the style and the script
are in the page, and its Content-Security-Policy allows nothing else (``default-src 'none'``;
the script and style by their hashes, so that nothing injected could run). What a reader needs
first, the summary, the verdict, the histogram and the worst images with their pictures, is
HTML and SVG that reads with JavaScript off; the table of every image is data (JSON) that the
script shows a page at a time, sorted and filtered, so 100,000 rows open as fast as 100.

Every name and message is escaped (``printable``, then HTML): a file named
``<img src=x onerror=alert(1)>.png`` shows as that text.

A view may offer more tables, such as per-group or per-channel figures: ``view.breakdowns()``,
where it exists, gives objects with ``title``, ``columns`` (names) and ``rows`` (cells: text,
or numbers shown as every format shows them); the page shows each after the summary.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..errors import printable
from ..model import worst
from .ci import baseline_line, describe, fmt
from .files import settings_json
from .text import clipped_note
from .view import ImageRow, View

if TYPE_CHECKING:
    from ..pipeline import Report
    from .maps import MapScale, Thumbnails

# Thumbnails are shown with their longest side this many CSS pixels.
SHOWN = 128
# Notes listed at most (ignored files can be thousands); the rest are counted.
NOTES_SHOWN = 200
HISTOGRAM_BINS = 40


def esc(text: object) -> str:
    """Text as it may stand in HTML, in an element or an attribute: printable, then escaped."""
    return html.escape(printable(str(text)), quote=True)


def page(report: Report, *, top: int = 50) -> str:
    """The page of a report, with the ``top`` worst images' pictures read again from their
    pairs (maps on the report's one scale)."""
    from .maps import thumbnails

    view = report.view
    chosen = worst(view.results, top)
    pictures, scale, left_out = thumbnails(report, chosen) if chosen else ({}, report.map_scale, [])
    return render(
        view,
        [view.row(r) for r in chosen],
        pictures,
        scale,
        notes=[*report.notes, *left_out],
        source=report.source,
        shard=report.shard,
    )


def render(
    view: View,
    worst_rows: Sequence[ImageRow],
    pictures: dict[str, Thumbnails],
    scale: MapScale | None,
    *,
    notes: Sequence[str] = (),
    source: str | None = None,
    shard: tuple[int, int] | None = None,
) -> str:
    """The page: every figure from the view, the pictures as given."""
    o = view.overall
    verdict = view.verdict
    gated = verdict is not None and bool(verdict.gates)
    outcome = ("pass" if verdict.passed else "fail") if verdict is not None and gated else "none"
    title = f"bce-eval: {'no gates' if outcome == 'none' else outcome.upper()}, {o.pairs + o.failed} pairs"
    body = [
        "<header>",
        f'<h1>bce-eval report <span class="verdict {outcome}" id="verdict-badge">'
        f"{'no gates' if outcome == 'none' else outcome.upper()}</span></h1>",
        f"<p>{o.pairs + o.failed:,} pairs, {o.pairs:,} evaluated, {o.failed:,} failed; "
        f"{o.pixels:,} values (pixels x channels). Convention: {esc(view.settings.scoring.describe())}."
        + (f" Read from {esc(source)}." if source else "")
        + "</p>",
        "</header>",
        _summary(view),
        _verdict(view),
        _histogram(view),
        *_breakdowns(view),
        _worst(view, worst_rows, pictures, scale),
        _regressions(view, len(worst_rows) or 50),
        _failed(view),
        _notes(notes),
        _table(view),
        _settings(view, shard),
    ]
    data = _data(view)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{_policy()}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{esc(title)}</title>",
            f"<style>{STYLE}</style>",
            "</head><body>",
            *body,
            f'<script type="application/json" id="bce-data">{data}</script>',
            f"<script>{SCRIPT}</script>",
            "</body></html>",
            "",
        ]
    )


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _policy() -> str:
    """Nothing from anywhere: images only as data URIs, the page's own style and script only."""
    return (
        f"default-src 'none'; img-src data:; style-src {_hash(STYLE)}; script-src {_hash(SCRIPT)}; "
        "base-uri 'none'; form-action 'none'"
    )


def _cells(cells: Iterable[object], tag: str = "td") -> str:
    return "".join(f"<{tag}>{cell}</{tag}>" for cell in cells)


def _summary(view: View) -> str:
    o = view.overall
    per = f"{esc(view.units)} per pixel"
    rows = [
        ("BCE", fmt(o.bce), ""),
        ("Entropy H(target)", fmt(o.entropy), "the floor of BCE"),
        ("<b>Excess BCE - H</b>", f"<b>{fmt(o.excess)}</b>", "KL(target || pred), the reconstruction error"),
        ("Per-image excess", fmt(o.excess_median), "median"),
        ("", fmt(o.excess_p95), "95th percentile"),
        ("", fmt(o.excess_max), "max"),
        ("Worst image", esc(o.worst) if o.worst is not None else "-", ""),
        ("Clipped preds", f"{o.clipped:,}", esc(f"of {o.pixels:,}, {clipped_note(view)}")),
    ]
    body = "".join(f"<tr><th>{a}</th><td class=num>{b}</td><td>{c}</td></tr>" for a, b, c in rows)
    return (
        f'<section id="summary"><h2>Overall, pixel-weighted ({per})</h2>'
        f'<table class="summary">{body}</table></section>'
    )


def _verdict(view: View) -> str:
    verdict = view.verdict
    if verdict is None or (not verdict.gates and verdict.baseline is None):
        return (
            '<section id="gates"><h2>Gates</h2><p>No gate was set (--max-excess, '
            "--max-image-excess, --max-bce, --max-regression).</p></section>"
        )
    rows = []
    for gate in verdict.gates:
        mark = '<span class="pass">pass</span>' if gate.passed else '<span class="fail">FAIL</span>'
        threshold = (
            f"{gate.threshold * 100:g} %" if gate.option == "--max-regression" else fmt(gate.threshold)
        )
        measured = (
            f"{gate.measured * 100:+.3g} %" if gate.option == "--max-regression" else fmt(gate.measured)
        )
        rows.append(
            f"<tr><td>{mark}</td><td>{esc(gate.option)}</td><td>{esc(gate.figure)}</td>"
            f"<td class=num>{threshold}</td><td class=num>{measured}</td>"
            f"<td>{esc(describe(gate, view.units))}</td></tr>"
        )
    table = ""
    if rows:
        head = _cells(("", "gate", "figure", "threshold", "measured", "in words"), "th")
        table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    extra = baseline_line(verdict, view.scale)
    outcome = ""
    if verdict.gates:
        failed = len(verdict.failed)
        outcome = (
            f'<p class="fail">verdict: FAIL, {failed} of {len(verdict.gates)} gate(s) failed</p>'
            if failed
            else f'<p class="pass">verdict: pass, {len(verdict.gates)} gate(s) passed</p>'
        )
    per = f"{esc(view.units)} per pixel; a gate fails above its threshold"
    return (
        f'<section id="gates"><h2>Gates ({per})</h2>{table}'
        + (f"<p>{esc(extra)}</p>" if extra else "")
        + outcome
        + "</section>"
    )


def _histogram(view: View) -> str:
    """Per-image excess in HISTOGRAM_BINS bins from 0 to the largest, as inline SVG, with the
    median, the 95th percentile and an image-excess gate's threshold marked."""
    o = view.overall
    values = np.array([r.excess for r in view.rows if r.ok and not math.isnan(r.excess)])
    if values.size == 0:
        return '<section id="histogram"><h2>Per-image excess</h2><p>No image was evaluated.</p></section>'
    top = float(values.max()) or 1.0
    threshold = None
    if view.verdict is not None:
        gate = next((g for g in view.verdict.gates if g.option == "--max-image-excess"), None)
        threshold = gate.threshold if gate is not None else None
    if threshold is not None and threshold > top:
        top = threshold
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS, range=(0.0, top))
    width, height, left, bottom, right, above = 720, 220, 56, 40, 48, 16
    plot_w, plot_h = width - left - right, height - bottom - above
    tallest = int(counts.max()) or 1
    bar_w = plot_w / HISTOGRAM_BINS
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="histogram of per-image excess">',
    ]
    for i, count in enumerate(counts):
        if not count:
            continue
        h = plot_h * count / tallest
        x, y = left + i * bar_w, above + plot_h - h
        tip = f"{int(count):,} image(s) with excess in [{fmt(edges[i])}, {fmt(edges[i + 1])}]"
        parts.append(
            f'<rect class="bar" x="{x:.2f}" y="{y:.2f}" width="{max(bar_w - 1, 1):.2f}" '
            f'height="{h:.2f}"><title>{esc(tip)}</title></rect>'
        )
    base = above + plot_h
    parts.append(f'<line class="axis" x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}"/>')
    parts.append(f'<line class="axis" x1="{left}" y1="{above}" x2="{left}" y2="{base}"/>')
    for at in (0, 0.25, 0.5, 0.75, 1):
        x = left + at * plot_w
        parts.append(f'<line class="axis" x1="{x:.2f}" y1="{base}" x2="{x:.2f}" y2="{base + 4}"/>')
        parts.append(f'<text x="{x:.2f}" y="{base + 16}" text-anchor="middle">{at * top:.3g}</text>')
    parts.append(f'<text x="{left - 6}" y="{above + 4}" text-anchor="end">{tallest:,}</text>')
    parts.append(f'<text x="{left - 6}" y="{base}" text-anchor="end">0</text>')
    parts.append(
        f'<text x="{left + plot_w / 2:.2f}" y="{height - 4}" text-anchor="middle">'
        f"excess per image ({esc(view.units)} per pixel); images per bin</text>"
    )
    marks = [("median", o.excess_median, "mark"), ("95th percentile", o.excess_p95, "mark")]
    if threshold is not None:
        marks.append(("--max-image-excess", threshold, "limit"))
    for label, value, kind in marks:
        if math.isnan(value):
            continue
        x = left + plot_w * value / top
        parts.append(
            f'<line class="{kind}" x1="{x:.2f}" y1="{above}" x2="{x:.2f}" y2="{base}">'
            f"<title>{esc(label)} {fmt(value)}</title></line>"
        )
    parts.append("</svg>")
    legend = (
        f"{values.size:,} images; dashed lines: median {fmt(o.excess_median)} and 95th percentile "
        f"{fmt(o.excess_p95)}"
        + (f"; red: --max-image-excess {fmt(threshold)}" if threshold is not None else "")
    )
    return (
        f'<section id="histogram"><h2>Per-image excess</h2>{"".join(parts)}'
        f'<p class="caption">{legend}</p></section>'
    )


def _breakdowns(view: View) -> list[str]:
    """The view's further tables (per group, per channel), where it has them."""
    offer = getattr(view, "breakdowns", None)
    if offer is None:
        return []
    sections = []
    for table in offer():
        head = _cells((esc(c) for c in table.columns), "th")
        body = "".join(
            "<tr>"
            + "".join(
                f"<td class=num>{fmt(float(c))}</td>"
                if isinstance(c, (float, np.floating))
                else f"<td>{esc(c)}</td>"
                for c in row
            )
            + "</tr>"
            for row in table.rows
        )
        sections.append(
            f'<section class="breakdown"><h2>{esc(table.title)}</h2>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>"
        )
    return sections


def _data_uri(picture: tuple[str, bytes]) -> str:
    kind, data = picture
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def _figure(picture: tuple[str, bytes], size: tuple[int, int], caption: str, alt: str) -> str:
    """A thumbnail: its longest side SHOWN pixels; click (focus) to enlarge, without script."""
    h, w = size
    zoom = SHOWN / max(h, w)
    shown_w, shown_h = max(1, round(w * zoom)), max(1, round(h * zoom))
    return (
        f'<figure><div class="frame"><img class="thumb" tabindex="0" src="{_data_uri(picture)}" '
        f'width="{shown_w}" height="{shown_h}" alt="{esc(alt)}" title="click to enlarge"></div>'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _legend_bars(scale: MapScale) -> str:
    from .maps import colour_bar

    bars = []
    for table, low, high, label in (
        ("magma", "0", f"{scale.excess:g}+", f"excess, {esc(scale.units)} per pixel"),
        (
            "berlin",
            f"-{scale.signed:g}",
            f"+{scale.signed:g}",
            "p - y: blue too dark, red too bright",
        ),
    ):
        bars.append(
            f'<div class="legend"><img class="bar" src="{_data_uri(("image/png", colour_bar(table)))}" '  # type: ignore[arg-type]
            f'width="256" height="14" alt="{table} colour scale"><div class="ends"><span>{low}</span>'
            f'<span>{high}</span></div><div class="label">{label}</div></div>'
        )
    return "".join(bars)


def _worst(
    view: View, rows: Sequence[ImageRow], pictures: dict[str, Thumbnails], scale: MapScale | None
) -> str:
    if not rows:
        return ""
    per = f"{esc(view.units)} per pixel"
    scale_text = (
        f"<p>One scale for every map of this run: {esc(scale.describe())}.</p>{_legend_bars(scale)}"
        if scale is not None
        else ""
    )
    baseline = view.has_baseline
    items = []
    for rank, row in enumerate(rows, start=1):
        name = esc(row.name)
        figures = (
            f"excess <b>{fmt(row.excess)}</b><br>BCE {fmt(row.bce)}<br>H {fmt(row.entropy)}<br>"
            f"{'x'.join(map(str, row.shape or ()))}, clipped {row.clipped}"
        )
        if baseline:
            delta = "new" if row.excess_delta is None else f"{row.excess_delta:+.6g}"
            figures += f"<br>change {delta}"
        thumbs = pictures.get(row.name)
        if thumbs is not None and scale is not None:
            excess_map, signed_map = thumbs.maps(scale)
            size = (thumbs.shape[0], thumbs.shape[1])
            cells = "".join(
                _figure(picture, size, caption, f"{caption} of {row.name}")
                for picture, caption in (
                    (thumbs.target, "target"),
                    (thumbs.recon, "reconstruction"),
                    (excess_map, "excess map"),
                    (signed_map, "signed error"),
                )
            )
        else:
            cells = '<p class="note">No pictures: the pair could not be read again (see the notes).</p>'
        items.append(
            f'<tr><td class=num>{rank}</td><td class="name">{name}<div class="figures">{figures}</div></td>'
            f'<td class="pictures">{cells}</td></tr>'
        )
    return (
        f'<section id="worst"><h2>Worst {len(rows)} by excess ({per})</h2>{scale_text}'
        f'<table class="worst"><thead><tr><th>#</th><th>image</th><th>target | reconstruction | '
        f"excess map | signed error</th></tr></thead><tbody>{''.join(items)}</tbody></table></section>"
    )


def _regressions(view: View, top: int) -> str:
    if not view.has_baseline:
        return ""
    grown = sorted(
        (r for r in view.rows if r.excess_delta is not None and r.excess_delta > 0),
        key=lambda r: r.excess_delta or 0.0,
        reverse=True,
    )[:top]
    per = f"{esc(view.units)} per pixel"
    if not grown:
        body = "<p>No image's excess grew since the baseline.</p>"
    else:
        head = _cells(("#", "image", "baseline excess", "excess now", "change"), "th")
        rows = "".join(
            f"<tr><td class=num>{i}</td><td>{esc(r.name)}</td><td class=num>{fmt(r.baseline_excess or 0.0)}"
            f"</td><td class=num>{fmt(r.excess)}</td><td class=num>{r.excess_delta:+.6g}</td></tr>"
            for i, r in enumerate(grown, start=1)
        )
        body = f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    return f'<section id="regressions"><h2>Worst regressions since the baseline ({per})</h2>{body}</section>'


def _failed(view: View) -> str:
    if not view.failed:
        return ""
    items = "".join(f"<li>{esc(r.error)}</li>" for r in view.failed[:NOTES_SHOWN])
    more = len(view.failed) - NOTES_SHOWN
    tail = f"<li>and {more:,} more (every one is in the table below)</li>" if more > 0 else ""
    heading = f"{len(view.failed):,} pairs could not be evaluated"
    return f'<section id="failed"><h2>{heading}</h2><ul>{items}{tail}</ul></section>'


def _notes(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    items = "".join(f"<li>{esc(n)}</li>" for n in notes[:NOTES_SHOWN])
    more = len(notes) - NOTES_SHOWN
    tail = f"<li>and {more:,} more</li>" if more > 0 else ""
    return f'<section id="notes"><h2>Notes</h2><ul>{items}{tail}</ul></section>'


def _table(view: View) -> str:
    count = len(view.rows)
    return (
        f'<section id="images"><h2>Every image ({count:,})</h2>'
        '<div class="controls"><label>Filter by name or error <input id="filter" type="search" '
        'placeholder="part of a name" autocomplete="off"></label> '
        '<button id="previous" type="button">previous</button> <span id="position"></span> '
        '<button id="next" type="button">next</button></div>'
        '<table id="all"><thead><tr></tr></thead><tbody></tbody></table>'
        f"<noscript><p>The table of all {count:,} images needs JavaScript; every figure is also in "
        "the CSV and JSON reports.</p></noscript></section>"
    )


def _settings(view: View, shard: tuple[int, int] | None) -> str:
    recorded = settings_json(view.settings)
    items = [(k, str(v).lower() if isinstance(v, bool) else v) for k, v in recorded.items()]
    items += [("shard", f"{shard[0]}/{shard[1]}" if shard else "none"), ("bce-eval", __version__)]
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items)
    return f'<section id="settings"><h2>Settings</h2><table class="summary">{rows}</table></section>'


def _number(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) or math.isinf(x) else x


def _data(view: View) -> str:
    """Every row, by column, as JSON that is safe inside a script element (no '<', '>', '&')."""
    rows = view.rows
    columns: dict[str, list[Any]] = {
        "name": [printable(r.name) for r in rows],
        "size": ["x".join(map(str, r.shape)) if r.shape else "" for r in rows],
        "bce": [_number(r.bce) for r in rows],
        "entropy": [_number(r.entropy) for r in rows],
        "excess": [_number(r.excess) for r in rows],
        "clipped": [r.clipped for r in rows],
        "status": ["ok" if r.ok else printable(r.error or "error") for r in rows],
    }
    if view.has_baseline:
        columns["baseline"] = [_number(r.baseline_excess) for r in rows]
        columns["delta"] = [_number(r.excess_delta) for r in rows]
    text = json.dumps({"units": view.units, "columns": columns}, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; padding: 0 1em;
  color: #1b1b1b; background: #fff; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; } th, td { padding: 2px 8px; text-align: left; vertical-align: top; }
thead th { border-bottom: 1px solid #999; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.summary th { font-weight: normal; color: #444; }
.verdict { font-size: .7em; padding: 2px 10px; border-radius: 4px; vertical-align: middle; color: #fff; }
.verdict.pass { background: #2e7d32; } .verdict.fail { background: #c62828; }
.verdict.none { background: #757575; }
.verdict.pass, .verdict.fail, .verdict.none { color: #fff; }
span.pass, p.pass { color: #2e7d32; font-weight: bold; }
span.fail, p.fail { color: #c62828; font-weight: bold; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
svg .bar { fill: #5b6bbf; } svg .axis { stroke: #333; }
svg .mark { stroke: #333; stroke-dasharray: 4 3; } svg .limit { stroke: #c62828; stroke-width: 2; }
.caption, .note { color: #555; }
table.worst td { border-bottom: 1px solid #ddd; padding: 6px 8px; }
td.name { max-width: 16em; overflow-wrap: anywhere; }
.figures { color: #444; font-size: .9em; margin-top: 4px; }
td.pictures { white-space: nowrap; }
figure { display: inline-block; margin: 0 6px 0 0; text-align: center; }
figcaption { font-size: .8em; color: #555; }
.frame { width: 128px; height: 128px; display: flex; align-items: center; justify-content: center;
  background: #f2f2f2; }
img.thumb { image-rendering: pixelated; cursor: zoom-in; }
img.thumb:focus { position: fixed; inset: 0; margin: auto; width: min(90vw, 90vh); height: min(90vw, 90vh);
  object-fit: contain; z-index: 10; cursor: zoom-out; outline: none; background: #111;
  box-shadow: 0 0 0 100vmax rgba(0, 0, 0, .75); }
.legend { display: inline-block; margin: 0 24px 8px 0; }
.legend img { display: block; image-rendering: pixelated; }
.ends { display: flex; justify-content: space-between; width: 256px; font-size: .8em; }
.legend .label { width: 256px; text-align: center; font-size: .8em; color: #444; }
.controls { margin: .5em 0; } #filter { width: 18em; }
#all td, #all th { border-bottom: 1px solid #eee; }
#all th { cursor: pointer; user-select: none; white-space: nowrap; }
#all th[aria-sort=ascending]::after { content: " \\25B2"; }
#all th[aria-sort=descending]::after { content: " \\25BC"; }
#all td.error { color: #c62828; }
"""

SCRIPT = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("bce-data").textContent);
  var c = data.columns, n = c.name.length, PAGE = 100;
  var columns = [["#", null, true], ["image", "name", false], ["size", "size", false],
    ["BCE", "bce", true], ["H", "entropy", true], ["excess", "excess", true],
    ["clipped", "clipped", true]];
  if (c.baseline) { columns.push(["baseline excess", "baseline", true], ["change", "delta", true]); }
  columns.push(["status", "status", false]);
  var order = new Int32Array(n), shown = order, page = 0, sortBy = -1, sortDir = 1;
  for (var i = 0; i < n; i++) { order[i] = i; }
  var lower = null;
  function fmt(x) {
    if (x === null || x === undefined) { return "-"; }
    if (Number.isInteger(x) && Math.abs(x) < 1e15) { return String(x); }
    return String(Number(x.toPrecision(6)));
  }
  var head = document.querySelector("#all thead tr"), body = document.querySelector("#all tbody");
  columns.forEach(function (col, j) {
    var th = document.createElement("th");
    th.textContent = col[0];
    th.setAttribute("data-key", col[1] || "index");
    if (col[2]) { th.className = "num"; }
    th.addEventListener("click", function () { sort(j); });
    head.appendChild(th);
  });
  function value(key, i) { return key === null ? i : c[key][i]; }
  function sort(j) {
    sortDir = sortBy === j ? -sortDir : (columns[j][2] ? -1 : 1);
    sortBy = j;
    var key = columns[j][1], dir = sortDir, numeric = columns[j][2];
    var sorted = Array.prototype.slice.call(order);
    sorted.sort(function (a, b) {
      var x = value(key, a), y = value(key, b);
      if (x === null && y === null) { return a - b; }
      if (x === null) { return 1; }
      if (y === null) { return -1; }
      if (numeric) { return x === y ? a - b : (x < y ? -dir : dir); }
      var d = String(x).localeCompare(String(y));
      return d === 0 ? a - b : d * dir;
    });
    order = Int32Array.from(sorted);
    head.querySelectorAll("th").forEach(function (th, k) {
      if (k === j) { th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending"); }
      else { th.removeAttribute("aria-sort"); }
    });
    filter();
  }
  function filter() {
    var text = document.getElementById("filter").value.toLowerCase();
    if (!text) { shown = order; } else {
      if (lower === null) {
        lower = new Array(n);
        for (var i = 0; i < n; i++) { lower[i] = (c.name[i] + "\\n" + c.status[i]).toLowerCase(); }
      }
      var kept = [];
      for (var k = 0; k < order.length; k++) {
        if (lower[order[k]].indexOf(text) >= 0) { kept.push(order[k]); }
      }
      shown = Int32Array.from(kept);
    }
    page = 0;
    draw();
  }
  function draw() {
    var pages = Math.max(1, Math.ceil(shown.length / PAGE));
    page = Math.min(Math.max(page, 0), pages - 1);
    var start = page * PAGE, end = Math.min(shown.length, start + PAGE);
    var rows = document.createDocumentFragment();
    for (var k = start; k < end; k++) {
      var i = shown[k], tr = document.createElement("tr");
      columns.forEach(function (col) {
        var td = document.createElement("td"), v = col[1] === null ? i + 1 : c[col[1]][i];
        if (col[2]) { td.className = "num"; td.textContent = fmt(v); }
        else { td.textContent = v === null ? "" : String(v); }
        if (col[1] === "status" && v !== "ok") { td.className = "error"; }
        tr.appendChild(td);
      });
      rows.appendChild(tr);
    }
    body.replaceChildren(rows);
    document.getElementById("position").textContent = shown.length ?
      "rows " + (start + 1).toLocaleString() + "-" + end.toLocaleString() + " of " +
      shown.length.toLocaleString() +
      (shown.length < n ? " (filtered from " + n.toLocaleString() + ")" : "") +
      ", page " + (page + 1) + " of " + pages : "no image matches";
    document.getElementById("previous").disabled = page === 0;
    document.getElementById("next").disabled = page >= pages - 1;
  }
  document.getElementById("filter").addEventListener("input", filter);
  document.getElementById("previous").addEventListener("click", function () { page--; draw(); });
  document.getElementById("next").addEventListener("click", function () { page++; draw(); });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && document.activeElement && document.activeElement.classList.contains("thumb")) {
      document.activeElement.blur();
    }
  });
  draw();
  document.body.setAttribute("data-ready", "true");
})();
"""
