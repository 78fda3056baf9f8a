"""``ExcessBCE``, the torchmetrics metric; imported through ``bce_eval.torch`` on first use."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torchmetrics
from torch import Tensor
from torchmetrics.utilities.data import dim_zero_cat

from . import metrics
from .metrics import CONVENTIONS, KERAS_EPSILON, Convention

UNITS: tuple[str, ...] = ("nats", "bits")
_SUMS = ("bce_sum", "entropy_sum", "excess_sum")
_SAMPLE_STATES = (
    "sample_index",
    "sample_values",
    "sample_clipped",
    *(f"sample_{n}" for n in ("bce", "entropy", "excess")),
)


class ExcessBCE(torchmetrics.Metric):
    """BCE, target entropy H and excess = BCE - H = KL(target || preds), accumulated exactly.

    ``update(preds, target)`` adds a batch (probabilities, or logits with ``from_logits=True``);
    ``compute()`` returns a dict of float64 tensors: ``bce``, ``entropy`` and ``excess``, each
    the mean over all values seen (pixel-weighted, as torch's ``reduction="mean"`` over the
    concatenated batches), in ``units`` ("nats" or "bits") per value, and ``clipped``, the number
    of predictions the convention moved (see ``bce_eval.pixel_maps``).

    Every figure is computed in float64 on the batch's device (any input dtype) by the
    non-cancelling KL form, and added to float64 sum states reduced with "sum" across
    processes: an update never waits for the device, and the states stay float64 whatever the
    module is cast to (``.half()``, ``.to(torch.bfloat16)``, ``set_dtype``). On the CPU, without
    ``per_sample``, a batch's sums come from the compiled kernel of ``bce_eval.kernels``.

    ``per_sample=True`` also keeps each sample's figures (a sample is an item of the first
    axis) with its dataset index: ``update(preds, target, index)``, where index holds the batch
    items' dataset indices (by default a running count, which is the dataset order only in a
    single process). ``compute()`` then adds ``index`` (int64, ascending) and ``sample_bce``,
    ``sample_entropy``, ``sample_excess`` in that order, each index once, so a distributed
    evaluation comes back in dataset order, and the overall figures are those of the samples
    listed, so the repeats that ``DistributedSampler`` pads ranks with count once.

    Values outside [0, 1] (or non-finite logits) are counted as they pass, without waiting for
    the device; ``compute()`` then raises ``ValueError`` saying how many there were.

        >>> import torch
        >>> metric = ExcessBCE()
        >>> metric.update(torch.tensor([0.1, 0.3, 0.5, 0.8]), torch.tensor([0.5, 0.3, 0.5, 0.9]))
        >>> {k: round(float(v), 6) for k, v in metric.compute().items()}
        {'bce': 0.717439, 'entropy': 0.58056, 'excess': 0.136879, 'clipped': 0.0}
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    values: Tensor
    bce_sum: Tensor
    entropy_sum: Tensor
    excess_sum: Tensor
    clipped: Tensor
    invalid: Tensor

    def __init__(
        self,
        *,
        from_logits: bool = False,
        convention: Convention = "torch",
        eps: float = KERAS_EPSILON,
        units: str = "nats",
        per_sample: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {', '.join(CONVENTIONS)}, not {convention!r}")
        if not 0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), not {eps!r}")
        if units not in UNITS:
            raise ValueError(f"units must be one of {', '.join(UNITS)}, not {units!r}")
        self.from_logits = from_logits
        self.convention: Convention = convention
        self.eps = eps
        self.units = units
        self.per_sample = per_sample
        self._counted = 0  # samples seen by this process: the default index
        # Counts are int64; sums float64. The dtype of an empty "cat" state is the metric's.
        self._dtype = torch.float64
        self.add_state("values", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        for name in _SUMS:
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("clipped", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("invalid", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        if per_sample:
            # All float64 (an index is exact up to 2**53), so that every rank gathers one dtype.
            for name in _SAMPLE_STATES:
                self.add_state(name, [], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor, index: Tensor | Sequence[int] | None = None) -> None:
        """Add a batch: preds and target of one shape, any floating dtype."""
        if preds.shape != target.shape:
            raise ValueError(
                f"preds shape {tuple(preds.shape)} and target shape {tuple(target.shape)} differ"
            )
        if not self.per_sample and self._add_by_kernel(preds, target):
            return
        y = target.detach().to(torch.float64)
        x = preds.detach().to(torch.float64)
        bad_x = ~torch.isfinite(x) if self.from_logits else ~((x >= 0) & (x <= 1))
        self.invalid += (~((y >= 0) & (y <= 1))).sum() + bad_x.sum()
        bce, entropy, excess, clipped = _figures(y, x, self.eps, self.convention, self.from_logits)
        self.values += y.numel()
        self.bce_sum += bce.sum()
        self.entropy_sum += entropy.sum()
        self.excess_sum += excess.sum()
        self.clipped += clipped.sum()
        if self.per_sample:
            self._update_samples(y, bce, entropy, excess, clipped, index)

    def _add_by_kernel(self, preds: Tensor, target: Tensor) -> bool:
        """On the CPU, a batch's sums by the compiled kernel of bce_eval.kernels (float64, about
        10x faster than torch's operations); False where it does not apply, or where a value is
        out of range, which the torch path below then counts."""
        try:
            sums = metrics._cpu_tensor_sums(
                target.detach(),
                preds.detach(),
                eps=self.eps,
                convention=self.convention,
                from_logits=self.from_logits,
            )
        except metrics.ValueOutOfRange:
            return False
        if sums is None:
            return False
        self.values += sums.pixels
        self.bce_sum += sums.bce
        self.entropy_sum += sums.entropy
        self.excess_sum += sums.excess
        self.clipped += sums.clipped
        return True

    def _update_samples(
        self,
        y: Tensor,
        bce: Tensor,
        entropy: Tensor,
        excess: Tensor,
        clipped: Tensor,
        index: Tensor | Sequence[int] | None,
    ) -> None:
        samples = y.shape[0] if y.dim() else 1
        if samples == 0:
            return
        if index is None:
            index = torch.arange(self._counted, self._counted + samples, device=y.device)
        index = torch.as_tensor(index, device=y.device).reshape(-1)
        if index.numel() != samples:
            raise ValueError(f"index has {index.numel()} entries for a batch of {samples} samples")
        self._counted += samples
        per = y.numel() // samples
        self.sample_index.append(index.to(torch.float64))
        self.sample_values.append(torch.full((samples,), float(per), dtype=torch.float64, device=y.device))
        for name, values in (("bce", bce), ("entropy", entropy), ("excess", excess), ("clipped", clipped)):
            getattr(self, f"sample_{name}").append(
                values.reshape(samples, -1).sum(dim=1, dtype=torch.float64)
            )

    def compute(self) -> dict[str, Tensor]:
        """The figures: means per value in ``units``; see the class docstring."""
        invalid = int(self.invalid)
        if invalid:
            expected = "finite logits" if self.from_logits else "values in [0, 1]"
            raise ValueError(f"ExcessBCE: {invalid} preds or target values were not {expected} (or NaN)")
        scale = 1 / math.log(2) if self.units == "bits" else 1.0
        if not self.per_sample:
            values = self.values.to(torch.float64)
            figures = {
                "bce": self.bce_sum / values * scale,
                "entropy": self.entropy_sum / values * scale,
                "excess": self.excess_sum / values * scale,
            }
            return {**figures, "clipped": self.clipped.to(torch.float64)}
        index, order = torch.sort(dim_zero_cat(self.sample_index), stable=True)
        first = torch.ones_like(index, dtype=torch.bool)
        first[1:] = index[1:] != index[:-1]  # a sample that DistributedSampler repeated counts once
        order = order[first]
        counts = dim_zero_cat(self.sample_values)[order]
        sums = {
            name: dim_zero_cat(getattr(self, f"sample_{name}"))[order]
            for name in ("bce", "entropy", "excess")
        }
        total = counts.sum()
        figures = {name: s.sum() / total * scale for name, s in sums.items()}
        clipped = dim_zero_cat(self.sample_clipped)[order].sum()
        samples = {f"sample_{name}": s / counts * scale for name, s in sums.items()}
        return {**figures, "clipped": clipped, "index": index[first].to(torch.int64), **samples}

    def _apply(
        self, fn: Callable[[Tensor], Tensor], exclude_state: Sequence[str] = ()
    ) -> torchmetrics.Metric:
        """Move the states with the module, but keep their dtypes: a sum in bfloat16 is no sum."""
        self._computed = None  # cached results would be cast with the module
        self._forward_cache = None
        this = super()._apply(fn, exclude_state=(*exclude_state, *self._defaults))
        device = this.device
        for name, default in this._defaults.items():
            value = getattr(this, name)
            if isinstance(default, Tensor):
                this._defaults[name] = default.to(device)
                setattr(this, name, value.to(device))
            else:
                setattr(this, name, [v.to(device) for v in value])
        this._dtype = torch.float64
        return this


def _figures(
    y: Tensor, x: Tensor, eps: float, convention: Convention, from_logits: bool
) -> tuple[Tensor, ...]:
    """bce, entropy, excess and clipped per value, float64, on the batch's device."""
    maps = metrics._torch_maps(y, x, eps=eps, convention=convention, from_logits=from_logits)
    return maps.bce, maps.entropy, maps.excess, maps.clipped
