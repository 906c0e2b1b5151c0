"""The restricted unpickler: data loads, code never runs."""

from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest

from sareval.errors import InputFileError
from sareval.preprocess.pickles import safe_load_pickle


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_loads_label_dicts_and_lists_at_every_protocol(tmp_path: Path, protocol: int) -> None:
    rng = np.random.default_rng(protocol)
    labels = {f"ROIs1158_spring_s2_1_p{i}.tif": rng.dirichlet(np.ones(17)) for i in range(5)}
    obj = {
        "labels": labels,
        "list": ["a", "b"],
        "tuple": (1, 2.5, True, None),
        "set": {1, 2},
        "frozen": frozenset({3}),
        "scalar": np.float32(0.25),
        "int64": np.int64(7),
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "bytes": b"\x00\x01",
    }
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    back = safe_load_pickle(path)
    assert back.keys() == obj.keys()
    for k, v in labels.items():
        np.testing.assert_array_equal(back["labels"][k], v)
        assert back["labels"][k].dtype == np.float64
    assert back["list"] == ["a", "b"] and back["tuple"] == (1, 2.5, True, None)
    assert back["set"] == {1, 2} and back["frozen"] == frozenset({3})
    assert back["scalar"] == np.float32(0.25) and back["scalar"].dtype == np.float32
    assert back["int64"] == 7
    np.testing.assert_array_equal(back["f32"], obj["f32"])
    assert back["bytes"] == b"\x00\x01"


class _WritesAFile:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.target}",))


class _CallsOpen:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (subprocess.call, (["touch", str(self.target)],))


class _Eval:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (eval, (f"open({str(self.target)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("payload", [_WritesAFile, _CallsOpen, _Eval])
def test_a_malicious_pickle_does_not_run(tmp_path: Path, payload: type) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "labels.pkl"
    path.write_bytes(pickle.dumps({"a.tif": payload(target)}, protocol=2))
    # the payload works with a plain pickle.load (so the test could fail)
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(payload(control)))
    assert control.exists()
    with pytest.raises(InputFileError, match="forbidden global") as err:
        safe_load_pickle(path)
    assert not target.exists()
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_a_pickled_class_instance_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(Path("/etc")))
    with pytest.raises(InputFileError, match=r"forbidden global pathlib"):
        safe_load_pickle(path)


def test_truncated_garbage_and_missing(tmp_path: Path) -> None:
    good = pickle.dumps({"a": np.zeros(17)}, protocol=4)
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputFileError, match="not a valid pickle"):
        safe_load_pickle(cut)
    junk = tmp_path / "junk.pkl"
    junk.write_text("this is not a pickle\n")
    with pytest.raises(InputFileError, match="not a valid pickle"):
        safe_load_pickle(junk)
    with pytest.raises(InputFileError, match="file not found"):
        safe_load_pickle(tmp_path / "missing.pkl")
