"""Model card parsing, validation and embedding in ONNX metadata."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from sareval.card import ModelCard, get_onnx_card, read_card, set_onnx_card
from sareval.errors import CardError

CARD = {
    "name": "toy",
    "task": "multi-label",
    "class_names": ["a", "b"],
    "output": "logits",
    "threshold": 0.4,
    "input": {"name": "x", "channels": ["B04", "B03", "VV", "VH"], "height": 8, "width": 8},
    "modalities": [
        {"name": "sar", "bands": ["VV", "VH"]},
        {"name": "opt", "bands": ["B04", "B03"]},
    ],
    "normalization": {"VV": {"nan": 0.0, "clip": [-25, 0], "mean": -11.0, "std": 4.0}},
    "provenance": {"architecture": "toy"},
}


def test_parse_and_round_trip() -> None:
    card = ModelCard.from_dict(CARD)
    assert card.modality_names == ("sar", "opt")
    assert card.channel_indices("sar") == [2, 3] and card.channel_indices("opt") == [0, 1]
    assert card.transform("VV").clip == (-25.0, 0.0) and card.transform("B04").std == 1.0
    assert ModelCard.from_json(card.to_json()) == card
    split = card.with_modalities(
        (
            *card.modalities[:1],
            *(type(card.modalities[0])(n, (b,)) for n, b in (("red", "B04"), ("green", "B03"))),
        )
    )
    assert split.modality_names == ("sar", "red", "green")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("task"), "'task' is a required property"),
        (lambda d: d.update(task="regression"), "task: 'regression' is not one of"),
        (lambda d: d["input"].update(channels=["B04", "X-1"]), r"channels.1: 'X-1' does not match"),
        (lambda d: d["modalities"][1].update(bands=["B04"]), "belong to no modality"),
        (lambda d: d["modalities"][1].update(bands=["B04", "B03", "VV"]), "is in modalities"),
        (lambda d: d["normalization"]["VV"].update(std=0), r"VV.std: 0 is not a valid"),
        (lambda d: d.update(threshold=1.5), "threshold"),
        (lambda d: d.update(class_names=["a", "a"]), "class_names: .* non-unique"),
        (lambda d: d.update(card_version=7), "card_version: 7 is not one of"),
    ],
)
def test_invalid_cards_name_the_field(edit, message: str) -> None:
    d = copy.deepcopy(CARD)
    edit(d)
    with pytest.raises(CardError, match=message) as e:
        ModelCard.from_dict(d, source="my_card.json")
    assert str(e.value).startswith("my_card.json: model card:")


def toy_onnx() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0)
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])
    graph = helper.make_graph([node], "toy", [x], [y], initializer=[axes])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_onnx_metadata_round_trip(tmp_path: Path) -> None:
    model = toy_onnx()
    with pytest.raises(CardError, match="sareval card attach"):
        get_onnx_card(model, "m.onnx")
    card = ModelCard.from_dict(CARD)
    set_onnx_card(model, card)
    set_onnx_card(model, card)  # replacing, not duplicating
    assert sum(p.key == "sareval.card" for p in model.metadata_props) == 1
    onnx.save(model, tmp_path / "m.onnx")
    assert read_card(tmp_path / "m.onnx") == card
    (tmp_path / "c.json").write_text(json.dumps(CARD))
    assert read_card(tmp_path / "c.json") == card


def test_read_card_bad_files(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"\x00\x01garbage")
    with pytest.raises(CardError, match="not a readable ONNX file"):
        read_card(tmp_path / "bad.onnx")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(CardError, match="not valid JSON"):
        read_card(tmp_path / "bad.json")
    with pytest.raises(CardError, match="file not found"):
        read_card(tmp_path / "missing.onnx")
