"""Arrays embedded in a results document: ``{"encoding", "sha256", "n", "data"}``.

``data`` is a compressed npz (no pickles) in base64, ``sha256`` the digest of the npz bytes and
``n`` the number of samples the arrays hold (checked by the owner of the state). A digest only
says the bytes are intact, not that they are valid (it can be recomputed after an edit), so every
array is also checked: booleans, integers, real floats or strings only (never complex, object or
structured arrays), floats finite except in the arrays named ``may_hold_nan`` (e.g. an unknown
cloud cover), where they may be NaN but never infinite. A shard's
results carry this way what ``sareval merge`` needs beyond the counts: ``scores``, the mAP state
(:mod:`sareval.evaluator.scores`), and ``per_sample_state``, the per-sample values
(:mod:`sareval.evaluator.in_pass`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sareval.errors import SarevalError

ENCODING = "npz+base64"


def encode_arrays(arrays: Mapping[str, Any], n: int) -> dict[str, Any]:
    """The JSON object of ``arrays`` (names as npz keys) holding ``n`` samples."""
    buf = io.BytesIO()
    named: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
    np.savez_compressed(buf, **named)
    raw = buf.getvalue()
    return {
        "encoding": ENCODING,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "n": int(n),
        "data": base64.b64encode(raw).decode("ascii"),
    }


def array_problem(name: str, a: np.ndarray, may_hold_nan: bool = False) -> str | None:
    """What is wrong with the embedded array ``name`` (None: nothing; module docstring)."""
    if a.dtype.kind not in "biufU":
        return f"array {name!r} has dtype {a.dtype} (complex, object or structured)"
    if a.dtype.kind == "f" and a.size:
        nan = np.isnan(a)
        if np.isinf(a).any():
            return f"array {name!r} holds infinity"
        if nan.any() and not may_hold_nan:
            what = "only NaN" if nan.all() else f"NaN ({int(nan.sum())} of {a.size} values)"
            return f"array {name!r} holds {what}"
    return None


def decode_arrays(
    data: Any,
    source: str,
    section: str,
    required: Sequence[str] = (),
    may_hold_nan: Sequence[str] = (),
) -> tuple[dict[str, np.ndarray], int]:
    """(arrays, n) of :func:`encode_arrays` output; a wrong encoding, digest, layout, missing
    array (``required``) or invalid array (:func:`array_problem`; NaN allowed only in the arrays
    named ``may_hold_nan``) is a one-line error naming ``source`` and ``section``."""
    try:
        raw = base64.b64decode(data["data"], validate=True)
        if data.get("encoding") != ENCODING:
            raise ValueError(f"encoding {data.get('encoding')!r}")
        if hashlib.sha256(raw).hexdigest() != data["sha256"]:
            raise ValueError("the sha256 does not match the data")
        n = data["n"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n {n!r} is not a number of samples")
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        missing = [name for name in required if name not in arrays]
        if missing:
            raise ValueError(f"no array {missing[0]!r}")
        for name, a in arrays.items():
            problem = array_problem(name, a, name in may_hold_nan)
            if problem:
                raise ValueError(problem)
    except (KeyError, TypeError, ValueError, OSError, AttributeError, EOFError,
            zipfile.BadZipFile) as e:  # fmt: skip
        raise SarevalError(f"{source}: unreadable {section!r} section ({e})") from None
    return arrays, n
