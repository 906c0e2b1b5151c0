"""``SarevalError`` is a ``ValueError``: ``except ValueError`` (scikit-learn's, torchmetrics'
convention) catches every error of the API, and sareval's own ``except ValueError`` blocks let
an already-worded error through unchanged."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import sareval
from sareval.card import ModelCard
from sareval.errors import CardError, InputFileError, SarevalError, StoreError

SKIP_IMPORT = {"sareval.__main__"}


def _error_classes() -> list[type[BaseException]]:
    """Every exception class defined in a sareval module (imported, so a new one counts)."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(sareval.__path__, "sareval."):
        if info.name in SKIP_IMPORT:
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and not issubclass(obj, Warning)
                and obj.__module__ == info.name
                and not name.startswith("_")
            ):
                found[f"{info.name}.{name}"] = obj
    return list(found.values())


def test_every_sareval_error_is_a_value_error() -> None:
    classes = _error_classes()
    names = {c.__name__ for c in classes}
    assert {"SarevalError", "InputFileError", "StoreError", "CardError"} <= names
    assert len(classes) >= 6  # OutputExistsError, OutputWriteError, ParityError, ...
    for cls in classes:
        assert issubclass(cls, SarevalError), cls
        assert issubclass(cls, ValueError), cls


def _bad_config() -> None:
    sareval.ShapeConfig(baseline="half")


def _bad_metric_list() -> None:
    sareval.ShapeConfig(metrics="oa")


def _bad_arrays() -> None:
    s1 = np.zeros((3, 2, 4, 4), np.float32)
    sareval.ArrayData({"s1": s1}, np.zeros(2, np.int64))


def _bad_card() -> None:
    ModelCard.from_dict({"version": 2, "modalities": "sar"})


def _missing_store(tmp: Path) -> None:
    sareval.open_store(tmp / "missing.h5")


def _bad_store_labels(tmp: Path) -> None:
    s1 = np.zeros((3, 2, 4, 4), np.float32)
    sareval.write_store(tmp / "x.h5", {"s1": s1}, {"lc": (np.array([0, 1, 5]), ["a", "b"])})


def _evaluate_bands_missing(tmp: Path) -> None:
    card = ModelCard.custom({"sar": ["VV", "VH"]}, task="single-label", class_names=["a", "b"],
                            input_size=4)  # fmt: skip
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 2))
    s1 = np.zeros((3, 1, 4, 4), np.float32)  # one band where the card needs two
    sareval.evaluate(model, {"s1": s1, "label": np.zeros(3, np.int64)}, card=card,
                     data_options={"bands": {"s1": ["VV"]}})  # fmt: skip


CASES: dict[str, tuple[Callable[..., None], type[SarevalError], str]] = {
    "config field": (_bad_config, SarevalError, "'half'"),
    "config metrics": (_bad_metric_list, SarevalError, "metrics"),
    "arrays": (_bad_arrays, SarevalError, "labels"),
    "card": (_bad_card, CardError, "card"),
    "store path": (_missing_store, StoreError, "missing.h5: file not found"),
    "store content": (_bad_store_labels, StoreError, "class index 5"),
    "evaluate": (_evaluate_bands_missing, SarevalError, "VH"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_api_failures_are_caught_as_value_error(case: str, tmp_path: Path) -> None:
    fn, kind, text = CASES[case]
    args = [tmp_path] if inspect.signature(fn).parameters else []
    try:
        fn(*args)
    except ValueError as e:  # what a scikit-learn-style caller writes
        assert isinstance(e, kind), type(e)
        assert text in str(e)
        if case.startswith("config"):  # the API field, never a CLI flag
            assert str(e).startswith("ShapeConfig.") and "--" not in str(e)
        assert "\n" not in str(e)
    else:
        pytest.fail(f"{case}: no error raised")


def test_value_error_handlers_keep_the_worded_error(tmp_path: Path) -> None:
    """A check inside a reader's ``except ValueError`` block is re-raised as it was worded,
    not wrapped into the reader's generic message."""
    from sareval.report.compare import read_predictions

    path = tmp_path / "pred.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "sareval-predictions"
        f["ids"] = np.array([b"a"])
    with pytest.raises(InputFileError) as info:
        read_predictions(path)
    assert str(info.value).startswith(f"{path}: no dataset /labels")
    assert "not a readable predictions file" not in str(info.value)
