"""Binary cross-entropy, target entropy and excess loss, per pixel and reduced.

Pure math on NumPy arrays or torch tensors; no I/O. One implementation serves both: the array
namespace ``xp`` is picked from the inputs and every result has the caller's kind (and device).

For a target y in [0, 1] and a prediction p:

    BCE(y, p)  = -[y log p + (1 - y) log(1 - p)]
    H(y)       = -[y log y + (1 - y) log(1 - y)]            (0 log 0 = 0)
    excess     = BCE - H = KL(Bernoulli(y) || Bernoulli(p)) >= 0, zero exactly when p = y

Everything is computed in float64. The excess is not computed as BCE - H, which cancels
catastrophically for good reconstructions, but term by term in a form where each term is
non-negative (see ``_kl_term``).
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np

from .errors import ValueOutOfRange

Convention = Literal["keras", "torch"]
Reduction = Literal["mean", "sum", "none", "per_sample"]
Units = Literal["nats", "bits"]

CONVENTIONS: tuple[str, ...] = ("keras", "torch")
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none", "per_sample")
UNITS: tuple[str, ...] = ("nats", "bits")
KERAS_EPSILON = 1e-7  # keras.config.epsilon()
TORCH_LOG_FLOOR = -100.0  # torch.nn.BCELoss clamps each log at -100

# Below this |t| = |p - y| / y the term y*(t - log1p(t)) is evaluated by a series: the direct
# difference loses about log10(2/|t|) digits there, the series loses none.
_SERIES_BELOW = 0.1
# atanh(s) - s = s^3 * sum_k s^(2k) / (2k + 3); with |s| < 0.053 seven terms reach 1e-17.
_ATANH_SERIES = tuple(1.0 / (2 * k + 3) for k in range(7))


@dataclass(frozen=True)
class PixelMaps:
    """Per-element BCE, entropy and excess (nats, float64) and which predictions the convention
    changed the BCE of (``clipped``): keras, a prediction clipped into [eps, 1 - eps] where the
    log it moved carries weight (below eps with a target above 0, above 1 - eps with a target
    below 1); torch, a log floored at -100 that carries weight (a prediction of 0 with a target
    above 0, of 1 with a target below 1); logits, none."""

    bce: Any
    entropy: Any
    excess: Any
    clipped: Any


@dataclass(frozen=True)
class Sums:
    """Sums and a count over some pixels: they merge exactly across images, shards and machines.

    Means are derived, never stored: ``bce_sum / pixels`` is the pixel-weighted mean, the same as
    torch's ``reduction="mean"`` over the concatenated batch.
    """

    pixels: int
    bce: float
    entropy: float
    excess: float
    clipped: int

    def __add__(self, other: Sums) -> Sums:
        return Sums(
            self.pixels + other.pixels,
            self.bce + other.bce,
            self.entropy + other.entropy,
            self.excess + other.excess,
            self.clipped + other.clipped,
        )


def namespace(*arrays: Any) -> ModuleType:
    """The array library of the inputs: torch if any is a torch tensor, else NumPy.

    torch is looked up in ``sys.modules`` only, so NumPy callers never import it.
    """
    torch = sys.modules.get("torch")
    if torch is not None and any(isinstance(a, torch.Tensor) for a in arrays):
        return torch
    return np


def _as_float64(x: Any, xp: ModuleType) -> Any:
    if xp is np:
        return np.asarray(x, dtype=np.float64)
    if not isinstance(x, xp.Tensor):
        x = xp.as_tensor(x)
    if x.device.type == "mps":
        raise ValueError("the MPS device has no float64, which exact BCE needs; use cpu or cuda")
    return x.to(xp.float64)


def _first_index(bad: Any, xp: ModuleType) -> tuple[int, ...]:
    if xp is np:
        return tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))
    return tuple(int(i) for i in bad.nonzero()[0].tolist())


def _check(x: Any, which: str, xp: ModuleType, *, logits: bool = False) -> None:
    """Raise ValueOutOfRange for the first value outside [0, 1] (or non-finite logits)."""
    if xp is not np:
        x = x.detach()  # reading a value from a tensor that requires grad makes torch warn
        if x.numel() and _torch_all_valid(x, logits=logits):
            return  # one pass over x; the mask below is built only to find the culprit
    bad = ~xp.isfinite(x) if logits else ~((x >= 0) & (x <= 1))  # NaN fails both comparisons
    if bool(bad.any()):
        index = _first_index(bad, xp)
        value = float(x[index]) if index else float(x)
        expected = "a finite logit" if logits else "in [0, 1]"
        raise ValueOutOfRange(which, index, value, expected)


def _softplus(z: Any, xp: ModuleType) -> Any:
    """log(1 + e^z) without overflow; torch's own softplus switches to z above 20, so not used."""
    return xp.clip(z, 0, None) + xp.log1p(xp.exp(-xp.abs(z)))


def _t_minus_log1p(t: Any, xp: ModuleType) -> Any:
    """t - log1p(t), accurate to a few ulp for small |t| (valid for |t| < _SERIES_BELOW).

    With s = t / (2 + t), log1p(t) = 2 atanh(s), so t - log1p(t) = t^2/(2+t) - 2 (atanh(s) - s);
    both parts have the sign of t^2, so nothing cancels.
    """
    s = t / (2 + t)
    s2 = s * s
    series = _ATANH_SERIES[-1]
    for c in reversed(_ATANH_SERIES[:-1]):
        series = series * s2 + c
    return t * t / (2 + t) - 2 * s * s2 * series


def _kl_term(w: Any, log_w: Any, d: Any, log_a: Any, xp: ModuleType, *, true_log: Any = True) -> Any:
    """w * g(a / w) with g(u) = u - 1 - log u >= 0, given d = a - w and log a; needs w > 0.

    KL(y || p) = y g(p / y) + (1 - y) g((1 - p) / (1 - y)): the two linear parts cancel, which
    makes each term non-negative on its own. With t = d / w, log(a / w) = log1p(t):
    - near a = w (|t| < _SERIES_BELOW), a series for t - log1p(t);
    - down to a = w / 10, d - w log1p(t), where log_a is the log of a (true_log): log_a - log_w
      would cancel, losing digits in proportion to |log w| (a target of 1e-15, or 1 - 1e-7);
    - elsewhere d - w (log_a - log_w), which stays finite when a underflows (logits) and keeps a
      log floored by the convention (torch), as BCE has it.
    """
    safe_w = xp.where(w > 0, w, 1.0)
    with np.errstate(over="ignore"):  # d / w overflows only where the direct form is used
        t = d / safe_w
    near = xp.abs(t) < _SERIES_BELOW
    series = w * _t_minus_log1p(xp.where(near, t, 0.0), xp)
    ratio = (t >= -0.9) & (t < math.inf) & true_log  # d / w overflows for a subnormal w
    log_ratio = xp.where(ratio, xp.log1p(xp.where(ratio, t, 0.0)), log_a - log_w)
    return xp.where(near, series, d - w * log_ratio)


def pixel_maps(
    target: Any,
    pred: Any,
    *,
    eps: float = KERAS_EPSILON,
    convention: Convention = "keras",
    from_logits: bool = False,
) -> PixelMaps:
    """Per-element BCE, H and excess in float64 nats, with the convention's handling of pred.

    keras: pred clipped to [eps, 1 - eps], as Keras 3's BinaryCrossentropy (tf.keras from TF 2.16;
    tf.keras 2.x also added eps inside each log, a slightly higher BCE).
    torch: pred used as is, each log floored at -100 (torch.nn.BCELoss).
    from_logits: pred holds logits, p = sigmoid(pred) with a stable log-sigmoid and no clipping
    (torch.nn.BCEWithLogitsLoss, Keras with from_logits=True); convention and eps do not apply.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {', '.join(CONVENTIONS)}, not {convention!r}")
    if not 0 < eps < 0.5:  # eps = 0 would make the keras clip a no-op and 0 * log 0 a NaN
        raise ValueError(f"eps must be in (0, 0.5), not {eps!r}")
    xp = namespace(target, pred)
    y = _as_float64(target, xp)
    x = _as_float64(pred, xp)
    if tuple(y.shape) != tuple(x.shape):
        raise ValueError(f"target shape {tuple(y.shape)} and pred shape {tuple(x.shape)} differ")
    _check(y, "target", xp)
    _check(x, "pred", xp, logits=from_logits)
    if xp is not np and not (xp.is_grad_enabled() and (y.requires_grad or x.requires_grad)):
        return _torch_maps(y, x, eps=eps, convention=convention, from_logits=from_logits)

    if from_logits:
        log_p = -_softplus(-x, xp)
        log_q = -_softplus(x, xp)
        p, q = xp.exp(log_p), xp.exp(log_q)  # q = sigmoid(-x) keeps full relative precision
        clipped = xp.zeros_like(x, dtype=xp.bool)
        true_log_p = true_log_q = True
    elif convention == "keras":
        p = xp.clip(x, eps, 1 - eps)
        q = 1 - p
        log_p, log_q = xp.log(p), xp.log1p(-p)
        # A clip matters where its log carries weight: p raised to eps where y > 0, lowered to
        # 1 - eps where y < 1 (for y = 0, p = 0 the clip adds only -log(1 - eps) = eps).
        clipped = ((x < eps) & (y > 0)) | ((x > 1 - eps) & (y < 1))
        true_log_p = true_log_q = True
    else:
        p, q = x, 1 - x
        # log of 0 is -inf before the floor; clipping the argument first keeps NumPy quiet.
        raw_log_p = xp.log(xp.clip(x, 1e-300, None))
        raw_log_q = xp.log1p(-xp.clip(x, None, 1.0 - 2.0**-53))
        raw_log_q = xp.where(x < 1, raw_log_q, -math.inf)
        true_log_p, true_log_q = raw_log_p >= TORCH_LOG_FLOOR, raw_log_q >= TORCH_LOG_FLOOR
        # A floored log changes the pixel's BCE only where it carries weight: log p where y > 0,
        # log(1 - p) where y < 1 (p = 0 with y = 0 scores 0, floor or not).
        clipped = (~true_log_p & (y > 0)) | (~true_log_q & (y < 1))
        log_p = xp.clip(raw_log_p, TORCH_LOG_FLOOR, None)
        log_q = xp.clip(raw_log_q, TORCH_LOG_FLOOR, None)

    inside = (y > 0) & (y < 1)
    log_y = xp.log(xp.where(y > 0, y, 1.0))  # 0 where y = 0, so that 0 * log 0 = 0
    log_1my = xp.log1p(-xp.where(y < 1, y, 0.0))
    entropy = 0.0 - (y * log_y + (1 - y) * log_1my)  # 0.0 - x, not -x: no -0.0
    bce = 0.0 - (y * log_p + (1 - y) * log_q)

    # d = p - y. A probability p is exact, so p - y is correctly rounded. From logits, p and q =
    # 1 - p are computed apart, each to full relative precision: for y >= 0.5, 1 - y is exact
    # and (1 - y) - q keeps the digits that p, near 1, lacks; for |x| < 1, where p is near 1/2
    # and has lost the low digits of x, p - 1/2 = tanh(x / 2) / 2 keeps them.
    if from_logits:
        near_half = xp.abs(x) < 1
        d = xp.where(
            near_half,
            (0.5 - y) + 0.5 * xp.tanh(0.5 * xp.where(near_half, x, 0.0)),
            xp.where(y < 0.5, p - y, (1 - y) - q),
        )
    else:
        d = p - y
    inner = _kl_term(y, log_y, d, log_p, xp, true_log=true_log_p) + _kl_term(
        1 - y, log_1my, -d, log_q, xp, true_log=true_log_q
    )
    excess = xp.where(inside, inner, xp.where(y == 0, -log_q, -log_p))
    # Only a floored log (torch convention) with a target below e^-100 can take it under 0.
    excess = xp.clip(excess, 0, None)
    return PixelMaps(bce=bce, entropy=entropy, excess=excess, clipped=clipped)


def _scale(units: Units) -> float:
    if units not in UNITS:
        raise ValueError(f"units must be one of {', '.join(UNITS)}, not {units!r}")
    return 1.0 if units == "nats" else 1.0 / math.log(2)


def _reduce(values: Any, reduction: Reduction, units: Units) -> Any:
    """values (float64 nats) reduced and in ``units``.

    "mean" and "sum" over every element; "none" keeps each element (torch's meaning);
    "per_sample" gives one mean per item of the first axis, over all its other elements (what
    Keras' reduction="none" gives for a batch of images)."""
    scale = _scale(units)
    if reduction == "none":
        return values * scale if scale != 1 else values
    if reduction == "sum":
        return values.sum() * scale
    if reduction == "mean":
        return values.sum() * (scale / max(math.prod(values.shape), 1))
    if reduction == "per_sample":
        if len(values.shape) < 1:
            raise ValueError('reduction="per_sample" needs a batch: an array of at least one dimension')
        items = values.reshape(values.shape[0], -1) if values.shape[0] else values.reshape(0, 1)
        per_item = max(math.prod(values.shape[1:]), 1)
        return items.sum(1) * (scale / per_item)
    raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, not {reduction!r}")


def bce(
    target: Any,
    pred: Any,
    *,
    eps: float = KERAS_EPSILON,
    convention: Convention = "keras",
    from_logits: bool = False,
    reduction: Reduction = "mean",
    units: Units = "nats",
) -> Any:
    """Binary cross-entropy -[y log p + (1 - y) log(1 - p)], computed in float64.

    reduction: "mean" (over every element), "sum", "none" (each element, as torch means it) or
    "per_sample" (one mean per item of the first axis, as Keras' "none" gives for a batch);
    units: "nats" (natural log) or "bits".

    >>> round(float(bce([0.5, 0.3, 0.5, 0.9], [0.1, 0.3, 0.5, 0.8])), 6)
    0.717439
    >>> bce([[0.5, 0.5], [0.3, 0.9]], [[0.1, 0.5], [0.3, 0.8]], reduction="per_sample").round(6)
    array([0.94856 , 0.486319])
    """
    maps = pixel_maps(target, pred, eps=eps, convention=convention, from_logits=from_logits)
    return _reduce(maps.bce, reduction, units)


def entropy(target: Any, *, reduction: Reduction = "mean", units: Units = "nats") -> Any:
    """Binary entropy H(y) = -[y log y + (1 - y) log(1 - y)] (0 log 0 = 0, no eps).

    It is the floor of BCE for a soft target: BCE(y, p) >= H(y), with equality at p = y.
    ``reduction`` and ``units`` as for ``bce``.

    >>> round(float(entropy([0.5, 0.3, 0.5, 0.9])), 6)
    0.58056
    >>> float(entropy([0.5], units="bits"))
    1.0
    """
    maps = pixel_maps(target, target, convention="torch")
    return _reduce(maps.entropy, reduction, units)


def excess(
    target: Any,
    pred: Any,
    *,
    eps: float = KERAS_EPSILON,
    convention: Convention = "keras",
    from_logits: bool = False,
    reduction: Reduction = "mean",
    units: Units = "nats",
) -> Any:
    """Excess loss BCE - H = KL(Bernoulli(y) || Bernoulli(p)): the reconstruction error.

    Uses the same handling of pred, ``reduction`` and ``units`` as ``bce``; non-negative, and 0
    where pred equals target.

    >>> round(float(excess([0.5, 0.3, 0.5, 0.9], [0.1, 0.3, 0.5, 0.8])), 6)
    0.136879
    """
    maps = pixel_maps(target, pred, eps=eps, convention=convention, from_logits=from_logits)
    return _reduce(maps.excess, reduction, units)


def sums(
    target: Any,
    pred: Any,
    *,
    eps: float = KERAS_EPSILON,
    convention: Convention = "keras",
    from_logits: bool = False,
    units: Units = "nats",
) -> Sums:
    """BCE, entropy and excess summed over all elements (in ``units``), with the pixel and
    clipped counts: ``Sums`` add up exactly across batches, so a mean over a whole data set is
    ``total.excess / total.pixels``, never a mean of means.

    Float torch tensors on the CPU that need no gradient are summed by the compiled kernel of
    ``bce_eval.kernels`` on their memory (the same figures to about 1e-13, about 10x faster than
    torch's operations); NumPy arrays take pixel_maps, the direct path that the kernels are
    tested against."""
    scale = _scale(units)
    fast = _cpu_tensor_sums(target, pred, eps=eps, convention=convention, from_logits=from_logits)
    if fast is not None:
        return Sums(fast.pixels, fast.bce * scale, fast.entropy * scale, fast.excess * scale, fast.clipped)
    maps = pixel_maps(target, pred, eps=eps, convention=convention, from_logits=from_logits)
    return _sums_of(maps, scale)


def _cpu_tensor_sums(
    target: Any, pred: Any, *, eps: float, convention: Convention, from_logits: bool
) -> Sums | None:
    """kernels.image_sums of two float CPU tensors of one shape that need no gradient, on NumPy
    views of their memory (bfloat16 widened to float32, exactly); None where that does not
    apply, or where the compiled kernel is not built."""
    torch = sys.modules.get("torch")
    if torch is None or not all(isinstance(a, torch.Tensor) for a in (target, pred)):
        return None
    if target.shape != pred.shape or torch.compiler.is_compiling():
        return None
    if torch.is_grad_enabled() and (target.requires_grad or pred.requires_grad):
        return None
    if not all(a.device.type == "cpu" and a.is_floating_point() for a in (target, pred)):
        return None
    from . import kernels  # imports this module: here, not at the top

    if not kernels.COMPILED:
        return None
    y, x = (a.detach().float() if a.dtype == torch.bfloat16 else a.detach() for a in (target, pred))
    return kernels.image_sums(y.numpy(), x.numpy(), eps=eps, convention=convention, from_logits=from_logits)


def _sums_of(maps: PixelMaps, scale: float = 1.0) -> Sums:
    return Sums(
        pixels=math.prod(maps.bce.shape),
        bce=float(maps.bce.sum()) * scale,
        entropy=float(maps.entropy.sum()) * scale,
        excess=float(maps.excess.sum()) * scale,
        clipped=int(maps.clipped.sum()),
    )


# An image's sums, and the same sums for each of its channels (the last axis), in nats.
ImageSums = tuple[Sums, tuple[Sums, ...]]


def _by_channel(maps: PixelMaps) -> tuple[Sums, ...]:
    """Sums of each channel of (..., channels) maps. NumPy sums pairwise only along contiguous
    memory, so each map is laid out channel by channel first: a sum down a strided axis would
    add the values one by one, with an error growing with the pixel count."""
    channels = int(maps.bce.shape[-1])
    xp = namespace(maps.bce)
    rows = []
    for m in (maps.bce, maps.entropy, maps.excess, maps.clipped):
        flat = m.reshape(-1, channels)
        if xp is np:
            rows.append(np.ascontiguousarray(flat.T).sum(axis=1).tolist())
        else:
            rows.append(flat.T.contiguous().sum(dim=1).tolist())
    per_channel = math.prod(maps.bce.shape[:-1])
    return tuple(
        Sums(per_channel, bce, entropy, excess, int(clipped))
        for bce, entropy, excess, clipped in zip(*rows, strict=True)
    )


def image_sums(
    target: Any,
    pred: Any,
    *,
    eps: float = KERAS_EPSILON,
    convention: Convention = "keras",
    from_logits: bool = False,
) -> ImageSums:
    """``sums`` (in nats) of an image of shape (height, width, channels), and the sums of each
    channel. The image's sums are exactly ``sums``'; a channel's merge across images as an
    image's do. One channel: the image's sums are its channel's."""
    maps = pixel_maps(target, pred, eps=eps, convention=convention, from_logits=from_logits)
    total = _sums_of(maps)
    if len(maps.bce.shape) < 1 or int(maps.bce.shape[-1]) == 1:
        return total, (total,)
    return total, _by_channel(maps)


# ---------------------------------------------------------------------------------------------
# torch tensors: pixel_maps' formulas, term for term, in few whole-tensor calls. The target's two
# outcomes (1 and 0) are the rows of (2, n) tensors, so one call serves both terms of the excess.
# On the CPU, values go through in chunks whose temporaries stay in a core's cache, on a few
# threads: one call per step over a 3-million-value tensor runs at memory speed, about 5x
# slower, and torch's own threads, which wait for each other at every call, slow down by 10 to
# 40x when other processes hold the cores.

# Values a chunk on the CPU: its (2, n) temporaries stay under torch's grain of 32,768 elements,
# so that each call runs in the calling thread.
_TORCH_CHUNK = 16_000


def _torch_all_valid(x: Any, *, logits: bool) -> bool:
    """Whether every value of a non-empty tensor is in [0, 1] (finite, for logits), in one pass:
    a NaN makes the minimum and maximum NaN, and so fails both comparisons."""
    torch = sys.modules["torch"]
    if logits:
        return bool(torch.isfinite(x.amax()) & torch.isfinite(x.amin()))
    low, high = torch.aminmax(x)
    return bool((low >= 0) & (high <= 1))


def _torch_terms(
    y: Any, x: Any, *, eps: float, convention: Convention, from_logits: bool, figures: bool = True
) -> tuple[Any, Any, Any, Any]:
    """pixel_maps' bce, entropy, excess and clipped for tensors of one floating dtype, computed in
    that dtype (the loss runs this in float32); with figures=False, the excess alone (the rest
    None). Values are not checked here."""
    torch = sys.modules["torch"]
    info = torch.finfo(y.dtype)
    w = torch.stack((y, 1 - y))
    # log y and log(1 - y); the clamps change no value but 0 and 1, whose logs become finite so
    # that 0 * log 0 = 0 (the smallest subnormal, and the largest value below 1).
    log_w = torch.stack(
        (torch.log(y.clamp(min=info.tiny * info.eps)), torch.log1p(-y.clamp(max=1 - info.eps / 2)))
    )
    true_log = None
    if from_logits:
        # log p = min(x, 0) - log1p(e^-|x|), log q likewise for -x: pixel_maps' stable forms.
        log_a = torch.stack((x, -x)).clamp_(max=0).sub_(torch.log1p(torch.exp(-x.abs())))
        a = torch.exp(log_a)
        far = torch.where(y < 0.5, a[0] - y, w[1] - a[1])
        d = torch.where(x.abs() < 1, torch.tanh(0.5 * x).mul_(0.5).add_(0.5 - y), far)
        clipped = torch.zeros_like(y, dtype=torch.bool)
    elif convention == "keras":
        p = x.clamp(eps, 1 - eps)
        log_a = torch.stack((torch.log(p), torch.log1p(-p)))
        d = p - y
        # only where the clip changes the loss: the term it moves carries a weight
        clipped = ((x < eps) & (y > 0)) | ((x > 1 - eps) & (y < 1))
    else:
        log_a = torch.stack((torch.log(x), torch.log1p(-x)))  # -inf at 0 and 1, then floored
        true_log = log_a >= TORCH_LOG_FLOOR
        clipped = (~true_log[0] & (y > 0)) | (~true_log[1] & (y < 1))  # a floored log that counts
        log_a.clamp_(min=TORCH_LOG_FLOOR)
        d = x - y
    inner = _torch_kl_terms(w, log_w, torch.stack((d, -d)), log_a, true_log).sum(0)
    edge = torch.rsub(torch.where(y == 0, log_a[1], log_a[0]), 0.0)  # no -0.0
    excess = torch.where((y > 0) & (y < 1), inner, edge).clamp_(min=0)
    if not figures:
        return None, None, excess, None
    bce = torch.rsub((w * log_a).sum(0), 0.0)  # 0 - s, not -s: no -0.0
    entropy = torch.rsub((w * log_w).sum(0), 0.0)
    return bce, entropy, excess, clipped


def _torch_kl_terms(w: Any, log_w: Any, d: Any, log_a: Any, true_log: Any) -> Any:
    """_kl_term for stacked terms. Where w = 0, t is inf or NaN and the value unused."""
    torch = sys.modules["torch"]
    t = d / w
    near = t.abs() < _SERIES_BELOW
    series = _torch_t_minus_log1p(t).mul_(w)
    ratio = (t >= -0.9) & (t < math.inf)
    if true_log is not None:
        ratio &= true_log
    log_ratio = torch.where(ratio, torch.log1p(t), log_a - log_w)
    return torch.where(near, series, d - w * log_ratio)


def _torch_t_minus_log1p(t: Any) -> Any:
    """_t_minus_log1p with the same operations in the same order, in place where it can be."""
    two_plus_t = t + 2
    s = t / two_plus_t
    s2 = s * s
    series = (s2 * _ATANH_SERIES[-1]).add_(_ATANH_SERIES[-2])
    for c in reversed(_ATANH_SERIES[:-2]):
        series.mul_(s2).add_(c)
    return (t * t).div_(two_plus_t).sub_(s.mul_(2).mul_(s2).mul_(series))


def _torch_chunked(y: Any, x: Any, *, figures: bool, **options: Any) -> tuple[Any, Any, Any, Any]:
    """_torch_terms over tensors of any size: in chunks on the CPU, spread over as many threads
    as torch uses (torch's calls release the GIL); in one go on a GPU or under torch.compile."""
    torch = sys.modules["torch"]
    n = y.numel()
    if y.device.type != "cpu" or n <= _TORCH_CHUNK or torch.compiler.is_compiling():
        return _torch_terms(y, x, figures=figures, **options)
    shape = y.shape
    y, x = y.reshape(-1), x.reshape(-1)
    outs = [torch.empty_like(y) for _ in range(3)] + [torch.empty_like(y, dtype=torch.bool)]
    if not figures:
        outs = [None, None, outs[2], None]

    def run(start: int) -> None:
        part = slice(start, start + _TORCH_CHUNK)
        for out, values in zip(outs, _torch_terms(y[part], x[part], figures=figures, **options), strict=True):
            if out is not None:
                out[part] = values

    starts = range(0, n, _TORCH_CHUNK)
    threads = min(torch.get_num_threads(), len(starts) // 4)  # a thread for at least 4 chunks
    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(run, starts):  # re-raises a chunk's exception
                pass
    else:
        for start in starts:
            run(start)
    return tuple(out.view(shape) if out is not None else None for out in outs)  # type: ignore[return-value]


def _torch_maps(y: Any, x: Any, *, eps: float, convention: Convention, from_logits: bool) -> PixelMaps:
    """pixel_maps for checked float64 tensors that need no gradient."""
    return PixelMaps(
        *_torch_chunked(y, x, figures=True, eps=eps, convention=convention, from_logits=from_logits)
    )


# ---------------------------------------------------------------------------------------------
# 8-bit pairs: every figure is a function of the two bytes, so one table of all 65,536 (target,
# recon) pairs, computed once by pixel_maps, turns an image into a histogram and a dot product.

BYTE_PAIRS = 256 * 256
# Below this many values, summing looked-up values costs less than a 65,536-bin histogram.
HISTOGRAM_FROM = 8192


@dataclass(frozen=True)
class ByteTables:
    """BCE, entropy and excess (float64 nats) and the clipped flag (0 or 1) for every target
    byte t and prediction byte r, in the rows of ``figures`` at column t * 256 + r. The values
    are t / 255 and r / 255, exactly what decoding 8-bit files gives, so each entry is the
    direct path's value for that pixel."""

    figures: np.ndarray  # (4, 65536) float64: bce, entropy, excess, clipped


@functools.lru_cache(maxsize=8)
def byte_tables(eps: float = KERAS_EPSILON, convention: Convention = "keras") -> ByteTables:
    levels = np.arange(256) / np.float64(255)
    maps = pixel_maps(np.repeat(levels, 256), np.tile(levels, 256), eps=eps, convention=convention)
    figures = np.stack([maps.bce, maps.entropy, maps.excess, maps.clipped.astype(np.float64)])
    figures.flags.writeable = False
    return ByteTables(figures)


@functools.lru_cache(maxsize=8)
def _tables_on(device: Any, eps: float, convention: Convention) -> Any:
    """byte_tables' figures as a torch tensor on device, moved there once."""
    import torch

    return torch.as_tensor(byte_tables(eps, convention).figures.copy(), device=device)


def byte_pair_index(target: Any, pred: Any) -> Any:
    """t * 256 + r, flat, for uint8 arrays (NumPy: uint16, the narrowest that holds it; torch:
    int32, the narrowest that torch.bincount takes, 3x faster to build than int64)."""
    xp = namespace(target, pred)
    if xp is np:
        index = target.astype(np.uint16)
        index <<= 8
        index |= pred
        return index.ravel()
    return target.to(xp.int32).bitwise_left_shift_(8).bitwise_or_(pred).ravel()


def byte_sums(
    target: Any, pred: Any, *, eps: float = KERAS_EPSILON, convention: Convention = "keras"
) -> Sums:
    """``sums`` for uint8 target and prediction images by table lookup: each pixel's value is the
    direct path's, and only the order of summation differs (a few ulp; every term is >= 0)."""
    if tuple(target.shape) != tuple(pred.shape):
        raise ValueError(f"target shape {tuple(target.shape)} and pred shape {tuple(pred.shape)} differ")
    xp = namespace(target, pred)
    index = byte_pair_index(target, pred)
    figures = byte_tables(eps, convention).figures
    n = int(index.shape[0])
    if xp is not np:
        tables = _tables_on(index.device, eps, convention)
        if n < HISTOGRAM_FROM:  # as on NumPy, a small image's values are gathered and summed
            totals = xp.index_select(tables, 1, index).sum(dim=1).tolist()  # 40x tables[:, index]
        else:
            totals = (tables @ xp.bincount(index, minlength=BYTE_PAIRS).to(xp.float64)).tolist()
    elif n == 0:
        totals = [0.0, 0.0, 0.0, 0.0]
    elif n < HISTOGRAM_FROM:
        totals = _gathered(figures, index, [0])[0]
    else:
        # A matrix-vector product of non-negative terms, within a few ulp of the exact sum
        # (tests/test_engine.py); the clipped row sums integers, exactly.
        totals = (figures @ np.bincount(index, minlength=BYTE_PAIRS).astype(np.float64)).tolist()
    bce_sum, entropy_sum, excess_sum, clipped = totals
    return Sums(n, bce_sum, entropy_sum, excess_sum, round(clipped))


def _gathered(figures: np.ndarray, index: np.ndarray, starts: Any) -> list[list[float]]:
    """Per segment of index (from each start to the next), its looked-up figures summed.

    np.add.reduceat sums each segment of a row pairwise, and the result does not depend on where
    the segment lies, so an image gets the same figures alone or in a batch, bit for bit."""
    return np.add.reduceat(figures.take(index, axis=1), starts, axis=1).T.tolist()


def gathered(size: int) -> bool:
    """Whether an 8-bit image of this many values is looked up by gather-sum, batched with
    others by byte_sums_many, rather than by the 65,536-bin histogram."""
    return 0 < size < HISTOGRAM_FROM


# Values gathered in one batch by byte_sums_many: 4 float64 rows of them, 8 MiB.
_GATHER_BATCH = 1 << 18


def byte_sums_many(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    eps: float = KERAS_EPSILON,
    convention: Convention = "keras",
) -> list[Sums]:
    """``byte_sums`` of each (target, pred) pair of uint8 NumPy arrays, the same figures bit for
    bit. Small images (such as 28x28) are gathered together, a few NumPy calls per batch rather
    than per image, which is most of their cost."""
    for target, pred in pairs:
        if target.shape != pred.shape:
            raise ValueError(f"target shape {target.shape} and pred shape {pred.shape} differ")
    results: list[Sums | None] = [None] * len(pairs)
    batch: list[int] = []
    values = 0

    def flush() -> None:
        nonlocal values
        if not batch:
            return
        sizes = [pairs[i][0].size for i in batch]
        index = byte_pair_index(
            np.concatenate([pairs[i][0].ravel() for i in batch]),
            np.concatenate([pairs[i][1].ravel() for i in batch]),
        )
        starts = np.cumsum([0, *sizes[:-1]])  # where each image begins
        for i, n, (bce_sum, entropy_sum, excess_sum, clipped) in zip(
            batch, sizes, _gathered(byte_tables(eps, convention).figures, index, starts), strict=True
        ):
            results[i] = Sums(n, bce_sum, entropy_sum, excess_sum, round(clipped))
        batch.clear()
        values = 0

    for i, (target, pred) in enumerate(pairs):
        if gathered(target.size):
            batch.append(i)
            values += target.size
            if values >= _GATHER_BATCH:
                flush()
        else:
            results[i] = byte_sums(target, pred, eps=eps, convention=convention)
    flush()
    return results  # type: ignore[return-value]  # every entry is filled


def _channel_count(shape: Sequence[int]) -> int:
    return int(shape[-1]) if len(shape) else 1


def _from_totals(n: int, totals: Sequence[float]) -> Sums:
    bce_sum, entropy_sum, excess_sum, clipped = totals
    return Sums(n, bce_sum, entropy_sum, excess_sum, round(clipped))


def _whole(per_channel: Sequence[Sums]) -> Sums:
    """An image's sums from its channels': counts added, figures by math.fsum (correctly
    rounded), so they do not depend on how the channels' values were grouped."""
    return Sums(
        sum(s.pixels for s in per_channel),
        math.fsum(s.bce for s in per_channel),
        math.fsum(s.entropy for s in per_channel),
        math.fsum(s.excess for s in per_channel),
        sum(s.clipped for s in per_channel),
    )


def byte_image_sums(
    target: Any, pred: Any, *, eps: float = KERAS_EPSILON, convention: Convention = "keras"
) -> ImageSums:
    """``byte_sums`` of uint8 images (height, width, channels), and the sums of each channel.

    One channel: exactly byte_sums. Several: a histogram per channel (as costly as one for the
    image: a bincount casts its input to intp anyway), a lookup per channel, and the image's
    sums are the exact (math.fsum) totals of its channels' sums, within a few ulp of byte_sums.
    """
    if tuple(target.shape) != tuple(pred.shape):
        raise ValueError(f"target shape {tuple(target.shape)} and pred shape {tuple(pred.shape)} differ")
    xp = namespace(target, pred)
    channels = _channel_count(target.shape)
    if channels == 1:
        whole = byte_sums(target, pred, eps=eps, convention=convention)
        return whole, (whole,)
    n = math.prod(target.shape)
    if n == 0:
        nothing = Sums(0, 0.0, 0.0, 0.0, 0)
        return nothing, (nothing,) * channels
    if xp is np and gathered(n):
        return byte_image_sums_many([(target, pred)], eps=eps, convention=convention)[0]
    index = byte_pair_index(target, pred)
    if xp is np:
        figures = byte_tables(eps, convention).figures
        each = [
            (figures @ np.bincount(index[c::channels], minlength=BYTE_PAIRS).astype(np.float64)).tolist()
            for c in range(channels)
        ]
    else:
        offsets = xp.arange(channels, device=index.device) * BYTE_PAIRS
        counts = xp.bincount((index.view(-1, channels) + offsets).ravel(), minlength=channels * BYTE_PAIRS)
        tables = _tables_on(index.device, eps, convention)
        each = (tables @ counts.view(channels, BYTE_PAIRS).T.to(xp.float64)).T.tolist()
    per_channel = tuple(_from_totals(n // channels, totals) for totals in each)
    return _whole(per_channel), per_channel


def byte_image_sums_many(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    eps: float = KERAS_EPSILON,
    convention: Convention = "keras",
) -> list[ImageSums]:
    """``byte_image_sums`` of each (target, pred) pair of uint8 NumPy arrays (height, width,
    channels), the same figures bit for bit. Small images are gathered together as by
    byte_sums_many; a multi-channel image's values are gathered channel after channel, each
    channel a segment of its own."""
    for target, pred in pairs:
        if target.shape != pred.shape:
            raise ValueError(f"target shape {target.shape} and pred shape {pred.shape} differ")
    results: list[ImageSums | None] = [None] * len(pairs)
    batch: list[int] = []
    values = 0

    def by_channel(a: np.ndarray) -> np.ndarray:
        c = _channel_count(a.shape)
        return a.ravel() if c == 1 else a.reshape(-1, c).T.ravel()

    def flush() -> None:
        nonlocal values
        if not batch:
            return
        channels = [_channel_count(pairs[i][0].shape) for i in batch]
        index = byte_pair_index(
            np.concatenate([by_channel(pairs[i][0]) for i in batch]),
            np.concatenate([by_channel(pairs[i][1]) for i in batch]),
        )
        lengths = [pairs[i][0].size // c for i, c in zip(batch, channels, strict=True) for _ in range(c)]
        starts = np.cumsum([0, *lengths[:-1]])  # where each channel of each image begins
        segments = iter(_gathered(byte_tables(eps, convention).figures, index, starts))
        for i, c in zip(batch, channels, strict=True):
            per_channel = tuple(_from_totals(pairs[i][0].size // c, next(segments)) for _ in range(c))
            results[i] = (per_channel[0] if c == 1 else _whole(per_channel), per_channel)
        batch.clear()
        values = 0

    for i, (target, pred) in enumerate(pairs):
        if gathered(target.size):
            batch.append(i)
            values += target.size
            if values >= _GATHER_BATCH:
                flush()
        else:
            results[i] = byte_image_sums(target, pred, eps=eps, convention=convention)
    flush()
    return results  # type: ignore[return-value]  # every entry is filled
