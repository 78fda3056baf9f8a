"""kernels.image_sums against the direct float64 path (metrics.sums) and the 50-digit references,
on random, near-perfect and saturated inputs, 8-bit, 16-bit and float targets, and logits.

Every test runs twice: with the compiled kernel (bce_eval/_kernel.c) and with the NumPy blocks."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bce_eval import kernels, metrics

from . import reference

FIGURES = ("bce", "entropy", "excess")
CONVENTIONS = [("keras", 1e-7), ("keras", 0.01), ("torch", 1e-7)]


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b else abs(a)


def as_float(a: np.ndarray) -> np.ndarray:
    """Values as the direct path reads them: stored integers scaled by their type's maximum."""
    if a.dtype.kind == "u":  # uint8 or uint16, in either byte order
        return a / np.float64(np.iinfo(a.dtype).max)
    return a.astype(np.float64)


def assert_like_direct(target: np.ndarray, pred: np.ndarray, rtol: float = 1e-12, **settings: object) -> None:
    """image_sums gives metrics.sums' figures within rtol, and the same counts."""
    fast = kernels.image_sums(target, pred, **settings)  # type: ignore[arg-type]
    direct = metrics.sums(as_float(target), as_float(pred), **settings)  # type: ignore[arg-type]
    assert fast.pixels == direct.pixels
    assert fast.clipped == direct.clipped
    for figure in FIGURES:
        assert rel(getattr(fast, figure), getattr(direct, figure)) <= rtol, figure


def assert_like_reference(
    target: np.ndarray, pred: np.ndarray, rtol: float = 1e-12, **settings: object
) -> None:
    """image_sums gives the 50-digit sums within rtol."""
    fast = kernels.image_sums(target, pred, **settings)  # type: ignore[arg-type]
    truth = reference.totals(as_float(target).ravel(), as_float(pred).ravel(), **settings)
    for figure, exact in zip(FIGURES, truth, strict=True):
        assert rel(getattr(fast, figure), exact) <= rtol, figure


def natural(rng: np.random.Generator, shape: tuple[int, ...], top: int = 255) -> np.ndarray:
    """Stored integers of a smooth image with its ends (0 and top) present, as real images have."""
    h, w = shape[:2]
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = 0.5 + 0.45 * np.sin(6 * xx + 3 * yy)[..., None] * rng.uniform(0.5, 1, shape[2:] or (1,))
    values = np.clip(base.reshape(shape) + rng.normal(0, 0.05, shape), 0, 1)
    values.flat[:7] = 0.0
    values.flat[-7:] = 1.0
    return np.round(values * top).astype(np.uint8 if top == 255 else np.uint16)


@pytest.fixture(autouse=True, params=["compiled", "numpy"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which of image_sums' two paths the test runs: the compiled kernel, or the NumPy blocks (the
    path of a machine without the compiled module). CI requires the compiled one to be built."""
    if request.param == "compiled" and kernels._kernel is None:
        pytest.skip("bce_eval._kernel is not built here")
    if request.param == "numpy":
        monkeypatch.setattr(kernels, "_kernel", None)
    return str(request.param)


@pytest.fixture(autouse=True)
def kernel_on_small_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel itself, however small the image (it leaves images of up to kernels.SMALL values
    to metrics.sums, which test_small_images_take_the_direct_path checks)."""
    monkeypatch.setattr(kernels, "SMALL", 0)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 256 values: small images still go through many blocks, as large ones do."""
    monkeypatch.setattr(kernels, "BLOCK", 256)


# ---------------------------------------------------------------------------------------------
# Against the direct float64 path


@pytest.mark.parametrize(("convention", "eps"), CONVENTIONS)
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 7, 1), (28, 28, 1), (64, 96, 3), (130, 129, 3)])
def test_float32_recons_of_8bit_targets_match_the_direct_path(
    rng: np.random.Generator, shape: tuple[int, ...], convention: str, eps: float
) -> None:
    target = natural(rng, shape)
    noisy = target / 255 + rng.normal(0, 4 / 255, shape)
    noisy.flat[:3] = [0.0, 1.0, 1e-9]  # clipped by keras, floored by torch
    pred = np.clip(noisy, 0, 1).astype(np.float32)
    assert_like_direct(target, pred, eps=eps, convention=convention)


@pytest.mark.parametrize(("convention", "eps"), CONVENTIONS)
@pytest.mark.parametrize(
    "make_pred",
    [
        pytest.param(lambda y, rng: np.minimum(y * (1 + 1e-9), 1.0), id="y(1+1e-9)"),
        pytest.param(lambda y, rng: y * (1 - 1e-9), id="y(1-1e-9)"),
        pytest.param(lambda y, rng: y.astype(np.float32), id="float32(y)"),
        pytest.param(lambda y, rng: np.clip(y + rng.normal(0, 1e-6, y.shape), 0, 1), id="y+N(0,1e-6)"),
        pytest.param(lambda y, rng: np.clip(y + rng.normal(0, 1e-3, y.shape), 0, 1), id="y+N(0,1e-3)"),
        pytest.param(lambda y, rng: rng.random(y.shape), id="uniform"),
        pytest.param(lambda y, rng: y, id="perfect"),
    ],
)
def test_near_perfect_and_random_predictions_match_the_direct_path(
    rng: np.random.Generator, make_pred, convention: str, eps: float
) -> None:
    target = natural(rng, (90, 100, 3))
    pred = make_pred(target / np.float64(255), rng)
    assert_like_direct(target, pred, eps=eps, convention=convention)


@pytest.mark.parametrize(("convention", "eps"), CONVENTIONS)
def test_saturated_predictions_match_the_direct_path(
    rng: np.random.Generator, convention: str, eps: float
) -> None:
    target = natural(rng, (60, 70, 3))
    ends = [0.0, 1.0, 1e-9, 1 - 1e-9, 1e-7, 1 - 1e-7, 1e-300, 5e-324, 1e-45, 1 - 2.0**-53]
    pred = np.where(rng.random(target.shape) < 0.3, rng.choice(ends, target.shape), target / 255.0)
    assert_like_direct(target, pred, eps=eps, convention=convention)
    assert_like_direct(target, pred.astype(np.float32), eps=eps, convention=convention)


@pytest.mark.parametrize(("convention", "eps"), CONVENTIONS)
def test_16bit_targets_and_recons_match_the_direct_path(
    rng: np.random.Generator, convention: str, eps: float
) -> None:
    target = natural(rng, (70, 80, 3), top=65535)
    recon = np.clip(target + rng.normal(0, 300, target.shape), 0, 65535).astype(np.uint16)
    assert_like_direct(target, recon, eps=eps, convention=convention)
    assert_like_direct(target, (target.astype(np.int64) + 1).clip(0, 65535).astype(np.uint16))  # 1 level off
    assert_like_direct(target, recon.astype(np.float32) / np.float32(65535), eps=eps, convention=convention)
    assert_like_direct(natural(rng, target.shape), recon, eps=eps, convention=convention)  # 8-bit target


@pytest.mark.parametrize(("convention", "eps"), CONVENTIONS)
def test_float_targets_match_the_direct_path(rng: np.random.Generator, convention: str, eps: float) -> None:
    target = rng.random((50, 60, 3))
    target.flat[:20] = [0.0, 1.0, 1e-15, 1 - 1e-15, 1e-300, 5e-324] * 3 + [0.0, 1.0]
    for pred in (
        np.clip(target + rng.normal(0, 0.02, target.shape), 0, 1),
        np.minimum(target * (1 + 1e-9), 1.0),
        (target * 255).round().astype(np.uint8),
    ):
        assert_like_direct(target, pred, eps=eps, convention=convention)
        assert_like_direct(target.astype(np.float32), pred, eps=eps, convention=convention)


@pytest.mark.parametrize(
    "make_logits",
    [
        pytest.param(lambda y, rng: np.log(y / (1 - y)) + rng.normal(0, 0.3, y.shape), id="typical"),
        pytest.param(lambda y, rng: rng.normal(0, 5, y.shape), id="random"),
        pytest.param(
            lambda y, rng: rng.choice([-800.0, -40.0, 40.0, 800.0, 0.0, 1e-9], y.shape), id="saturated"
        ),
        pytest.param(lambda y, rng: np.log(y / (1 - y)) * (1 + 1e-3), id="near-perfect"),
    ],
)
def test_logits_match_the_direct_path(rng: np.random.Generator, make_logits) -> None:
    target = natural(rng, (80, 90, 3))
    y = np.clip(target / np.float64(255), 1e-3, 1 - 1e-3)
    logits = make_logits(y, rng)
    assert_like_direct(target, logits, from_logits=True)
    assert_like_direct(target, logits.astype(np.float32), from_logits=True)


def test_every_block_size_and_image_length(rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Odd lengths (the 8-bit histogram reads bytes in pairs), a last block of 1 value, tiny images."""
    for block in (64, 100, 8192):
        monkeypatch.setattr(kernels, "BLOCK", block)
        for n in (1, 2, 63, 64, 65, 129, 1001):
            target = natural(rng, (n, 1, 1))
            pred = np.clip(target / 255 + rng.normal(0, 0.02, target.shape), 0, 1)
            assert_like_direct(target, pred)


def test_views_of_larger_arrays(rng: np.random.Generator) -> None:
    """Decoded images with alpha dropped are views with gaps; they are read as they are."""
    rgba = natural(rng, (40, 50, 4))
    pred = np.clip(rgba / 255 + rng.normal(0, 0.02, rgba.shape), 0, 1).astype(np.float32)
    assert_like_direct(rgba[:, :, :3], pred[:, :, :3])
    assert_like_direct(rgba[:, ::2, :3], pred[:, 1::2, :3])


# ---------------------------------------------------------------------------------------------
# Against the 50-digit references (small images, in small blocks so that every path is taken)


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize(("convention", "eps"), [("keras", 1e-7), ("torch", 1e-7)])
@pytest.mark.parametrize(
    "make_pred",
    [
        pytest.param(lambda y, rng: np.clip(y + rng.normal(0, 4 / 255, y.shape), 0, 1), id="typical"),
        pytest.param(lambda y, rng: np.clip(y + rng.normal(0, 0.5 / 255, y.shape), 0, 1), id="good"),
        pytest.param(lambda y, rng: np.minimum(y * (1 + 1e-9), 1.0), id="y(1+1e-9)"),
        pytest.param(lambda y, rng: y * (1 - 1e-9), id="y(1-1e-9)"),
        pytest.param(lambda y, rng: y.astype(np.float32).astype(np.float64), id="float32(y)"),
        pytest.param(lambda y, rng: rng.random(y.shape), id="uniform"),
        pytest.param(
            lambda y, rng: np.where(
                rng.random(y.shape) < 0.2, rng.choice([0.0, 1.0, 1e-9, 1 - 1e-9], y.shape), y
            ),
            id="saturated",
        ),
    ],
)
def test_8bit_targets_match_the_50_digit_reference(
    rng: np.random.Generator, make_pred, convention: str, eps: float
) -> None:
    target = natural(rng, (24, 25, 2))
    y = target / np.float64(255)
    pred = make_pred(y, rng)
    assert_like_reference(target, pred, convention=convention, eps=eps)


@pytest.mark.usefixtures("small_blocks")
def test_mixed_blocks_of_near_perfect_and_far_values_match_the_reference(rng: np.random.Generator) -> None:
    """In one block, values where the direct form would cancel (by the series) beside others."""
    target = rng.integers(1, 255, (20, 30, 1)).astype(np.uint8)
    y = target / np.float64(255)
    pred = np.where(
        rng.random(y.shape) < 0.5, y * (1 + 1e-7), np.clip(y + rng.normal(0, 0.05, y.shape), 0, 1)
    )
    assert_like_reference(target, pred)
    assert_like_direct(target, pred)


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("side", [1.0, -1.0])
def test_values_just_outside_the_series_range_match_the_reference(
    rng: np.random.Generator, side: float
) -> None:
    """|d| just above kernels.NEAR y (1 - y): the direct form at its least accurate."""
    target = rng.integers(1, 255, (20, 30, 1)).astype(np.uint8)
    y = target / np.float64(255)
    pred = y + side * 1.01 * kernels.NEAR * y * (1 - y)
    assert_like_reference(target, pred)
    assert_like_direct(target, pred)


@pytest.mark.usefixtures("small_blocks")
def test_16bit_targets_match_the_50_digit_reference(rng: np.random.Generator) -> None:
    target = natural(rng, (20, 30, 1), top=65535)
    for recon in (
        np.clip(target + rng.normal(0, 300, target.shape), 0, 65535).astype(np.uint16),
        np.clip(target.astype(np.int64) + rng.integers(-1, 2, target.shape), 0, 65535).astype(np.uint16),
    ):
        assert_like_reference(target, recon)


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize(
    "make_logits",
    [
        pytest.param(lambda y, rng: np.log(y / (1 - y)) + rng.normal(0, 0.3, y.shape), id="typical"),
        pytest.param(lambda y, rng: rng.choice([-40.0, 40.0, -800.0, 800.0], y.shape), id="saturated"),
    ],
)
def test_logits_match_the_50_digit_reference(rng: np.random.Generator, make_logits) -> None:
    target = natural(rng, (20, 25, 1))
    logits = make_logits(np.clip(target / np.float64(255), 1e-3, 1 - 1e-3), rng)
    fast = kernels.image_sums(target, logits, from_logits=True)
    truth = reference.totals((target / np.float64(255)).ravel(), logits.ravel(), logits=True)
    for figure, exact in zip(FIGURES, truth, strict=True):
        assert rel(getattr(fast, figure), exact) <= 1e-12, figure


def test_near_perfect_logits_are_as_exact_as_the_logit_allows(rng: np.random.Generator) -> None:
    """Where sigmoid(x) is within about 1e-9 of y, p = sigmoid(x) is known to a few ulp of min(p,
    1 - p) whatever computes it, and the excess, about d^2 / (2 y (1 - y)), to twice that over d:
    the kernel stays within 4 ulp of that, as the direct path does."""
    target = rng.integers(1, 255, 40).astype(np.uint8)
    y = target / np.float64(255)
    logits = np.log(y / (1 - y)) * (1 + rng.choice([-1, 1], y.size) * 1e-9)
    for i in range(y.size):
        truth = float(reference.element(y[i], logits[i], logits=True)[2])
        d = abs(1 / (1 + np.exp(-logits[i])) - y[i])
        allowed = 2 * 4 * 2.0**-53 * min(y[i], 1 - y[i]) / d
        fast = kernels.image_sums(target[i : i + 1], logits[i : i + 1], from_logits=True).excess
        direct = metrics.sums(y[i : i + 1], logits[i : i + 1], from_logits=True).excess
        assert rel(fast, truth) <= allowed
        assert rel(direct, truth) <= allowed


# ---------------------------------------------------------------------------------------------
# Properties and errors


def test_a_perfect_prediction_has_no_excess(rng: np.random.Generator) -> None:
    target = natural(rng, (50, 50, 3), top=65535)  # 0 and 1 occur: keras would clip them
    same = kernels.image_sums(target, target.copy(), convention="torch")
    assert same.excess == 0.0
    assert same.bce == pytest.approx(same.entropy, rel=1e-15)
    assert kernels.image_sums(target, target / np.float64(65535), convention="torch").excess == 0.0
    inside = np.clip(target, 1, 65534)
    assert kernels.image_sums(inside, inside / np.float64(65535)).excess == 0.0


def test_clipped_values_are_counted_as_the_direct_path_counts_them(rng: np.random.Generator) -> None:
    target = natural(rng, (30, 30, 1))
    pred = np.full(target.shape, 0.5)
    pred.flat[:5] = [0.0, 1.0, 1e-8, 1 - 1e-8, 1e-7]  # the last is not clipped: eps itself
    for convention in ("keras", "torch"):  # counted only where the convention changed the loss
        expected = metrics.sums(target / 255.0, pred, convention=convention).clipped  # type: ignore[arg-type]
        assert kernels.image_sums(target, pred, convention=convention).clipped == expected  # type: ignore[arg-type]
    assert metrics.sums(target / 255.0, pred).clipped > 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, -0.25, 1.5, np.inf])
def test_a_value_out_of_range_is_reported_as_the_direct_path_reports_it(dtype: type, bad: float) -> None:
    target = np.zeros((4, 5, 3), np.uint8)
    pred = np.full(target.shape, 0.5, dtype)
    pred[2, 3, 1] = bad
    pred[3, 4, 2] = bad
    with pytest.raises(metrics.ValueOutOfRange) as fast:
        kernels.image_sums(target, pred)
    with pytest.raises(metrics.ValueOutOfRange) as direct:
        metrics.sums(target / 255.0, pred.astype(np.float64))
    assert str(fast.value) == str(direct.value)
    assert fast.value.index == (2, 3, 1) and fast.value.which == "pred"


def test_a_float_target_out_of_range_is_reported_before_the_prediction() -> None:
    target = np.full((3, 3, 1), 0.5)
    target[1, 2, 0] = 2.0
    pred = np.full((3, 3, 1), np.nan)
    with pytest.raises(metrics.ValueOutOfRange, match=r"target value 2.0 at index \(1, 2, 0\)"):
        kernels.image_sums(target, pred)


def test_logits_must_be_finite() -> None:
    logits = np.zeros((2, 2, 1))
    logits[1, 0, 0] = -np.inf
    with pytest.raises(metrics.ValueOutOfRange, match="is not a finite logit"):
        kernels.image_sums(np.zeros((2, 2, 1), np.uint8), logits, from_logits=True)


def test_unusable_arguments_are_bugs_not_input_errors() -> None:
    y = np.zeros((2, 2, 1), np.uint8)
    with pytest.raises(ValueError, match="differ"):
        kernels.image_sums(y, np.zeros((2, 3, 1)))
    with pytest.raises(TypeError, match="int32"):
        kernels.image_sums(y, np.zeros((2, 2, 1), np.int32))
    with pytest.raises(TypeError, match="logits must be floats"):
        kernels.image_sums(y, y, from_logits=True)
    with pytest.raises(ValueError, match="eps"):
        kernels.image_sums(y, y, eps=0.5)
    assert kernels.image_sums(np.zeros((0, 3, 1), np.uint8), np.zeros((0, 3, 1))) == metrics.Sums(
        0, 0.0, 0.0, 0.0, 0
    )


def test_small_images_take_the_direct_path(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    if path == "compiled":
        pytest.skip("the NumPy blocks' cut-off; the compiled kernel takes every image")
    monkeypatch.setattr(kernels, "SMALL", 1024)
    target = natural(rng, (32, 32, 1))
    pred = np.clip(target / 255 + rng.normal(0, 0.02, target.shape), 0, 1).astype(np.float32)
    pred.flat[:2] = [0.0, 1.0]
    direct = metrics.sums(target / np.float64(255), pred.astype(np.float64), convention="torch")
    assert kernels.image_sums(target, pred, convention="torch") == direct  # bit for bit

    def not_called(*args: object, **kwargs: object) -> None:
        raise AssertionError("metrics.sums called")

    monkeypatch.setattr(metrics, "sums", not_called)
    bigger = natural(rng, (33, 32, 1))  # 1,056 values: the kernel's own
    assert kernels.image_sums(bigger, bigger / np.float64(255), convention="torch").excess == 0.0


def test_level_entropy_is_the_direct_path_s() -> None:
    for scale in (255, 65535):
        y = np.arange(scale + 1) / np.float64(scale)
        np.testing.assert_array_equal(kernels.level_entropy(scale), metrics.pixel_maps(y, y).entropy)


@pytest.mark.parametrize("tiny", [5e-324, 1e-310, 1e-301])
def test_a_subnormal_float_target_in_a_block_without_zeros(tiny: float) -> None:
    """d / y overflows for y below 1e-300: such a block must take the guarded division, or its
    excess becomes -inf (found by the fuzz suite: a mutated float64 TIFF)."""
    rng = np.random.default_rng(3)
    y = rng.random((16, 16, 3)) * 0.9 + 0.05
    p = rng.random((16, 16, 3)) * 0.9 + 0.05
    y[0, 0, 0], p[0, 0, 0] = tiny, 0.7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = kernels.image_sums(y, p.astype(np.float32))
    expected = metrics.sums(y, p.astype(np.float32))
    for figure in ("bce", "entropy", "excess"):
        assert getattr(got, figure) == pytest.approx(getattr(expected, figure), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Any mix of kinds and values


@st.composite
def pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """A target of any kind, and predictions mixing exact, near-perfect, far and saturated values."""
    n = draw(st.integers(1, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["uint8", "uint16", "float64"]))
    if kind == "float64":
        target: np.ndarray = rng.random(n)
        ends = rng.random(n) < 0.2
        target[ends] = rng.choice([0.0, 1.0, 1e-12, 1 - 1e-12], n)[ends]
    else:
        top = 255 if kind == "uint8" else 65535
        target = rng.integers(0, top + 1, n).astype(kind)
    y = as_float(target)
    logits = draw(st.booleans())
    if logits:
        pred = np.log(np.clip(y, 1e-6, 1 - 1e-6) / (1 - np.clip(y, 1e-6, 1 - 1e-6)))
        # Not nearer than 0.01: a logit fixes p only to a few ulp, so no path is exact nearer
        # (test_near_perfect_logits_are_as_exact_as_the_logit_allows).
        pred = pred + rng.choice([0.01, 1.0, 50.0], n) * rng.choice([-1, 1], n)
        chosen: dict[str, object] = {"from_logits": True}
    else:
        far = rng.random(n)
        near = np.clip(y * (1 + rng.choice([1e-12, 1e-9, 1e-6, 1e-3], n) * rng.choice([-1, 1], n)), 0, 1)
        ends = rng.choice([0.0, 1.0, 1e-9, 1 - 1e-9, 1e-320], n)
        pred = np.select(
            [rng.random(n) < 0.4, rng.random(n) < 0.5, rng.random(n) < 0.5], [near, far, ends], y
        )
        convention, eps = draw(st.sampled_from(CONVENTIONS))
        chosen = {"convention": convention, "eps": eps}
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return target.reshape(n, 1, 1), pred.astype(dtype).reshape(n, 1, 1), chosen


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs(), st.sampled_from([16, 64, 8192]))
def test_any_pair_matches_the_direct_path(
    pair: tuple[np.ndarray, np.ndarray, dict[str, object]], block: int
) -> None:
    target, pred, chosen = pair
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernels, "BLOCK", block)
        assert_like_direct(target, pred, **chosen)


@pytest.mark.parametrize(
    ("target_type", "pred_type"),
    [(np.float16, np.float32), (">f4", ">f8"), (np.uint8, ">u2"), (">u2", np.float16)],
)
def test_half_floats_and_either_byte_order_are_read_as_they_are(
    rng: np.random.Generator, target_type: str, pred_type: str
) -> None:
    """float16 (widened exactly) and big-endian arrays, as .npy files and TIFF hold them."""

    def stored(values: np.ndarray, kind: object) -> np.ndarray:
        dtype = np.dtype(kind)
        if dtype.kind == "u":
            return np.round(values * np.iinfo(dtype).max).astype(dtype)
        return values.astype(dtype)

    target = stored(rng.random((20, 30, 3)), target_type)
    pred = stored(np.clip(as_float(target) + rng.normal(0, 0.05, target.shape), 0, 1), pred_type)
    assert_like_direct(target, pred)


def test_the_compiled_kernel_is_built_in_ci() -> None:
    """Its build is optional (a machine without a compiler still installs bce-eval), so its tests
    skip where it is missing; in CI, that would hide the path every user of a wheel takes."""
    if os.environ.get("CI") and not kernels.COMPILED:
        pytest.fail("bce_eval._kernel is not built: install with pip install -e . (a C compiler is needed)")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_logits_near_zero_keep_their_low_digits(rng: np.random.Generator, dtype: type) -> None:
    """A mid-grey target and a logit near 0: p = sigmoid(x) near 1/2 has lost the low digits of
    x, so p - y must come from tanh(x / 2), as metrics.pixel_maps computes it (p - y from a and b
    was off by 2e-9 relative at x = 1e-8, found by review)."""
    y = np.full(64, 0.5, dtype)
    x = (rng.choice([-1.0, 1.0], 64) * 10.0 ** rng.uniform(-9, -0.5, 64)).astype(dtype)
    target = np.full(64, 128, np.uint8)  # logit(128 / 255) = 0.0157: the same near 1/2
    logits = (np.log(128 / 127) + 1e-6 * np.linspace(-1, 1, 64)).astype(np.float64)
    for t, p in ((y, x), (target, logits)):
        fast = kernels.image_sums(t, p, from_logits=True)
        truth = reference.totals(as_float(t).ravel(), as_float(p).ravel(), logits=True)
        for figure, exact in zip(FIGURES, truth, strict=True):
            assert rel(getattr(fast, figure), exact) <= 1e-12, figure
