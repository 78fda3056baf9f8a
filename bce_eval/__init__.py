"""bce-eval: exact BCE, target entropy and excess loss for autoencoder reconstructions.

The functional API works on arrays (NumPy or torch); the pipeline on folders, batches in memory
and reports, each giving a Report.

>>> from bce_eval import bce, entropy, excess
>>> round(float(excess([0.5, 0.3, 0.5, 0.9], [0.5, 0.3, 0.5, 0.9])), 12)
0.0
"""

__version__ = "0.1.0"  # first: the modules below read it

from .errors import BackendError, BceEvalError, InputError, OptionError, ReportError, ValueOutOfRange
from .metrics import PixelMaps, Sums, bce, entropy, excess, pixel_maps, sums
from .pipeline import Report, compare, compare_arrays, merge, read_report

__all__ = [
    "BackendError",
    "BceEvalError",
    "InputError",
    "OptionError",
    "PixelMaps",
    "Report",
    "ReportError",
    "Sums",
    "ValueOutOfRange",
    "__version__",
    "bce",
    "compare",
    "compare_arrays",
    "entropy",
    "excess",
    "merge",
    "pixel_maps",
    "read_report",
    "sums",
]
