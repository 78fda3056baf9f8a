"""The math against 50-digit references, torch, the Keras formula, closed forms and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bce_eval
from bce_eval import metrics

from . import reference

EXAMPLE_Y = [0.5, 0.3, 0.5, 0.9]
EXAMPLE_P = [0.1, 0.3, 0.5, 0.8]

unit = st.floats(0, 1, allow_nan=False)
inner = st.floats(1e-6, 1 - 1e-6)


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b else abs(a)


def test_example_from_the_readme() -> None:
    assert float(bce_eval.bce(EXAMPLE_Y, EXAMPLE_P)) == pytest.approx(0.717439, abs=5e-7)
    assert float(bce_eval.entropy(EXAMPLE_Y)) == pytest.approx(0.580560, abs=5e-7)
    assert float(bce_eval.excess(EXAMPLE_Y, EXAMPLE_P)) == pytest.approx(0.136879, abs=5e-7)
    assert float(bce_eval.bce(EXAMPLE_Y, EXAMPLE_Y)) == pytest.approx(0.580560, abs=5e-7)
    assert float(bce_eval.excess(EXAMPLE_Y, EXAMPLE_Y)) == 0.0


@pytest.mark.parametrize("convention", ["keras", "torch"])
def test_matches_decimal_reference_on_random_values(convention: str) -> None:
    rng = np.random.default_rng(1)
    y = rng.random(2000)
    y[:50] = 0.0
    y[50:100] = 1.0
    p = np.clip(y + rng.normal(0, 0.05, y.size), 0, 1)
    p[100:120] = 0.0
    p[120:140] = 1.0
    p[140:160] = 1e-9  # clipped by keras, not by torch
    maps = metrics.pixel_maps(y, p, convention=convention)  # type: ignore[arg-type]
    for i in range(y.size):
        b, h, e = (float(v) for v in reference.element(y[i], p[i], convention=convention))
        assert maps.bce[i] == pytest.approx(b, rel=1e-13, abs=1e-300)
        assert maps.entropy[i] == pytest.approx(h, rel=1e-13, abs=1e-300)
        assert maps.excess[i] == pytest.approx(e, rel=1e-11, abs=1e-300)


def test_near_perfect_reconstruction_keeps_full_relative_accuracy() -> None:
    """Where float32 gets the excess wrong by 100% and naive float64 by ~1e-4, we stay within 1e-9."""
    rng = np.random.default_rng(2)
    y = rng.integers(1, 255, 4096) / 255
    p = y + rng.normal(0, 1e-6, y.size)
    truth = reference.totals(y, p)[2]
    assert truth < 1e-7  # summed over 4096 pixels: about 6e-12 per pixel
    ours = float(bce_eval.excess(y, p, reduction="sum"))
    assert rel(ours, truth) < 1e-9
    naive = float(bce_eval.bce(y, p, reduction="sum") - bce_eval.entropy(y, reduction="sum"))
    assert rel(naive, truth) > 1e-9  # the reason excess is not computed as bce - entropy


def test_tiny_differences_below_the_series_threshold() -> None:
    y = np.array([0.25, 0.5, 0.75, 1e-3, 0.999, 1 / 65535])
    for delta in (1e-12, 1e-9, 1e-6, 1e-3, 0.05):
        p = y * (1 + delta)
        p = np.minimum(p, 1.0)
        e = metrics.pixel_maps(y, p, convention="torch").excess
        for i in range(y.size):
            assert e[i] == pytest.approx(
                float(reference.element(y[i], p[i], convention="torch")[2]), rel=1e-9
            )


@pytest.mark.parametrize(
    ("y", "p", "convention", "logits"),
    [
        (0.5000000001, 0.4999999999123, "keras", False),  # p < 1/2 <= y: 1 - p is rounded
        (1e-15, 1.1000000000000001e-15, "torch", False),  # log p - log y cancels: both near -34.5
        (1e-30, 1.1000000000000003e-30, "torch", False),
        (1 - 2.5e-7, 1 - 3.75e-7, "keras", False),  # the (1 - y) side
        (0.49999956340065294, -1.726556512338355e-06, "keras", True),  # p near 1/2 from a logit
        (0.9, 2.0, "keras", True),
    ],
)
def test_excess_keeps_full_relative_accuracy_in_corners(
    y: float, p: float, convention: str, logits: bool
) -> None:
    """Corners where d = p - y or log(p / y) lost digits (up to 6e-7 relative) before."""
    excess = metrics.pixel_maps([y], [p], convention=convention, from_logits=logits).excess[0]  # type: ignore[arg-type]
    truth = float(reference.element(y, p, convention=convention, logits=logits)[2])
    assert rel(excess, truth) < 2e-14


def test_closed_forms() -> None:
    # Binary targets: BCE is -log p (y = 1) or -log(1 - p) (y = 0), entropy 0, excess = BCE.
    assert float(bce_eval.bce([1.0], [0.25])) == pytest.approx(math.log(4), rel=1e-15)
    assert float(bce_eval.bce([0.0], [0.25])) == pytest.approx(-math.log(0.75), rel=1e-15)
    assert float(bce_eval.entropy([0.0, 1.0])) == 0.0
    assert float(bce_eval.excess([1.0], [0.25])) == pytest.approx(math.log(4), rel=1e-15)
    # y = 1/2: H = log 2; KL(1/2 || p) = -log 2 - (log p + log(1 - p)) / 2.
    p = 0.2
    assert float(bce_eval.entropy([0.5])) == pytest.approx(math.log(2), rel=1e-15)
    assert float(bce_eval.excess([0.5], [p])) == pytest.approx(
        -math.log(2) - (math.log(p) + math.log(1 - p)) / 2, rel=1e-14
    )


def test_keras_formula() -> None:
    """Keras 3: output = clip(output, eps, 1 - eps); -(y log(output) + (1 - y) log(1 - output))."""
    y = np.array([0.0, 0.2, 0.5, 1.0, 0.7])
    p = np.array([0.0, 1e-9, 0.5, 1.0, 0.9999999999])
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    keras = -(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
    assert metrics.pixel_maps(y, p).bce == pytest.approx(keras, rel=1e-9)
    # Clips that change a pixel's BCE: 1e-9 under y = 0.2 and 1 - 1e-10 under y = 0.7; p = 0
    # under y = 0 and p = 1 under y = 1 are clipped too, but their weighted log is 0 either way.
    assert int(metrics.sums(y, p).clipped) == 2


def test_clipped_counts_only_predictions_whose_bce_the_convention_changed() -> None:
    y = np.array([0.0, 0.0, 1.0, 1.0, 0.4, 0.4, 0.4])
    p = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1e-300])
    keras = metrics.pixel_maps(y, p)
    torch_ = metrics.pixel_maps(y, p, convention="torch")
    assert keras.clipped.tolist() == [False, True, True, False, True, True, True]
    # torch floors log(1e-300) = -690.8 at -100 too: that log carries the weight 0.4
    assert torch_.clipped.tolist() == [False, True, True, False, True, True, True]
    unchanged = ~torch_.clipped
    direct = 0.0 - (y * np.log(np.where(p > 0, p, 1)) + (1 - y) * np.log1p(-np.where(p < 1, p, 0)))
    assert torch_.bce[unchanged] == pytest.approx(direct[unchanged], abs=0)
    assert np.all(torch_.bce[torch_.clipped] != direct[torch_.clipped])
    assert int(metrics.pixel_maps(y, p, from_logits=True).clipped.sum()) == 0


def test_eps_changes_the_clip() -> None:
    assert float(bce_eval.bce([1.0], [0.0], eps=1e-3)) == pytest.approx(-math.log(1e-3), rel=1e-14)
    assert float(bce_eval.bce([1.0], [0.0], convention="torch")) == 100.0
    with pytest.raises(ValueError, match=r"eps must be in \(0, 0.5\)"):
        bce_eval.bce([1.0], [0.0], eps=0.0)


def test_torch_convention_floors_logs_at_minus_100() -> None:
    maps = metrics.pixel_maps([0.0, 1.0, 0.5, 0.5], [1.0, 0.0, 0.0, 1.0], convention="torch")
    assert maps.bce.tolist() == [100.0, 100.0, 50.0, 50.0]
    assert maps.clipped.tolist() == [True, True, True, True]
    assert maps.excess[2] == pytest.approx(50 - math.log(2), rel=1e-15)


def test_logits_are_stable_far_out() -> None:
    x = np.array([-800.0, -40.0, 0.0, 40.0, 800.0])
    y = np.array([0.0, 0.3, 0.5, 0.9, 1.0])
    maps = metrics.pixel_maps(y, x, from_logits=True)
    assert np.all(np.isfinite(maps.bce)) and np.all(np.isfinite(maps.excess))
    for i in range(x.size):
        b, _, e = reference.element(y[i], x[i], logits=True)
        assert maps.bce[i] == pytest.approx(float(b), rel=1e-13, abs=1e-300)
        assert maps.excess[i] == pytest.approx(float(e), rel=1e-11, abs=1e-300)
    assert int(maps.clipped.sum()) == 0


def test_reductions() -> None:
    y, p = np.array([[0.2, 0.4], [0.6, 0.8]]), np.array([[0.3, 0.4], [0.5, 0.9]])
    per_element = bce_eval.excess(y, p, reduction="none")
    assert per_element.shape == (2, 2)
    assert float(bce_eval.excess(y, p, reduction="sum")) == pytest.approx(per_element.sum(), rel=1e-15)
    assert float(bce_eval.excess(y, p, reduction="mean")) == pytest.approx(per_element.mean(), rel=1e-15)
    with pytest.raises(ValueError, match="reduction"):
        bce_eval.excess(y, p, reduction="max")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("target", "pred", "message"),
    [
        ([0.2, 1.5], [0.1, 0.2], r"target value 1.5 at index 1 is not in \[0, 1\]"),
        ([0.2, 0.5], [-0.1, 0.2], r"pred value -0.1 at index 0 is not in \[0, 1\]"),
        ([[0.2, 0.5], [0.1, math.nan]], [[0.2, 0.5], [0.1, 0.2]], r"target value nan at index \(1, 1\)"),
    ],
)
def test_out_of_range_says_which_and_where(target: list, pred: list, message: str) -> None:
    with pytest.raises(bce_eval.ValueOutOfRange, match=message):
        bce_eval.bce(target, pred)


def test_logits_must_be_finite() -> None:
    with pytest.raises(bce_eval.ValueOutOfRange, match="pred value inf at index 1 is not a finite logit"):
        bce_eval.bce([0.5, 0.5], [3.0, math.inf], from_logits=True)


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"target shape \(2,\) and pred shape \(3,\) differ"):
        bce_eval.bce([0.1, 0.2], [0.1, 0.2, 0.3])


def test_sums_merge_exactly() -> None:
    rng = np.random.default_rng(3)
    y, p = rng.random(1000), rng.random(1000)
    whole = metrics.sums(y, p)
    merged = metrics.sums(y[:300], p[:300]) + metrics.sums(y[300:], p[300:])
    assert merged.pixels == whole.pixels == 1000
    assert merged.excess == pytest.approx(whole.excess, rel=1e-14)
    assert merged.bce == pytest.approx(whole.bce, rel=1e-14)


@settings(max_examples=300, deadline=None)
@given(y=unit, p=unit, convention=st.sampled_from(["keras", "torch"]))
def test_excess_is_never_negative_and_bce_bounds_entropy(y: float, p: float, convention: str) -> None:
    maps = metrics.pixel_maps([y], [p], convention=convention)  # type: ignore[arg-type]
    assert maps.excess[0] >= 0
    assert maps.bce[0] >= maps.entropy[0] - 1e-15 * max(1.0, maps.entropy[0])
    assert maps.excess[0] == pytest.approx(maps.bce[0] - maps.entropy[0], rel=1e-9, abs=1e-15)


@settings(max_examples=300, deadline=None)
@given(y=unit, convention=st.sampled_from(["keras", "torch"]))
def test_excess_is_zero_when_pred_equals_target(y: float, convention: str) -> None:
    excess = float(bce_eval.excess([y], [y], convention=convention))  # type: ignore[arg-type]
    if convention == "keras" and not 1e-7 <= y <= 1 - 1e-7:
        return  # the keras clip moves pred away from a target this close to 0 or 1
    assert excess == 0.0


@settings(max_examples=200, deadline=None)
@given(y=inner, p=inner)
def test_excess_is_positive_when_pred_differs(y: float, p: float) -> None:
    if y != p:
        assert float(bce_eval.excess([y], [p], convention="torch")) > 0


@settings(max_examples=200, deadline=None)
@given(y=unit, x=st.floats(-13, 13))
def test_logits_agree_with_probabilities(y: float, x: float) -> None:
    p = 1 / (1 + math.exp(-x))  # 1 - p keeps 1e-10 relative accuracy only for |x| <= 13 or so
    via_logits = float(bce_eval.bce([y], [x], from_logits=True))
    via_probability = float(bce_eval.bce([y], [p], convention="torch"))
    assert via_logits == pytest.approx(via_probability, rel=1e-9)
