"""bce_eval.torch: the loss trains as BCE does and shows the excess; the metric accumulates exactly."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import bce_eval
from bce_eval import metrics

from . import reference

torch = pytest.importorskip("torch")
F = torch.nn.functional
from bce_eval.torch import BCEExcessLoss, bce_excess  # noqa: E402  (after the torch skip)

ROOT = Path(__file__).resolve().parent.parent
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")],
    ),
]
REDUCTIONS = ["mean", "sum", "none"]


def _random(n: int = 4000, seed: int = 0, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(n, generator=g, dtype=torch.float64)
    p = (y + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)).clamp(0, 1)
    return y.to(dtype), p.to(dtype)


def _saturated() -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions at and next to 0 and 1, under and over the keras clip, targets at the ends too."""
    p = torch.tensor(
        [0.0, 1.0, 1e-300, 1e-50, 1e-8, 1 - 1e-12, 1 - 1e-8, 1e-7, 1 - 1e-7, 0.5, 0.0, 1.0, 1e-45, 0.3],
        dtype=torch.float64,
    )
    y = torch.tensor(
        [1.0, 0.0, 0.5, 1.0, 0.0, 0.2, 1.0, 0.7, 0.1, 0.5, 0.0, 1.0, 1e-3, 1.0], dtype=torch.float64
    )
    return y, p


def _logits(n: int = 4000, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(n, generator=g, dtype=torch.float64)
    x = 8 * torch.randn(n, generator=g, dtype=torch.float64)
    x[:8] = torch.tensor([-800.0, 800.0, -40.0, 40.0, 0.0, -1e-9, 36.0, -745.0], dtype=torch.float64)
    return y, x


def _grad(fn, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    x = x.clone().requires_grad_(True)
    value = fn(x, y)
    (value.sum() if value.dim() else value).backward()
    assert x.grad is not None
    return value.detach(), x.grad


def _assert_same(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-12) -> None:
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    assert ((a - b).abs() <= rel * b.abs()).all(), float(((a - b).abs() / b.abs().clamp(min=1e-300)).max())


# ---------------------------------------------------------------------------------------------
# The loss: gradient, value


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("data", [_random, _saturated], ids=["random", "saturated"])
def test_gradient_is_bce_loss_gradient(reduction: str, data) -> None:  # type: ignore[no-untyped-def]
    y, p = data()
    _, ours = _grad(BCEExcessLoss(reduction=reduction), p, y)  # type: ignore[arg-type]
    _, theirs = _grad(lambda x, t: F.binary_cross_entropy(x, t, reduction=reduction), p, y)
    _assert_same(ours, theirs)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("data", [_random, _saturated], ids=["random", "saturated"])
def test_keras_convention_gradient_is_that_of_bce_on_the_clipped_input(reduction: str, data) -> None:  # type: ignore[no-untyped-def]
    y, p = data()
    loss = BCEExcessLoss(reduction=reduction, convention="keras")  # type: ignore[arg-type]
    _, ours = _grad(loss, p, y)
    _, theirs = _grad(
        lambda x, t: F.binary_cross_entropy(x.clamp(1e-7, 1 - 1e-7), t, reduction=reduction), p, y
    )
    assert ((ours - theirs).abs() <= 1e-12 * theirs.abs()).all()  # 0 where the clip holds p


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_logits_gradient_is_bce_with_logits_gradient(reduction: str) -> None:
    y, x = _logits()
    _, ours = _grad(BCEExcessLoss(reduction=reduction, from_logits=True), x, y)  # type: ignore[arg-type]
    _, theirs = _grad(lambda z, t: F.binary_cross_entropy_with_logits(z, t, reduction=reduction), x, y)
    assert ((ours - theirs).abs() <= 1e-12 * theirs.abs()).all()


@pytest.mark.parametrize(("convention", "logits"), [("torch", False), ("keras", False), ("keras", True)])
def test_value_is_the_exact_excess_in_float64(convention: str, logits: bool) -> None:
    y, p = _logits() if logits else _random()
    for reduction in REDUCTIONS:
        ours = bce_excess(p, y, reduction=reduction, convention=convention, from_logits=logits)  # type: ignore[arg-type]
        exact = bce_eval.excess(y, p, convention=convention, from_logits=logits, reduction=reduction)  # type: ignore[arg-type]
        assert ours.dtype == torch.float64
        torch.testing.assert_close(ours, exact, rtol=1e-12, atol=0)


def test_value_against_the_decimal_reference_on_saturated_inputs() -> None:
    y, p = _saturated()
    ours = bce_excess(p, y, reduction="none")
    for i in range(y.numel()):
        truth = float(reference.element(float(y[i]), float(p[i]), convention="torch")[2])
        assert float(ours[i]) == pytest.approx(truth, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("convention", ["torch", "keras"])
def test_zero_where_input_equals_target(dtype: torch.dtype, convention: str) -> None:
    y = torch.linspace(0, 1, 1001, dtype=torch.float64).to(dtype)
    if convention == "keras":  # the clip moves 0 and 1: BCE - H is -log(1 - eps) there
        y = y[(y > 1e-7) & (y < 1 - 1e-7)]
    loss = BCEExcessLoss(reduction="none", convention=convention)  # type: ignore[arg-type]
    assert (loss(y, y) == 0).all()
    assert float(BCEExcessLoss(convention=convention)(y, y)) == 0.0  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("convention", "logits"), [("torch", False), ("keras", False), ("keras", True)])
def test_never_negative_in_low_precision(dtype: torch.dtype, convention: str, logits: bool) -> None:
    g = torch.Generator().manual_seed(3)
    y = torch.rand(20_000, generator=g)
    noise = torch.randn(20_000, generator=g) * torch.logspace(-9, -1, 20_000)
    x = torch.logit(y.clamp(1e-6, 1 - 1e-6)) + noise if logits else (y + noise).clamp(0, 1)
    y, x = y.to(dtype), x.to(dtype)
    loss = BCEExcessLoss(reduction="none", convention=convention, from_logits=logits)  # type: ignore[arg-type]
    values = loss(x, y)
    assert values.dtype == dtype and (values >= 0).all()
    for reduction in ("mean", "sum"):
        assert float(bce_excess(x, y, reduction=reduction, convention=convention, from_logits=logits)) >= 0  # type: ignore[arg-type]
    if dtype == torch.float32 and not logits:  # what the loss protects against
        naive = F.binary_cross_entropy(x, y, reduction="none") - F.binary_cross_entropy(
            y, y, reduction="none"
        )
        assert (naive < 0).any()


@pytest.mark.parametrize("logits", [False, True])
def test_float32_near_perfect_reconstruction_within_1e_5_of_the_truth(logits: bool) -> None:
    g = torch.Generator().manual_seed(4)
    y32 = torch.rand(100_000, generator=g).clamp(0.01, 0.99)
    if logits:
        x32 = torch.logit(y32.double()).float() + 1e-4 * torch.randn(100_000, generator=g)
        naive = F.binary_cross_entropy_with_logits(x32, y32) - F.binary_cross_entropy(y32, y32)
    else:
        x32 = (y32 + 1e-4 * torch.randn(100_000, generator=g)).clamp(0, 1)
        naive = F.binary_cross_entropy(x32, y32) - F.binary_cross_entropy(y32, y32)
    truth = float(bce_eval.excess(y32.double(), x32.double(), convention="torch", from_logits=logits))
    ours = float(BCEExcessLoss(from_logits=logits)(x32, y32))
    assert abs(ours - truth) <= 1e-5 * truth
    assert abs(float(naive) - truth) >= 1e-3 * truth


def test_autocast_runs_in_float32() -> None:
    y, p = _random(2000, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = BCEExcessLoss()(p.to(torch.bfloat16), y)
    assert value.dtype == torch.float32
    exact = float(bce_eval.excess(y.double(), p.to(torch.bfloat16).double(), convention="torch"))
    assert float(value) == pytest.approx(exact, rel=1e-5)


def test_bfloat16_input_gives_a_bfloat16_loss_and_gradient() -> None:
    y, p = _random(2000, dtype=torch.bfloat16)
    x = p.clone().requires_grad_(True)
    value = BCEExcessLoss()(x, y)
    value.backward()
    assert value.dtype == torch.bfloat16 and x.grad is not None and x.grad.dtype == torch.bfloat16


def test_gradient_with_respect_to_a_target_that_requires_grad() -> None:
    y, p = _random(500)
    y = y.clamp(0.01, 0.99).requires_grad_(True)
    bce_excess(p, y).backward()
    ours = y.grad
    t = y.detach().clone().requires_grad_(True)
    naive = (
        F.binary_cross_entropy(p, t) + (torch.special.xlogy(t, t) + torch.special.xlog1py(1 - t, -t)).mean()
    )
    naive.backward()
    torch.testing.assert_close(ours, t.grad, rtol=1e-10, atol=1e-15)


def test_torch_compile_gives_the_eager_value_and_gradient() -> None:
    pytest.importorskip("torch._dynamo")
    torch._dynamo.reset()
    model = torch.nn.Linear(16, 16).double()
    loss = BCEExcessLoss(from_logits=True)
    g = torch.Generator().manual_seed(5)
    x, y = (
        torch.randn(32, 16, generator=g, dtype=torch.float64),
        torch.rand(32, 16, generator=g, dtype=torch.float64),
    )

    def step(inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return loss(model(inputs), target)

    try:
        compiled = torch.compile(step, fullgraph=True)
        value = compiled(x, y)
    except Exception as e:  # no C++ compiler here: torch.compile itself cannot run
        if "compiler" in str(e).lower() or "cpp" in str(e).lower():
            pytest.skip(f"torch.compile unavailable: {e}")
        raise
    value.backward()
    compiled_grad = model.weight.grad.clone()  # type: ignore[union-attr]
    model.weight.grad = None
    eager = step(x, y)
    eager.backward()
    assert float(value.detach()) == pytest.approx(float(eager.detach()), rel=1e-12)
    torch.testing.assert_close(compiled_grad, model.weight.grad, rtol=1e-12, atol=1e-15)


def test_trains_like_bce() -> None:
    """Same steps with BCE and with the excess: the same weights, and the excess reaches near 0."""
    g = torch.Generator().manual_seed(6)
    data = torch.rand(64, 8, generator=g, dtype=torch.float64)
    weights = []
    for loss in (torch.nn.BCEWithLogitsLoss(), BCEExcessLoss(from_logits=True)):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 8)).double()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        for _ in range(300):
            optimizer.zero_grad()
            value = loss(model(data), data)
            value.backward()
            optimizer.step()
        weights.append(torch.cat([p.detach().ravel() for p in model.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)
    assert float(value.detach()) < 0.01 * float(bce_eval.entropy(data))


def test_errors() -> None:
    loss = BCEExcessLoss()
    with pytest.raises(bce_eval.ValueOutOfRange, match=r"pred value 1\.5"):
        loss(torch.tensor([0.2, 1.5]), torch.tensor([0.2, 0.5]))
    with pytest.raises(bce_eval.ValueOutOfRange, match=r"target value -0\.5"):
        loss(torch.tensor([0.2, 0.5]), torch.tensor([0.2, -0.5]))
    with pytest.raises(bce_eval.ValueOutOfRange, match="finite logit"):
        BCEExcessLoss(from_logits=True)(torch.tensor([math.nan]), torch.tensor([0.5]))
    with pytest.raises(ValueError, match="shape"):
        loss(torch.rand(3), torch.rand(4))
    with pytest.raises(ValueError, match="reduction must be one of"):
        BCEExcessLoss(reduction="batchmean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="convention must be one of"):
        BCEExcessLoss(convention="tf")  # type: ignore[arg-type]


def test_out_of_range_on_a_tensor_that_requires_grad_warns_nothing() -> None:
    pred = torch.tensor([0.1, 2.0], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(bce_eval.ValueOutOfRange, match=r"pred value 2\.0 at index 1"):
            bce_eval.bce(torch.tensor([0.1, 0.2]), pred)
        with pytest.raises(bce_eval.ValueOutOfRange):
            BCEExcessLoss()(pred, torch.tensor([0.1, 0.2]))


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_the_device(device: str) -> None:
    y, p = _random(3000, dtype=torch.float32)
    x = p.clone().to(device).requires_grad_(True)
    value = BCEExcessLoss()(x, y.to(device))
    value.backward()
    assert value.device.type == device and x.grad is not None
    assert float(value.detach()) == pytest.approx(
        float(bce_eval.excess(y.double(), p.double(), convention="torch")), rel=1e-5
    )


# ---------------------------------------------------------------------------------------------
# The torchmetrics metric


def _metric(**kwargs):  # type: ignore[no-untyped-def]
    pytest.importorskip("torchmetrics")
    from bce_eval.torch import ExcessBCE

    return ExcessBCE(**kwargs)


def _batches(seed: int = 7) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for size in (5, 3, 8):
        y = torch.rand(size, 2, 4, 4, generator=g)
        p = (y + 0.05 * torch.randn(size, 2, 4, 4, generator=g)).clamp(0, 1)
        out.append((p, y))
    return out


@pytest.mark.parametrize(("convention", "logits"), [("torch", False), ("keras", False), ("keras", True)])
def test_metric_equals_sums_over_all_batches(convention: str, logits: bool) -> None:
    metric = _metric(convention=convention, from_logits=logits)
    batches = [
        (torch.logit(p.double().clamp(1e-6, 1 - 1e-6)).float() if logits else p, y) for p, y in _batches()
    ]
    for p, y in batches:
        metric.update(p, y)
    got = metric.compute()
    every_p = torch.cat([p.reshape(-1) for p, _ in batches]).double()
    every_y = torch.cat([y.reshape(-1) for _, y in batches]).double()
    exact = metrics.sums(every_y, every_p, convention=convention, from_logits=logits)  # type: ignore[arg-type]
    for name, total in (("bce", exact.bce), ("entropy", exact.entropy), ("excess", exact.excess)):
        assert got[name].dtype == torch.float64
        assert float(got[name]) == pytest.approx(total / exact.pixels, rel=1e-14)
    assert float(got["clipped"]) == exact.clipped


def test_metric_in_bits() -> None:
    nats, bits = _metric(), _metric(units="bits")
    for p, y in _batches():
        nats.update(p, y)
        bits.update(p, y)
    for name in ("bce", "entropy", "excess"):
        assert float(bits.compute()[name]) == pytest.approx(
            float(nats.compute()[name]) / math.log(2), rel=1e-15
        )


@pytest.mark.parametrize("cast", ["half", "bfloat16", "set_dtype", "float"])
def test_metric_states_stay_float64_when_the_module_is_cast(cast: str) -> None:
    metric = _metric(per_sample=True)
    batches = _batches()
    metric.update(*batches[0])
    before = metric.excess_sum.clone()
    model = torch.nn.Module()
    model.metric = metric
    if cast == "half":
        model.half()
    elif cast == "bfloat16":
        model.to(torch.bfloat16)
    elif cast == "set_dtype":
        metric.set_dtype(torch.float16)
    else:
        model.float()
    assert metric.excess_sum.dtype == torch.float64 and bool(metric.excess_sum == before)
    for p, y in batches[1:]:
        metric.update(p.to(torch.bfloat16), y.to(torch.bfloat16))
    for name in ("bce_sum", "entropy_sum", "excess_sum"):
        assert getattr(metric, name).dtype == torch.float64
    assert all(v.dtype == torch.float64 for v in metric.compute().values() if v.is_floating_point())
    metric.reset()
    assert metric.excess_sum.dtype == torch.float64 and float(metric.excess_sum) == 0.0


def test_metric_per_sample_in_dataset_order_each_index_once() -> None:
    metric = _metric(per_sample=True)
    batches = _batches()
    order = [[7, 0, 9, 3, 12], [1, 15, 4], [2, 5, 6, 8, 10, 11, 13, 14]]
    for (p, y), index in zip(batches, order, strict=True):
        metric.update(p, y, index=index)
    metric.update(batches[0][0][:2], batches[0][1][:2], index=[7, 0])  # repeats, as a sampler pads
    got = metric.compute()
    assert got["index"].tolist() == list(range(16))
    every_p = torch.cat([p for p, _ in batches])
    every_y = torch.cat([y for _, y in batches])
    position = {i: k for k, i in enumerate(i for batch in order for i in batch)}
    for i in range(16):
        k = position[i]
        exact = metrics.sums(every_y[k].double(), every_p[k].double(), convention="torch")
        assert float(got["sample_excess"][i]) == pytest.approx(exact.excess / exact.pixels, rel=1e-14)
    every = metrics.sums(every_y.double(), every_p.double(), convention="torch")
    assert float(got["excess"]) == pytest.approx(every.excess / every.pixels, rel=1e-14)  # repeats once


def test_metric_counts_values_out_of_range_and_raises_at_compute() -> None:
    metric = _metric()
    metric.update(torch.tensor([0.5, 1.5, math.nan]), torch.tensor([0.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match="2 preds or target values were not values in"):
        metric.compute()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_metric_update_never_waits_for_the_gpu() -> None:
    metric = _metric(per_sample=True).to("cuda")
    batches = [(p.cuda(), y.cuda()) for p, y in _batches()]
    metric.update(*batches[0])  # first call: allocations, lazy initialisation
    torch.cuda.set_sync_debug_mode("error")
    try:
        for p, y in batches[1:]:
            metric.update(p, y)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    cpu = _metric(per_sample=True)
    for p, y in _batches():
        cpu.update(p, y)
    for name, value in metric.compute().items():
        torch.testing.assert_close(value.cpu(), cpu.compute()[name], rtol=1e-13, atol=0)


def test_import_without_torchmetrics(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['torchmetrics'] = None\n"
        "import bce_eval.torch as bt\n"
        "print(bt.BCEExcessLoss()) \n"
        "try:\n    bt.ExcessBCE\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert "BCEExcessLoss(reduction='mean'" in out.stdout
    assert "ExcessBCE needs torchmetrics: pip install 'bce-eval[torchmetrics]'" in out.stdout


DDP_WORKER = """
import json, sys
import torch, torch.distributed as dist
from torch.utils.data import DistributedSampler
from bce_eval.torch import ExcessBCE

def data():
    g = torch.Generator().manual_seed(11)
    y = torch.rand(13, 3, 5, 5, generator=g)
    return (y + 0.05 * torch.randn(13, 3, 5, 5, generator=g)).clamp(0, 1), y

def run(rank, world, init, out):
    preds, target = data()
    if world > 1:
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    metric = ExcessBCE(per_sample=True)
    indices = list(DistributedSampler(range(13), num_replicas=world, rank=rank, shuffle=False))
    for start in range(0, len(indices), 3):
        batch = indices[start:start + 3]
        metric.update(preds[batch], target[batch], index=batch)
    result = metric.compute()
    if rank == 0:
        with open(out, "w") as f:
            json.dump({k: v.tolist() for k, v in result.items()}, f)
    if world > 1:
        dist.destroy_process_group()

if __name__ == "__main__":
    world, init, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    if world == 1:
        run(0, 1, init, out)
    else:
        torch.multiprocessing.spawn(run, args=(world, init, out), nprocs=world)
"""


def test_metric_under_two_process_ddp_equals_one_process(tmp_path: Path) -> None:
    pytest.importorskip("torchmetrics")
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    script = tmp_path / "ddp_worker.py"
    script.write_text(DDP_WORKER)
    results = {}
    for world in (1, 2):
        out = tmp_path / f"world{world}.json"
        init = (tmp_path / f"rendezvous{world}").as_uri()
        subprocess.run(
            [sys.executable, str(script), str(world), init, str(out)], check=True, timeout=300, cwd=ROOT
        )
        results[world] = json.loads(out.read_text())
    one, two = results[1], results[2]
    assert two["index"] == one["index"] == list(range(13))  # dataset order, the padded repeat once
    for name in ("bce", "entropy", "excess", "clipped"):
        assert two[name] == pytest.approx(one[name], rel=1e-15, abs=0)
    for name in ("sample_bce", "sample_entropy", "sample_excess"):
        assert two[name] == one[name]


def test_metric_without_indices_in_one_process_keeps_update_order() -> None:
    metric = _metric(per_sample=True)
    batches = _batches()
    for p, y in batches:
        metric.update(p, y)
    got = metric.compute()
    every_p, every_y = torch.cat([p for p, _ in batches]), torch.cat([y for _, y in batches])
    assert got["index"].tolist() == list(range(every_p.shape[0]))
    per = [
        metrics.sums(every_y[i].double(), every_p[i].double(), convention="torch")
        for i in range(every_p.shape[0])
    ]
    np.testing.assert_allclose(got["sample_bce"].numpy(), [s.bce / s.pixels for s in per], rtol=1e-14)
