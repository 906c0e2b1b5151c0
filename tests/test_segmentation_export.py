"""Export of segmentation networks: ONNX / TorchScript with a segmentation card, parity on 4-D
outputs, refusal of a card of the other task, presets, and the shared first conv of the
onnxruntime backend on an exported U-Net."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from sareval.bands import S1_BANDS, S2_BANDS
from sareval.card import ModelCard, get_onnx_card, make_card, read_model_card
from sareval.classes import BEN19, IGBP10
from sareval.cli import cli
from sareval.errors import CardError, SarevalError
from sareval.evaluator.onnx_sharing import share_first_conv
from sareval.evaluator.preamble import build_preamble, compose_onnx
from sareval.evaluator.sharing import share_kind
from sareval.export.attach import check_model, validate_card_against_graph
from sareval.export.onnx_export import export_onnx
from sareval.export.outputs import output_problem
from sareval.export.parity import ParityReport, compare
from sareval.export.torchscript_export import export_torchscript
from sareval.models import LABEL_MATCHING, build_model_for_card

SIZE = 32


def seg_card(arch: str, fusion: str = "early", preset: str = "sen12ms-s1s2") -> ModelCard:
    return make_card(
        preset,
        "segmentation",
        architecture=arch,
        fusion=fusion,
        checkpoint_sha256=None,
        random_init=True,
        input_size=SIZE,
        label_matching=LABEL_MATCHING[arch],
    )


def calibrated(arch: str, card: ModelCard, fusion: str = "early") -> nn.Module:
    """The network with BatchNorm running statistics of one random batch (logits of a trained
    network's scale, a few units), in eval mode."""
    torch.manual_seed(0)
    model = build_model_for_card(arch, card, fusion)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randn(4, card.n_channels, SIZE, SIZE))
    return model.eval()


Exported = tuple[nn.Module, ModelCard, Path, ParityReport]


def _export(arch: str, fusion: str, folder: Path) -> Exported:
    card = seg_card(arch, fusion)
    model = calibrated(arch, card, fusion)
    out = folder / f"{arch}-{fusion}.onnx"
    report = export_onnx(model, card, out)
    assert report is not None
    return model, card, out, report


@pytest.fixture(scope="module")
def unet_onnx(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """The early-fusion U-Net exported once for the tests of this module."""
    return _export("unet", "early", tmp_path_factory.mktemp("unet"))


def _check_onnx(exported: Exported) -> None:
    model, card, out, report = exported
    arch = card.provenance["architecture"]
    assert report.passed and report.batch_sizes == (1, 3, 8)
    assert [total for _, total in report.argmax_differs] == [b * SIZE * SIZE for b in (1, 3, 8)]
    # an independent batch of another size, through onnxruntime
    x = np.random.default_rng(1).standard_normal((5, 12, SIZE, SIZE)).astype(np.float32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {card.input_name: x})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert got.shape == ref.shape == (5, 10, SIZE, SIZE)
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    assert (got.argmax(1) == ref.argmax(1)).all()
    # the card inside says segmentation; the graph has a dynamic batch and fits the card
    proto = onnx.load(str(out))
    inside = get_onnx_card(proto, out)
    assert inside == card and inside.task == "segmentation" and inside.ignore_index == 255
    assert inside.label_matching == LABEL_MATCHING[arch]
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [10, SIZE, SIZE]
    assert check_model(out) == card


def test_unet_onnx_export_matches_torch(unet_onnx: Exported) -> None:
    _check_onnx(unet_onnx)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arch", "fusion"),
    [
        ("deeplabv3-resnet18", "late"),
        ("resnet18-unet", "early"),
        ("resnet18-unet", "late"),
        ("deeplabv3-resnet50", "early"),
    ],
)
def test_onnx_export_of_the_other_networks(arch: str, fusion: str, tmp_path: Path) -> None:
    _check_onnx(_export(arch, fusion, tmp_path))


def test_torchscript_round_trip(tmp_path: Path) -> None:
    card = seg_card("unet", "late")
    model = calibrated("unet", card, "late")
    out = tmp_path / "unet-late.pt"
    report = export_torchscript(model, card, out, batch_sizes=(1, 3))
    assert report is not None and report.passed
    assert read_model_card(out) == card
    loaded = torch.jit.load(str(out)).eval()  # the file a TorchScript user loads
    x = torch.randn(3, 12, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-5)
    assert check_model(out) == card


def test_export_command_writes_a_segmentation_card(tmp_path: Path) -> None:
    out = tmp_path / "deeplab.pt"
    args = ["export", "--arch", "deeplabv3-resnet18", "--preset", "reben-s1s2"]
    args += ["--input-size", str(SIZE), "--fusion", "late", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    card = read_model_card(out)
    assert card.task == "segmentation" and card.class_names == BEN19
    assert card.label_matching == "upsample-logits" and card.ignore_index == 255
    assert card.provenance["architecture"] == "deeplabv3-resnet18"
    assert card.provenance["fusion"] == "late"
    unet = [
        "export",
        "--arch",
        "unet",
        "--preset",
        "sen12ms-s1s2",
        "--out",
        str(tmp_path / "u.onnx"),
    ]
    bad = CliRunner().invoke(cli, [*unet, "--task", "multi-label"])
    assert bad.exit_code != 0
    assert bad.output == "error: --task multi-label: --arch unet is a segmentation network\n"
    size = CliRunner().invoke(cli, [*unet, "--input-size", "40"])
    assert size.exit_code != 0 and "multiples of 16 px" in size.output
    assert not (tmp_path / "u.onnx").exists()


def test_a_card_of_the_other_task_is_refused_in_one_line(
    unet_onnx: Exported, tmp_path: Path
) -> None:
    net, seg, good, _ = unet_onnx
    scene = make_card(
        "sen12ms-s1s2",
        "single-label",
        architecture="unet",
        fusion="early",
        checkpoint_sha256=None,
        random_init=True,
        input_size=SIZE,
    )
    out = tmp_path / "wrong.onnx"
    with pytest.raises(SarevalError, match=r"is 4-D \(a segmentation model's\); the card") as e:
        export_onnx(net, scene, out)
    assert "\n" not in str(e.value) and not out.exists()
    with pytest.raises(SarevalError, match="the torch model does not fit its card"):
        compare(net, lambda a: a, scene, "test", batch_sizes=(2,))
    classifier = build_model_for_card("resnet18", scene).eval()
    with pytest.raises(SarevalError, match="is 2-D; a segmentation card needs") as e:
        export_torchscript(classifier, seg, tmp_path / "wrong.pt")
    assert "\n" not in str(e.value) and not (tmp_path / "wrong.pt").exists()
    # a segmentation ONNX file carrying a scene card does not pass the graph check
    with pytest.raises(CardError, match="a segmentation model's"):
        validate_card_against_graph(onnx.load(str(good)), scene, good)


def test_output_problem_rules() -> None:
    seg = seg_card("unet")
    assert output_problem((2, 10, SIZE, SIZE), seg, 2) is None
    assert output_problem(("batch", 10, SIZE // 4, SIZE // 4), seg, None) is None
    assert "divided by one integer" in str(output_problem((2, 10, 12, 12), seg, 2))
    assert "divided by one integer" in str(output_problem((2, 10, 16, 8), seg, 2))
    assert "3 scores per sample" in str(output_problem((2, 3, SIZE, SIZE), seg, 2))
    assert "1 rows of output for a batch of 2" in str(output_problem((1, 10, 8, 8), seg, 2))


def test_presets_give_segmentation_cards() -> None:
    for preset, classes in (("sen12ms-s1s2", IGBP10), ("reben-s1s2-v0.2.0", BEN19)):
        card = seg_card("unet", preset=preset)
        assert card.class_names == classes and card.version == 3
        assert card.to_dict()["segmentation"] == {
            "ignore_index": 255,
            "label_matching": "nearest-labels",
        }
    with pytest.raises(SarevalError, match="preset bigearthnet-mm supports task multi-label"):
        seg_card("unet", preset="bigearthnet-mm")


def test_first_conv_sharing_applies_to_an_exported_early_fusion_unet(unet_onnx: Exported) -> None:
    """The onnxruntime backend's shared first conv (evaluator.onnx_sharing) recognises the
    exported U-Net and gives the unshared graph's outputs."""
    _, card, out, _ = unet_onnx
    pre = build_preamble(card, {"s1": list(S1_BANDS), "s2": list(S2_BANDS)})
    dtypes: dict[str, np.dtype] = {"s1": np.dtype("float32"), "s2": np.dtype("uint16")}
    composed = compose_onnx(pre, onnx.load(str(out)), input_dtypes=dtypes, image_size=(SIZE, SIZE))
    shared = share_first_conv(composed, pre)
    assert shared is not None
    rng = np.random.default_rng(0)
    feeds = {
        "s1": rng.normal(-15, 4, (2, 2, SIZE, SIZE)).astype(np.float32),
        "s2": rng.integers(0, 4000, (2, 13, SIZE, SIZE)).astype(np.uint16),
    }
    options = ort.SessionOptions()
    options.log_severity_level = 3
    runs = []
    for graph in (composed, shared):
        session = ort.InferenceSession(graph.SerializeToString(), options)
        names = {i.name for i in session.get_inputs()}
        runs.append(session.run(None, {k: v for k, v in feeds.items() if k in names})[0])
    assert runs[0].shape == (3 * 2, 10, SIZE, SIZE)  # three non-empty coalitions x 2 rows
    assert np.abs(runs[0] - runs[1]).max() <= 1e-4 * max(1.0, np.abs(runs[0]).max())


@pytest.mark.slow
def test_late_fusion_is_not_shared(tmp_path: Path) -> None:
    """Late fusion falls back to the unshared graph: no Conv on the whole input (ONNX), and the
    torch backend's late-fusion rule (pooled features, one head) is not applied to it."""
    card = seg_card("unet", "late")
    late = calibrated("unet", card, "late")
    pre = build_preamble(card, {"s1": list(S1_BANDS), "s2": list(S2_BANDS)})
    assert share_kind(late, pre) is None
    out = tmp_path / "late.onnx"
    export_onnx(late, card, out, batch_sizes=(2,))
    dtypes: dict[str, np.dtype] = {"s1": np.dtype("float32"), "s2": np.dtype("uint16")}
    composed = compose_onnx(pre, onnx.load(str(out)), input_dtypes=dtypes, image_size=(SIZE, SIZE))
    assert share_first_conv(composed, pre) is None
