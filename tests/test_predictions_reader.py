"""Predictions files: one writer and one reader (sareval.evaluator.predictions); what the
writer wrote is what the reader returns, and the reader refuses damaged files."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from sareval.errors import InputFileError
from sareval.evaluator.predictions import (
    PREDICTIONS_FORMAT,
    PredictionsWriter,
    is_predictions_file,
    read_predictions,
)

NAMES = ["none", "sar", "opt", "sar+opt"]
CLASSES = ["a", "b", "c"]


def write(path: Path, task: str, n: int = 7, detector: bool = True) -> dict[str, np.ndarray]:
    """A predictions file written by the project's writer in two batches; returns its arrays."""
    rng = np.random.default_rng(3)
    k, single = len(CLASSES), task == "single-label"
    outputs = rng.normal(size=(len(NAMES), n, k)).astype(np.float32)
    decisions = outputs.argmax(-1) if single else (outputs > 0).astype(np.uint8)
    labels = rng.integers(0, k, n) if single else rng.integers(0, 2, (n, k)).astype(np.uint8)
    ids = [f"patch-{i}" for i in range(n)]
    w = PredictionsWriter(
        path, n=n, first_position=10, coalitions=NAMES, n_classes=k, task=task,
        attrs={"players": ["sar", "opt"], "class_names": CLASSES, "subset": "cloudy",
               "baseline": "input-zero", "empty": "baseline"},
    )  # fmt: skip
    for a, b in ((0, 3), (3, n)):
        w.write(slice(10 + a, 10 + b), np.arange(a, b) * 2, ids[a:b], labels[a:b],
                outputs[:, a:b], decisions[:, a:b])  # fmt: skip
    arrays = {"msp": rng.random(n), "sar_share": rng.random(n)}
    correct = decisions[-1] == labels if single else (decisions[-1] == labels).all(-1)
    if detector:
        w.write_arrays({**{f"detector/{d}": v for d, v in arrays.items()}, "correct": correct})
    w.finish()
    return {"labels": labels, "decisions": decisions, "ids": np.array(ids), "correct": correct,
            **arrays}  # fmt: skip


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
def test_round_trip(tmp_path: Path, task: str) -> None:
    path = tmp_path / "p.h5"
    wrote = write(path, task)
    assert is_predictions_file(path)
    run = read_predictions(path)
    assert run.path == path and run.task == task and run.n_classes == 3
    assert run.players == ("sar", "opt") and run.subset == "cloudy"
    assert run.class_names == tuple(CLASSES) and run.attrs["coalitions"] == NAMES
    np.testing.assert_array_equal(run.ids, wrote["ids"])
    np.testing.assert_array_equal(run.labels, wrote["labels"])
    assert list(run.decisions) == NAMES
    for j, name in enumerate(NAMES):
        np.testing.assert_array_equal(run.decisions[name], wrote["decisions"][j])
    by_set = run.predictions()
    assert set(by_set) == {frozenset(), frozenset({"sar"}), frozenset({"opt"}),
                           frozenset({"sar", "opt"})}  # fmt: skip
    np.testing.assert_array_equal(by_set[frozenset({"opt"})], wrote["decisions"][2])
    assert set(run.detectors) == {"msp", "sar_share"}
    np.testing.assert_array_equal(run.detectors["msp"], wrote["msp"])
    assert run.correct is not None
    np.testing.assert_array_equal(run.correct, wrote["correct"])


def test_without_detectors_and_other_hdf5_files(tmp_path: Path) -> None:
    write(tmp_path / "p.h5", "single-label", detector=False)
    run = read_predictions(tmp_path / "p.h5")
    assert run.detectors == {} and run.correct is None
    with h5py.File(tmp_path / "store.h5", "w") as f:
        f.attrs["format"] = "sareval-store"
    assert not is_predictions_file(tmp_path / "store.h5")
    with pytest.raises(InputFileError, match="not a sareval predictions file"):
        read_predictions(tmp_path / "store.h5")
    (tmp_path / "junk.h5").write_bytes(b"\x89HDF junk")
    for call in (is_predictions_file, read_predictions):
        with pytest.raises(InputFileError, match=r"junk\.h5: not a readable predictions file"):
            call(tmp_path / "junk.h5")


def damage(path: Path, edit: str) -> None:
    with h5py.File(path, "r+") as f:
        if edit == "nan-detector":
            f["detector/msp"][1] = np.nan
        elif edit == "short-detector":
            del f["detector/msp"]
            f["detector/msp"] = np.zeros(3)
        elif edit == "no-correct":
            del f["correct"]
        elif edit == "no-decisions":
            del f["decisions"]
        elif edit == "decision-range":
            f["decisions"][0, 0] = 7


@pytest.mark.parametrize(
    "edit, message",
    [
        ("nan-detector", "detector scores hold NaN or infinity"),
        ("short-detector", "detector scores and /correct differ in shape"),
        ("no-correct", "detector scores without /correct"),
        ("no-decisions", "no dataset /decisions"),
        ("decision-range", "/decisions holds values outside 0..2"),
    ],
)
def test_refusals_name_the_file_and_dataset(tmp_path: Path, edit: str, message: str) -> None:
    path = tmp_path / "p.h5"
    write(path, "single-label")
    damage(path, edit)
    with pytest.raises(InputFileError, match=re.escape(message)) as e:
        read_predictions(path)
    assert e.value.path == path and "\n" not in str(e.value)


def test_the_format_marker_is_spelled_once() -> None:
    root = Path(__file__).parents[1] / "sareval"
    hits = [p for p in root.rglob("*.py") if f'"{PREDICTIONS_FORMAT}"' in p.read_text()]
    assert [p.name for p in hits] == ["predictions.py"]
    text = (root / "evaluator" / "predictions.py").read_text()
    assert text.count(f'"{PREDICTIONS_FORMAT}"') == 1
