"""The verdict for people and for CI systems: text lines, JUnit XML, Markdown, GitHub commands."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import IO

from .gates import GateResult, Verdict
from .images import printable
from .report import ImageResult, Settings, Summary, unit_scale, worst


def _fmt(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.6g}"


def _percent(growth: float) -> str:
    return "+inf %" if math.isinf(growth) else f"{growth * 100:+.3g} %"


def _offenders(gate: GateResult) -> str:
    sign = "+" if gate.option == "--max-regression" else ""
    return ", ".join(f"{printable(o.name)} {sign}{_fmt(o.value)}" for o in gate.offenders)


def describe(gate: GateResult, units: str) -> str:
    """One line: the gate, its threshold, the measured figure and the worst images."""
    per = f"{units} per pixel"
    if gate.option == "--max-regression":
        limit = f"{_percent(gate.threshold)} allowed"
        text = f"overall excess grew {_percent(gate.measured)} against the baseline ({limit})"
        worst_label = "largest increases"
    elif gate.option == "--max-image-excess":
        text = (
            f"{gate.over} image(s) over {_fmt(gate.threshold)} {per} (largest {_fmt(gate.measured)})"
            if gate.over
            else f"largest image excess {_fmt(gate.measured)} <= {_fmt(gate.threshold)} {per}"
        )
        worst_label = "over"
    else:
        relation = "<=" if gate.passed else ">"
        text = f"{gate.figure} {_fmt(gate.measured)} {relation} {_fmt(gate.threshold)} {per}"
        worst_label = "worst by BCE" if gate.option == "--max-bce" else "worst"
    if not gate.passed and gate.offenders:
        text += f"; {worst_label}: {_offenders(gate)}"
    return text


def baseline_line(verdict: Verdict) -> str | None:
    b = verdict.baseline
    if b is None:
        return None
    scale = unit_scale(verdict.units)
    line = (
        f"baseline {printable(b.path)}: overall excess {_fmt(b.excess_before * scale)} -> "
        f"{_fmt(b.excess_now * scale)} {verdict.units} per pixel ({_percent(b.growth)})"
    )
    for label, names in (("added since", b.added), ("gone since", b.removed)):
        if names:
            line += f"; {len(names)} image(s) {label} the baseline: {', '.join(map(printable, names))}"
    return line


def verdict_lines(verdict: Verdict) -> list[str]:
    """The human verdict: a line per gate, the baseline comparison, and the outcome."""
    lines = []
    if verdict.gates:
        lines.append(f"Gates ({verdict.units} per pixel; a gate fails above its threshold)")
    for gate in verdict.gates:
        mark = "pass" if gate.passed else "FAIL"
        lines.append(f" {mark}  {gate.option} {_fmt(gate.threshold)}: {describe(gate, verdict.units)}")
    extra = baseline_line(verdict)
    if extra:
        lines.append(extra)
    if verdict.gates:
        failed = len(verdict.failed)
        lines.append(
            f"verdict: FAIL, {failed} of {len(verdict.gates)} gate(s) failed"
            if failed
            else f"verdict: pass, {len(verdict.gates)} gate(s) passed"
        )
    return lines


def write_junit(results: Sequence[ImageResult], verdict: Verdict, settings: Settings, out: IO[str]) -> None:
    """JUnit XML: a testcase per image (failed when over --max-image-excess, an error when it
    could not be evaluated) and a testcase per gate."""
    import xml.etree.ElementTree as ET

    scale = unit_scale(settings.units)
    per = f"{settings.units} per pixel"
    image_gate = next((g for g in verdict.gates if g.option == "--max-image-excess"), None)
    root = ET.Element("testsuites", name="bce-eval")
    images = ET.SubElement(root, "testsuite", name="bce-eval images")
    properties = ET.SubElement(images, "properties")
    for name, value in (("convention", settings.describe_convention()), ("units", settings.units)):
        ET.SubElement(properties, "property", name=name, value=value)
    failures = errors = 0
    for r in results:
        case = ET.SubElement(images, "testcase", classname="bce-eval.images", name=r.name)
        if r.sums is None:
            errors += 1
            ET.SubElement(case, "error", type="input", message=r.error or "").text = r.error
            continue
        excess = r.excess * scale
        if image_gate is not None and excess > image_gate.threshold:
            failures += 1
            message = f"excess {_fmt(excess)} > --max-image-excess {_fmt(image_gate.threshold)} {per}"
            ET.SubElement(case, "failure", type="max-image-excess", message=message).text = message
        n = r.sums.pixels
        ET.SubElement(case, "system-out").text = (
            f"bce {_fmt(r.sums.bce / n * scale)} entropy {_fmt(r.sums.entropy / n * scale)} "
            f"excess {_fmt(excess)} {per}; {r.target} vs {r.recon}"
        )
    images.set("tests", str(len(results)))
    images.set("failures", str(failures))
    images.set("errors", str(errors))
    gates = ET.SubElement(root, "testsuite", name="bce-eval gates", tests=str(len(verdict.gates)))
    gates.set("failures", str(len(verdict.failed)))
    gates.set("errors", "0")
    for gate in verdict.gates:
        case = ET.SubElement(
            gates, "testcase", classname="bce-eval.gates", name=f"{gate.option} {_fmt(gate.threshold)}"
        )
        message = describe(gate, settings.units)
        if gate.passed:
            ET.SubElement(case, "system-out").text = message
        else:
            ET.SubElement(case, "failure", type=gate.option.lstrip("-"), message=message).text = message
    root.set("tests", str(len(results) + len(verdict.gates)))
    root.set("failures", str(failures + len(verdict.failed)))
    root.set("errors", str(errors))
    ET.indent(root)
    out.write('<?xml version="1.0" encoding="utf-8"?>\n')
    out.write(_xml_chars(ET.tostring(root, encoding="unicode")))
    out.write("\n")


# Characters outside XML 1.0's Char production: ElementTree writes them as they are, and no
# parser then reads the file. Markup is ASCII, so replacing them in the serialized text is safe.
NOT_XML_CHAR = re.compile(r"[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_chars(text: str) -> str:
    """The text with each character XML 1.0 cannot hold (a control character, a lone surrogate
    from a name that is not UTF-8) written as its Python escape, e.g. \\x1b or \\udcff."""
    return NOT_XML_CHAR.sub(lambda m: repr(m.group())[1:-1], text)


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown(
    results: Sequence[ImageResult], summary: Summary, settings: Settings, verdict: Verdict, top: int
) -> str:
    """A GitHub-flavoured summary: outcome, overall figures, gates, worst images."""
    scale = unit_scale(settings.units)
    per = f"{settings.units} per pixel"
    if not verdict.gates:
        outcome = "bce-eval"
    elif verdict.passed:
        outcome = f"bce-eval: pass ({len(verdict.gates)} gate(s))"
    else:
        outcome = f"bce-eval: FAIL ({len(verdict.failed)} of {len(verdict.gates)} gate(s) failed)"
    lines = [
        f"### {outcome}",
        "",
        f"{summary.pairs + summary.failed} pairs, {summary.pairs} evaluated, {summary.failed} failed; "
        f"{summary.totals.pixels:,} values; convention {_cell(settings.describe_convention())}; "
        f"pixel-weighted, {per}",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| BCE | {_fmt(summary.mean('bce') * scale)} |",
        f"| Entropy H(target) | {_fmt(summary.mean('entropy') * scale)} |",
        f"| **Excess BCE - H** | **{_fmt(summary.mean('excess') * scale)}** |",
        f"| Per-image excess, median | {_fmt(summary.excess_median * scale)} |",
        f"| Per-image excess, 95th percentile | {_fmt(summary.excess_p95 * scale)} |",
        f"| Per-image excess, max | {_fmt(summary.excess_max * scale)} |",
    ]
    if summary.worst:
        lines.append(f"| Worst image | {_cell(printable(summary.worst.name))} |")
    if verdict.gates:
        lines += ["", "| gate | threshold | measured | result |", "|---|---:|---|---|"]
        for gate in verdict.gates:
            result = "pass" if gate.passed else "**FAIL**"
            lines.append(
                f"| `{gate.option}` | {_fmt(gate.threshold)} | {_cell(describe(gate, settings.units))} "
                f"| {result} |"
            )
    extra = baseline_line(verdict)
    if extra:
        lines += ["", _cell(extra)]
    ranked = worst(results, top)
    if ranked:
        deltas = verdict.image_columns()
        header = "| # | image | BCE | H | excess |" + (" change |" if deltas else "")
        lines += ["", f"Worst {len(ranked)} by excess ({per})", "", header]
        lines.append("|---:|---|---:|---:|---:|" + ("---:|" if deltas else ""))
        for rank, r in enumerate(ranked, start=1):
            assert r.sums is not None
            n = r.sums.pixels
            row = (
                f"| {rank} | {_cell(printable(r.name))} | {_fmt(r.sums.bce / n * scale)} | "
                f"{_fmt(r.sums.entropy / n * scale)} | {_fmt(r.excess * scale)} |"
            )
            if deltas:
                delta = deltas.get(r.name, {}).get("excess_delta")
                row += f" {'new' if delta is None else f'{delta:+.6g}'} |"
            lines.append(row)
    failed = [r for r in results if not r.ok]
    if failed:
        lines += ["", f"{len(failed)} pair(s) could not be evaluated:", ""]
        lines += [f"- {_cell(printable(r.error or r.name))}" for r in failed]
    return "\n".join(lines) + "\n"


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def github_commands(results: Sequence[ImageResult], verdict: Verdict, settings: Settings) -> list[str]:
    """GitHub Actions workflow commands: an ::error per failed gate and per input error, and a
    ::notice with the outcome."""
    lines = []
    for gate in verdict.failed:
        title = _property(f"bce-eval: {gate.option} {_fmt(gate.threshold)} failed")
        lines.append(f"::error title={title}::{_data(describe(gate, settings.units))}")
    for r in results:
        if r.error is not None:
            culprit, _, problem = r.error.partition(": ")
            title = _property("bce-eval: input error")
            lines.append(
                f"::error file={_property(printable(culprit))},title={title}::{_data(printable(problem))}"
            )
    if verdict.gates:
        outcome = (
            f"{len(verdict.gates)} gate(s) passed"
            if verdict.passed
            else f"{len(verdict.failed)} of {len(verdict.gates)} gate(s) failed"
        )
        lines.append(f"::notice title=bce-eval::{_data(outcome)}")
    return lines
