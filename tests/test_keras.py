"""bce_eval.keras on Keras 3's torch backend: Keras' BCE minus H, its gradient, and a model that trains."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

import bce_eval

from . import reference

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")
if keras.backend.backend() != "torch":
    pytest.skip("these tests use Keras' torch backend", allow_module_level=True)

from bce_eval.keras import BCEExcessLoss, ExcessBCE  # noqa: E402  (after the skips)

# Keras' torch backend calls np.array on tensors in a way NumPy 2 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"
)


def _data(
    shape: tuple[int, ...] = (16, 24), seed: int = 0, sigma: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(shape)
    y.flat[:6] = [0.0, 1.0, 0.0, 1.0, 0.5, 0.2]
    p = np.clip(y + rng.normal(0, sigma, shape), 0, 1)
    p.flat[:6] = [0.0, 1.0, 1.0, 0.0, 0.5, 1e-9]
    return y, p


def _entropy(y: np.ndarray, axis: int = -1) -> np.ndarray:
    """H(y) per element in float64, averaged over axis as Keras averages BCE."""
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(np.where(y > 0, y * np.log(y), 0.0) + np.where(y < 1, (1 - y) * np.log1p(-y), 0.0))
    return h.mean(axis=axis)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", None])
def test_loss_is_keras_bce_minus_entropy(from_logits: bool, reduction: str | None) -> None:
    y, p = _data()
    x = np.log(np.clip(p, 1e-6, 1 - 1e-6) / (1 - np.clip(p, 1e-6, 1 - 1e-6))) if from_logits else p
    kwargs = {"from_logits": from_logits, "reduction": reduction, "dtype": "float64"}
    ours = keras.ops.convert_to_numpy(BCEExcessLoss(**kwargs)(y, x))
    bce = keras.ops.convert_to_numpy(keras.losses.BinaryCrossentropy(**kwargs)(y, x))
    rows = [float(bce_eval.excess(y[i], x[i], from_logits=from_logits)) for i in range(y.shape[0])]
    exact = {"sum": np.sum(rows), "sum_over_batch_size": np.mean(rows), None: np.array(rows)}[reduction]
    h = {"sum": np.sum, "sum_over_batch_size": np.mean, None: np.asarray}[reduction](_entropy(y))
    # Keras averages a float64 BCE over the last axis in float32 (keras.ops.mean), and reduces
    # the batch in float32 too with "sum_over_batch_size"; the excess keeps float64 until then.
    assert np.all(np.abs(ours - (bce - h)) <= 1e-6 * bce)  # within Keras' float32 rounding of BCE
    np.testing.assert_allclose(ours, exact, rtol=1e-7 if reduction == "sum_over_batch_size" else 1e-13)


def test_loss_in_float32_keeps_full_accuracy_on_a_near_perfect_reconstruction() -> None:
    y, p = _data((64, 256), seed=1, sigma=1e-4)
    y, p = y[:, 8:].astype(np.float32), p[:, 8:].astype(np.float32)
    truth = float(reference.totals(y.ravel().astype(float), p.ravel().astype(float))[2]) / y.size
    ours = float(keras.ops.convert_to_numpy(BCEExcessLoss()(y, p)))
    assert ours == pytest.approx(truth, rel=1e-5)
    bce = keras.losses.BinaryCrossentropy()
    naive = float(keras.ops.convert_to_numpy(bce(y, p) - bce(y, y)))
    assert abs(naive - truth) > 1e-3 * truth  # Keras' own float32 BCE - H


def test_loss_label_smoothing_and_axis() -> None:
    y, p = _data((4, 6, 5))
    for kwargs in ({"label_smoothing": 0.1}, {"axis": 1}):
        ours = BCEExcessLoss(dtype="float64", reduction=None, **kwargs)(y, p)  # type: ignore[arg-type]
        bce = keras.losses.BinaryCrossentropy(dtype="float64", reduction=None, **kwargs)(y, p)  # type: ignore[arg-type]
        smoothed = y * 0.9 + 0.05 if "label_smoothing" in kwargs else y
        axis = kwargs.get("axis", -1)
        h = _entropy(smoothed, axis=axis)  # type: ignore[arg-type]
        ours, bce = keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(bce)
        assert np.all(np.abs(ours - (bce - h)) <= 1e-6 * bce)
        exact = bce_eval.excess(smoothed, p, reduction="none").mean(axis=axis)
        np.testing.assert_allclose(ours, exact, rtol=1e-13)


@pytest.mark.parametrize("from_logits", [False, True])
def test_gradient_is_keras_bce_gradient(from_logits: bool) -> None:
    y, p = _data()
    x0 = torch.tensor(
        np.log(np.clip(p, 1e-6, 1 - 1e-6) / (1 - np.clip(p, 1e-6, 1 - 1e-6))) if from_logits else p
    )
    grads = []
    for loss in (
        BCEExcessLoss(from_logits=from_logits, dtype="float64"),
        keras.losses.BinaryCrossentropy(from_logits=from_logits, dtype="float64"),
    ):
        x = x0.clone().requires_grad_(True)
        loss(torch.tensor(y), x).backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=0)


def test_metric_accumulates_bce_entropy_and_excess() -> None:
    metric = ExcessBCE()
    batches = [_data(seed=s) for s in range(3)]
    for y, p in batches:
        metric.update_state(y.astype(np.float32), p.astype(np.float32))
    result = {k: float(keras.ops.convert_to_numpy(v)) for k, v in metric.result().items()}
    ys = np.concatenate([y.astype(np.float32).astype(float).ravel() for y, _ in batches])
    ps = np.concatenate([p.astype(np.float32).astype(float).ravel() for _, p in batches])
    clipped = np.clip(ps, 1e-7, 1 - 1e-7)  # in float64: the metric casts to float64 first
    bce = -(ys * np.log(clipped) + (1 - ys) * np.log1p(-clipped)).mean()
    h = _entropy(ys)
    assert result["bce"] == pytest.approx(bce, rel=1e-12)
    assert result["entropy"] == pytest.approx(h, rel=1e-12)
    assert result["excess"] == pytest.approx(bce - h, rel=1e-9)
    assert result["excess"] == pytest.approx(float(bce_eval.excess(ys, ps)), rel=1e-12)
    metric.reset_state()
    metric.update_state(*batches[0])
    assert float(keras.ops.convert_to_numpy(metric.result()["entropy"])) == pytest.approx(
        _entropy(batches[0][0].ravel()), rel=1e-12
    )
    bits = ExcessBCE(units="bits")
    bits.update_state(*batches[0])
    assert float(keras.ops.convert_to_numpy(bits.result()["entropy"])) == pytest.approx(
        _entropy(batches[0][0].ravel()) / math.log(2), rel=1e-12
    )


def test_a_tiny_model_trains_with_them() -> None:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(2)
    data = rng.random((96, 12)).astype(np.float32)
    model = keras.Sequential(
        [keras.Input((12,)), keras.layers.Dense(24, activation="tanh"), keras.layers.Dense(12)]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=BCEExcessLoss(from_logits=True),
        metrics=[ExcessBCE(from_logits=True)],
    )
    history = model.fit(data, data, epochs=30, batch_size=16, verbose=0).history
    assert history["excess"][-1] < 0.2 * history["excess"][0]
    assert history["entropy"][0] == pytest.approx(history["entropy"][-1], rel=1e-12)  # the floor
    assert history["bce"][-1] == pytest.approx(history["entropy"][-1] + history["excess"][-1], rel=1e-6)
    assert history["loss"][-1] == pytest.approx(history["excess"][-1], rel=0.1)


def test_loss_and_metric_survive_a_saved_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, activation="sigmoid")])
    model.compile(
        optimizer="adam", loss=BCEExcessLoss(label_smoothing=0.1), metrics=[ExcessBCE(units="bits")]
    )
    model.fit(np.full((8, 4), 0.5, np.float32), np.full((8, 4), 0.25, np.float32), epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.loss, BCEExcessLoss) and loaded.loss.label_smoothing == 0.1


def test_metric_refuses_sample_weights() -> None:
    y, p = _data()
    with pytest.raises(ValueError, match="sample weights"):
        ExcessBCE().update_state(y, p, sample_weight=np.ones(y.shape[0]))
