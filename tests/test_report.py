"""Reports: JSON without non-finite values, the convention in words, reading reports back."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from bce_eval import Report, ReportError, read_report
from bce_eval.gates import Verdict
from bce_eval.metrics import Sums
from bce_eval.model import ImageResult, Scoring, Settings, median, percentile
from bce_eval.reports.files import write_json


def report_of(images: list[ImageResult], settings: Settings | None = None, **fields: object) -> Report:
    settings = settings or Settings()
    return Report(settings, images, Verdict(settings.display.units), **fields)  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # percentiles of inf
def test_write_json_maps_inf_and_nan_to_null_everywhere() -> None:
    huge = ImageResult("a", "t.png", "r.png", (1, 1, 1), Sums(1, math.inf, 0.5, math.inf, 0))
    out = io.StringIO()
    write_json(report_of([huge]).to_json() | {"extra": [math.nan, {"x": -math.inf}]}, out)
    document = json.loads(out.getvalue())
    assert document["summary"]["bce_sum"] is None and document["summary"]["excess"] is None
    assert document["summary"]["entropy_sum"] == 0.5
    assert document["images"][0]["sums_nats"] == {"bce": None, "entropy": 0.5, "excess": None}
    assert document["extra"] == [None, {"x": None}]


@pytest.mark.parametrize(
    ("eps", "shown"),
    [
        (1e-7, "[1e-07, 0.9999999]"),
        (0.4999999, "[0.4999999, 0.5000001]"),
        (0.123456789012, "[0.123456789012, 0.876543210988]"),
        (1e-15, "[1e-15, 0.999999999999999]"),
    ],
)
def test_the_clip_bounds_are_shown_in_full(eps: float, shown: str) -> None:
    assert Scoring(eps=eps).describe() == f"keras (pred clipped to {shown})"


def test_a_report_read_back_has_the_sums_of_the_run(tmp_path: Path) -> None:
    results = [
        ImageResult("a", "t/a.png", "r/a.png", (2, 3, 1), Sums(6, 1.0 / 3, 0.25, 1.0 / 7, 2)),
        ImageResult("b", "t/b.png", "", error="t/b.png: no reconstruction in r"),
    ]
    settings = Settings.of(units="bits", convention="torch")
    path = tmp_path / "report.json"
    report_of(results, settings, shard=(2, 5)).write_json(path)
    stored = read_report(path)
    assert stored.images == results  # exact, through the sums in nats
    assert stored.settings == settings and stored.shard == (2, 5) and stored.exact


def test_an_image_without_a_field_is_not_a_report(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"format": 1, "settings": {}, "images": [{}]}))
    with pytest.raises(ReportError, match="not a bce-eval JSON report"):
        read_report(path)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 19, 20, 21, 1000, 1001])
def test_median_and_percentile_are_numpy_s_bit_for_bit(n: int) -> None:
    rng = np.random.default_rng(n)
    for scale in (1e-9, 1.0, 1e6):
        values = rng.random(n) * scale
        assert median(values) == np.median(values)
        for q in (0, 5, 50, 95, 99.9, 100):
            assert percentile(values, q) == np.percentile(values, q)


def test_json_names_the_worst_image_as_the_other_summaries_do() -> None:
    results = [
        ImageResult("a", "t/a.png", "r/a.png", (1, 1, 1), Sums(1, 0.5, 0.25, 0.25, 0)),
        ImageResult("b", "t/b.png", "r/b.png", (1, 1, 1), Sums(1, 0.9, 0.25, 0.65, 0)),
    ]
    assert report_of(results).to_json()["summary"]["worst"] == "b"


def test_deeply_nested_json_is_not_a_report(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"a": ' * 100_000)
    with pytest.raises(ReportError, match="nested too deeply to read"):
        read_report(path)
