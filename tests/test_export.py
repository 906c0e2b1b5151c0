"""Export to ONNX / TorchScript / torch.export: parity, dynamic batch, cards, failure modes.

Every architecture x {early, late} x {single, multi-label} is exported and compared with
torch at batch 1, 3 and 64 (the heavy ones are marked slow); each exported ONNX file is also
run here, outside the parity module, on a batch size it was not checked with.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from sareval.card import (
    TORCHSCRIPT_EXTRA_FILE,
    ModelCard,
    card_with_statistics,
    make_card,
    read_card,
)
from sareval.errors import CardError, OutputExistsError, SarevalError
from sareval.export.attach import check_model
from sareval.export.describe import describe_model
from sareval.export.onnx_export import export_onnx
from sareval.export.parity import ParityError, compare
from sareval.export.torchscript_export import export_program, export_torchscript
from sareval.models import ARCHITECTURES, FUSIONS, build_model
from sareval.presets import PRESETS

TASKS = ("single-label", "multi-label")
FAST = {("resnet18", "early", "single-label"), ("resnet18", "late", "multi-label")}
SIZE = {"densenet121": 256}  # others: 32 px, the smallest input five 2x poolings allow


def _matrix() -> list:
    cases = []
    for arch in ARCHITECTURES:
        for fusion in FUSIONS:
            for task in TASKS:
                marks = () if (arch, fusion, task) in FAST else (pytest.mark.slow,)
                cases.append(pytest.param(arch, fusion, task, marks=marks))
    return cases


def calibrate_batch_norm(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Running statistics = the batch statistics of ``x``, as after training; eval mode.

    With untrained unit statistics the residual sums of a random ResNet reach logits in the
    hundreds; calibrated, its logits have the scale of a trained network's (a few units)."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one pass sets the batch statistics
    model.train()
    with torch.no_grad():
        model(x)
    for m in bns:
        m.momentum = 0.1
    return model.eval()


def sen12ms_card(arch: str, fusion: str, task: str, size: int) -> ModelCard:
    return make_card(
        "sen12ms-s1s2",
        task,
        architecture=arch,
        fusion=fusion,
        checkpoint_sha256=None,
        random_init=True,
        input_size=size,
    )


def build_for(card: ModelCard, arch: str, fusion: str) -> nn.Module:
    torch.manual_seed(0)
    groups = [card.channel_indices(m) for m in card.modality_names]
    model = build_model(
        arch, card.n_channels, card.n_classes, fusion=fusion, modality_channels=groups
    )
    assert card.height is not None and card.width is not None
    x = torch.randn(2 if arch == "densenet121" else 8, card.n_channels, card.height, card.width)
    return calibrate_batch_norm(model, x)


def run_onnx(path: Path, x: np.ndarray, input_name: str = "input") -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {input_name: x})[0]


@pytest.mark.parametrize(("arch", "fusion", "task"), _matrix())
def test_export_matrix_matches_torch(arch: str, fusion: str, task: str, tmp_path: Path) -> None:
    size = SIZE.get(arch, 32)
    card = sen12ms_card(arch, fusion, task, size)
    model = build_for(card, arch, fusion)
    out = tmp_path / f"{arch}-{fusion}.onnx"
    report = export_onnx(model, card, out)
    assert report is not None and report.batch_sizes == (1, 3, 64)
    print(f"\n{arch} {fusion} {task}:", *report.lines(), sep="\n  ")
    assert report.passed
    # 1e-4 (relative to the logits' scale where it exceeds 1), or within twice torch's own
    # fp32 rounding error where the network's depth makes that larger (ResNet50)
    for i, (d, s) in enumerate(zip(report.max_abs_diff, report.output_scale, strict=True)):
        e = report.fp32_error[i]
        assert d <= 1e-4 * max(1.0, s) or (e is not None and d <= 2 * e)
        assert s < 100  # calibrated batch norm: logits of a trained network's scale
    assert read_card(out) == card
    # dynamic batch axis, checked outside the parity module at an unchecked batch size
    graph = onnx.load(str(out))
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [12, size, size]
    x = torch.randn(5, 12, size, size)
    with torch.no_grad():
        expected = model(x).numpy()
    got = run_onnx(out, x.numpy())
    assert got.shape == (5, card.n_classes)
    assert np.abs(got - expected).max() <= 1e-3 * max(1.0, np.abs(expected).max())
    assert not list(tmp_path.glob(".*.tmp"))


def test_late_fusion_with_interleaved_channels_exports(tmp_path: Path) -> None:
    """Non-contiguous modality channels (a gather in the graph) survive the export."""
    card = ModelCard.from_dict(
        {
            "task": "single-label",
            "class_names": ["a", "b", "c"],
            "input": {
                "name": "x",
                "channels": ["B02", "VV", "B03", "VH"],
                "height": 32,
                "width": 32,
            },
            "modalities": [
                {"name": "sar", "bands": ["VV", "VH"]},
                {"name": "opt", "bands": ["B02", "B03"]},
            ],
        }
    )
    assert card.channel_indices("sar") == [1, 3]
    model = build_for(card, "resnet18", "late")
    out = tmp_path / "interleaved.onnx"
    assert export_onnx(model, card, out).passed
    x = torch.randn(4, 4, 32, 32)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(run_onnx(out, x.numpy(), "x"), expected, rtol=1e-4, atol=1e-4)
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "Gather" in ops or "GatherElements" in ops


def test_torchscript_round_trip(tmp_path: Path) -> None:
    card = sen12ms_card("resnet18", "late", "multi-label", 32)
    model = build_for(card, "resnet18", "late")
    out = tmp_path / "late.pt"
    report = export_torchscript(model, card, out)
    assert report is not None and report.passed and report.worst <= 1e-5
    assert read_card(out) == card
    loaded = torch.jit.load(str(out))
    x = torch.randn(7, 12, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-5)
    text = describe_model(out)
    assert "TorchScript" in text and "sen12ms-s1s2 resnet18 late fusion" in text
    assert check_model(out) == card
    wrong = card.to_dict() | {"class_names": [f"c{k}" for k in range(19)]}
    torch.jit.save(
        torch.jit.load(str(out)),
        str(tmp_path / "wrong.pt"),
        _extra_files={TORCHSCRIPT_EXTRA_FILE: json.dumps(wrong)},
    )
    with pytest.raises(CardError, match="gives output \\(2, 10\\), the card has 19 classes"):
        check_model(tmp_path / "wrong.pt")


class Tiny(nn.Module):
    """A small classifier for the failure paths (fast to export)."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.fc = nn.Linear(4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def tiny_card(size: int = 8) -> ModelCard:
    return sen12ms_card("tiny", "early", "single-label", size)


def test_torch_export_program_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    card, model = tiny_card(), Tiny(12, 10)
    out = tmp_path / "tiny.pt2"
    assert export_program(model, card, out).passed
    assert read_card(out) == card
    program = torch.export.load(str(out)).module()
    x = torch.randn(6, 12, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(program(x), model(x))
    text = describe_model(out)
    assert "torch.export program" in text and "model card: sen12ms-s1s2 tiny" in text
    assert ", 12, 8, 8)" in text and ", 10)" in text  # (symbolic batch, C, H, W), (batch, K)
    assert check_model(out) == card


def test_output_exists_is_refused_and_overwrite_replaces(tmp_path: Path) -> None:
    torch.manual_seed(0)
    out = tmp_path / "m.onnx"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="output exists"):
        export_onnx(Tiny(12, 10), tiny_card(), out)
    assert out.read_bytes() == b"keep me"
    export_onnx(Tiny(12, 10), tiny_card(), out, overwrite=True)
    assert read_card(out) == tiny_card()


def test_parity_failure_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A graph whose outputs are off by 1e-3 (injected into the onnxruntime session)."""
    import sareval.export.parity as parity

    real = parity.onnx_session

    class Shifted:
        def __init__(self, session: ort.InferenceSession) -> None:
            self.session = session

        def get_inputs(self) -> list:
            return self.session.get_inputs()

        def run(self, names: object, feeds: dict) -> list:
            return [y + np.float32(1e-3) for y in self.session.run(names, feeds)]

    monkeypatch.setattr(parity, "onnx_session", lambda *a, **k: Shifted(real(*a, **k)))
    out = tmp_path / "bad.onnx"
    with pytest.raises(ParityError, match=r"does not match torch: max \|diff\| 0.001"):
        export_onnx(Tiny(12, 10), tiny_card(), out)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_parity_bound_falls_back_to_torch_fp32_rounding() -> None:
    """With tolerance 0 the exact (float64) answer still passes: it is no farther from torch
    than torch's own fp32 rounding; an answer off by 1e-3 does not."""
    torch.manual_seed(0)
    card, model = tiny_card(), Tiny(12, 10).eval()
    model64 = copy.deepcopy(model).double()

    def exact(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model64(torch.from_numpy(x).double()).numpy()

    report = compare(model, exact, card, "float64", tolerance=0.0)
    assert report.passed and all(e is not None for e in report.fp32_error)
    for i, e in enumerate(report.fp32_error):
        assert report.allowed(i) == 2 * e >= report.max_abs_diff[i] > 0
    report = compare(model, lambda x: exact(x) + 1e-3, card, "off", tolerance=1e-6)
    assert not report.passed and "FAILED" in report.lines()[0]


def test_cuda_provider_requested_but_not_loaded_fails_loudly(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is present; the CUDA provider path is exercised on the GPU machine")
    out = tmp_path / "m.onnx"
    with pytest.raises(SarevalError, match="CUDAExecutionProvider was requested"):
        export_onnx(Tiny(12, 10), tiny_card(), out, provider="cuda")
    assert not out.exists()


def test_bad_export_arguments(tmp_path: Path) -> None:
    with pytest.raises(SarevalError, match=r"must end in \.onnx"):
        export_onnx(Tiny(12, 10), tiny_card(), tmp_path / "m.pt")
    with pytest.raises(SarevalError, match="batch of at least 2"):
        export_onnx(Tiny(12, 10), tiny_card(), tmp_path / "m.onnx", batch=1)
    card = ModelCard.from_dict(
        {
            **tiny_card().to_dict(),
            "input": {**tiny_card().to_dict()["input"], "height": None, "width": None},
        }
    )
    with pytest.raises(SarevalError, match="no input height/width"):
        export_onnx(Tiny(12, 10), card, tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


def test_describe_onnx_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    card = make_card(
        "sen12ms-s1s2",
        "multi-label",
        architecture="tiny",
        fusion="early",
        checkpoint_sha256="ab" * 32,
        random_init=False,
        input_size=8,
    )
    out = tmp_path / "tiny.onnx"
    export_onnx(Tiny(12, 10), card, out)
    text = describe_model(out)
    lines = text.splitlines()
    assert "    input  float32  (batch, 12, 8, 8)" in lines
    assert "    logits  float32  (batch, 10)" in lines
    assert "  task: multi-label; output: logits (sigmoid >= 0.5)" in lines
    assert "  players (card order): sar = VV, VH (channels 10-11); opt = " in text
    assert any(ln.split()[:5] == ["10", "VV", "sar", "0", "[-25,"] for ln in lines)
    assert "      9  Water" in lines
    assert f"    checkpoint_sha256: {'ab' * 32}" in lines

    bare = onnx.load(str(out))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    text = describe_model(tmp_path / "bare.onnx")
    assert "model card: none; write a card JSON" in text and "(batch, 12, 8, 8)" in text


def test_presets_are_valid_and_faithful() -> None:
    for name, p in PRESETS.items():
        for task in p.tasks:
            card = make_card(
                name,
                task,
                architecture="x",
                fusion="early",
                checkpoint_sha256=None,
                random_init=True,
            )
            assert card.modality_names[0] == "sar" or "VV" not in card.channels
            assert ModelCard.from_json(card.to_json()) == card
    s1s2 = make_card(
        "sen12ms-s1s2",
        "single-label",
        architecture="resnet50",
        fusion="early",
        checkpoint_sha256=None,
        random_init=True,
    )
    assert s1s2.channels[:3] == ("B02", "B03", "B04") and s1s2.channels[-2:] == ("VV", "VH")
    assert (s1s2.height, s1s2.n_classes) == (256, 10)
    vv = s1s2.transform("VV")
    assert (vv.nan, vv.clip, vv.mean, vv.std) == (0.0, (-25.0, 0.0), -11.76858, 4.525339)
    b12 = s1s2.transform("B12")
    assert (b12.nan, b12.clip, b12.mean, b12.std) == (None, None, 1356.0801, 991.48016)
    ben = make_card(
        "bigearthnet-mm",
        "multi-label",
        architecture="vgg16",
        fusion="early",
        checkpoint_sha256=None,
        random_init=False,
    )
    assert ben.channels[:4] == ("B04", "B03", "B02", "B08") and ben.n_classes == 19
    assert (
        round(ben.transform("VV").mean, 2) == -12.62 and round(ben.transform("VH").std, 2) == 5.46
    )
    assert ben.height == 120
    with pytest.raises(SarevalError, match="supports task multi-label"):
        make_card(
            "bigearthnet-mm",
            "single-label",
            architecture="vgg16",
            fusion="early",
            checkpoint_sha256=None,
            random_init=False,
        )
    with pytest.raises(SarevalError, match="unknown preset"):
        make_card(
            "sen12ms",
            "single-label",
            architecture="x",
            fusion="early",
            checkpoint_sha256=None,
            random_init=False,
        )


def test_card_with_statistics() -> None:
    card = make_card(
        "study-resnet18",
        "single-label",
        architecture="resnet18",
        fusion="early",
        checkpoint_sha256=None,
        random_init=False,
    )
    assert card.n_channels == 15 and card.modality_names == ("sar", "opt")
    bands = card.channels
    mean = {b: 100.0 + i for i, b in enumerate(bands)} | {"B99-not-a-channel": 1.0}
    std = {b: 10.0 + i for i, b in enumerate(bands)}
    std["B10"] = 0.0  # constant in training: kept finite
    out = card_with_statistics(card, mean, std)
    assert out.transform("B02").mean == 101.0 and out.transform("B02").std == 11.0
    assert out.transform("B02").clip == (0.0, 10000.0)
    assert out.transform("VV").nan == 0.0 and out.transform("VV").clip == (-25.0, 0.0)
    assert out.transform("B10").std == 1.0
    assert out.provenance["statistics"] == "training store"
    del mean["VH"]
    with pytest.raises(SarevalError, match=r"no training statistics for channels \['VH'\]"):
        card_with_statistics(card, mean, std)
