"""pytest collects bce_eval's modules for their doctests: those whose optional dependency is not
installed are left out, and Keras runs on its torch backend, which needs no TensorFlow."""

from __future__ import annotations

import importlib.util
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

collect_ignore = [
    module
    for module, needs in (
        ("bce_eval/torch.py", ("torch",)),
        ("bce_eval/_torchmetrics.py", ("torch", "torchmetrics")),
        (
            "bce_eval/keras.py",
            (
                "keras",
                {"tensorflow": "tensorflow"}.get(os.environ["KERAS_BACKEND"], os.environ["KERAS_BACKEND"]),
            ),
        ),
    )
    if any(importlib.util.find_spec(name) is None for name in needs)
]
