"""Errors a user can act on.

Every error raised for bad input is a :class:`SarevalError` whose message is one line that
names the file (or option) and what is wrong. The CLI prints it as ``error: <message>`` and
exits with status 1, without a traceback. :class:`SarevalError` is a :class:`ValueError`
(scikit-learn's and torchmetrics' convention for bad arguments), so ``except ValueError``
catches every error of the API; code inside sareval that catches ``ValueError`` around a call
that may raise one re-raises it unchanged.
"""

from __future__ import annotations

from pathlib import Path


class SarevalError(ValueError):
    """Bad input or a failed check; the message is shown to the user as is."""


class InputFileError(SarevalError):
    """A file the user passed (or one it points to) is missing or malformed."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class StoreError(InputFileError):
    """An HDF5 store is missing, incomplete, of another format version, or lacks a field."""


class CardError(InputFileError):
    """A model card is missing, malformed, or contradicts its model or the store."""


class OutputExistsError(SarevalError):
    """The output path exists and ``overwrite`` was not set."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(f"{path}: output exists; pass overwrite=True to replace it")
