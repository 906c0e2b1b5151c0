"""Hostile inputs to the Python API (issue 19), generated from seeds: models that return the wrong
thing or take the wrong inputs, labels, images and cloud cover no metric may count, batches whose
parts disagree, a store path that is a folder, stores ``write_store`` must refuse, ONNX models with
integer outputs, results saved under a wrong name or over themselves. Each case is one
:class:`~sareval.errors.SarevalError` (no other exception type) with a one-line message naming what
is wrong, and leaves the caller's arrays as they were."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import sareval
from sareval.bands import S2_BANDS
from sareval.errors import SarevalError


@dataclass
class ApiCase:
    """``call(tmp_path)`` must raise one SarevalError whose message contains ``fragment``;
    ``arrays`` are the caller's, checked unchanged afterwards."""

    id: str
    call: Callable[[Path], Any]
    fragment: str
    arrays: dict[str, np.ndarray]


def world(rng: np.random.Generator, task: str = "single-label") -> tuple[Any, dict, Any]:
    """A random small card (3..6 classes, 4 or 8 px), matching arrays and a module."""
    size = int(rng.choice([4, 8]))
    k = int(rng.integers(3, 7))
    n = int(rng.integers(3, 13))
    base = sareval.ModelCard.from_preset("sen12ms-s1s2", task=task, input_size=size)
    card = dataclasses.replace(base, class_names=tuple(f"c{i}" for i in range(k)))
    y = rng.integers(0, k, n) if task == "single-label" else (rng.random((n, k)) < 0.5) * 1.0
    data = {
        "s1": rng.normal(-12, 4, size=(n, 2, size, size)).astype(np.float32),
        "s2": rng.integers(0, 5000, size=(n, 13, size, size)).astype(np.uint16),
        "label": y,
    }
    return card, data, Net(card.n_channels, k)


class Net(torch.nn.Module):
    def __init__(self, n_in: int, k: int, ret: Any = None) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(n_in, k)
        self.ret = ret

    def forward(self, x: torch.Tensor) -> Any:
        out = self.lin(x.mean((2, 3)))
        return out if self.ret is None else self.ret(out)


RETURNS: dict[str, tuple[Callable[[torch.Tensor], Any], str]] = {
    "tuple": (lambda o: (o,) * 2, "returned a tuple"),
    "dict": (lambda o: {"out": o, "aux": o}, "returned a dict with keys 'out', 'aux'"),
    "list": (lambda o: [o, o, o], "returned a list of 3"),
    "numpy": (lambda o: o.numpy(), "returned a numpy.ndarray"),
    "none": (lambda o: None, "returned None"),
    "1-d": (lambda o: o.sum(1), "(1-D)"),
    "3-d": (lambda o: o[:, :, None], "(3-D)"),
    "rows": (lambda o: torch.cat([o, o]), "rows of outputs for a batch of"),
    "int": (lambda o: o.to(torch.int32), "returned int32 outputs"),
    "bool": (lambda o: o > 0, "returned bool outputs"),
}


def model_return(rng: np.random.Generator, seed: int, v: int) -> ApiCase:
    card, data, _ = world(rng)
    kind = sorted(RETURNS)[v % len(RETURNS)]
    ret, fragment = RETURNS[kind]
    model = Net(card.n_channels, card.n_classes, ret)
    b = int(rng.integers(1, 6))
    return ApiCase(
        f"return-{kind}-{seed}",
        lambda _: sareval.evaluate(model, data, card=card, batch_size=b),
        fragment,
        data,
    )


def class_count(rng: np.random.Generator, seed: int, v: int) -> ApiCase:
    card, data, _ = world(rng)
    k = card.n_classes + [-2, -1, 1, 2][v % 4]
    model = Net(card.n_channels, k)
    return ApiCase(
        f"classes-{seed}",
        lambda _: sareval.evaluate(model, data, card=card),
        f"model: returned {k} output columns, but its card has {card.n_classes} classes",
        data,
    )


def arity(rng: np.random.Generator, seed: int, v: int) -> ApiCase:
    card, data, _ = world(rng)
    m = 2 + v % 3
    fn = {2: lambda a, b: a, 3: lambda a, b, c: a, 4: lambda a, b, c, d: a}[m]
    return ApiCase(
        f"arity-{m}-{seed}",
        lambda _: sareval.evaluate(fn, data, card=card),
        f"model: forward takes {m} input(s), but its card gives it 1",
        data,
    )


def multi_hot(rng: np.random.Generator, seed: int, v: int) -> ApiCase:
    card, data, model = world(rng, "multi-label")
    n, k = data["label"].shape
    i, j = int(rng.integers(n)), int(rng.integers(k))
    bad = [2.0, 3.0, np.nan, -1.0, 0.5, np.inf][v % 6]
    data["label"][i, j] = bad
    return ApiCase(
        f"multi-hot-{bad:g}-{seed}",
        lambda _: sareval.evaluate(model, data, card=card),
        f"labels: sample {i}, class column {j} holds {bad:g}; multi-hot labels are 0 or 1",
        data,
    )


def complex_images(rng: np.random.Generator, seed: int, v: int) -> ApiCase:
    card, data, model = world(rng)
    sensor = ["s1", "s2"][v % 2]
    dtype = np.dtype([np.complex64, np.complex128][v // 2 % 2])
    data[sensor] = data[sensor].astype(dtype)
    return ApiCase(
        f"complex-{sensor}-{seed}",
        lambda _: sareval.evaluate(model, data, card=card),
        f"data[{sensor!r}] (sensor {sensor!r}): {dtype} values",
        data,
    )


def cloud_cover(rng: np.random.Generator, seed: int, v: int) -> ApiCase:
    card, data, model = world(rng)
    n = len(data["label"])
    cover = rng.random(n)
    cover[rng.random(n) < 0.3] = np.nan
    i = int(rng.integers(n))
    cover[i] = [1 + rng.random() + 1e-3, -rng.random() - 1e-3, np.inf, 2.0][v % 4]
    data["cloud_cover"] = cover
    return ApiCase(
        f"cloud-cover-{seed}",
        lambda _: sareval.evaluate(model, data, card=card),
        f"cloud_cover: sample {i} holds {cover[i]:g}; cloud cover is a fraction in [0, 1]",
        data,
    )


def batch_parts(rng: np.random.Generator, seed: int, v: int) -> ApiCase:
    card, data, model = world(rng)
    n = len(data["label"])
    size = int(rng.integers(2, 5))
    at = int(rng.integers(0, -(-n // size)))
    part = ["label", "s1", "s2"][v % 3]
    fewer = v // 3 % 2 == 1 and min(size, n - at * size) > 1

    class Batches:
        def __iter__(self) -> Any:
            for index, a in enumerate(range(0, n, size)):
                batch = {k: torch.from_numpy(np.array(v[a : a + size])) for k, v in data.items()}
                if index == at and fewer:
                    batch[part] = batch[part][:-1]  # one row too few (3 labels for 4 samples)
                elif index == at:
                    batch[part] = torch.cat([batch[part], batch[part][:1]])  # one row too many
                yield batch

    source = sareval.TorchData(
        Batches(),
        bands={"s1": ["VV", "VH"], "s2": list(S2_BANDS)},
        class_names=list(card.class_names),
    )
    return ApiCase(
        f"batch-{part}-{'fewer' if fewer else 'more'}-{seed}",
        lambda _: sareval.evaluate(model, source, card=card),
        f"batch {at} (from sample {at * size}): its parts hold different numbers of samples",
        data,
    )


def store_folder(rng: np.random.Generator, seed: int, v: int) -> ApiCase:
    card, data, model = world(rng)
    name = ["test.h5", "store", "x.partial"][v % 3]

    def call(tmp: Path) -> Any:
        (tmp / name).mkdir()
        return sareval.evaluate(model, (tmp / name, "clear"), card=card)

    return ApiCase(f"store-folder-{seed}", call, "is a folder, not a store file", data)


def bad_store(rng: np.random.Generator, seed: int, v: int) -> ApiCase:
    _, data, _ = world(rng)
    n = len(data["label"])
    k = int(data["label"].max()) + 1
    arrays = {"s1": data["s1"], "s2": data["s2"]}
    labels: dict[str, Any] = {"y": (data["label"], [f"c{i}" for i in range(k)])}
    kw: dict[str, Any] = {}
    kinds = ["range", "negative", "fraction", "order", "ids", "classes", "cover", "bands"]
    kind = kinds[v % len(kinds)]
    fragment = {
        "range": "/subsets/s has rows outside", "negative": "/subsets/s has rows outside",
        "fraction": "/subsets/s holds float64 rows, not integers",
        "order": "/subsets/s rows are not sorted and unique", "ids": "/ids repeats",
        "classes": "/labels/y holds class index", "cover": "/cloud_cover holds",
        "bands": "is twice in /s",
    }[kind]  # fmt: skip
    if kind == "range":
        kw["subsets"] = {"s": [0, n + int(rng.integers(0, 5))]}
    elif kind == "negative":
        kw["subsets"] = {"s": [-int(rng.integers(1, 5)), 0]}
    elif kind == "fraction":
        kw["subsets"] = {"s": [0, rng.random() * (n - 1) + 0.01]}
    elif kind == "order":
        kw["subsets"] = {"s": [n - 1, 0] if rng.random() < 0.5 else [0, 0]}
    elif kind == "ids":
        ids = [f"p{i}" for i in range(n)]
        ids[-1] = ids[0]
        kw["ids"] = ids
    elif kind == "classes":
        labels = {"y": (data["label"], [f"c{i}" for i in range(k - 1)])}
    elif kind == "bands":
        sensor, names = ("s1", ["VV", "VH"]) if rng.random() < 0.5 else ("s2", list(S2_BANDS))
        i, j = sorted(rng.choice(len(names), 2, replace=False))
        names[j] = names[i]
        fragment = f"band name {names[i]!r} is twice in /{sensor}"
        kw["bands"] = {"s1": ["VV", "VH"], "s2": list(S2_BANDS), sensor: names}
    else:
        cover = np.full(n, np.nan, np.float32)
        cover[int(rng.integers(n))] = 1.5 + float(rng.random())
        kw["cloud_cover"] = cover

    def call(tmp: Path) -> Any:
        try:
            return sareval.write_store(tmp / "s.h5", arrays, labels, **kw)
        finally:
            assert list(tmp.iterdir()) == []  # refused before anything was written

    return ApiCase(f"write-store-{kind}-{seed}", call, f"malformed store: {fragment}", data)


def onnx_int_output(rng: np.random.Generator, seed: int, v: int) -> ApiCase:
    """An ONNX model (its card embedded) whose output is an integer tensor."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from sareval.card import set_onnx_card

    card, data, _ = world(rng)
    name, code = [("int64", TensorProto.INT64), ("int32", TensorProto.INT32),
                  ("uint8", TensorProto.UINT8)][v % 3]  # fmt: skip
    c, k, size = card.n_channels, card.n_classes, data["s1"].shape[-1]
    weights = rng.normal(size=(c, k)).astype(np.float32)

    def call(tmp: Path) -> Any:
        graph = helper.make_graph(
            [helper.make_node("ReduceMean", ["input", "axes"], ["pooled"], keepdims=0),
             helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
             helper.make_node("Cast", ["logits"], ["out"], to=code)],
            "g",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", c, size, size])],
            [helper.make_tensor_value_info("out", code, ["N", k])],
            [numpy_helper.from_array(weights, "w"),
             numpy_helper.from_array(np.array([2, 3]), "axes")],
        )  # fmt: skip
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 9
        set_onnx_card(model, card)
        path = tmp / "int.onnx"
        onnx.save(model, str(path))
        return sareval.evaluate(path, data)

    return ApiCase(f"onnx-{name}-output-{seed}", call, f"returns {name} outputs ('out')", data)


def result_save(rng: np.random.Generator, seed: int, v: int) -> ApiCase:
    """``ShapeResult.save`` to a path that is not a results JSON, or with ``csv`` naming the
    JSON itself: refused before anything is written."""
    card, data, model = world(rng)
    stem = f"r{int(rng.integers(100))}"
    path, csv, fragment = [
        (f"{stem}.txt", None, "path is the results JSON; give it a .json name"),
        (f"{stem}.csv", None, "path is the results JSON; give it a .json name"),
        (f"{stem}.json", f"{stem}.json", "csv and path name the same file"),
        (f"{stem}.json", f"./{stem}.json", "csv and path name the same file"),
    ][v % 4]

    def call(tmp: Path) -> Any:
        result = sareval.evaluate(model, data, card=card)
        try:
            return result.save(tmp / path, csv=None if csv is None else tmp / csv)
        finally:
            assert list(tmp.iterdir()) == []  # nothing written or left behind

    kind = "csv-is-json" if csv else path.split(".")[1]
    return ApiCase(f"save-{kind}-{seed}", call, fragment, data)


#: every kind of case and how many variants it has (each variant a case of its own seed)
KINDS: list[tuple[Callable[[np.random.Generator, int, int], ApiCase], int]] = [
    (model_return, len(RETURNS)), (class_count, 4), (arity, 3), (multi_hot, 6),
    (complex_images, 4), (cloud_cover, 4), (batch_parts, 6), (store_folder, 3), (bad_store, 8),
    (onnx_int_output, 3), (result_save, 4),
]  # fmt: skip


def cases() -> list[ApiCase]:
    """Every variant of every kind, each from its own seed."""
    out: list[ApiCase] = []
    for kind, variants in KINDS:
        for v in range(variants):
            seed = len(out)
            out.append(kind(np.random.default_rng(1900 + seed), seed, v))
    return out


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in cases()])
def test_api_case_is_one_sareval_error(case: ApiCase, tmp_path: Path) -> None:
    before = {k: np.array(v, copy=True) for k, v in case.arrays.items()}
    work = tmp_path / "case"
    work.mkdir()
    try:
        case.call(work)
    except SarevalError as e:
        message = str(e)
    except Exception as e:  # any other type is a failure of the guarantee
        pytest.fail(f"{type(e).__name__} instead of SarevalError: {e}")
    else:
        pytest.fail("no error")
    assert message and "\n" not in message and "Traceback" not in message
    assert case.fragment in message, message
    for k, v in before.items():
        np.testing.assert_array_equal(case.arrays[k], v)  # the caller's arrays as they were
