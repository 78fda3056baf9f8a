"""bce-eval: exact BCE, target entropy and excess loss for autoencoder reconstructions.

>>> from bce_eval import bce, entropy, excess
>>> round(float(excess([0.5, 0.3, 0.5, 0.9], [0.5, 0.3, 0.5, 0.9])), 12)
0.0
"""

from .metrics import Sums, ValueOutOfRange, bce, entropy, excess, pixel_maps, sums

__version__ = "0.1.0"

__all__ = ["Sums", "ValueOutOfRange", "__version__", "bce", "entropy", "excess", "pixel_maps", "sums"]
