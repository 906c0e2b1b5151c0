"""``sareval card template|attach|check`` and ``sareval export`` end to end.

Foreign models are built here with ``onnx.helper`` (independent of the exporter): input
(N, C, H, W) -> GlobalAveragePool -> Flatten -> Gemm -> (N, K).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper

from sareval.card import ModelCard, make_card, read_card
from sareval.cli import cli
from sareval.errors import CardError
from sareval.export.attach import attach_card
from sareval.models import build_model


def foreign_onnx(
    path: Path,
    *,
    channels: int = 12,
    classes: int = 10,
    batch: int | str = "N",
    hw: tuple[int | str, int | str] = (8, 8),
    name: str = "input",
    channels_last: bool = False,
    extra_input: bool = False,
    extra_output: bool = False,
) -> Path:
    """A small foreign classifier; options make it contradict a card in one way each."""
    rng = np.random.default_rng(0)
    shape = [batch, *hw, channels] if channels_last else [batch, channels, *hw]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)]
    nodes = []
    src = name
    if channels_last:
        nodes.append(helper.make_node("Transpose", [name], ["nchw"], perm=[0, 3, 1, 2]))
        src = "nchw"
    nodes += [
        helper.make_node("GlobalAveragePool", [src], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "b"], ["scores"]),
    ]
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, classes])]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("aux", TensorProto.FLOAT, [batch, 1]))
        nodes.append(helper.make_node("Identity", ["aux"], ["aux_out"]))
        outputs.append(helper.make_tensor_value_info("aux_out", TensorProto.FLOAT, [batch, 1]))
    if extra_output:
        nodes.append(helper.make_node("Identity", ["flat"], ["features"]))
        outputs.append(
            helper.make_tensor_value_info("features", TensorProto.FLOAT, [batch, channels])
        )
    inits = [
        helper.make_tensor(
            "W",
            TensorProto.FLOAT,
            [channels, classes],
            rng.normal(size=channels * classes).astype(np.float32),
        ),
        helper.make_tensor("b", TensorProto.FLOAT, [classes], np.zeros(classes, np.float32)),
    ]
    graph = helper.make_graph(nodes, "foreign", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def card_json(path: Path, **input_changes: object) -> Path:
    card = make_card(
        "sen12ms-s1s2",
        "single-label",
        architecture="foreign",
        fusion="early",
        checkpoint_sha256=None,
        random_init=False,
        input_size=8,
    )
    d = card.to_dict()
    d["input"].update(input_changes)
    path.write_text(json.dumps(d))
    return path


def test_attach_embeds_a_fitting_card(tmp_path: Path) -> None:
    model = foreign_onnx(tmp_path / "m.onnx")
    card = card_json(tmp_path / "card.json")
    out = attach_card(model, card, tmp_path / "with_card.onnx")
    assert read_card(out) == read_card(card)
    x = np.random.default_rng(1).normal(size=(3, 12, 8, 8)).astype(np.float32)
    plain = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    carded = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(
        carded.run(None, {"input": x})[0], plain.run(None, {"input": x})[0]
    )
    # symbolic H, W in the graph are fine with a card that fixes them; in place replaces
    dyn = foreign_onnx(tmp_path / "dyn.onnx", hw=("H", "W"))
    assert attach_card(dyn, card) == dyn and read_card(dyn).height == 8


@pytest.mark.parametrize(
    ("graph", "card", "message"),
    [
        ({"channels": 15}, {}, "15 channels, the card has 12"),
        ({"channels_last": True}, {}, "looks channels-last, NHWC: convert with tf2onnx"),
        ({"batch": 1}, {}, "fixes the batch dimension to 1"),
        ({"classes": 19}, {}, "19 scores per sample, the card has 10 classes"),
        ({"hw": (16, 16)}, {}, "input height is 16 in the graph, 8 in the card"),
        ({}, {"height": None, "width": None}, "fixes the input height to 8; set input.height"),
        ({"extra_input": True}, {}, "the graph has 2 inputs (input, aux)"),
        ({"extra_output": True}, {}, "2 outputs (scores, features)"),
        ({"name": "x"}, {}, "the graph's input is named 'x', the card's input.name is 'input'"),
    ],
)
def test_attach_refuses_a_contradicting_card(
    tmp_path: Path, graph: dict, card: dict, message: str
) -> None:
    model = foreign_onnx(tmp_path / "m.onnx", **graph)
    before = model.read_bytes()
    with pytest.raises(CardError) as e:
        attach_card(model, card_json(tmp_path / "card.json", **card), tmp_path / "out.onnx")
    assert message in str(e.value) and str(model) in str(e.value)
    assert model.read_bytes() == before and not (tmp_path / "out.onnx").exists()


def test_card_template_attach_check_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["card", "template", "--preset", "bigearthnet-mm"])
    assert result.exit_code == 0, result.output
    card = ModelCard.from_json(result.output)
    assert card.task == "multi-label" and card.n_channels == 12 and card.n_classes == 19
    assert card.channels[-2:] == ("VV", "VH") and (card.height, card.width) == (120, 120)

    card_path = card_json(tmp_path / "card.json")
    model = foreign_onnx(tmp_path / "m.onnx")
    result = runner.invoke(cli, ["card", "check", str(model)])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") or "error" in result.output.lower()
    assert "no sareval model card" in result.output and "Traceback" not in result.output

    out = tmp_path / "carded.onnx"
    result = runner.invoke(cli, ["card", "attach", str(model), str(card_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["card", "check", str(out)])
    assert result.exit_code == 0, result.output
    assert "ok:" in result.output and "12 channels at 8x8, 10 classes" in result.output
    result = runner.invoke(cli, ["card", "attach", str(model), str(card_path), "--out", str(out)])
    assert result.exit_code == 1 and "output exists" in result.output

    bad = foreign_onnx(tmp_path / "bad.onnx", channels=15)
    result = runner.invoke(cli, ["card", "attach", str(bad), str(card_path)])
    assert result.exit_code == 1 and "15 channels, the card has 12" in result.output
    assert len(result.output.strip().splitlines()) == 1


TOOLBOX_ARGUMENTS = """\
use_s1: True
use_s2: True
use_RGB: False
IGBP_simple: True
label_type: single_label
threshold: 0.1
model: ResNet18
"""


def _toolbox_run(folder: Path, seed: int = 0) -> tuple[Path, torch.nn.Module]:
    """A toolbox-style ResNet18 s1s2 run: legacy checkpoint + arguments file."""
    torch.manual_seed(seed)
    source = build_model("resnet18", 12, 10).eval()
    ck = folder / "20200526_101051_model_best.pth"
    torch.save(
        {
            "epoch": 3,
            "arch": "ResNet18",
            "model_state_dict": source.state_dict(),
            "optimizer_state_dict": torch.optim.SGD(source.parameters(), lr=0.1).state_dict(),
            "best_prec": 0.5,
        },
        ck,
        _use_new_zipfile_serialization=False,
    )
    (folder / "20200526_101051_arguments.txt").write_text(TOOLBOX_ARGUMENTS)
    return ck, source


def test_export_cli_from_toolbox_run(tmp_path: Path) -> None:
    ck, source = _toolbox_run(tmp_path)
    out = tmp_path / "resnet18.onnx"
    result = CliRunner().invoke(
        cli, ["export", "--checkpoint", str(ck), "--input-size", "32", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    for b in (1, 3, 64):
        assert f"batch {b:>2}: max |diff|" in result.output
    assert "run arguments:" in result.output and "loaded" in result.output
    card = read_card(out)
    assert card.task == "single-label" and card.channels[-2:] == ("VV", "VH")
    assert card.provenance["architecture"] == "resnet18"
    assert card.provenance["random_init"] is False
    assert card.provenance["checkpoint_sha256"] == hashlib.sha256(ck.read_bytes()).hexdigest()
    x = torch.randn(4, 12, 32, 32)
    with torch.no_grad():
        expected = source(x).numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(
        session.run(None, {"input": x.numpy()})[0], expected, rtol=1e-4, atol=1e-4
    )

    info = CliRunner().invoke(cli, ["info", str(out)])
    assert info.exit_code == 0, info.output
    assert "(batch, 12, 32, 32)" in info.output and "sen12ms-s1s2 resnet18" in info.output


def test_export_cli_refuses_contradictions(tmp_path: Path) -> None:
    ck, _ = _toolbox_run(tmp_path)
    runner = CliRunner()
    out = tmp_path / "m.onnx"
    cases = [
        (["--preset", "sen12ms-s2"], "--preset sen12ms-s2 contradicts"),
        (["--arch", "resnet50"], "--arch resnet50 contradicts"),
        (["--task", "multi-label"], "--task multi-label contradicts"),
    ]
    for extra, message in cases:
        result = runner.invoke(
            cli,
            ["export", "--checkpoint", str(ck), "--out", str(out), "--input-size", "32", *extra],
        )
        assert result.exit_code == 1, result.output
        last = result.output.strip().splitlines()[-1]  # after the "run arguments" note
        assert last.startswith("error: ") and message in last
    # a checkpoint whose channel count contradicts the preset (no arguments file to say so)
    lone = tmp_path / "lone"
    lone.mkdir()
    torch.save(build_model("resnet18", 10, 10).state_dict(), lone / "s2.pth")
    result = runner.invoke(
        cli,
        [
            "export",
            "--arch",
            "resnet18",
            "--checkpoint",
            str(lone / "s2.pth"),
            "--preset",
            "sen12ms-s1s2",
            "--task",
            "single-label",
            "--input-size",
            "32",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 1
    assert "takes 10 input channels, the card has 12" in result.output
    result = runner.invoke(
        cli,
        [
            "export",
            "--arch",
            "densenet121",
            "--preset",
            "sen12ms-s1s2",
            "--task",
            "single-label",
            "--input-size",
            "128",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 1 and "densenet121 accepts only 256x256" in result.output
    result = runner.invoke(cli, ["export", "--arch", "resnet18", "--out", str(out)])
    assert result.exit_code == 1 and "give --preset or --card" in result.output
    assert not out.exists()


def test_export_cli_with_user_card_to_torchscript(tmp_path: Path) -> None:
    card_path = card_json(tmp_path / "card.json", height=32, width=32)
    out = tmp_path / "m.pt"
    result = CliRunner().invoke(
        cli,
        [
            "export",
            "--arch",
            "resnet18",
            "--card",
            str(card_path),
            "--fusion",
            "late",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    card = read_card(out)
    assert card.provenance["fusion"] == "late" and card.provenance["random_init"] is True
    assert card.channels == read_card(card_path).channels


def two_input_onnx(path: Path, sar: int = 2, opt: int = 10, classes: int = 10) -> Path:
    """A foreign classifier with inputs ``s1`` (N, sar, H, W) and ``s2`` (N, opt, H, W)."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("GlobalAveragePool", ["s1"], ["p1"]),
        helper.make_node("GlobalAveragePool", ["s2"], ["p2"]),
        helper.make_node("Concat", ["p1", "p2"], ["p"], axis=1),
        helper.make_node("Flatten", ["p"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "b"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes, "two_stream",
        [helper.make_tensor_value_info("s1", TensorProto.FLOAT, ["N", sar, 8, 8]),
         helper.make_tensor_value_info("s2", TensorProto.FLOAT, ["N", opt, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", classes])],
        initializer=[
            onnx.numpy_helper.from_array(rng.normal(size=(sar + opt, classes)).astype("f4"), "W"),
            onnx.numpy_helper.from_array(np.zeros(classes, np.float32), "b"),
        ],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_attach_a_card_to_a_two_input_graph_and_evaluate(tmp_path: Path, tiny_store: Path) -> None:
    import sareval

    card = make_card("sen12ms-s1s2", "single-label", architecture="x", fusion="early",
                     checkpoint_sha256=None, random_init=True, input_size=8)  # fmt: skip
    sar = list(card.modality("sar").bands)
    opt = [b for b in card.channels if b not in sar]
    two = card.with_inputs({"s1": sar, "s2": opt})
    card_json = tmp_path / "card.json"
    card_json.write_text(two.to_json())
    model = two_input_onnx(tmp_path / "two.onnx")
    out = tmp_path / "two-card.onnx"
    result = CliRunner().invoke(
        cli, ["card", "attach", str(model), str(card_json), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert read_card(out) == two
    wrong = card.with_inputs({"s2": opt, "s3": sar})
    card_json.write_text(wrong.to_json())
    result = CliRunner().invoke(cli, ["card", "attach", str(model), str(card_json), "--out",
                                      str(tmp_path / "bad.onnx")])  # fmt: skip
    assert result.exit_code == 1 and "card's input 's3' is not a graph input" in result.output
    r = sareval.evaluate(out, (tiny_store, "clear"))
    assert r.n_samples == 12 and r.config["backend"] == "onnxruntime"
