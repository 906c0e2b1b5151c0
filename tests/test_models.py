"""Architectures, their state-dict layouts, fusion, and checkpoint import.

Key layouts are checked against lists rebuilt here from the SEN12MS toolbox's description
(``classification/models/ResNet.py`` / ``DenseNet.py``: torchvision blocks, first conv
registered twice, ``FC`` / ``classifier`` heads); parameter counts against torchvision's
published figures for 3 input channels and 1000 classes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from sareval.errors import InputFileError, SarevalError
from sareval.models import (
    ARCHITECTURES,
    arguments_path,
    build_model,
    file_sha256,
    load_checkpoint,
    read_arguments,
    state_dict_from_tf_slim,
)


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.weight": (c,),
        f"{prefix}.bias": (c,),
        f"{prefix}.running_mean": (c,),
        f"{prefix}.running_var": (c,),
        f"{prefix}.num_batches_tracked": (),
    }


def toolbox_resnet50_layout(c_in: int, n_classes: int) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the toolbox's ResNet50 state dict, in order."""
    keys: dict[str, tuple[int, ...]] = {"conv1.weight": (64, c_in, 7, 7)}
    keys["encoder.0.weight"] = (64, c_in, 7, 7)
    keys |= _bn("encoder.1", 64)
    c = 64
    for stage, (width, n_blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True)):
        for j in range(n_blocks):
            p = f"encoder.{4 + stage}.{j}"
            keys[f"{p}.conv1.weight"] = (width, c, 1, 1)
            keys |= _bn(f"{p}.bn1", width)
            keys[f"{p}.conv2.weight"] = (width, width, 3, 3)
            keys |= _bn(f"{p}.bn2", width)
            keys[f"{p}.conv3.weight"] = (4 * width, width, 1, 1)
            keys |= _bn(f"{p}.bn3", 4 * width)
            if j == 0:
                keys[f"{p}.downsample.0.weight"] = (4 * width, c, 1, 1)
                keys |= _bn(f"{p}.downsample.1", 4 * width)
            c = 4 * width
    keys["FC.weight"] = (n_classes, 2048)
    keys["FC.bias"] = (n_classes,)
    return keys


def toolbox_densenet121_layout(c_in: int, n_classes: int) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the toolbox's DenseNet121 state dict, in order."""
    keys: dict[str, tuple[int, ...]] = {"encoder.0.weight": (64, c_in, 7, 7)}
    keys |= _bn("encoder.1", 64)
    c = 64
    for i, n_layers in enumerate((6, 12, 24, 16)):
        for layer in range(1, n_layers + 1):
            p = f"encoder.{4 + 2 * i}.denselayer{layer}"
            keys |= _bn(f"{p}.norm1", c)
            keys[f"{p}.conv1.weight"] = (128, c, 1, 1)
            keys |= _bn(f"{p}.norm2", 128)
            keys[f"{p}.conv2.weight"] = (32, 128, 3, 3)
            c += 32
        if i < 3:
            p = f"encoder.{5 + 2 * i}"
            keys |= _bn(f"{p}.norm", c)
            keys[f"{p}.conv.weight"] = (c // 2, c, 1, 1)
            c //= 2
    keys |= _bn("encoder.11", 1024)
    keys["classifier.weight"] = (n_classes, 65536)
    keys["classifier.bias"] = (n_classes,)
    return keys


def layout(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_resnet50_key_layout_matches_toolbox() -> None:
    model = build_model("resnet50", 12, 10)
    got = layout(model)
    assert list(got.items()) == list(toolbox_resnet50_layout(12, 10).items())
    # 53 convs + 53 batch norms x 5 + FC weight/bias + the duplicated first conv
    assert len(got) == 53 + 53 * 5 + 2 + 1 == 321
    assert got["encoder.4.0.conv1.weight"] == (64, 64, 1, 1)
    assert got["encoder.7.2.bn3.running_var"] == (2048,)
    assert got["FC.weight"] == (10, 2048)
    assert model.conv1 is model.encoder[0]


def test_densenet121_key_layout_matches_toolbox() -> None:
    got = layout(build_model("densenet121", 12, 10))
    assert list(got.items()) == list(toolbox_densenet121_layout(12, 10).items())
    assert len(got) == 120 + 121 * 5 + 2 == 727  # 120 convs, 121 batch norms, classifier
    assert got["encoder.4.denselayer1.norm1.weight"] == (64,)
    assert got["encoder.11.weight"] == (1024,)
    assert got["classifier.weight"] == (10, 65536)


# torchvision's parameter counts (3 channels, 1000 classes); the TF-Slim VGG has the same
# count because fc6 as a 7x7x512 conv holds exactly the weights of Linear(25088, 4096).
# DenseNet121: torchvision's 7,978,856 less its Linear(1024, 1000) plus Linear(65536, 1000).
PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "densenet121": 7_978_856 - 1_025_000 + 65_537_000,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "vgg16-tv": 138_357_544,
    "vgg19-tv": 143_667_240,
}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_parameter_counts(arch: str) -> None:
    with torch.device("meta"):
        model = build_model(arch, 3, 1000)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[arch]


@pytest.mark.parametrize(("arch", "size"), [("resnet18", 32), ("resnet34", 40), ("vgg19-tv", 33)])
def test_output_shape_any_size(arch: str, size: int) -> None:
    torch.manual_seed(0)
    model = build_model(arch, 5, 7).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 5, size, size)).shape == (2, 7)


def test_slim_vgg_on_bigearthnet_input() -> None:
    """120x120 -> 3x3 after pool5; fc6 (7x7, SAME) keeps 3x3; global pool; 19 logits."""
    torch.manual_seed(0)
    model = build_model("vgg16", 12, 19).eval()
    x = torch.randn(1, 12, 120, 120)
    with torch.no_grad():
        pooled = model.features(x)
        assert pooled.shape == (1, 512, 3, 3)
        fc7 = model.relu(model.fc7(model.relu(model.fc6(pooled))))
        assert fc7.shape == (1, 4096, 3, 3)
        logits = model.fc8(fc7.mean(dim=(2, 3)))
        assert logits.shape == (1, 19)
        torch.testing.assert_close(model(x), logits)


def test_densenet_input_size() -> None:
    with pytest.raises(SarevalError, match="densenet121 accepts only 256x256"):
        build_model("densenet121", 12, 10, input_size=128)
    build_model("densenet121", 2, 3, input_size=256)


def test_build_model_bad_arguments() -> None:
    with pytest.raises(SarevalError, match="unknown architecture 'resnet101'"):
        build_model("resnet101", 12, 10)
    with pytest.raises(SarevalError, match="late fusion needs"):
        build_model("resnet18", 12, 10, fusion="late")
    with pytest.raises(SarevalError, match="channel 3 is in modality groups 0 and 1"):
        build_model("resnet18", 4, 2, fusion="late", modality_channels=[[0, 3], [1, 2, 3]])
    with pytest.raises(SarevalError, match=r"channels \[3\] belong to no"):
        build_model("resnet18", 4, 2, fusion="late", modality_channels=[[0], [1, 2]])
    with pytest.raises(SarevalError, match="at least 32 px"):
        build_model("vgg16", 4, 2, input_size=16)


def test_late_fusion_routes_each_modality_to_its_branch() -> None:
    """Output = head(cat(branch_0(x[:, g0]), branch_1(x[:, g1]))) with non-contiguous groups."""
    torch.manual_seed(0)
    groups = [[0, 2, 4], [1, 3, 5, 6]]
    model = build_model("resnet18", 7, 4, fusion="late", modality_channels=groups).eval()
    x = torch.randn(3, 7, 32, 32)
    with torch.no_grad():
        f0 = model.branches[0].forward_features(x[:, groups[0]])
        f1 = model.branches[1].forward_features(x[:, groups[1]])
        expected = model.head(torch.cat([f0, f1], 1))
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
        # a change confined to branch 1's channels leaves branch 0's features unchanged
        y = x.clone()
        y[:, groups[1]] += 1.0
        torch.testing.assert_close(model.branches[0].forward_features(y[:, groups[0]]), f0)
        assert not torch.allclose(model(y), model(x))
    assert model.branches[0].conv1.in_channels == 3
    assert model.branches[1].conv1.in_channels == 4
    assert model.head.in_features == 1024


def _train_batch_norm(model: torch.nn.Module) -> None:
    """Move the running statistics away from (0, 1), as training would; eval mode."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.num_batches_tracked.fill_(1000)
    model.eval()


def _toolbox_checkpoint(
    path: Path, model: torch.nn.Module, arch: str, optimizer: torch.optim.Optimizer
) -> None:
    """Save as the toolbox does (torch 1.4 era: legacy, non-zip serialisation)."""
    state = model.state_dict()
    ck = {
        "epoch": 17,
        "arch": arch,
        "model_state_dict": state,
        "optimizer_state_dict": optimizer.state_dict(),
        "best_prec": 0.6134,
    }
    torch.save(ck, path, _use_new_zipfile_serialization=False)


def test_toolbox_resnet50_checkpoint_loads_and_reproduces(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = build_model("resnet50", 12, 10)
    opt = torch.optim.SGD(source.parameters(), lr=0.01, momentum=0.9)
    _train_batch_norm(source)
    state = source.state_dict()
    assert "conv1.weight" in state and "encoder.0.weight" in state and "FC.weight" in state
    path = tmp_path / "20200526_101051_model_best.pth"
    _toolbox_checkpoint(path, source, "ResNet50", opt)
    with open(path, "rb") as f:  # legacy format: a pickle stream, not a zip archive
        assert f.read(2) != b"PK"

    torch.manual_seed(2)
    target = build_model("resnet50", 12, 10).eval()
    x = torch.randn(2, 12, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(target(x), source(x))
        info = load_checkpoint(target, path)
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)
    assert info.epoch == 17 and info.arch == "ResNet50"
    assert "optimizer_state_dict" in info.wrapper_keys
    assert info.sha256 == file_sha256(path) and len(info.sha256) == 64


def test_toolbox_densenet121_checkpoint_loads_and_reproduces(tmp_path: Path) -> None:
    torch.manual_seed(3)
    source = build_model("densenet121", 12, 10)
    _train_batch_norm(source)
    state = source.state_dict()
    assert "encoder.0.weight" in state and "classifier.weight" in state
    path = tmp_path / "20200601_120000_model_best.pth"
    _toolbox_checkpoint(path, source, "DenseNet121", torch.optim.SGD(source.parameters(), lr=0.1))
    torch.manual_seed(4)
    target = build_model("densenet121", 12, 10).eval()
    load_checkpoint(target, path)
    x = torch.randn(1, 12, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_checkpoint_key_mismatch_lists_keys(tmp_path: Path) -> None:
    model = build_model("resnet18", 12, 10)
    state = {k.replace("FC.", "fc."): v for k, v in model.state_dict().items()}
    path = tmp_path / "renamed.pth"
    torch.save({"model_state_dict": state}, path)
    with pytest.raises(InputFileError) as e:
        load_checkpoint(build_model("resnet18", 12, 10), path)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg
    assert "2 missing keys, e.g. FC.weight, FC.bias" in msg
    assert "2 unexpected keys, e.g. fc.weight, fc.bias" in msg


def test_checkpoint_with_module_prefix_is_named(tmp_path: Path) -> None:
    model = build_model("resnet18", 12, 10)
    path = tmp_path / "dp.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    with pytest.raises(InputFileError, match=r"starts with 'module\.'"):
        load_checkpoint(model, path)


def test_checkpoint_channel_and_class_count_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "s2only.pth"
    torch.save({"model_state_dict": build_model("resnet18", 10, 10).state_dict()}, path)
    with pytest.raises(InputFileError, match="takes 10 input channels, the card has 12"):
        load_checkpoint(build_model("resnet18", 12, 10), path)
    path17 = tmp_path / "igbp17.pth"
    torch.save(build_model("resnet18", 12, 17).state_dict(), path17)  # a bare state dict
    with pytest.raises(InputFileError, match="has 17 classes, the card has 10"):
        load_checkpoint(build_model("resnet18", 12, 10), path17)


def test_checkpoint_needing_full_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "with_args.pth"
    torch.save({"model_state_dict": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(InputFileError) as e:
        load_checkpoint(build_model("resnet18", 12, 10), path)
    assert "weights_only" in str(e.value) and "argparse.Namespace" in str(e.value)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InputFileError, match="not a readable torch checkpoint"):
        load_checkpoint(build_model("resnet18", 12, 10), garbage)


TOOLBOX_ARGUMENTS = """\
data_dir: /work/share/sen12ms
label_split_dir: /home/labels_splits
use_s1: True
use_s2: True
use_RGB: False
IGBP_simple: True
label_type: multi_label
threshold: 0.1
model: DenseNet121
lr: 0.001
"""


def test_read_toolbox_arguments(tmp_path: Path) -> None:
    ck = tmp_path / "20200526_101051_model_best.pth"
    ck.write_bytes(b"")
    (tmp_path / "20200526_101051_arguments.txt").write_text(TOOLBOX_ARGUMENTS)
    (tmp_path / "20190101_000000_arguments.txt").write_text("use_s1: True\n")  # another run
    found = arguments_path(ck)
    assert found == tmp_path / "20200526_101051_arguments.txt"
    run = read_arguments(found)
    assert (run.preset, run.task, run.arch, run.igbp_simple) == (
        "sen12ms-s1s2",
        "multi-label",
        "densenet121",
        True,
    )
    s2 = tmp_path / "s2.txt"
    s2.write_text(TOOLBOX_ARGUMENTS.replace("use_s1: True", "use_s1: False"))
    assert read_arguments(s2).preset == "sen12ms-s2"
    rgb = tmp_path / "rgb.txt"
    rgb.write_text(
        TOOLBOX_ARGUMENTS.replace("use_s2: True", "use_s2: False").replace(
            "use_RGB: False", "use_RGB: True"
        )
    )
    with pytest.raises(InputFileError, match="use_RGB"):
        read_arguments(rgb)
    vgg = tmp_path / "vgg.txt"
    vgg.write_text(TOOLBOX_ARGUMENTS.replace("DenseNet121", "VGG16"))
    with pytest.raises(SarevalError, match="'VGG16' has no sareval architecture"):
        read_arguments(vgg)


@pytest.mark.slow  # ~17 s: two 134M-parameter VGG16s and a 0.5 GB .npz
def test_tf_slim_variables_map_onto_vgg(tmp_path: Path) -> None:
    """TF-Slim names (vgg_16/conv3/conv3_2/weights, HWIO) -> our keys (OIHW), as a .npz."""
    torch.manual_seed(0)
    source = build_model("vgg16", 12, 19).eval()
    arrays: dict[str, np.ndarray] = {"global_step": np.array(1000)}
    for key, t in source.state_dict().items():
        layer, kind = key.removeprefix("features.").split(".")
        block = f"conv{layer[4]}/" if layer.startswith("conv") else ""
        name = f"vgg_16/{block}{layer}/{'weights' if kind == 'weight' else 'biases'}"
        a = t.numpy()
        arrays[name] = a.transpose(2, 3, 1, 0) if kind == "weight" else a  # OIHW -> HWIO
        arrays[name + "/Adam"] = np.zeros(1, np.float32)  # an optimizer slot, ignored
    assert "vgg_16/conv3/conv3_2/weights" in arrays and "vgg_16/fc8/biases" in arrays
    assert arrays["vgg_16/fc6/weights"].shape == (7, 7, 512, 4096)
    path = tmp_path / "vgg16_vars.npz"
    np.savez(path, **arrays)
    torch.manual_seed(1)
    target = build_model("vgg16", 12, 19).eval()
    load_checkpoint(target, path)
    x = torch.randn(1, 12, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)
    del arrays["vgg_16/fc7/biases"]
    with pytest.raises(
        SarevalError, match=r"no TF-Slim variable for 1 model weights, e\.g\. fc7\.bias"
    ):
        state_dict_from_tf_slim(arrays, target)
