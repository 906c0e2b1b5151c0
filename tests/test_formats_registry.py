"""The model-file registry (``sareval/formats.py``) is the only reader.

Every suffix ``sareval export`` accepts is written with the exporter's writer and read back by
``info``, ``card check`` and ``shape`` (CLI), with identical counts whatever the file kind;
weights files (state dicts, checkpoints) get their own one-line error under every command and
are never unpickled; an ONNX graph that fails ``onnx.checker`` is one line naming the file; a
weights file missing one key names that key.
"""

from __future__ import annotations

import json
import pathlib
from pathlib import Path

import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper
from shape_testing import get_assets

import sareval
from sareval.card import ModelCard, set_onnx_card
from sareval.cli import cli
from sareval.errors import CardError, InputFileError
from sareval.export.build import write_model
from sareval.formats import CHECKPOINT_SUFFIXES, FORMATS, all_suffixes, format_of


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory):
    return get_assets(tmp_path_factory)


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def one_error_line(code: int, out: str) -> str:
    """The single ``error: ...`` line of a refused command (exit status 1, no traceback)."""
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert code == 1 and "Traceback" not in out, out
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, out
    return errors[0]


def test_export_help_names_every_registry_suffix() -> None:
    code, out = invoke("export", "--help")
    assert code == 0
    text = " ".join(out.split())
    for suffix in all_suffixes():
        assert suffix in text, suffix
    assert {f.kind for f in FORMATS} == {"onnx", "torchscript", "torch-export"}
    for f in FORMATS:
        assert f.kind in text
        assert all(format_of(f"m{s.upper()}").kind == f.kind for s in f.suffixes)
    # the writers take their suffixes from the registry: none of their own
    from sareval.export import torchscript_export as ts

    assert not [name for name in vars(ts) if name.endswith("SUFFIXES")]


def test_every_suffix_is_read_by_info_card_check_and_shape(assets, tmp_path: Path) -> None:
    task = "single-label"
    d = assets.cards[task].to_dict()
    d["input"].update(height=8, width=8)  # the exporters' parity check needs a size
    card, net = ModelCard.from_dict(d), assets.nets[task]
    results = {}
    for suffix in all_suffixes():
        path = tmp_path / f"model{suffix}"
        write_model(net, card, path, fmt=format_of(path).kind, echo=lambda _: None)
        assert ModelCard.read(path) == card
        code, out = invoke("info", path)
        assert code == 0, out
        assert f"model card: {card.name}" in out and "classes (6)" in out
        code, out = invoke("card", "check", path)
        assert code == 0 and out.startswith(f"ok: {path} fits its card"), out
        r = tmp_path / f"r{suffix.replace('.', '_')}.json"
        code, out = invoke("shape", "-m", path, "-d", assets.store, "-s", "clear", "--out", r)
        assert code == 0, out
        doc = json.loads(r.read_text())
        assert doc["provenance"]["model"]["path"].endswith(path.name)
        results[suffix] = (doc["counts"], doc["metrics"])
    first = results[".onnx"]
    for suffix, values in results.items():  # the same network: the same counts, every kind
        assert values == first, suffix


def state_dict_files(tmp_path: Path) -> dict[str, Path]:
    """A state dict saved with torch.save under every model and weights suffix, plus a legacy
    (non-zip) pickle, and a torch.save zip whose unpickling would create ``touched``."""
    net = torch.nn.Linear(3, 2)
    out = {}
    for suffix in (*all_suffixes(), ".pth", ".ckpt"):
        out[suffix] = tmp_path / f"weights{suffix}"
        torch.save(net.state_dict(), out[suffix])
    out["legacy"] = tmp_path / "legacy.pt"
    torch.save(net.state_dict(), out["legacy"], _use_new_zipfile_serialization=False)

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (pathlib.Path.touch, (tmp_path / "touched",))

    out["payload"] = tmp_path / "payload.pt"
    torch.save({"weight": Payload()}, out["payload"])
    return out


def test_weights_files_get_their_own_error_everywhere(assets, tmp_path: Path) -> None:
    files = state_dict_files(tmp_path)
    for name, path in files.items():
        for args in (
            ("info", path),
            ("card", "check", path),
            ("shape", "-m", path, "-d", assets.store, "-s", "clear"),
        ):
            line = one_error_line(*invoke(*args))
            assert line.startswith(f"error: {path}: "), line
            assert "not a model file" in line and "export it" in line, line
            if name in all_suffixes() or name in ("payload",):
                assert "a state dict or other torch.save object" in line, line
            if name == "legacy":
                assert "legacy torch.save" in line, line
        with pytest.raises(InputFileError, match="not a model file"):
            ModelCard.read(path)
        with sareval.open_store(assets.store) as st:
            with pytest.raises(InputFileError, match="not a model file"):
                sareval.evaluate(path, st.subset("clear"))
            with pytest.raises(InputFileError, match="not a model file"):  # card given: no read
                sareval.evaluate(path, st.subset("clear"), card=assets.cards["single-label"])
    assert not (tmp_path / "touched").exists()  # nothing was unpickled
    for suffix in CHECKPOINT_SUFFIXES:  # refused by suffix, whatever the bytes
        path = tmp_path / f"other{suffix}"
        path.write_bytes(b"\0")
        with pytest.raises(CardError, match=rf"other{suffix}: .*, not a model file"):
            ModelCard.read(path)


def test_the_exporters_reload_through_the_registry(assets, tmp_path: Path) -> None:
    """The TorchScript parity check reads the file with the registry's loader: weights under a
    model suffix are refused by name (nothing unpickled), as every other reader refuses them."""
    from sareval.export.parity import check_torchscript_parity

    files = state_dict_files(tmp_path)
    card = assets.cards["single-label"]
    for name in (".pt", "payload", "legacy"):
        with pytest.raises(InputFileError, match="not a model file") as e:
            check_torchscript_parity(torch.nn.Linear(3, 2), files[name], card)
        assert e.value.path == files[name]
    assert not (tmp_path / "touched").exists()


def failing_checker_onnx(path: Path, card: ModelCard) -> Path:
    """A graph whose only node is an operator no opset defines (fails onnx.checker)."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", card.n_channels, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", card.n_classes])
    graph = helper.make_graph([helper.make_node("NoSuchOp", ["input"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph)
    set_onnx_card(model, card)
    onnx.save(model, str(path))
    return path


def test_onnx_checker_failure_is_one_line_naming_the_file(assets, tmp_path: Path) -> None:
    path = failing_checker_onnx(tmp_path / "bad.onnx", assets.cards["single-label"])
    for args in (
        ("card", "check", path),
        ("shape", "-m", path, "-d", assets.store, "-s", "clear"),
    ):
        line = one_error_line(*invoke(*args))
        assert line.startswith(f"error: {path}: not a valid ONNX model (onnx.checker: ")
        assert "NoSuchOp" in line
    code, out = invoke("info", path)  # info still describes what the file holds
    assert code == 0 and "NoSuchOp" not in out and "model card: tiny" in out


def test_a_weights_file_missing_one_key_names_it(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from sareval.models.checkpoint import load_checkpoint
    from sareval.models.registry import build_model
    from sareval.models.resnet import to_timm_layout

    model = build_model("resnet18", 12, 10)
    timm = to_timm_layout(model.state_dict())
    native = model.state_dict()
    for layout, state, key in (
        ("timm", timm, "fc.weight"),  # the key that told the layouts apart
        ("timm", timm, "layer1.0.conv1.weight"),
        ("timm", timm, "layer3.1.bn2.bias"),
        ("native", native, "FC.bias"),
    ):
        path = tmp_path / f"{layout}.safetensors"
        save_file({k: v.clone() for k, v in state.items() if k != key}, path)
        with pytest.raises(InputFileError) as e:
            load_checkpoint(build_model("resnet18", 12, 10), path)
        msg = str(e.value)
        assert msg.endswith(f"does not match the architecture: 1 missing key: {key}"), msg
    extra = {**native, "head.extra": torch.zeros(1)}
    extra.pop("FC.weight")
    save_file({k: v.clone() for k, v in extra.items()}, tmp_path / "two.safetensors")
    with pytest.raises(InputFileError, match=r"1 missing key: FC.weight; 1 unexpected key: head"):
        load_checkpoint(build_model("resnet18", 12, 10), tmp_path / "two.safetensors")


def test_info_refuses_other_files_listing_the_registry(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    line = one_error_line(*invoke("info", tmp_path / "notes.txt"))
    assert all(s in line for s in all_suffixes(cards=True)), line


@pytest.mark.slow
def test_sareval_export_every_suffix_then_info_card_check_shape(tmp_path: Path) -> None:
    """The real command on a real architecture (resnet18 at 32 px, random weights)."""
    import numpy as np

    from sareval.classes import IGBP10

    rng = np.random.default_rng(0)
    n = 6
    s1 = rng.normal(-14, 4, size=(n, 2, 32, 32)).astype(np.float32)
    s2 = rng.integers(0, 5000, size=(n, 13, 32, 32)).astype(np.uint16)
    store = sareval.write_store(
        tmp_path / "s.h5", {"s1": s1, "s2": s2}, {"igbp": (np.arange(n) % 10, IGBP10)}
    )
    base = ("--arch", "resnet18", "--preset", "sen12ms-s1s2", "--task", "single-label")
    counts = {}
    for suffix in all_suffixes():
        path = tmp_path / f"k{suffix}"
        code, out = invoke("-q", "export", *base, "--input-size", "32", "--out", path)
        assert code == 0 and path.is_file(), out
        code, out = invoke("info", path)
        assert code == 0 and "model card: sen12ms-s1s2 resnet18" in out, out
        code, out = invoke("card", "check", path)
        assert code == 0 and out.startswith("ok: "), out
        r = tmp_path / f"r{suffix.replace('.', '_')}.json"
        code, out = invoke("-q", "shape", "-m", path, "-d", store, "-s", "all", "--out", r)
        assert code == 0, out
        counts[suffix] = json.loads(r.read_text())["counts"]
    assert all(c == counts[".onnx"] for c in counts.values())
