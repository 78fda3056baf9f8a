"""The verdict for people and for CI systems: text lines, JUnit XML, Markdown, GitHub commands."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import IO

from ..errors import printable
from ..gates import GateResult, Verdict
from .view import View


def fmt(x: float) -> str:
    """A figure as every format shows it: six significant digits, "-" where there is none."""
    return "-" if math.isnan(x) else f"{x:.6g}"


def _percent(growth: float) -> str:
    return "+inf %" if math.isinf(growth) else f"{growth * 100:+.3g} %"


def _offenders(gate: GateResult, name: Callable[[str], str]) -> str:
    sign = "+" if gate.option == "--max-regression" else ""
    return ", ".join(f"{name(o.name)} {sign}{fmt(o.value)}" for o in gate.offenders)


def describe(gate: GateResult, units: str, name: Callable[[str], str] = printable) -> str:
    """One line: the gate, its threshold, the measured figure and the worst images (each
    written by ``name``)."""
    per = f"{units} per pixel"
    if gate.option == "--max-regression":
        limit = f"{_percent(gate.threshold)} allowed"
        text = f"overall excess grew {_percent(gate.measured)} against the baseline ({limit})"
        worst_label = "largest increases"
    elif gate.option == "--max-image-excess":
        text = (
            f"{gate.over} image(s) over {fmt(gate.threshold)} {per} (largest {fmt(gate.measured)})"
            if gate.over
            else f"largest image excess {fmt(gate.measured)} <= {fmt(gate.threshold)} {per}"
        )
        worst_label = "over"
    else:
        relation = "<=" if gate.passed else ">"
        text = f"{gate.figure} {fmt(gate.measured)} {relation} {fmt(gate.threshold)} {per}"
        worst_label = "worst by BCE" if gate.option == "--max-bce" else "worst"
    if not gate.passed and gate.offenders:
        text += f"; {worst_label}: {_offenders(gate, name)}"
    return text


def baseline_line(verdict: Verdict, scale: float, name: Callable[[str], str] = printable) -> str | None:
    b = verdict.baseline
    if b is None:
        return None
    line = (
        f"baseline {name(b.path)}: overall excess {fmt(b.excess_before * scale)} -> "
        f"{fmt(b.excess_now * scale)} {verdict.units} per pixel ({_percent(b.growth)})"
    )
    for label, names in (("added since", b.added), ("gone since", b.removed)):
        if names:
            line += f"; {len(names)} image(s) {label} the baseline: {', '.join(map(name, names))}"
    return line


def verdict_lines(verdict: Verdict, scale: float) -> list[str]:
    """The human verdict: a line per gate, the baseline comparison, and the outcome."""
    lines = []
    if verdict.gates:
        lines.append(f"Gates ({verdict.units} per pixel; a gate fails above its threshold)")
    for gate in verdict.gates:
        mark = "pass" if gate.passed else "FAIL"
        lines.append(f" {mark}  {gate.option} {fmt(gate.threshold)}: {describe(gate, verdict.units)}")
    extra = baseline_line(verdict, scale)
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


def write_junit(view: View, out: IO[str]) -> None:
    """JUnit XML: a testcase per image (failed when over --max-image-excess, an error when it
    could not be evaluated) and a testcase per gate."""
    import xml.etree.ElementTree as ET

    verdict = view.verdict or Verdict(view.units)
    per = f"{view.units} per pixel"
    image_gate = next((g for g in verdict.gates if g.option == "--max-image-excess"), None)
    root = ET.Element("testsuites", name="bce-eval")
    images = ET.SubElement(root, "testsuite", name="bce-eval images")
    properties = ET.SubElement(images, "properties")
    for name, value in (("convention", view.settings.scoring.describe()), ("units", view.units)):
        ET.SubElement(properties, "property", name=name, value=value)
    failures = errors = 0
    for r in view.rows:
        case = ET.SubElement(images, "testcase", classname="bce-eval.images", name=r.name)
        if not r.ok:
            errors += 1
            ET.SubElement(case, "error", type="input", message=r.error or "").text = r.error
            continue
        if image_gate is not None and r.excess > image_gate.threshold:
            failures += 1
            message = f"excess {fmt(r.excess)} > --max-image-excess {fmt(image_gate.threshold)} {per}"
            ET.SubElement(case, "failure", type="max-image-excess", message=message).text = message
        ET.SubElement(
            case, "system-out"
        ).text = (
            f"bce {fmt(r.bce)} entropy {fmt(r.entropy)} excess {fmt(r.excess)} {per}; {r.target} vs {r.recon}"
        )
    images.set("tests", str(len(view.rows)))
    images.set("failures", str(failures))
    images.set("errors", str(errors))
    gates = ET.SubElement(root, "testsuite", name="bce-eval gates", tests=str(len(verdict.gates)))
    gates.set("failures", str(len(verdict.failed)))
    gates.set("errors", "0")
    for gate in verdict.gates:
        case = ET.SubElement(
            gates, "testcase", classname="bce-eval.gates", name=f"{gate.option} {fmt(gate.threshold)}"
        )
        message = describe(gate, view.units)
        if gate.passed:
            ET.SubElement(case, "system-out").text = message
        else:
            ET.SubElement(case, "failure", type=gate.option.lstrip("-"), message=message).text = message
    root.set("tests", str(len(view.rows) + len(verdict.gates)))
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


# Markdown gives meaning to these (emphasis, links, images, HTML, tables): in a name or a
# message each is written as its backslash escape, which CommonMark allows for any ASCII
# punctuation, so a name like ![x](y) or <img src=x> shows as the text it is.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-!|~&])")


def _name(text: str) -> str:
    """A name (or a message holding names) as Markdown text: printable, special characters
    escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", printable(text))


def _pipes(text: str) -> str:
    """Text of ours with names already escaped, for a table cell: no bare "|"."""
    return re.sub(r"(?<!\\)\|", r"\\|", text)


def markdown(view: View) -> str:
    """A GitHub-flavoured summary: outcome, overall figures, gates, worst images."""
    verdict = view.verdict or Verdict(view.units)
    o = view.overall
    per = f"{view.units} per pixel"
    if not verdict.gates:
        outcome = "bce-eval"
    elif verdict.passed:
        outcome = f"bce-eval: pass ({len(verdict.gates)} gate(s))"
    else:
        outcome = f"bce-eval: FAIL ({len(verdict.failed)} of {len(verdict.gates)} gate(s) failed)"
    lines = [
        f"### {outcome}",
        "",
        f"{o.pairs + o.failed} pairs, {o.pairs} evaluated, {o.failed} failed; "
        f"{o.pixels:,} values; convention {view.settings.scoring.describe()}; "
        f"pixel-weighted, {per}",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| BCE | {fmt(o.bce)} |",
        f"| Entropy H(target) | {fmt(o.entropy)} |",
        f"| **Excess BCE - H** | **{fmt(o.excess)}** |",
        f"| Per-image excess, median | {fmt(o.excess_median)} |",
        f"| Per-image excess, 95th percentile | {fmt(o.excess_p95)} |",
        f"| Per-image excess, max | {fmt(o.excess_max)} |",
    ]
    if o.worst is not None:
        lines.append(f"| Worst image | {_name(o.worst)} |")
    if verdict.gates:
        lines += ["", "| gate | threshold | measured | result |", "|---|---:|---|---|"]
        for gate in verdict.gates:
            result = "pass" if gate.passed else "**FAIL**"
            measured = _pipes(describe(gate, view.units, _name))
            lines.append(f"| `{gate.option}` | {fmt(gate.threshold)} | {measured} | {result} |")
    extra = baseline_line(verdict, view.scale, _name)
    if extra:
        lines += ["", extra]
    if view.worst:
        deltas = view.has_baseline
        header = "| # | image | BCE | H | excess |" + (" change |" if deltas else "")
        lines += ["", f"Worst {len(view.worst)} by excess ({per})", "", header]
        lines.append("|---:|---|---:|---:|---:|" + ("---:|" if deltas else ""))
        for rank, r in enumerate(view.worst, start=1):
            row = f"| {rank} | {_name(r.name)} | {fmt(r.bce)} | {fmt(r.entropy)} | {fmt(r.excess)} |"
            if deltas:
                row += f" {'new' if r.excess_delta is None else f'{r.excess_delta:+.6g}'} |"
            lines.append(row)
    if view.failed:
        lines += ["", f"{len(view.failed)} pair(s) could not be evaluated:", ""]
        lines += [f"- {_name(r.error or r.name)}" for r in view.failed]
    return "\n".join(lines) + "\n"


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def github_commands(view: View) -> list[str]:
    """GitHub Actions workflow commands: an ::error per failed gate and per input error, and a
    ::notice with the outcome."""
    verdict = view.verdict or Verdict(view.units)
    lines = []
    for gate in verdict.failed:
        title = _property(f"bce-eval: {gate.option} {fmt(gate.threshold)} failed")
        lines.append(f"::error title={title}::{_data(describe(gate, view.units))}")
    for r in view.failed:
        problem = r.error or "error"
        where = ""
        if r.culprit:  # the real path, not a guess from the message (a name may hold ": ")
            problem = problem.removeprefix(f"{printable(r.culprit)}: ")
            where = f"file={_property(printable(r.culprit))},"
        title = _property("bce-eval: input error")
        lines.append(f"::error {where}title={title}::{_data(printable(problem))}")
    if verdict.gates:
        outcome = (
            f"{len(verdict.gates)} gate(s) passed"
            if verdict.passed
            else f"{len(verdict.failed)} of {len(verdict.gates)} gate(s) failed"
        )
        lines.append(f"::notice title=bce-eval::{_data(outcome)}")
    return lines
