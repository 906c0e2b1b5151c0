"""Silencing the torch exporters' chatter (their loggers, warnings and progress lines on stdout).

Used by every route that runs ``torch.onnx.export`` or TorchScript: :mod:`sareval.export` and the
onnxruntime backend's export of an in-memory module (:mod:`sareval.evaluator.backends`). Needs no
torch itself.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence the exporter's chatter (torchvision ops it skips, deprecation warnings)."""
    names = ("torch.onnx", "torch.export", "torch._export", "onnxscript")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        # the exporter prints progress lines ("[torch.onnx] Optimize ...") to stdout
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
