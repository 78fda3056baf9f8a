"""Independent references: the BCE formulas evaluated per element in 50-digit decimal arithmetic.

Inputs are float64 values, which Decimal represents exactly, so the only rounding is in the
50-digit logs: far below float64 resolution. Nothing here shares code with bce_eval.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, localcontext

ZERO, ONE = Decimal(0), Decimal(1)
FLOOR = Decimal(-100)


def _xlogy(x: Decimal, y: Decimal) -> Decimal:
    return ZERO if x == 0 else x * y.ln()


def element(
    y: float, p: float, *, convention: str = "keras", eps: float = 1e-7, logits: bool = False
) -> tuple[Decimal, Decimal, Decimal]:
    """(BCE, H, excess) of one element, in nats."""
    with localcontext() as ctx:
        ctx.prec = 50
        Y, X = Decimal(y), Decimal(p)
        if logits:
            log_p = -(ONE + (-X).exp()).ln()
            log_q = -(ONE + X.exp()).ln()
        elif convention == "keras":
            P = min(max(X, Decimal(eps)), Decimal(1 - eps))
            log_p, log_q = P.ln(), (ONE - P).ln()
        else:
            log_p = max(X.ln(), FLOOR) if X > 0 else FLOOR
            log_q = max((ONE - X).ln(), FLOOR) if X < 1 else FLOOR
        bce = -(Y * log_p + (ONE - Y) * log_q)
        h = -(_xlogy(Y, Y) + _xlogy(ONE - Y, ONE - Y))
        return +bce, +h, +(bce - h)


def totals(ys: Iterable[float], ps: Iterable[float], **kwargs: object) -> tuple[float, float, float]:
    """Sums of BCE, H and excess over all elements, rounded to float64 once at the end."""
    with localcontext() as ctx:
        ctx.prec = 50
        b = h = e = ZERO
        for y, p in zip(ys, ps, strict=True):
            db, dh, de = element(float(y), float(p), **kwargs)  # type: ignore[arg-type]
            b, h, e = b + db, h + dh, e + de
        return float(b), float(h), float(e)
