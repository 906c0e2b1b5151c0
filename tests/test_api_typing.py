"""The entry point's types: ``evaluate``'s data options apart from the configuration, and the
runner's typed :class:`~sareval.evaluator.run_output.RunOutput` behind every result."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import sareval
from sareval.card import ModelCard
from sareval.errors import SarevalError
from sareval.evaluator.run_output import SECTIONS, RunOutput

N = 12


@pytest.fixture(scope="module")
def setup() -> tuple[torch.nn.Module, ModelCard, dict[str, np.ndarray], np.ndarray]:
    card = ModelCard.custom({"sar": ["VV", "VH"], "opt": ["B04"]}, task="single-label",
                            class_names=["a", "b", "c"], input_size=4)  # fmt: skip
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3)).eval()
    rng = np.random.default_rng(0)
    arrays = {
        "s1": rng.normal(size=(N, 2, 4, 4)).astype(np.float32),
        "s2": rng.integers(0, 3000, size=(N, 1, 4, 4)).astype(np.uint16),
        "label": rng.integers(0, 3, size=N),
    }
    cover = np.linspace(0, 1, N).astype(np.float32)
    return net, card, arrays, cover


BANDS = {"s1": ["VV", "VH"], "s2": ["B04"]}


def test_data_options_equal_the_flat_keywords_and_the_data_object(setup) -> None:  # type: ignore[no-untyped-def]
    net, card, arrays, cover = setup
    options = {"bands": BANDS, "cloud_cover": cover}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling warns about nothing
        a = sareval.evaluate(net, arrays, card=card, data_options=options,
                             cloud_cover_bins=[0, 0.5, 1])  # fmt: skip
    with pytest.warns(DeprecationWarning, match=r"data_options=\{'bands'"):
        b = sareval.evaluate(net, arrays, card=card, cloud_cover_bins=[0, 0.5, 1], **options)
    data = sareval.ArrayData({k: arrays[k] for k in ("s1", "s2")}, arrays["label"], **options)
    c = sareval.evaluate(net, data, card=card, cloud_cover_bins=[0, 0.5, 1])
    assert a.counts == b.counts == c.counts
    assert [x["n_samples"] for x in a.by_cloud_cover] == [6, 6, 0]
    assert a.values == b.values == c.values


@pytest.mark.parametrize(
    "options, message",
    [
        ({"bandz": BANDS}, "data_options: unknown option(s) bandz; known: bands, "),
        ([("bands", BANDS)], "data_options: expected a mapping option -> value, got list"),
    ],
)
def test_bad_data_options_name_the_argument(setup, options, message: str) -> None:  # type: ignore[no-untyped-def]
    net, card, arrays, _ = setup
    with pytest.raises(SarevalError) as info:
        sareval.evaluate(net, arrays, card=card, data_options=options)
    assert str(info.value).startswith(message), str(info.value)


def test_data_option_given_twice_is_refused(setup) -> None:  # type: ignore[no-untyped-def]
    net, card, arrays, _ = setup
    with pytest.raises(SarevalError, match="data_options: 'bands' is also given as a keyword"):
        sareval.evaluate(net, arrays, card=card, data_options={"bands": BANDS}, bands=BANDS)


def test_run_output_is_typed_and_gives_the_document(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from sareval.evaluator.backends import load_model
    from sareval.evaluator.runner import run_evaluation
    from sareval.evaluator.sources import as_source

    net, card, arrays, _ = setup
    config = sareval.ShapeConfig(by_class=True)
    output = run_evaluation(load_model(net, card), as_source(arrays, bands=BANDS), config)
    assert isinstance(output, RunOutput)
    with pytest.raises(AttributeError):
        output.n_samples = 0  # type: ignore[misc]
    assert output.n_samples == N and output.players == ("sar", "opt")
    assert output.coalitions == ("none", "sar", "opt", "sar+opt")
    assert isinstance(output.warnings, tuple) and output.game is not None
    assert set(output.counts) == set(output.coalitions)
    doc = output.to_document()
    # the key order of every results file: header, the computed sections, empty, game
    head = ["format", "format_version", "method", "config", "provenance", "task",
            "class_names", "players", "coalitions"]  # fmt: skip
    assert list(doc) == [*head, *SECTIONS, *output.extra, "empty", "game"]
    assert doc["metrics"]["oa"]["V"]["sar+opt"] == output.metrics["oa"]["V"]["sar+opt"]
    # the API's result is that document, and saving it writes the same JSON
    result = sareval.evaluate(net, arrays, config, card=card, data_options={"bands": BANDS})
    assert result.counts == doc["counts"] and list(result.doc) == list(doc)
    path = result.save(tmp_path / "r.json")
    saved = json.loads(path.read_text())
    assert list(saved) == list(doc) and sareval.load_result(path) == result
