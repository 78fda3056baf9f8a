"""The HTML page in a real browser: Debian's Chromium driven by Playwright for Python.

Skipped, with the reason, only where Chromium or Playwright cannot be found (CI installs both:
.ci/run). Playwright's own browser download is never used: the system's Chromium is launched.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import bce_eval
from bce_eval.cli import app

from .conftest import write_image
from .test_maps import SQUARE, damaged, smooth

sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="Playwright is not installed (pip install playwright); browser tests skipped",
)
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"Chromium not found ({CHROMIUM}; apt-get install chromium); browser tests skipped",
        allow_module_level=True,
    )
ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of the command with --html and --maps over images of every kind: RGB, grey, a
    damaged square, a hostile name, a pair that fails, against a baseline."""
    root = tmp_path_factory.mktemp("browser")
    targets, recons = root / "targets", root / "recons"
    rng = np.random.default_rng(11)
    for i in range(12):
        target = smooth(48, 3 if i % 2 else 1)
        noise = rng.integers(-3 * (i + 1), 3 * (i + 1) + 1, target.shape)
        write_image(targets / f"sub/img{i:02d}.png", target)
        write_image(
            recons / f"sub/img{i:02d}.png", np.clip(target.astype(int) + noise, 0, 255).astype(np.uint8)
        )
    write_image(targets / "square.png", smooth())
    write_image(recons / "square.png", damaged(smooth()))
    write_image(targets / f"{HOSTILE}.png", smooth(20))
    write_image(recons / f"{HOSTILE}.png", np.clip(smooth(20).astype(int) + 70, 0, 255).astype(np.uint8))
    write_image(targets / "broken.png", smooth(8))
    (recons / "broken.png").write_bytes(b"not an image")
    runner = CliRunner()
    base = runner.invoke(app, ["compare", str(targets), str(recons), "--json", str(root / "before.json")])
    assert base.exit_code == 2, base.output  # the broken pair
    write_image(
        recons / "sub/img00.png", np.clip(smooth(48).astype(int) - 30, 0, 255).astype(np.uint8)
    )  # worse
    command = [
        "compare", str(targets), str(recons), "--html", str(root / "page.html"), "--maps", str(root / "maps"),
        "--baseline", str(root / "before.json"), "--max-image-excess", "0.05", "--html-top", "8",
    ]  # fmt: skip
    result = runner.invoke(app, command)
    assert result.exit_code == 2, result.output
    return root


class Visit:
    """A page opened with every request, console message and dialog recorded."""

    def __init__(self, browser: Any, path: Path, *, javascript: bool = True) -> None:
        self.context = browser.new_context(
            java_script_enabled=javascript, viewport={"width": 1200, "height": 900}
        )
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on(
            "console", lambda m: self.errors.append(m.text) if m.type in ("error", "warning") else None
        )
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)
        self.context.route(
            "**/*", lambda route: route.abort() if route.request.url != path.as_uri() else route.continue_()
        )
        self.page.goto(path.as_uri())
        if javascript:
            self.page.wait_for_selector("body[data-ready]")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def column(self, key: str) -> list[str]:
        index = self.page.eval_on_selector_all(
            "#all thead th", "(ths, key) => ths.findIndex(th => th.dataset.key === key)", key
        )
        return self.page.eval_on_selector_all(
            "#all tbody tr", "(rows, i) => rows.map(r => r.children[i].textContent)", index
        )

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser: Any, made: Path) -> Iterator[Visit]:
    opened = Visit(browser, made / "page.html")
    yield opened
    opened.close()


def test_no_network_and_no_console_error(visit: Visit, made: Path) -> None:
    visit.page.click("#all th[data-key=excess]")
    visit.page.fill("#filter", "img")
    assert visit.requests == [(made / "page.html").as_uri()]  # the page itself, nothing else
    assert visit.errors == [] and visit.dialogs == []


def test_every_embedded_image_is_decoded(visit: Visit) -> None:
    sizes = visit.page.eval_on_selector_all(
        "img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.src.slice(0, 11)])"
    )
    assert len(sizes) == 2 + 4 * 8  # two legends, four pictures of each of the 8 worst
    assert all(complete and width > 0 and src == "data:image/" for complete, width, src in sizes)


def test_sorting_a_column_orders_the_rows_by_value(visit: Visit) -> None:
    visit.page.click("#all th[data-key=excess]")
    assert visit.page.get_attribute("#all th[data-key=excess]", "aria-sort") == "descending"
    shown = visit.column("excess")
    values = [float(v) for v in shown if v != "-"]
    assert len(values) == 14 and values == sorted(values, reverse=True) and shown[-1] == "-"  # failed last
    visit.page.click("#all th[data-key=excess]")
    ascending = [float(v) for v in visit.column("excess") if v != "-"]
    assert ascending == sorted(values)
    visit.page.click("#all th[data-key=name]")
    names = visit.column("name")
    assert names == sorted(names, key=lambda n: n.lower()) or names[0] < names[-1]


def test_the_filter_narrows_the_rows(visit: Visit) -> None:
    assert len(visit.column("name")) == 15
    visit.page.fill("#filter", "img1")
    names = visit.column("name")
    assert names == ["sub/img10", "sub/img11"]
    assert "filtered from 15" in visit.page.inner_text("#position")
    visit.page.fill("#filter", "not a png")  # errors are searched too
    assert visit.column("name") == ["broken"]
    visit.page.fill("#filter", "")
    assert len(visit.column("name")) == 15


def test_the_hostile_name_renders_as_text(visit: Visit) -> None:
    assert visit.page.locator("img[src=x]").count() == 0 and visit.dialogs == []
    assert HOSTILE in visit.page.inner_text("#worst")
    visit.page.fill("#filter", "onerror")
    assert visit.column("name") == [HOSTILE]
    assert visit.page.locator("#all img").count() == 0


def test_pages_of_a_long_table(browser: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    targets = rng.integers(0, 256, size=(250, 4, 4), dtype=np.uint8)
    recons = np.clip(targets.astype(int) + rng.integers(-9, 9, targets.shape), 0, 255).astype(np.uint8)
    bce_eval.compare_arrays(targets, recons, layout="NHW").write_html(tmp_path / "long.html", top=3)
    opened = Visit(browser, tmp_path / "long.html")
    try:
        assert len(opened.column("name")) == 100 and "page 1 of 3" in opened.page.inner_text("#position")
        opened.page.click("#next")
        opened.page.click("#next")
        assert opened.column("name")[0] == "200" and len(opened.column("name")) == 50
        assert opened.page.is_disabled("#next") and opened.errors == []
    finally:
        opened.close()


def test_without_javascript_the_summary_and_worst_images_read(browser: Any, made: Path) -> None:
    opened = Visit(browser, made / "page.html", javascript=False)
    try:
        page = opened.page
        assert "Excess BCE - H" in page.inner_text("#summary")
        assert page.inner_text("#verdict-badge") == "FAIL"
        worst = page.locator("#worst img.thumb")
        assert worst.count() == 32
        decoded = page.eval_on_selector_all(
            "#worst img", "imgs => imgs.every(i => i.complete && i.naturalWidth > 0)"
        )
        assert decoded and page.is_visible("#worst") and page.is_visible("noscript p") is not None
        assert HOSTILE in page.inner_text("#worst") and opened.dialogs == []
    finally:
        opened.close()


def test_a_thumbnail_enlarges_on_click(visit: Visit) -> None:
    thumb = visit.page.locator("#worst img.thumb").first
    before = thumb.bounding_box()
    thumb.click()
    after = thumb.bounding_box()
    assert after["width"] > 3 * before["width"]
    visit.page.keyboard.press("Escape")
    assert thumb.bounding_box()["width"] == before["width"]


def picture(visit: Visit, alt: str) -> np.ndarray:
    src = visit.page.get_attribute(f'img[alt="{alt}"]', "src")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")).astype(
        int
    )


def test_the_damaged_square_is_hot_inside_and_cold_outside(visit: Visit, made: Path) -> None:
    """In the maps folder's PNG and in the page's thumbnail alike."""
    inside = np.zeros((64, 64), bool)
    inside[SQUARE, SQUARE] = True
    for rgb in (
        np.asarray(Image.open(made / "maps" / "square.excess.png").convert("RGB")).astype(int),
        picture(visit, "excess map of square"),
    ):
        brightness = rgb.sum(axis=2)
        assert brightness[inside].min() > 200 and brightness[~inside].max() <= 4  # magma's black is (0, 0, 4)
