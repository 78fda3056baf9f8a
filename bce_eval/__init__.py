"""bce-eval: exact BCE, target entropy and excess loss for autoencoder reconstructions.

The functional API works on arrays (NumPy or torch); the pipeline on folders, batches in memory
and reports, each giving a Report.

>>> from bce_eval import bce, entropy, excess
>>> round(float(excess([0.5, 0.3, 0.5, 0.9], [0.5, 0.3, 0.5, 0.9])), 12)
0.0
"""

__version__ = "0.1.0"  # first: the modules below read it

from typing import TYPE_CHECKING

from .errors import BackendError, BceEvalError, InputError, OptionError, ReportError, ValueOutOfRange
from .metrics import PixelMaps, Sums, bce, entropy, excess, pixel_maps, sums

if TYPE_CHECKING:  # for type checkers; at run time, __getattr__ below
    from .pipeline import Report, compare, compare_arrays, merge, read_report

_PIPELINE = ("Report", "compare", "compare_arrays", "merge", "read_report")


def __getattr__(name: str) -> object:
    """The pipeline is imported on first use: the command's --help and the functional API do
    not pay for it."""
    if name in _PIPELINE:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'bce_eval' has no attribute {name!r}")


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
