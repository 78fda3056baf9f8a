"""BCE, entropy and excess sums of one image pair in its stored sample types, fast and exact.

``metrics.sums`` computes about 60 full-size float64 arrays per image (120-130 ns a value). This
module computes the same figures in one of two ways, both within about 1e-13 of it, relative
(the order of summation differs, and each value's terms are computed in another exact form):

- the compiled kernel, ``bce_eval/_kernel.c``, when it is built (at install, where a C compiler
  is found): one fused pass over the stored values, vectorised, at about 4 ns a value. Each
  value's excess is y g(p / y) + (1 - y) g((1 - p) / (1 - y)), g(r) = r - 1 - log r, as
  metrics.pixel_maps has it; the terms are non-negative, so their sum keeps its precision. The
  few values it leaves (the torch convention's floored logs, logits beyond +-600, float targets
  below 1e-300) are scored by ``metrics.pixel_maps`` itself. See ``_compiled_sums``.
- NumPy blocks otherwise (``_blocks_sums``), a few float64 buffers that stay in cache, at 5 to
  16 ns a value; images of up to ``SMALL`` values, where the fixed costs would match that, go to
  metrics.sums whole. It works as follows.

- Only the excess is computed per value. BCE = H + excess holds value by value, so the BCE sum
  is the entropy sum plus the excess sum; for 8- and 16-bit targets the entropy sum is the
  target's histogram dotted with a table of H at each level (``level_entropy``), and y = k / 255
  or k / 65535 is made from the stored integer k, block by block.
- excess = -[y log1p(d / y) + (1 - y) log1p(-d / (1 - y))], d = p - y ("the direct form"), in
  two log1p passes and two dot products. The two terms cancel to O(d^2), so the absolute error
  of a value is a few ulp of |d| (NumPy's log1p is within about 1 ulp): relative to the excess,
  about 8 ulp * y (1 - y) / |d|. A block is scored by it alone when a bound on its error, from
  sum d^2 and the block's excess, is below 2e-13 of that excess (``_certified``); otherwise the
  values with |d| < ``NEAR`` y (1 - y) are scored by a series that converges fast exactly there
  (``_near``), the others by the direct form, each then within about 1e-13.
- Saturated values (p below 1e-3 y, or 1 - p below 1e-3 (1 - y)), where log1p(d / y) is ill
  conditioned, and every value the torch convention floors at -100 are few in real images: they
  are scored by ``metrics.pixel_maps`` itself, once an image.
- Logits: d = (w a - y b) / (a + b) with a = e^min(x, 0) and b = e^min(-x, 0), so p = a / (a + b)
  and 1 - p = b / (a + b) keep their full relative precision at both ends without a branch.
  For |x| < 1, d = (1/2 - y) + tanh(x / 2) / 2, which keeps the digits of a small x that p, near
  1/2, lacks. Where sigmoid(x) comes within about 1e-7 of y elsewhere, no float64 path is exact
  to 1e-12 (this one and metrics.sums differ there): p is known to a few ulp, so the excess,
  O(d^2), to a few ulp / d.

numexpr (about 30 ns a value) and a numba loop (about 15 ns, and 0.3 to 0.5 s of import and
cached load in every process) were slower than the NumPy blocks here (benchmarks/README.md).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from . import metrics
from .metrics import KERAS_EPSILON, Convention, Sums

_kernel: Any
try:
    from . import _kernel  # type: ignore[attr-defined, no-redef]
except ImportError:  # not compiled here: the NumPy blocks score every pair
    _kernel = None

# Values per block: six float64 buffers of it (384 KiB) stay in an L2 cache of 512 KiB or more;
# blocks of 16,384 and 32,768 values measured within 5 % of it here.
BLOCK = 8192
# Where y = 0 or y = 1, one term of the excess vanishes; dividing by this instead of 0 keeps it
# finite (0 * log1p(d / 1e-300) = 0) without a branch.
_TINY = 1e-300
# |d| < NEAR * y (1 - y): the direct form could lose more than about 1e-13; the series is used.
NEAR = 0.04
# p below SATURATED * y (or 1 - p below SATURATED * (1 - y)): log1p(d / y) is ill conditioned.
SATURATED = 1e-3
# A block is certified for the direct form when its error bound, 2 * _ERROR_ULPS * u * (sum |d|
# + sum excess), is below _TOLERANCE * sum excess; see _certified. _ERROR_ULPS covers the
# roundings of d, d / y, log1p and the products (about 4 ulp) and the dot products' accumulation
# (OpenBLAS sums in many lanes: a few ulp as errors fall, not the worst case of n / lanes ulp);
# the tests hold the result to 1e-12 of 50-digit references.
_ERROR_ULPS = 8
_TOLERANCE = 2e-13
# With an rms d below this, the direct form is not tried first: the excess (about d^2 / (2 y (1 - y))
# a value) is then too small beside sum |d| for a block to be certified, but at the lowest levels.
_HOPELESS = 1e-5
_UNIT_ROUNDOFF = 2.0**-53
# OpenBLAS runs a dot product of more than 10,000 values on threads, which costs ten times the
# work on a few shared cores; _dot cuts longer ones into pieces.
_DOT_PIECE = 8192
# Images of at most this many values go to metrics.sums whole: there the kernel's fixed costs
# (about 30 NumPy calls an image, and a metrics.pixel_maps call for any saturated value) cost as
# much as the direct path (about 120 us for 28x28 values, against 90 to 230 us).
SMALL = 1024
# torch.nn.BCELoss floors log p at -100 below e^-100 (about 3.7e-44) and log(1 - p) at p = 1.
_TORCH_FLOORED_BELOW = 1e-40
# atanh(s) - s = s^3 * sum_k s^(2k) / (2k + 3): with |s| <= NEAR / 1.96, four terms reach 1e-16.
_ATANH_SERIES = tuple(1.0 / (2 * k + 3) for k in range(4))

LEVELS = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}


@functools.lru_cache(maxsize=4)
def level_entropy(scale: int) -> np.ndarray:
    """H(k / scale) for every stored integer k, in nats, computed by metrics.pixel_maps."""
    y = np.arange(scale + 1) / np.float64(scale)
    table = metrics.pixel_maps(y, y, convention="torch").entropy
    table.flags.writeable = False
    return table


def _level_entropy_sum(levels: np.ndarray, scale: int) -> float:
    """Sum of H over an image of stored integers: its histogram dotted with level_entropy."""
    table = level_entropy(scale)
    if levels.size < table.size // 4:  # fewer values than bins: gathering costs less
        return float(table.take(levels).sum())
    if scale == 255 and levels.size % 2 == 0:
        # Two bytes at a time: a 65,536-bin histogram of half as many values, then folded.
        counts = np.bincount(levels.view(np.uint16), minlength=1 << 16).reshape(256, 256)
        return float(counts.sum(axis=0) @ table + counts.sum(axis=1) @ table)
    # Multiplied and summed rather than dotted: OpenBLAS runs a dot of more than 10,000 values on
    # several threads, which here costs ten times the work.
    return float(np.multiply(np.bincount(levels, minlength=scale + 1), table).sum())


def _check(array: np.ndarray, which: str, *, logits: bool = False) -> tuple[float, float]:
    """The least and greatest value of a float image; ValueOutOfRange, from metrics, for the
    first value outside [0, 1] (or the first non-finite logit), as the direct path reports it."""
    low, high = float(array.min()), float(array.max())  # NaN in the array makes both NaN
    valid = math.isfinite(low) and math.isfinite(high) if logits else low >= 0 and high <= 1
    if not valid:
        with np.errstate(invalid="ignore"):  # a signalling NaN warns as it is widened
            wide = np.asarray(array, dtype=np.float64)
        metrics._check(wide, which, np, logits=logits)
    return low, high


class _Buffers:
    """Float64 work arrays of one block, reused for every block of an image."""

    def __init__(self, size: int, *, float_target: bool) -> None:
        self.y, self.neg_w, self.d, self.t, self.p, self.u = (np.empty(size) for _ in range(6))
        self.float_target = float_target

    def cut(self, n: int) -> _Buffers:
        """The first n values of each buffer (the image's last block)."""
        if n == self.y.size:
            return self
        cut = object.__new__(_Buffers)
        for name in ("y", "neg_w", "d", "t", "p", "u"):
            setattr(cut, name, getattr(self, name)[:n])
        cut.float_target = self.float_target
        return cut


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """a @ b as a float, in pieces of at most _DOT_PIECE values."""
    if a.size <= _DOT_PIECE:
        return float(a @ b)
    return sum(float(a[i : i + _DOT_PIECE] @ b[i : i + _DOT_PIECE]) for i in range(0, a.size, _DOT_PIECE))


def _certified(excess: float, sum_d2: float, n: int) -> bool:
    """Whether the direct form's block sum is certainly within _TOLERANCE of the exact one.

    Each value's error is at most _ERROR_ULPS ulp of |y log1p(t1)| + |w log1p(t2)|, and each of
    these is at most |d| + its excess (log1p(t) = t - (t - log1p(t)), with t - log1p(t) >= 0);
    sum |d| <= sqrt(n sum d^2) (Cauchy-Schwarz)."""
    bound = 2 * _ERROR_ULPS * _UNIT_ROUNDOFF * (math.sqrt(n * sum_d2) + excess)
    return bound <= _TOLERANCE * excess


def _direct(b: _Buffers, y: np.ndarray, neg_w: np.ndarray, d: np.ndarray, safe: tuple[bool, bool]) -> float:
    """sum of -[y log1p(d / y) + w log1p(-d / w)], with w = -neg_w; safe: y = 0 or w = 0 occurs."""
    t = b.t
    # Where y = 0 (or 1 - y = 0), d is divided by _TINY instead, and the term is 0 * finite.
    # For y = k / 255 or k / 65535, y + _TINY is y wherever y > 0, and np.add costs a third of
    # np.maximum; float targets may hold y below 1e-284, where only np.maximum leaves y as it is.
    if safe[0]:
        divisor = np.maximum(y, _TINY, out=t) if b.float_target else np.add(y, _TINY, out=t)
    np.divide(d, divisor if safe[0] else y, out=t)
    np.log1p(t, out=t)
    y_side = _dot(y, t)
    if safe[1]:
        divisor = np.minimum(neg_w, -_TINY, out=t) if b.float_target else np.subtract(neg_w, _TINY, out=t)
    np.divide(d, divisor if safe[1] else neg_w, out=t)
    np.log1p(t, out=t)
    return _dot(neg_w, t) - y_side


def _atanh_tail(s: np.ndarray, weight: np.ndarray, terms: int) -> float:
    """sum of weight * (atanh(s) - s) = weight * s^3 * (1/3 + s^2/5 + ...), ``terms`` terms."""
    u = s * s
    series = np.full_like(u, _ATANH_SERIES[terms - 1])
    for c in reversed(_ATANH_SERIES[: terms - 1]):
        series *= u
        series += c
    u *= s
    u *= weight
    return _dot(u, series)


def _near(y: np.ndarray, neg_w: np.ndarray, d: np.ndarray) -> float:
    """The excess summed over values with |d| < NEAR * y (1 - y), where the direct form cancels.

    With s1 = d / (p + y) and s2 = d / ((1 - p) + (1 - y)), log1p(t) = 2 atanh(t / (2 + t)) gives
    excess = d (s1 + s2) - 2 y (atanh(s1) - s1) + 2 w (atanh(s2) - s2): the first part is exact up
    to rounding and positive, the others O(s) smaller, by a series in s^2 with |s| < NEAR / 1.96."""
    a = y + y
    a += d  # p + y
    b = 2.0 - a  # (1 - p) + (1 - y)
    s1 = np.divide(d, a, out=a)
    s2 = np.divide(d, b, out=b)
    largest = float(max(np.abs(s1).max(), np.abs(s2).max()))
    # Terms needed for the series' remainder, largest^(2 terms + 1), to stay under 1e-16.
    terms = 1
    while terms < len(_ATANH_SERIES) and largest ** (2 * terms + 1) > 1e-16:
        terms += 1
    lead = _dot(d, s1 + s2)
    return lead - 2 * _atanh_tail(s1, y, terms) - 2 * _atanh_tail(s2, neg_w, terms)


def _excess(b: _Buffers, y: np.ndarray, neg_w: np.ndarray, d: np.ndarray, safe: tuple[bool, bool]) -> float:
    """The block's excess sum: the direct form where it is certified, the series where it would
    cancel (|d| < NEAR y (1 - y)), each value by one of them."""
    n = d.size
    sum_d2 = _dot(d, d)
    # Below an rms d of _HOPELESS the direct form is not even tried: it cannot be certified then.
    if sum_d2 >= n * _HOPELESS**2:
        excess = _direct(b, y, neg_w, d, safe)
        if _certified(excess, sum_d2, n):
            return excess
    near = np.abs(d, out=b.u)
    limit = np.multiply(y, neg_w, out=b.t)
    limit *= -NEAR
    near = np.less(near, limit)
    count = int(np.count_nonzero(near))
    if count == 0:
        return _direct(b, y, neg_w, d, safe) if sum_d2 < n * _HOPELESS**2 else excess
    if count == n:
        return _near(y, neg_w, d)
    if count <= n // 2:
        where = np.flatnonzero(near)
        series = _near(y[where], neg_w[where], d[where])
        d[where] = 0.0  # the direct form gives 0 for these
        return series + _direct(b, y, neg_w, d, safe)
    # Mostly near (a near-perfect image with some y = 0 or 1): the few others are taken out too.
    far = np.flatnonzero(~near)
    series = _near(y[near], neg_w[near], d[near])
    return series + _direct(b.cut(far.size), y[far], neg_w[far], d[far], safe)


def image_sums(
    target: np.ndarray,
    pred: np.ndarray,
    *,
    eps: float = KERAS_EPSILON,
    convention: Convention = "keras",
    from_logits: bool = False,
    compiled: bool = True,
) -> Sums:
    """``metrics.sums`` of one pair of NumPy images in their stored sample types.

    target: uint8 (k / 255), uint16 (k / 65535) or float in [0, 1]; pred: the same kinds, or
    float logits. Values outside [0, 1] (non-finite logits) raise metrics.ValueOutOfRange, with
    the index of the first, as metrics.sums does. compiled=False takes the NumPy blocks even
    where the compiled kernel is built (``COMPILED`` says whether it is).

    >>> y, p = np.array([[0, 128, 255]], np.uint8), np.array([[0.1, 0.5, 0.8]], np.float32)
    >>> fast, direct = image_sums(y, p), metrics.sums(y / 255, p)
    >>> abs(fast.excess - direct.excess) < 1e-15 * direct.excess
    True
    """
    if convention not in metrics.CONVENTIONS:
        raise ValueError(f"convention must be one of {', '.join(metrics.CONVENTIONS)}, not {convention!r}")
    if not 0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), not {eps!r}")
    if target.shape != pred.shape:
        raise ValueError(f"target shape {target.shape} and pred shape {pred.shape} differ")
    if not target.dtype.isnative:  # as a big-endian .npy or TIFF holds them
        target = target.astype(target.dtype.newbyteorder("="))
    if not pred.dtype.isnative:
        pred = pred.astype(pred.dtype.newbyteorder("="))
    for array in (target, pred):
        if array.dtype not in LEVELS and array.dtype.kind != "f":
            raise TypeError(f"unsupported sample type {array.dtype}: use uint8, uint16 or float")
    if from_logits and pred.dtype.kind != "f":
        raise TypeError(f"logits must be floats, not {pred.dtype}")
    if target.size == 0:
        return Sums(0, 0.0, 0.0, 0.0, 0)
    if compiled and _kernel is not None and target.dtype.itemsize <= 8 and pred.dtype.itemsize <= 8:
        return _compiled_sums(target, pred, eps, convention, from_logits)
    return _blocks_sums(target, pred, eps, convention, from_logits)


COMPILED = _kernel is not None
# The compiled kernel's modes.
_MODES = {"keras": 0, "torch": 1}
_LOGITS_MODE = 2


def _native(array: np.ndarray) -> np.ndarray:
    """The values as one C-contiguous row of a type the compiled kernel reads (uint8, uint16,
    float32, float64): a view where the array is one already; float16 is widened to float32,
    exactly."""
    if array.dtype.kind == "f" and array.dtype.itemsize < 4:
        array = array.astype(np.float32)
    if array.ndim == 3 and not array.flags.c_contiguous and array.shape[2] <= 4:
        # An image whose alpha was dropped (libspng adds one to 16-bit RGB): copied channel by
        # channel, 5x faster than np.ascontiguousarray's copy in runs of 3 values.
        packed = np.empty(array.shape, array.dtype)
        for channel in range(array.shape[2]):
            packed[:, :, channel] = array[:, :, channel]
        array = packed
    return np.ascontiguousarray(array).reshape(-1)


def _compiled_sums(
    target: np.ndarray, pred: np.ndarray, eps: float, convention: Convention, from_logits: bool
) -> Sums:
    """image_sums by the compiled kernel, with the values it leaves scored by metrics.pixel_maps."""
    levels, values = _native(target), _native(pred)
    mode = _LOGITS_MODE if from_logits else _MODES[convention]
    target_scale, pred_scale = LEVELS.get(target.dtype), LEVELS.get(pred.dtype)
    table = level_entropy(target_scale) if target_scale else None
    excess, entropy, clipped, invalid, special = _kernel.excess_sums(
        levels, values, mode, eps, 1 - eps, table
    )
    if invalid:  # raised here as metrics.sums raises it, with the index of the first bad value
        if target_scale is None:
            _check(target, "target")
        if pred_scale is None:
            _check(pred, "pred", logits=from_logits)
        raise AssertionError("the compiled kernel found a value out of range that the check did not")
    bce = entropy + excess
    if special:
        where = np.frombuffer(special, dtype=np.int64)
        y, p = _as_float64(levels[where], target_scale), _as_float64(values[where], pred_scale)
        settings: dict[str, Any] = {"eps": eps, "convention": convention, "from_logits": from_logits}
        for i in range(0, where.size, BLOCK):  # in blocks, so that the temporaries stay in cache
            maps = metrics.pixel_maps(y[i : i + BLOCK], p[i : i + BLOCK], **settings)
            entropy += float(maps.entropy.sum())
            excess += float(maps.excess.sum())
            bce += float(maps.bce.sum())
            if from_logits or convention != "keras":  # the kernel counted keras' clipped values
                clipped += int(maps.clipped.sum())
    return Sums(levels.size, bce, entropy, excess, clipped)


def _blocks_sums(
    target: np.ndarray, pred: np.ndarray, eps: float, convention: Convention, from_logits: bool
) -> Sums:
    """image_sums by NumPy blocks."""
    if target.size <= SMALL:
        y, p = _as_float64(target, LEVELS.get(target.dtype)), _as_float64(pred, LEVELS.get(pred.dtype))
        return metrics.sums(y, p, eps=eps, convention=convention, from_logits=from_logits)
    image = _Image(target, pred, eps, convention, from_logits)
    buffers = _Buffers(min(BLOCK, target.size), float_target=target.dtype.kind == "f")
    for block, start in enumerate(range(0, target.size, BLOCK)):
        image.add_block(buffers.cut(min(BLOCK, target.size - start)), block, start)
    return image.sums()


def _block_ranges(values: np.ndarray, starts: np.ndarray) -> tuple[list[Any], list[Any]]:
    """The least and greatest value of each block, in two calls for the whole image."""
    return np.minimum.reduceat(values, starts).tolist(), np.maximum.reduceat(values, starts).tolist()


class _Image:
    """One pair's running sums, block by block. What each block holds (y = 0 or 1, values to
    clip or saturated ones) is found for all blocks at once, so a plain block looks for nothing."""

    def __init__(
        self, target: np.ndarray, pred: np.ndarray, eps: float, convention: Convention, from_logits: bool
    ) -> None:
        self.settings: dict[str, Any] = {"eps": eps, "convention": convention, "from_logits": from_logits}
        self.logits = from_logits
        self.clip_to = (eps, 1 - eps) if convention == "keras" and not from_logits else None
        self.floors = convention == "torch" and not from_logits
        self.target_scale, self.pred_scale = LEVELS.get(target.dtype), LEVELS.get(pred.dtype)
        # Floats are checked before anything else, so that a bad value raises as metrics.sums does.
        target_range = _check(target, "target") if self.target_scale is None else None
        pred_range = _check(pred, "pred", logits=from_logits) if self.pred_scale is None else None
        self.levels = np.ascontiguousarray(target).reshape(-1)
        self.values = np.ascontiguousarray(pred).reshape(-1)
        n = self.levels.size
        starts = np.arange(0, n, BLOCK)
        blocks = starts.size

        # y below _TINY (0, or a subnormal float target, whose d / y would overflow) or y = 1 in a
        # block: the direct form divides by max(y, _TINY) there.
        top = self.target_scale or 1
        low, high = target_range or (int(self.levels.min()), int(self.levels.max()))
        self.ends: list[tuple[bool, bool]] = [(False, False)] * blocks
        if low < _TINY or high == top:
            lows, highs = _block_ranges(self.levels, starts)
            self.ends = [(lo < _TINY, hi == top) for lo, hi in zip(lows, highs, strict=True)]
        if self.target_scale is not None:
            self.entropy = _level_entropy_sum(self.levels, self.target_scale)
        else:
            self.entropy = 0.0  # added block by block

        # Blocks with values to clip (keras) or maybe saturated ones (scored by metrics.pixel_maps),
        # from the least and greatest value of each, in stored units.
        scale = self.pred_scale or 1
        if from_logits:
            limit = math.log(1 / SATURATED - 1)  # |x| beyond it: p or 1 - p below SATURATED
            saturated_range = (-limit, limit)
        else:
            saturated_range = (SATURATED * scale, (1 - SATURATED) * scale)
        clip_range = (eps * scale, (1 - eps) * scale) if self.clip_to else (-math.inf, math.inf)
        low, high = pred_range or (int(self.values.min()), int(self.values.max()))
        self.clips = self.saturates = [False] * blocks
        if not (saturated_range[0] < low and high < saturated_range[1]) or not (
            clip_range[0] <= low and high <= clip_range[1]
        ):
            lows, highs = _block_ranges(self.values, starts)
            ranges = list(zip(lows, highs, strict=True))
            self.clips = [not (clip_range[0] <= lo and hi <= clip_range[1]) for lo, hi in ranges]
            self.saturates = [not (saturated_range[0] < lo and hi < saturated_range[1]) for lo, hi in ranges]
        self.saturated: list[np.ndarray] = []
        self.excess = 0.0
        self.clipped = 0

    def add_block(self, b: _Buffers, block: int, start: int) -> None:
        stop = start + b.y.size
        k, x = self.levels[start:stop], self.values[start:stop]
        y, neg_w, d = b.y, b.neg_w, b.d
        ends = self.ends[block]
        if self.target_scale is not None:
            np.divide(k, self.target_scale, out=y, dtype=np.float64)
        else:
            np.copyto(y, k)
            self.entropy += _float_entropy(b, y, ends)
        np.subtract(y, 1.0, out=neg_w)
        p: np.ndarray
        if self.logits:
            _sigmoid_difference(b, x, y, neg_w)
            p = np.divide(b.p, b.u, out=b.p) if self.saturates[block] else b.p
        else:
            if self.pred_scale is not None:
                p = np.divide(x, self.pred_scale, out=b.p, dtype=np.float64)
            elif self.clips[block]:
                np.copyto(b.p, x)
                p = b.p
            else:
                p = x  # float64, or float32 that subtract widens exactly
            if self.clips[block]:
                self._clip(p, y)
            np.subtract(p, y, out=d)
        if self.saturates[block]:
            saturated = _saturated(p, y, floors=self.floors)
            if saturated.size:
                self.saturated.append(saturated + start)
                d[saturated] = 0.0  # scored by sums(); the kernels below give 0 for them
        self.excess += _excess(b, y, neg_w, d, ends)

    def _clip(self, p: np.ndarray, y: np.ndarray) -> None:
        """Keras' clip of p to [eps, 1 - eps], counting the values it moves where that changes
        the loss (p < eps under y > 0, p > 1 - eps under y < 1), as metrics.pixel_maps does."""
        assert self.clip_to is not None
        low, high = np.float64(self.clip_to[0]), np.float64(self.clip_to[1])
        self.clipped += int(np.count_nonzero((p < low) & (y > 0))) + int(
            np.count_nonzero((p > high) & (y < 1))
        )
        np.clip(p, low, high, out=p)

    def sums(self) -> Sums:
        """The image's sums, with the saturated values scored by metrics.pixel_maps in one call.

        BCE = H + excess for every value, so only the excess was summed; for the values that
        pixel_maps scores, its bce - entropy - excess is added too: not 0 only where the torch
        convention's floor would take an excess under 0 and pixel_maps clips it there."""
        bce = self.entropy + self.excess
        excess, clipped = self.excess, self.clipped
        if self.saturated:
            where = np.concatenate(self.saturated)
            y = _as_float64(self.levels[where], self.target_scale)
            pred = _as_float64(self.values[where], self.pred_scale)
            # A clipped p scores as its raw value does: pixel_maps clips it the same way. In
            # blocks, so that its temporaries stay in cache.
            for i in range(0, where.size, BLOCK):
                maps = metrics.pixel_maps(y[i : i + BLOCK], pred[i : i + BLOCK], **self.settings)
                exact = float(maps.excess.sum())
                excess += exact
                bce += exact + float((maps.bce - maps.entropy - maps.excess).sum())
                if not self.clip_to:  # keras' clipped values were counted by _clip
                    clipped += int(maps.clipped.sum())
        return Sums(self.levels.size, bce, self.entropy, excess, clipped)


def _as_float64(values: np.ndarray, scale: int | None) -> np.ndarray:
    """Stored values as the direct path reads them: integers / their scale, floats as they are
    (a signalling NaN warns as it is widened; the direct path then reports it as out of range)."""
    if scale:
        return values / np.float64(scale)
    with np.errstate(invalid="ignore"):
        return values.astype(np.float64)


def _saturated(p: np.ndarray, y: np.ndarray, *, floors: bool) -> np.ndarray:
    """Indices of the values where p < SATURATED y or 1 - p < SATURATED (1 - y), and, with the
    torch convention, where a log is floored at -100 (p below about 3.7e-44, or p = 1)."""
    candidates = np.flatnonzero((p < SATURATED) | (p > 1 - SATURATED))  # few, if any
    if not candidates.size:
        return candidates
    near_0, near_1 = p[candidates].astype(np.float64), y[candidates]
    saturated = (near_0 * (1 / SATURATED) < near_1) | ((1 - near_0) * (1 / SATURATED) < 1 - near_1)
    if floors:
        saturated |= (near_0 < _TORCH_FLOORED_BELOW) | (near_0 == 1)
    return candidates[saturated]


def _float_entropy(b: _Buffers, y: np.ndarray, safe: tuple[bool, bool]) -> float:
    """sum of H(y) = -[y log y + (1 - y) log1p(-y)] over float targets (0 log 0 = 0)."""
    t = b.t
    np.log(np.maximum(y, _TINY, out=t) if safe[0] else y, out=t)
    total = _dot(y, t)
    np.negative(y, out=t)
    if safe[1]:
        np.maximum(t, -1 + 2.0**-53, out=t)
    np.log1p(t, out=t)
    np.subtract(1.0, y, out=b.u)
    total += _dot(b.u, t)
    return 0.0 - total


def _sigmoid_difference(b: _Buffers, x: np.ndarray, y: np.ndarray, neg_w: np.ndarray) -> None:
    """d = sigmoid(x) - y into b.d, and a + b (below) into b.u, each to full relative precision.

    With a = e^min(x, 0) and b = e^min(-x, 0), p = a / (a + b) and 1 - p = b / (a + b), and
    d = ((1 - y) a - y b) / (a + b), which has no cancellation beyond that of p - y itself;
    b.p keeps a, so that p = b.p / b.u where a block needs it."""
    a, total, d = b.p, b.u, b.d
    np.minimum(x, 0.0, out=a)
    np.exp(a, out=a)
    np.negative(x, out=total)
    np.minimum(total, 0.0, out=total)
    np.exp(total, out=total)
    np.multiply(y, total, out=d)  # y b
    np.multiply(neg_w, a, out=b.t)
    d += b.t  # y b - (1 - y) a
    total += a
    np.divide(d, total, out=d)
    np.negative(d, out=d)
    # Near x = 0, p is near 1/2 and has lost the low digits of x: p - 1/2 = tanh(x / 2) / 2 keeps
    # them, as metrics.pixel_maps has it.
    near_half = np.flatnonzero(np.abs(x) < 1)
    if near_half.size:
        half = np.tanh(0.5 * x[near_half].astype(np.float64)) * 0.5
        d[near_half] = (0.5 - y[near_half]) + half
