"""Make the README's pictures from a real run on these sample images: a screenshot of the HTML
page as Chromium shows it (report.png) and a heat map beside its pair (heatmap.png).

Needs Playwright for Python and a system Chromium (as tests/test_browser.py does):

    python sample_images/make_screenshots.py            # from the repository root
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from PIL import Image

import bce_eval

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
WIDTH, HEIGHT = 1000, 1800  # the part of the page shown: summary, gates, histogram, worst images
ZOOM = 4  # the heat map picture shows each 64x64 image at 256x256, pixel for pixel


def small_png(image: Image.Image, path: Path, limit: int = 290_000) -> None:
    """A PNG under limit bytes: in full colour if it fits, else of 256 colours."""
    image = image.convert("RGB")
    image.save(path, optimize=True)
    if path.stat().st_size > limit:
        image.quantize(256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        report = bce_eval.compare(HERE / "targets", HERE / "recons", max_excess=0.06, max_image_excess=0.1)
        report.write_maps(work / "maps")
        page_path = work / "report.html"
        report.write_html(page_path, top=4)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            tab = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            tab.goto(page_path.as_uri())
            tab.wait_for_selector("body[data-ready]")
            worst = tab.locator("#worst").bounding_box()
            bottom = min(
                HEIGHT, round(worst["y"] + worst["height"]) + 16
            )  # the page down to the worst images
            tab.screenshot(
                path=str(work / "page.png"), clip={"x": 0, "y": 0, "width": WIDTH, "height": bottom}
            )
            browser.close()
        small_png(Image.open(work / "page.png"), HERE / "report.png")

        name, side = "astronaut", 64 * ZOOM
        pictures = [
            Image.open(HERE / "targets" / f"{name}.png").convert("RGB"),
            Image.open(HERE / "recons" / f"{name}.png").convert("RGB"),
            Image.open(work / "maps" / f"{name}.excess.png").convert("RGB"),
            Image.open(work / "maps" / f"{name}.signed.png").convert("RGB"),
        ]
        legends = [Image.open(work / "maps" / legend) for legend in ("excess-scale.png", "signed-scale.png")]
        column = legends[0].width  # a legend's width: the colour bar and its labels
        sheet = Image.new("RGB", (4 * column, side + 8 + legends[0].height), "white")
        for i, picture in enumerate(pictures):
            sheet.paste(
                picture.resize((side, side), Image.Resampling.NEAREST), (i * column + (column - side) // 2, 0)
            )
        for legend, i in zip(legends, (2, 3), strict=True):
            sheet.paste(legend, (i * column, side + 8))
        small_png(sheet, HERE / "heatmap.png")
    for made in ("report.png", "heatmap.png"):
        print(f"{HERE / made}: {(HERE / made).stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
