"""A small real training run with the excess loss: BCE settles on the targets' entropy H while
the excess, the reconstruction error, falls towards 0.

The images are 16x16 grey with soft values: the sigmoid of a random mix of 6 smooth waves (4,096
to train on, 512 held out, generated here with a seed), so a code of 6 numbers can describe each
one exactly. The autoencoder is linear in logit space: its encoder reads the image's logits and
gives 6 numbers, its decoder turns them into 256 logits. It learns with
``bce_eval.torch.BCEExcessLoss(from_logits=True)`` and Adam. After each epoch the script prints
the mean training loss (float32) and the held-out figures from ``bce_eval.torch.ExcessBCE``
(torchmetrics, float64): BCE, H and the excess, in nats per pixel, beside what float32 BCE - H
(``F.binary_cross_entropy_with_logits`` minus ``F.binary_cross_entropy(y, y)``) makes of the
same excess. About 20 s on one CPU core.

    python benchmarks/train_autoencoder.py
    python benchmarks/train_autoencoder.py --epochs 20 --seed 1
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from bce_eval.torch import BCEExcessLoss, ExcessBCE

SIDE = 16
CODE = 6  # numbers per image: its waves' weights


def waves(generator: torch.Generator) -> torch.Tensor:
    """CODE smooth patterns of SIDE x SIDE, flattened: cos(pi (fy y + fx x) + phase)."""
    grid = torch.linspace(0, 1, SIDE)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    fy, fx, phase = torch.rand(3, CODE, 1, 1, generator=generator) * torch.tensor(
        [3.0, 3.0, 2 * math.pi]
    ).view(3, 1, 1, 1)
    return torch.cos(math.pi * (fy * yy + fx * xx) + phase).reshape(CODE, SIDE * SIDE)


def images(count: int, patterns: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Soft images in (0, 1): the sigmoid of random weights times the patterns."""
    return torch.sigmoid(0.8 * torch.randn(count, CODE, generator=generator) @ patterns)


class Autoencoder(nn.Module):
    """Linear in logit space: image -> logits -> CODE numbers -> logits of the reconstruction."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(SIDE * SIDE, CODE)
        self.decoder = nn.Linear(CODE, SIDE * SIDE)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(torch.logit(images)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # a model this small gains nothing from more threads
    generator = torch.Generator().manual_seed(args.seed)
    patterns = waves(generator)
    train, held_out = images(4096, patterns, generator), images(512, patterns, generator)
    model = Autoencoder()
    loss_fn = BCEExcessLoss(from_logits=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    metric = ExcessBCE(from_logits=True)
    started = time.perf_counter()
    print("nats per pixel; BCE, H and excess on the 512 held-out images, from ExcessBCE")
    print(f"{'epoch':>5}  {'train loss':>10}  {'BCE':>9}  {'H':>9}  {'excess':>10}  {'f32 BCE - H':>11}")
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(train.shape[0], generator=generator)
        total = 0.0
        for start in range(0, train.shape[0], 64):
            batch = train[order[start : start + 64]]
            loss = loss_fn(model(batch), batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * batch.shape[0]
        scheduler.step()
        model.eval()
        metric.reset()
        with torch.no_grad():
            logits = model(held_out)
            metric.update(logits, held_out)
            naive = F.binary_cross_entropy_with_logits(logits, held_out) - F.binary_cross_entropy(
                held_out, held_out
            )
        figures = {name: float(value) for name, value in metric.compute().items()}
        if epoch <= 3 or epoch % 5 == 0 or epoch == args.epochs:
            bce, entropy, excess = figures["bce"], figures["entropy"], figures["excess"]
            row = f"{epoch:>5}  {total / train.shape[0]:10.3e}  {bce:9.6f}  {entropy:9.6f}"
            print(f"{row}  {excess:10.3e}  {float(naive):11.3e}")
    bits = figures["excess"] / math.log(2)
    print(
        f"final held-out excess {figures['excess']:.3e} nats ({bits:.3e} bits) per pixel; BCE - H to float64"
    )
    print(
        f"{time.perf_counter() - started:.0f} s, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )


if __name__ == "__main__":
    main()
