"""The torch backend: same numbers as NumPy, the caller's tensor kind and device, torch's own losses."""

from __future__ import annotations

import numpy as np
import pytest

import bce_eval
from bce_eval import metrics

from . import reference

torch = pytest.importorskip("torch")
F = torch.nn.functional

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"),
        ],
    ),
]


def _data(n: int = 5000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 256, n) / 255
    p = np.clip(y + rng.normal(0, 0.1, n), 0, 1)
    return y, p


@pytest.mark.parametrize("device", DEVICES)
def test_matches_torch_bce_loss_in_float64(device: str) -> None:
    y, p = _data()
    ty, tp = torch.tensor(y, device=device), torch.tensor(p, device=device)
    ours = bce_eval.bce(ty, tp, convention="torch", reduction="none")
    theirs = F.binary_cross_entropy(tp, ty, reduction="none")
    assert isinstance(ours, torch.Tensor) and ours.device.type == device and ours.dtype == torch.float64
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("device", DEVICES)
def test_matches_bce_with_logits_loss(device: str) -> None:
    rng = np.random.default_rng(1)
    y = rng.random(5000)
    x = rng.normal(0, 30, 5000)
    ty, tx = torch.tensor(y, device=device), torch.tensor(x, device=device)
    ours = bce_eval.bce(ty, tx, from_logits=True, reduction="none")
    theirs = F.binary_cross_entropy_with_logits(tx, ty, reduction="none")
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("convention", ["keras", "torch"])
def test_same_figures_as_numpy_and_the_reference(device: str, convention: str) -> None:
    y, p = _data(2000, seed=2)
    on_numpy = metrics.sums(y, p, convention=convention)  # type: ignore[arg-type]
    on_torch = metrics.sums(
        torch.tensor(y, device=device), torch.tensor(p, device=device), convention=convention
    )  # type: ignore[arg-type]
    truth = reference.totals(y, p, convention=convention)
    for ours in (on_numpy, on_torch):
        assert ours.bce == pytest.approx(truth[0], rel=1e-12)
        assert ours.entropy == pytest.approx(truth[1], rel=1e-12)
        assert ours.excess == pytest.approx(truth[2], rel=1e-9)
    assert on_torch.clipped == on_numpy.clipped


def test_float32_tensors_are_computed_in_float64() -> None:
    y = torch.rand(10_000, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    p = (y + 1e-4).clamp(0, 1)
    ours = float(bce_eval.excess(y, p, convention="torch", reduction="sum"))
    truth = reference.totals(y.double().tolist(), p.double().tolist(), convention="torch")[2]
    assert ours == pytest.approx(truth, rel=1e-9)
    in_float32 = float(
        F.binary_cross_entropy(p, y, reduction="sum") - F.binary_cross_entropy(y, y, reduction="sum")
    )
    assert abs(in_float32 - truth) / truth > 1e-3  # what the float64 computation protects against


def test_out_of_range_in_a_tensor() -> None:
    with pytest.raises(bce_eval.ValueOutOfRange, match=r"pred value 2.0 at index \(0, 1\)"):
        bce_eval.bce(torch.tensor([[0.1, 0.2]]), torch.tensor([[0.1, 2.0]]))
