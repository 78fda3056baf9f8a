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


def _mixed(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets with 0s, 1s and tiny values; predictions near them, at 0 and 1; logits of all sizes."""
    rng = np.random.default_rng(seed)
    y = rng.random(n)
    y[:500], y[500:1000], y[1000:1100] = 0.0, 1.0, 1e-300
    p = np.clip(y + rng.normal(0, 1e-3, n) * rng.random(n) ** 4, 0, 1)
    p[1100:1200], p[1200:1300], p[1300:1400] = 0.0, 1.0, 1e-9
    x = rng.normal(0, 10, n)
    x[:20] = [-800, 800, -40, 40, 0, -1e-9, 1e-12, 36, -745, 745, *rng.normal(0, 1e-6, 10)]
    return y, p, x


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("convention", "logits"), [("keras", False), ("torch", False), ("keras", True)])
def test_torch_maps_equal_numpy_maps_over_many_chunks(device: str, convention: str, logits: bool) -> None:
    """The torch path (chunked and threaded on the CPU) gives NumPy's maps, edges included."""
    y, p, x = _mixed(4 * metrics._TORCH_CHUNK + 123, seed=5)
    pred = x if logits else p
    on_numpy = metrics.pixel_maps(y, pred, convention=convention, from_logits=logits)  # type: ignore[arg-type]
    on_torch = metrics.pixel_maps(
        torch.tensor(y, device=device),
        torch.tensor(pred, device=device),
        convention=convention,
        from_logits=logits,
    )  # type: ignore[arg-type]
    for name in ("bce", "entropy", "excess"):
        ours, theirs = getattr(on_torch, name).cpu().numpy(), getattr(on_numpy, name)
        assert ours.shape == theirs.shape
        # From logits near 1/2, d = (1/2 - y) + tanh(x / 2) / 2 cancels, and torch's tanh and
        # NumPy's differ in the last bit: up to 1.1e-12 here, both within 1e-12 of the truth.
        np.testing.assert_allclose(ours, theirs, rtol=2e-12 if logits else 1e-12, atol=1e-300)
        assert not np.signbit(ours).any()  # no -0.0
    assert bool((on_torch.clipped.cpu().numpy() == on_numpy.clipped).all())


@pytest.mark.parametrize(
    ("y", "p", "convention", "logits"),
    [
        (0.5000000001, 0.4999999999123, "keras", False),
        (1e-15, 1.1000000000000001e-15, "torch", False),
        (1e-30, 1.1000000000000003e-30, "torch", False),
        (1 - 2.5e-7, 1 - 3.75e-7, "keras", False),
        (0.49999956340065294, -1.726556512338355e-06, "keras", True),
        (0.9, 2.0, "keras", True),
        (5e-324, 0.5, "torch", False),
    ],
)
def test_torch_path_keeps_full_relative_accuracy_in_corners(
    y: float, p: float, convention: str, logits: bool
) -> None:
    target, pred = torch.tensor([y], dtype=torch.float64), torch.tensor([p], dtype=torch.float64)
    maps = metrics.pixel_maps(target, pred, convention=convention, from_logits=logits)  # type: ignore[arg-type]
    truth = float(reference.element(y, p, convention=convention, logits=logits)[2])
    assert abs(float(maps.excess[0]) - truth) <= 2e-14 * truth


def test_a_tensor_that_requires_grad_keeps_its_gradient() -> None:
    y, p = _data(1000)
    p = np.clip(p, 0.01, 0.99)  # where neither log is floored: both gradients are BCE's slope
    tp = torch.tensor(p, requires_grad=True)
    value = bce_eval.bce(torch.tensor(y), tp, convention="torch")
    value.backward()
    expected = torch.tensor(p, requires_grad=True)
    F.binary_cross_entropy(expected, torch.tensor(y)).backward()
    torch.testing.assert_close(tp.grad, expected.grad, rtol=1e-12, atol=0)
