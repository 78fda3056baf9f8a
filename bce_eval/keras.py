"""The excess loss in a Keras 3 model, on any backend: a loss and a metric.

``BCEExcessLoss`` is a drop-in for ``keras.losses.BinaryCrossentropy`` (its ``from_logits``,
``label_smoothing``, ``axis``, ``reduction`` and its clipping of predictions to
[epsilon, 1 - epsilon], with ``keras.config.epsilon()``) whose value is BCE - H(y_true) =
KL(Bernoulli(y_true) || Bernoulli(y_pred)): 0 for a perfect reconstruction, never negative. Its
gradient is Keras' BCE's, so a model trains exactly as with BinaryCrossentropy.

``ExcessBCE`` is a ``keras.metrics.Metric`` that accumulates BCE, H and excess sums in float64
and reports their means per value: ``bce``, ``entropy`` and ``excess`` in the training log.

    model.compile(optimizer="adam", loss=BCEExcessLoss(), metrics=[ExcessBCE()])

Built from ``keras.ops`` only, with the non-cancelling KL form of ``bce_eval.metrics``.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import keras
from keras import ops

from . import metrics

__all__ = ["BCEExcessLoss", "ExcessBCE", "bce_excess"]

UNITS: tuple[str, ...] = ("nats", "bits")


def _where(condition: Any, a: Any, b: Any) -> Any:
    """keras.ops.where with a Python number taken in the other operand's dtype: keras.ops makes
    a float32 result of a float64 tensor and a Python float."""
    if isinstance(a, (int, float)):
        a = ops.full_like(b, a)
    if isinstance(b, (int, float)):
        b = ops.full_like(a, b)
    return ops.where(condition, a, b)


# metrics._kl_term takes an array namespace; these are the three functions it calls.
_OPS = SimpleNamespace(where=_where, abs=ops.abs, log1p=ops.log1p)


def _figures(y: Any, x: Any, *, from_logits: bool) -> tuple[Any, Any, Any]:
    """Per-element BCE, H and excess in the dtype of y and x, as Keras computes BCE: predictions
    clipped to [epsilon, 1 - epsilon], or, from logits, p = sigmoid(x) unclipped."""
    if from_logits:
        softplus_tail = ops.log1p(ops.exp(-ops.abs(x)))  # log p = min(x, 0) - log1p(e^-|x|)
        log_p = -ops.relu(-x) - softplus_tail
        log_q = -ops.relu(x) - softplus_tail
        p, q = ops.exp(log_p), ops.exp(log_q)
        near_half = ops.abs(x) < 1
        d = ops.where(
            near_half,
            (0.5 - y) + 0.5 * ops.tanh(0.5 * _where(near_half, x, 0.0)),
            ops.where(y < 0.5, p - y, (1 - y) - q),
        )
    else:
        eps = keras.config.epsilon()
        # The bounds rounded to x's dtype, as Keras' BCE has them on every backend; a Python float
        # would be rounded to float32 first, and 1 - 1e-7 become 1 - 1.19e-7 in float64 too.
        p = ops.clip(x, ops.cast(eps, x.dtype), ops.cast(1 - eps, x.dtype))
        log_p, log_q = ops.log(p), ops.log1p(-p)
        d = p - y
    log_y = ops.log(_where(y > 0, y, 1.0))
    log_1my = ops.log1p(-_where(y < 1, y, 0.0))
    entropy = 0.0 - (y * log_y + (1 - y) * log_1my)
    bce = 0.0 - (y * log_p + (1 - y) * log_q)
    inner = metrics._kl_term(y, log_y, d, log_p, _OPS) + metrics._kl_term(  # type: ignore[arg-type]
        1 - y,
        log_1my,
        -d,
        log_q,
        _OPS,  # type: ignore[arg-type]
    )
    edge = ops.where(y == 0, -log_q, -log_p)
    excess = ops.relu(ops.where((y > 0) & (y < 1), inner, edge))
    return bce, entropy, excess


def bce_excess(
    y_true: Any, y_pred: Any, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1
) -> Any:
    """BCE - H(y_true), averaged over ``axis`` as ``keras.losses.binary_crossentropy`` averages BCE.

    The value is the KL form; the gradient is that of ``keras.ops.binary_crossentropy``, through
    ``bce - stop_gradient(bce)``, exactly 0 in value.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    bce = ops.mean(ops.binary_crossentropy(y_true, y_pred, from_logits=from_logits), axis=axis)
    excess = ops.stop_gradient(_figures(y_true, y_pred, from_logits=from_logits)[2])
    # A sum and a division: keras.ops.mean computes a float64 mean in float32 (BCE's, above, so
    # that the gradient is Keras' own, rounding included).
    mean_excess = ops.sum(excess, axis=axis) / excess.shape[axis]
    return mean_excess + (bce - ops.stop_gradient(bce))


@keras.saving.register_keras_serializable(package="bce_eval")
class BCEExcessLoss(keras.losses.Loss):
    """BCE - H(y_true), a drop-in for ``keras.losses.BinaryCrossentropy``; see the module."""

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "bce_excess",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing
        self.axis = axis

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return bce_excess(
            y_true, y_pred, from_logits=self.from_logits, label_smoothing=self.label_smoothing, axis=self.axis
        )

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        config.update(from_logits=self.from_logits, label_smoothing=self.label_smoothing, axis=self.axis)
        return config


@keras.saving.register_keras_serializable(package="bce_eval")
class ExcessBCE(keras.metrics.Metric):
    """Mean BCE, H and excess per value over all batches, from float64 sums.

    ``result()`` is a dict, which Keras logs as ``bce``, ``entropy`` and ``excess`` (and
    ``val_...``), in ``units`` ("nats" or "bits") per value: pixel-weighted, the total over all
    values seen divided by their number.
    """

    def __init__(
        self, from_logits: bool = False, units: str = "nats", name: str = "excess_bce", dtype: Any = None
    ) -> None:
        super().__init__(name=name, dtype=dtype)
        if units not in UNITS:
            raise ValueError(f"units must be one of {', '.join(UNITS)}, not {units!r}")
        self.from_logits = from_logits
        self.units = units
        self.sums = {
            figure: self.add_variable(shape=(), initializer="zeros", dtype="float64", name=f"{figure}_sum")
            for figure in ("values", "bce", "entropy", "excess")
        }

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        if sample_weight is not None:
            raise ValueError("ExcessBCE does not take sample weights: every value counts once")
        x = ops.cast(y_pred, "float64")
        y = ops.cast(y_true, "float64")
        bce, entropy, excess = _figures(y, x, from_logits=self.from_logits)
        self.sums["values"].assign_add(ops.cast(ops.size(y), "float64"))
        for figure, values in (("bce", bce), ("entropy", entropy), ("excess", excess)):
            self.sums[figure].assign_add(ops.sum(values))

    def result(self) -> dict[str, Any]:
        scale = 1 / math.log(2) if self.units == "bits" else 1.0
        values = self.sums["values"]
        return {figure: self.sums[figure] / values * scale for figure in ("bce", "entropy", "excess")}

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        config.update(from_logits=self.from_logits, units=self.units)
        return config
