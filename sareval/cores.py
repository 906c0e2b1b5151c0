"""The CPU cores this process may use: the default worker count of the preprocess pool and the
cap of the evaluator's onnxruntime threads."""

from __future__ import annotations

import os


def default_workers() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
