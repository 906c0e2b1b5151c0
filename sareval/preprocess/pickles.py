"""A restricted unpickler for the datasets' pickled label dicts and split lists.

SEN12MS ships ``IGBP_probability_labels.pkl`` (dict: s2 file name -> 17-vector) and
``train_list.pkl`` / ``test_list.pkl`` (lists of s2 file names). A pickle can name any Python
callable and have the unpickler call it, so these untrusted files are never loaded with a plain
``pickle.load``. :func:`safe_load_pickle` resolves only the globals in :data:`ALLOWED_GLOBALS`:

- plain containers and scalars (``dict``, ``list``, ``tuple``, ``set``, ``frozenset``, ``str``,
  ``bytes``, ``int``, ``float``, ``bool``, ``complex``; also under Python 2's ``__builtin__``);
- what numpy needs to rebuild arrays and scalars: ``numpy.ndarray``, ``numpy.dtype``,
  ``_reconstruct`` and ``scalar`` (both ``numpy.core.multiarray`` (numpy 1) and
  ``numpy._core.multiarray`` (numpy 2)), ``_frombuffer`` of ``numpy[._]core.numeric``
  (pickle protocol 5) and ``_codecs.encode`` (how protocol <= 2 stores raw bytes).

Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, a class...) raises
:class:`~sareval.errors.InputFileError` naming the file and the global, before anything is
called, so a malicious pickle never runs. Python 2 pickles load with ``encoding="latin1"``
(numpy's advice for arrays pickled by Python 2).
"""

from __future__ import annotations

import builtins
import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from sareval.errors import InputFileError

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

_BUILTINS: tuple[str, ...] = (
    "dict",
    "list",
    "tuple",
    "set",
    "frozenset",
    "str",
    "bytes",
    "bytearray",
)
_BUILTINS += ("int", "float", "bool", "complex")

#: (module, name) -> the object it resolves to; nothing else can be loaded.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **{(m, n): getattr(builtins, n) for m in ("builtins", "__builtin__") for n in _BUILTINS},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}
for _core in ("numpy.core", "numpy._core"):
    ALLOWED_GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    ALLOWED_GLOBALS[(f"{_core}.multiarray", "scalar")] = _multiarray.scalar
    ALLOWED_GLOBALS[(f"{_core}.numeric", "_frombuffer")] = _numeric._frombuffer  # type: ignore[attr-defined]


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any) -> None:
        super().__init__(file, encoding="latin1")

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _ForbiddenGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _ForbiddenGlobal("a persistent id")


class _ForbiddenGlobal(Exception):
    pass


def safe_load_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` allowing only containers, scalars and numpy arrays (see module doc).

    Raises InputFileError for a missing file, a forbidden global or a malformed pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    try:
        with path.open("rb") as f:
            return _RestrictedUnpickler(f).load()
    except _ForbiddenGlobal as e:
        raise InputFileError(
            path,
            f"refused to unpickle: it refers to the forbidden global {e} "
            "(only containers, numbers, strings and numpy arrays are allowed)",
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        problem = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputFileError(path, f"not a valid pickle ({problem})") from None
    except (IndexError, KeyError, OverflowError, MemoryError, UnicodeDecodeError) as e:
        raise InputFileError(path, f"not a valid pickle ({type(e).__name__})") from None
