"""The excess loss in a PyTorch training loop: a loss module and a torchmetrics metric.

``BCEExcessLoss`` is a drop-in for ``nn.BCELoss`` and ``nn.BCEWithLogitsLoss`` whose value is
BCE - H(target) = KL(Bernoulli(target) || Bernoulli(input)): 0 where input equals target, never
negative, so a training log shows the reconstruction error itself rather than BCE's floor. H does
not depend on the input, so the gradient with respect to the input is BCE's, exactly: the model
trains as it does with BCE.

``ExcessBCE`` (``pip install 'bce-eval[torchmetrics]'``) accumulates BCE, H and excess in float64
over an evaluation, across processes. torchmetrics is imported only when it is used.

    >>> import torch
    >>> from bce_eval.torch import BCEExcessLoss
    >>> target = torch.tensor([0.5, 0.3, 0.5, 0.9])
    >>> round(float(BCEExcessLoss()(torch.tensor([0.1, 0.3, 0.5, 0.8]), target)), 6)
    0.136879
    >>> float(BCEExcessLoss()(target, target))
    0.0
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import metrics
from .metrics import CONVENTIONS, KERAS_EPSILON, REDUCTIONS, Convention, Reduction

if TYPE_CHECKING:
    from ._torchmetrics import ExcessBCE

__all__ = ["BCEExcessLoss", "ExcessBCE", "bce_excess"]

# Half-precision inputs are computed in float32, as torch's autocast computes losses.
_HALF = (torch.float16, torch.bfloat16)


def _check_options(reduction: str, convention: str, eps: float) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, not {reduction!r}")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {', '.join(CONVENTIONS)}, not {convention!r}")
    if not 0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), not {eps!r}")


def _autocast_enabled(device: str) -> bool:
    """Whether autocast is on for this device type (torch < 2.4 has one function per type)."""
    try:
        return torch.is_autocast_enabled(device)
    except TypeError:
        return torch.is_autocast_cpu_enabled() if device == "cpu" else torch.is_autocast_enabled()


def _reduced(values: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def excess_values(
    input: Tensor,
    target: Tensor,
    *,
    from_logits: bool = False,
    convention: Convention = "torch",
    eps: float = KERAS_EPSILON,
) -> Tensor:
    """BCE - H for each element, in the dtype of the arguments (float32 or float64), without
    gradient: the KL form of ``bce_eval.metrics``, whose every term is >= 0, so nothing cancels.
    Values are not checked. On the CPU, large tensors go through in cache-sized chunks.

    >>> excess_values(torch.tensor([0.1, 0.3]), torch.tensor([0.5, 0.3])).tolist()
    [0.5108256340026855, 0.0]
    """
    with torch.no_grad():
        y, x = target.detach(), input.detach()
        options = {"eps": eps, "convention": convention, "from_logits": from_logits}
        return metrics._torch_chunked(y, x, figures=False, **options)[2]


def _cpu_excess(
    x: Tensor, y: Tensor, reduction: str, *, from_logits: bool, convention: Convention, eps: float
) -> Tensor | None:
    """The reduced excess of CPU tensors by the compiled kernel of bce_eval.kernels, summed in
    float64 and returned in x's dtype (a tensor without gradient); None where it does not apply
    (reduction "none", an empty batch, torch.compile tracing, the kernel not built)."""
    if reduction == "none" or x.numel() == 0:
        return None
    sums = metrics._cpu_tensor_sums(
        y.detach(), x.detach(), eps=eps, convention=convention, from_logits=from_logits
    )
    if sums is None:
        return None
    total = sums.excess if reduction == "sum" else sums.excess / sums.pixels
    return torch.tensor(total, dtype=x.dtype)


def bce_excess(
    input: Tensor,
    target: Tensor,
    *,
    reduction: Reduction = "mean",
    from_logits: bool = False,
    convention: Convention = "torch",
    eps: float = KERAS_EPSILON,
) -> Tensor:
    """BCE(target, input) - H(target), reduced as torch's losses reduce; see ``BCEExcessLoss``.

    The value is the non-cancelling KL form; the gradient comes from torch's own BCE, through
    ``bce - bce.detach()``, which is exactly 0 in the forward pass and exactly BCE's gradient in
    the backward one. With a target that requires grad, -H's gradient is added (infinite at 0 and
    1, as H's slope is there).
    """
    _check_options(reduction, convention, eps)
    if input.shape != target.shape:
        raise ValueError(f"input shape {tuple(input.shape)} and target shape {tuple(target.shape)} differ")
    if not input.is_floating_point():
        raise TypeError(f"input must be a floating-point tensor, not {input.dtype}")
    device = input.device.type
    autocast = _autocast_enabled(device)
    compute = torch.float32 if input.dtype in _HALF else input.dtype
    # Under autocast the loss is float32, as torch's own losses are; otherwise the input's dtype.
    result_dtype = torch.float32 if autocast and input.dtype in _HALF else input.dtype
    if input.device.type == "cpu" and not torch.compiler.is_compiling():
        # Free on the CPU; on a GPU it would wait for the device at every step, so values out of
        # range there give NaN instead.
        metrics._check(target, "target", torch)
        metrics._check(input, "pred", torch, logits=from_logits)
    # F.binary_cross_entropy refuses to run under CUDA autocast; it runs here in float32.
    context = torch.autocast(device, enabled=False) if autocast else contextlib.nullcontext()
    with context:
        x, y = input.to(compute), target.to(compute)
        if from_logits:
            bce = F.binary_cross_entropy_with_logits(x, y, reduction=reduction)
        else:
            p = x.clamp(eps, 1 - eps) if convention == "keras" else x
            bce = F.binary_cross_entropy(p, y, reduction=reduction)
        excess = _cpu_excess(x, y, reduction, from_logits=from_logits, convention=convention, eps=eps)
        if excess is None:
            excess = _reduced(
                excess_values(x, y, from_logits=from_logits, convention=convention, eps=eps), reduction
            )
        value = excess + (bce - bce.detach())
        if y.requires_grad and torch.is_grad_enabled():
            entropy = _reduced(-(torch.special.xlogy(y, y) + torch.special.xlog1py(1 - y, -y)), reduction)
            value = value - (entropy - entropy.detach())
    return value.to(result_dtype)


class BCEExcessLoss(nn.Module):
    """BCE - H(target) = KL(Bernoulli(target) || Bernoulli(input)), a drop-in for ``nn.BCELoss``
    (``from_logits=True``: ``nn.BCEWithLogitsLoss``).

    ``forward(input, target)`` in torch's argument order; ``reduction`` "mean", "sum" or "none"
    as torch means them. ``convention``: "torch" (``nn.BCELoss``: each log floored at -100) or
    "keras" (input clipped to [eps, 1 - eps] first, as Keras' BinaryCrossentropy); it does not
    apply to logits. The value is computed in the input's dtype (float16 and bfloat16 in float32)
    in a form that does not cancel: on near-perfect reconstructions in float32 it is within 1e-5
    of the float64 truth where float32 BCE - H is wrong by 1e-3 to 100 %. The gradient with
    respect to the input is torch's BCE's, bit for bit. Under autocast it runs in float32, and
    works with ``torch.compile``. Values outside [0, 1] (or non-finite logits) raise
    ``bce_eval.ValueOutOfRange`` on the CPU; on a GPU, where checking would wait for the device,
    they give NaN. No ``weight`` or ``pos_weight``: they would change what the floor H means.
    """

    def __init__(
        self,
        *,
        reduction: Reduction = "mean",
        from_logits: bool = False,
        convention: Convention = "torch",
        eps: float = KERAS_EPSILON,
    ) -> None:
        super().__init__()
        _check_options(reduction, convention, eps)
        self.reduction = reduction
        self.from_logits = from_logits
        self.convention = convention
        self.eps = eps

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return bce_excess(
            input,
            target,
            reduction=self.reduction,
            from_logits=self.from_logits,
            convention=self.convention,  # type: ignore[arg-type]
            eps=self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"reduction={self.reduction!r}, from_logits={self.from_logits}, "
            f"convention={self.convention!r}, eps={self.eps}"
        )


def __getattr__(name: str) -> Any:
    """``ExcessBCE`` is imported on first use, so that the loss works without torchmetrics."""
    if name == "ExcessBCE":
        try:
            from ._torchmetrics import ExcessBCE
        except ModuleNotFoundError as e:
            if e.name != "torchmetrics":
                raise
            raise ImportError("ExcessBCE needs torchmetrics: pip install 'bce-eval[torchmetrics]'") from None
        return ExcessBCE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
