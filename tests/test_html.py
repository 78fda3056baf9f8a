"""The HTML page as text: self-contained, escaped, rendered from the view (tests/test_browser.py
opens it in Chromium)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

import bce_eval
from bce_eval.cli import app
from bce_eval.reports import html as H

from .conftest import write_image
from .test_maps import damaged, smooth

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def run(folders: tuple[Path, Path]) -> tuple[Path, Path]:
    targets, recons = folders
    rng = np.random.default_rng(7)
    for i in range(5):
        target = smooth(32, 3)
        noise = rng.integers(-4 * (i + 1), 4 * (i + 1) + 1, target.shape)
        write_image(targets / f"img{i}.png", target)
        write_image(recons / f"img{i}.png", np.clip(target.astype(int) + noise, 0, 255).astype(np.uint8))
    write_image(targets / f"{HOSTILE}.png", smooth())
    write_image(recons / f"{HOSTILE}.png", damaged(smooth()))
    write_image(targets / "broken.png", smooth())
    (recons / "broken.png").write_bytes(b"not a png")
    return targets, recons


def test_the_page_needs_nothing_from_outside(run: tuple[Path, Path]) -> None:
    page = bce_eval.compare(*run).to_html()
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page and "@import" not in page and "url(" not in page
    sources = re.findall(r'\ssrc="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/") for s in sources)
    policy = re.search(r'Content-Security-Policy" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert "default-src 'none'" in policy and "img-src data:" in policy
    for kind in ("style", "script"):
        body = re.findall(rf"<{kind}>(.*?)</{kind}>", page, flags=re.DOTALL)
        digest = base64.b64encode(hashlib.sha256(body[0].encode()).digest()).decode()
        assert f"{kind}-src 'sha256-{digest}'" in policy  # the page's own, and nothing else, runs


def test_every_name_is_escaped(run: tuple[Path, Path]) -> None:
    page = bce_eval.compare(*run).to_html()
    assert HOSTILE not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # shown as text, in the worst images
    data = re.search(r'<script type="application/json" id="bce-data">(.*?)</script>', page, re.DOTALL)
    assert data is not None and "<" not in data.group(1)
    assert HOSTILE in json.loads(data.group(1))["columns"]["name"]  # the table shows it as text
    assert H.esc("new\nline</td>") == "&#x27;new\\nline&lt;/td&gt;&#x27;"


def test_summary_verdict_and_worst_images_are_html_without_script(run: tuple[Path, Path]) -> None:
    report = bce_eval.compare(*run, max_image_excess=0.01, top=3)
    page = report.to_html(top=4)
    without_script = re.sub(r"<script.*?</script>", "", page, flags=re.DOTALL)
    o = report.summary
    for figure in (o.bce, o.entropy, o.excess, o.excess_median, o.excess_p95):
        assert H.fmt(figure) in without_script
    assert 'class="verdict fail"' in without_script and "--max-image-excess" in without_script
    worst = re.search(r'<section id="worst">.*?</section>', without_script, re.DOTALL).group(0)  # type: ignore[union-attr]
    assert worst.count("<tr>") == 1 + 4 and worst.count("<img") == 2 + 4 * 4  # legends, 4 pictures each
    assert worst.index("&lt;img") < worst.index("img4") < worst.index("img3")  # worst first
    assert "broken" in re.search(r'<section id="failed">.*?</section>', page, re.DOTALL).group(0)  # type: ignore[union-attr]
    assert "<svg" in without_script and without_script.count('class="bar"') >= 2


def test_the_table_has_every_row_with_full_precision(run: tuple[Path, Path]) -> None:
    report = bce_eval.compare(*run)
    page = report.to_html()
    data = json.loads(re.search(r'id="bce-data">(.*?)</script>', page, re.DOTALL).group(1))  # type: ignore[union-attr]
    columns = data["columns"]
    assert columns["name"] == [r.name for r in report.view.rows]
    assert columns["excess"] == [None if not r.ok else r.excess for r in report.view.rows]  # exact floats
    assert columns["status"][columns["name"].index("broken")].startswith(str(run[1] / "broken.png"))


def test_a_page_from_a_saved_report_reads_pictures_still_on_disk(
    run: tuple[Path, Path], tmp_path: Path
) -> None:
    bce_eval.compare(*run).write_json(tmp_path / "report.json")
    (run[1] / "img4.png").unlink()
    result = CliRunner().invoke(
        app,
        ["report", str(tmp_path / "report.json"), "--html", str(tmp_path / "page.html"), "--max-excess", "1"],
    )
    assert result.exit_code == 0, result.output
    page = (tmp_path / "page.html").read_text()
    assert "img4: no pictures:" in page and "no such file" in page
    assert page.count('alt="excess map of') == 5  # the other evaluated pairs
    assert 'class="verdict pass"' in page  # the gate given, checked on the saved figures


def test_with_a_baseline_the_page_shows_changes_and_regressions(
    run: tuple[Path, Path], tmp_path: Path
) -> None:
    targets, recons = run
    bce_eval.compare(targets, recons).write_json(tmp_path / "before.json")
    write_image(recons / "img0.png", np.zeros((32, 32, 3), np.uint8))  # much worse now
    page = bce_eval.compare(targets, recons, baseline=tmp_path / "before.json").to_html()
    regressions = re.search(r'<section id="regressions">.*?</section>', page, re.DOTALL).group(0)  # type: ignore[union-attr]
    assert regressions.index("img0") < regressions.index("</tr>", regressions.index("img0"))
    assert '"delta":[' in page and "change +" in page


def test_tables_a_view_offers_are_shown(run: tuple[Path, Path]) -> None:
    """Per-group or per-channel figures, where a view has them, appear as tables."""
    report = bce_eval.compare(*run)
    view = report.view
    table = SimpleNamespace(
        title="Per channel", columns=("channel", "excess"), rows=[("R", 0.25), ("<G>", 0.5)]
    )
    view.breakdowns = lambda: [table]  # type: ignore[attr-defined]
    page = report.to_html()
    assert "<h2>Per channel</h2>" in page and "<td>&lt;G&gt;</td><td class=num>0.5</td>" in page


def test_html_goes_with_the_other_reports(run: tuple[Path, Path], tmp_path: Path) -> None:
    targets, recons = run
    out = tmp_path / "page.html"
    result = CliRunner().invoke(
        app, ["compare", str(targets), str(recons), "--html", str(out), "--html-top", "2"]
    )
    assert result.exit_code == 2  # the broken pair
    assert out.read_text().count('alt="target of') == 2
    both = CliRunner().invoke(app, ["compare", str(targets), str(recons), "--html", "-", "--json", "-"])
    assert both.exit_code == 2 and "--json - and --html -" in both.output
