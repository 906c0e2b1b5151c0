"""A hostile ``.pt2`` never runs code: every command that opens model files, and the API.

The payload is a pickle whose ``__reduce__`` calls ``builtins.open(marker, "w")``: if anything
unpickles it unrestricted, the marker file appears. ``torch.export.load`` itself does run it
(the first test proves the archive is really hostile), sareval must not.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from sareval.card import make_card
from sareval.cli import cli
from sareval.errors import InputFileError
from sareval.export.torchscript_export import export_program
from sareval.models.pt2 import load_program


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(12, 4, 3, padding=1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class _Payload:
    """Unpickling this creates ``marker`` (a file write stands in for any code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str, str]]:
        return (open, (self.marker, "w"))


def _rewrite(src: Path, dst: Path, edit: Callable[[str, bytes], bytes | None]) -> None:
    """Copy the zip ``src`` to ``dst``; ``edit(name, data)`` returns new bytes (None: keep)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            new = edit(info.filename, data)
            zout.writestr(info, data if new is None else new)


@pytest.fixture
def clean_pt2(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    card = make_card(
        "sen12ms-s1s2", "single-label", architecture="tiny", fusion="early",
        checkpoint_sha256=None, random_init=True, input_size=8,
    )  # fmt: skip
    out = tmp_path / "clean.pt2"
    export_program(_Net().eval(), card, out, batch_sizes=(1, 3))
    return out


def _sample_inputs_payload(clean: Path, dst: Path, marker: Path) -> Path:
    evil = pickle.dumps(_Payload(marker))
    _rewrite(clean, dst, lambda n, d: evil if "/data/sample_inputs/" in n else None)
    return dst


def _pickled_weight_payload(clean: Path, dst: Path, marker: Path) -> Path:
    """The first weight marked ``use_pickle`` and replaced by the payload."""
    with zipfile.ZipFile(clean) as z:
        name = next(n for n in z.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(z.read(name))
    first = next(iter(config["config"].values()))
    first["use_pickle"] = True
    target = first["path_name"]

    def edit(n: str, d: bytes) -> bytes | None:
        if n == name:
            return json.dumps(config).encode()
        if n.endswith("/data/weights/" + target):
            return pickle.dumps(_Payload(marker))
        return None

    _rewrite(clean, dst, edit)
    return dst


def _opaque_constant_payload(clean: Path, dst: Path, marker: Path) -> Path:
    """A constant ``opaque_obj_0`` (torch.export.load reads it with plain pickle.loads)."""
    root = zipfile.ZipFile(clean).namelist()[0].split("/")[0]
    cfg_name = f"{root}/data/constants/model_constants_config.json"
    config = json.loads(zipfile.ZipFile(clean).read(cfg_name))
    config["config"]["evil"] = {
        "path_name": "opaque_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None,
    }  # fmt: skip

    def edit(n: str, d: bytes) -> bytes | None:
        return json.dumps(config).encode() if n == cfg_name else None

    _rewrite(clean, dst, edit)
    with zipfile.ZipFile(dst, "a") as z:
        z.writestr(f"{root}/data/constants/opaque_obj_0", pickle.dumps(_Payload(marker)))
    return dst


HOSTILE = {
    "sample-inputs": _sample_inputs_payload,
    "pickled-weight": _pickled_weight_payload,
    "opaque-constant": _opaque_constant_payload,
}


def test_torch_export_load_itself_runs_the_payload(clean_pt2: Path, tmp_path: Path) -> None:
    """The archive is really hostile: torch's own loader executes it (why sareval has its own)."""
    marker = tmp_path / "marker"
    evil = _sample_inputs_payload(clean_pt2, tmp_path / "evil.pt2", marker)
    with contextlib.suppress(Exception):
        torch.export.load(str(evil))
    assert marker.exists()


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_no_command_runs_a_pt2_payload(
    kind: str, clean_pt2: Path, tiny_store: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    evil = HOSTILE[kind](clean_pt2, tmp_path / "evil.pt2", marker)
    commands = [
        ["info", str(evil)],
        ["card", "check", str(evil)],
        ["shape", "-m", str(evil), "-d", str(tiny_store), "-s", "clear", "--backend", "torch",
         "--out", str(tmp_path / "r.json")],
    ]  # fmt: skip
    runner = CliRunner()
    for args in commands:
        result = runner.invoke(cli, args)
        assert not marker.exists(), f"{kind}: sareval {args[0]} ran the payload"
        if kind == "sample-inputs":  # never read: the program itself is intact
            assert result.exit_code == 0, (args, result.output)
        else:
            assert result.exit_code == 1, (args, result.output)
            assert "Traceback" not in result.output
            lines = result.output.strip().splitlines()
            assert lines[-1].lower().startswith("error: ") and str(evil) in lines[-1]
            assert "refused" in lines[-1] or "not a readable" in lines[-1]
    if kind == "sample-inputs":
        load_program(evil)
    else:
        with pytest.raises(InputFileError, match="refused"):
            load_program(evil)
    assert not marker.exists()


def test_safe_loader_equals_torch_loader_on_a_clean_file(clean_pt2: Path) -> None:
    x = torch.randn(5, 12, 8, 8)
    ours = load_program(clean_pt2).module()
    theirs = torch.export.load(str(clean_pt2)).module()
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
