"""reBEN models: a ResNet50 in the torchvision / timm key layout loads strictly from
``.safetensors`` and ``.pth``, exports with a reBEN preset and runs ``sareval shape`` on a
synthetic reBEN store.

The timm-layout state dict is built here from torchvision's ResNet50 definition (conv1, bn1,
layer1..4 of 3, 4, 6, 3 bottlenecks with a downsample in each first block, fc), independently of
:mod:`sareval.models.resnet`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sareval.card import make_card
from sareval.cli import cli
from sareval.errors import InputFileError
from sareval.models import build_model, load_checkpoint
from sareval.presets import REBEN_CLASSES

save_file = pytest.importorskip("safetensors.torch").save_file


def _bn(prefix: str, c: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.weight": torch.rand(c, generator=g) + 0.5,
        f"{prefix}.bias": torch.randn(c, generator=g) * 0.1,
        f"{prefix}.running_mean": torch.randn(c, generator=g) * 0.1,
        f"{prefix}.running_var": torch.rand(c, generator=g) + 0.5,
        f"{prefix}.num_batches_tracked": torch.tensor(7),
    }


def timm_resnet50_state(c_in: int, n_classes: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random ResNet50 state dict with torchvision's / timm's keys and shapes."""
    g = torch.Generator().manual_seed(seed)

    def conv(c_out: int, c: int, k: int) -> torch.Tensor:
        return torch.randn(c_out, c, k, k, generator=g) * (2 / (c * k * k)) ** 0.5

    state = {"conv1.weight": conv(64, c_in, 7), **_bn("bn1", 64, g)}
    c = 64
    for i, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True)):
        for j in range(blocks):
            p = f"layer{i + 1}.{j}"
            state |= {f"{p}.conv1.weight": conv(width, c, 1), **_bn(f"{p}.bn1", width, g)}
            state |= {f"{p}.conv2.weight": conv(width, width, 3), **_bn(f"{p}.bn2", width, g)}
            state |= {f"{p}.conv3.weight": conv(4 * width, width, 1)}
            state |= _bn(f"{p}.bn3", 4 * width, g)
            if j == 0:
                state |= {f"{p}.downsample.0.weight": conv(4 * width, c, 1)}
                state |= _bn(f"{p}.downsample.1", 4 * width, g)
            c = 4 * width
    state["fc.weight"] = torch.randn(n_classes, 2048, generator=g) * 0.01
    state["fc.bias"] = torch.randn(n_classes, generator=g) * 0.1
    return state


def test_timm_layout_loads_strictly_from_safetensors_and_pth(tmp_path: Path) -> None:
    state = timm_resnet50_state(12, 19)
    assert len(state) == 320  # torchvision resnet50().state_dict() has 320 entries
    save_file(state, tmp_path / "m.safetensors")
    torch.save(state, tmp_path / "m.pth")
    # the ConfigILM wrapper of the reBEN models, without the BatchNorm counters
    wrapped = {f"model.vision_encoder.{k}": v for k, v in state.items()}
    wrapped = {k: v for k, v in wrapped.items() if not k.endswith("num_batches_tracked")}
    save_file(wrapped, tmp_path / "wrapped.safetensors")
    for name in ("m.safetensors", "m.pth", "wrapped.safetensors"):
        model = build_model("resnet50", 12, 19)
        info = load_checkpoint(model, tmp_path / name)
        assert len(info.sha256) == 64
        torch.testing.assert_close(model.conv1.weight, state["conv1.weight"], rtol=0, atol=0)
        layer3_block5 = model.encoder[6][5]
        torch.testing.assert_close(
            layer3_block5.bn2.running_var, state["layer3.5.bn2.running_var"], rtol=0, atol=0
        )
        down = model.encoder[7][0].downsample[0].weight
        torch.testing.assert_close(down, state["layer4.0.downsample.0.weight"], rtol=0, atol=0)
        torch.testing.assert_close(model.FC.weight, state["fc.weight"], rtol=0, atol=0)


def test_timm_layout_mismatches_are_one_line(tmp_path: Path) -> None:
    state = timm_resnet50_state(12, 19)
    bad = dict(state)
    del bad["layer2.1.conv2.weight"]
    bad["layer2.1.conv9.weight"] = state["layer2.1.conv2.weight"]
    save_file(bad, tmp_path / "keys.safetensors")
    with pytest.raises(InputFileError, match=r"keys\.safetensors: checkpoint does not match") as e:
        load_checkpoint(build_model("resnet50", 12, 19), tmp_path / "keys.safetensors")
    msg = str(e.value)
    assert "\n" not in msg and "layer2.1.conv2.weight" in msg and "layer2.1.conv9.weight" in msg
    save_file(timm_resnet50_state(12, 10), tmp_path / "classes.safetensors")
    with pytest.raises(InputFileError, match=r"fc\.weight is .*10 classes, the card has 19"):
        load_checkpoint(build_model("resnet50", 12, 19), tmp_path / "classes.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputFileError, match=r"not a readable \.safetensors file"):
        load_checkpoint(build_model("resnet50", 12, 19), tmp_path / "junk.safetensors")


@pytest.mark.slow
def test_export_reben_preset_and_shape_on_reben_store(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    from sareval.preprocess.bigearthnet_v2 import preprocess_bigearthnet_v2
    from sareval.preprocess.synth_bigearthnet_v2 import generate_bigearthnet_v2

    size = 36
    tree = tmp_path / "reben"
    generate_bigearthnet_v2(tree, n_patches=12, size=size, seed=1)
    store = preprocess_bigearthnet_v2(
        tree / "BigEarthNet-S2", tree / "BigEarthNet-S1", tree / "metadata.parquet",
        tmp_path / "reben.h5", workers=1, progress=False,
    )  # fmt: skip
    save_file(timm_resnet50_state(12, 19, seed=3), tmp_path / "x.safetensors")
    runner = CliRunner()
    model = tmp_path / "r50.onnx"
    result = runner.invoke(cli, [
        "-q", "export", "--checkpoint", str(tmp_path / "x.safetensors"), "--arch", "resnet50",
        "--preset", "reben-s1s2-v0.2.0", "--task", "multi-label", "--input-size", str(size),
        "--out", str(model),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = tmp_path / "r.json"
    result = runner.invoke(cli, [
        "-q", "shape", "-m", str(model), "-d", str(store), "-s", "clear", "--batch-size", "4",
        "--out", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    f1 = doc["metrics"]["f1_micro"]
    assert set(f1["V"]) == {"none", "sar", "opt", "sar+opt"}
    assert all(0 <= v <= 1 for v in f1["V"].values())
    assert np.isfinite([f1["relevance"]["sar"], f1["relevance"]["opt"]]).all()
    card = make_card("reben-s1s2-v0.2.0", "multi-label", architecture="resnet50", fusion="early",
                     checkpoint_sha256=None, random_init=True)  # fmt: skip
    assert card.class_names == REBEN_CLASSES and card.channels[:2] == ("VV", "VH")
