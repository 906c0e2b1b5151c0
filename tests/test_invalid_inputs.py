"""Inputs no evaluation may compute on are refused before anything is counted (issue 19):
multi-label labels other than 0 / 1, complex images, cloud cover outside [0, 1], batches whose
parts disagree, a store path that is a folder; resources are bounded (threads clamped to the
cores, a torchrun rendezvous that fails after a stated timeout instead of retrying)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto
from test_model_outputs import onnx_model

import sareval
from sareval.bands import S2_BANDS
from sareval.cli import cli
from sareval.cores import default_workers
from sareval.errors import SarevalError
from sareval.evaluator.distributed import TORCHRUN_VARIABLES

CLASSES = ("water", "forest", "urban", "crop")
N = 10


def make_card(task: str) -> sareval.ModelCard:
    base = sareval.ModelCard.from_preset("sen12ms-s1s2", task=task, input_size=8)
    return dataclasses.replace(base, class_names=CLASSES)


def make_data(task: str, seed: int = 19) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, N) if task == "single-label" else (rng.random((N, 4)) < 0.4) * 1.0
    return {
        "s1": rng.normal(-12, 4, size=(N, 2, 8, 8)).astype(np.float32),
        "s2": rng.integers(0, 4000, size=(N, 13, 8, 8)).astype(np.uint16),
        "label": y,
    }


def net(card: sareval.ModelCard) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(card.n_channels, 4)
    )


# --- labels, images, cloud cover: arrays ---------------------------------------------------------
@pytest.mark.parametrize("bad", [2.0, np.nan, 0.5, -1.0])
def test_multi_label_labels_other_than_0_or_1_are_refused(bad: float) -> None:
    card, data = make_card("multi-label"), make_data("multi-label")
    data["label"][3, 2] = bad
    with pytest.raises(SarevalError) as e:
        sareval.evaluate(net(card), data, card=card)
    assert str(e.value) == (
        f"labels: sample 3, class column 2 holds {bad:g}; multi-hot labels are 0 or 1"
    )


@pytest.mark.parametrize("sensor", ["s1", "s2"])
def test_complex_images_are_refused_naming_the_sensor(sensor: str) -> None:
    card, data = make_card("single-label"), make_data("single-label")
    data[sensor] = data[sensor].astype(np.complex64)
    with pytest.raises(SarevalError, match=rf"^data\['{sensor}'\] \(sensor '{sensor}'\): "
                       r"complex64 values; images must be real numbers$"):  # fmt: skip
        sareval.evaluate(net(card), data, card=card)


@pytest.mark.parametrize("bad", [2.0, -0.1, np.inf])
def test_cloud_cover_outside_0_1_is_refused(bad: float) -> None:
    card, data = make_card("single-label"), make_data("single-label")
    cover = np.linspace(0, 1, N)
    cover[4] = bad
    with pytest.raises(SarevalError, match=rf"^cloud_cover: sample 4 holds {bad:g}; cloud cover "
                       r"is a fraction in \[0, 1\] \(NaN: unknown\)$"):  # fmt: skip
        sareval.evaluate(net(card), data, card=card, cloud_cover=cover)


def test_nan_cloud_cover_means_unknown() -> None:
    card, data = make_card("single-label"), make_data("single-label")
    edges = [0, 0.5, 1]
    plain = sareval.evaluate(net(card), data, card=card, cloud_cover_bins=edges)
    unknown = sareval.evaluate(
        net(card), data, card=card, cloud_cover=np.full(N, np.nan), cloud_cover_bins=edges
    )
    assert unknown.counts == plain.counts
    assert [b["n_samples"] for b in unknown.by_cloud_cover] == [0, 0, N]


# --- batches: the protocol as the runner consumes it ---------------------------------------------
class Batches:
    """An iterable of batched dicts (a DataLoader's shape); ``tamper(i, batch)`` edits one."""

    def __init__(self, data: dict[str, np.ndarray], size: int, tamper: Any = None) -> None:
        self.data, self.size, self.tamper = data, size, tamper

    def __iter__(self) -> Any:
        for i, a in enumerate(range(0, N, self.size)):
            batch = {k: torch.from_numpy(np.asarray(v[a : a + self.size])) for k, v in
                     self.data.items()}  # fmt: skip
            yield self.tamper(i, batch) if self.tamper else batch


def torch_data(batches: Batches) -> sareval.TorchData:
    return sareval.TorchData(
        batches, bands={"s1": ["VV", "VH"], "s2": list(S2_BANDS)}, class_names=list(CLASSES)
    )


def test_a_batch_with_3_labels_for_4_samples_is_refused_naming_it() -> None:
    card, data = make_card("single-label"), make_data("single-label")

    def drop_label(i: int, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**batch, "label": batch["label"][:-1]} if i == 1 else batch

    with pytest.raises(SarevalError) as e:
        sareval.evaluate(net(card), torch_data(Batches(data, 4, drop_label)), card=card)
    assert str(e.value) == (
        "(Batches): batch 1 (from sample 4): its parts hold different numbers of samples "
        "(sensor 's1': 4, sensor 's2': 4, labels: 3, cloud_cover: 3, ids: 3; positions: 3)"
    )
    # untampered, the same stream evaluates as the arrays do
    whole = sareval.evaluate(net(card), data, card=card)
    assert sareval.evaluate(net(card), torch_data(Batches(data, 4)), card=card).counts == (
        whole.counts
    )


def test_a_batch_with_a_label_of_2_is_refused() -> None:
    card, data = make_card("multi-label"), make_data("multi-label")

    def two(i: int, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if i == 2:
            batch["label"] = batch["label"].clone()
            batch["label"][1, 3] = 2
        return batch

    with pytest.raises(SarevalError) as e:
        sareval.evaluate(net(card), torch_data(Batches(data, 3, two)), card=card)
    assert str(e.value) == (
        "(Batches): batch 2 (from sample 6): labels: sample 7, class column 3 holds 2; "
        "multi-hot labels are 0 or 1"
    )


def test_a_complex_batch_is_refused_naming_the_sensor() -> None:
    card, data = make_card("single-label"), make_data("single-label")

    def to_complex(i: int, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**batch, "s1": batch["s1"].to(torch.complex64)} if i == 1 else batch

    with pytest.raises(SarevalError, match=r"^\(Batches\): batch 1 \(from sample 5\): sensor "
                       r"'s1': complex64 values; images must be real numbers$"):  # fmt: skip
        sareval.evaluate(net(card), torch_data(Batches(data, 5, to_complex)), card=card)


# --- stores --------------------------------------------------------------------------------------
def small_store(path: Path) -> Path:
    data = make_data("single-label")
    return sareval.write_store(
        path, {"s1": data["s1"], "s2": data["s2"]}, {"y": (data["label"], CLASSES)}
    )


def test_a_store_path_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "store.h5"
    folder.mkdir()
    with pytest.raises(SarevalError, match=rf"^{folder}: is a folder, not a store file$"):
        sareval.open_store(folder)
    card = make_card("single-label")
    with pytest.raises(SarevalError, match="is a folder, not a store file"):
        sareval.evaluate(net(card), (folder, "all"), card=card)


def export_model(tmp_path: Path) -> Path:
    return onnx_model(make_card("single-label"), TensorProto.FLOAT, 4, tmp_path / "m.onnx")


def test_cli_store_folder_and_threads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model, store = export_model(tmp_path), small_store(tmp_path / "s.h5")
    env = {k: None for k in TORCHRUN_VARIABLES}
    folder = tmp_path / "folder.h5"
    folder.mkdir()
    args = ["shape", "-m", str(model), "-s", "all"]
    done = CliRunner().invoke(cli, [*args, "-d", str(folder)], env=env)
    assert done.exit_code == 1, done.output
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {folder}: is a folder, not a store file"
    )
    out = tmp_path / "r.json"
    with caplog.at_level(logging.WARNING, logger="sareval"):
        done = CliRunner().invoke(
            cli, [*args, "-d", str(store), "--threads", "100000", "-o", str(out)], env=env
        )
    assert done.exit_code == 0, done.output
    cores = default_workers()
    assert json.loads(out.read_text())["config"]["threads"] == cores
    note = (
        f"ShapeConfig.execution.threads: 100000 is more than the {cores} cores this process may use"
    )
    assert [r.getMessage() for r in caplog.records] == [f"{note}; using {cores}"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sareval"):
        assert sareval.ShapeConfig(threads=100000).execution.threads == cores
        assert sareval.ShapeConfig(threads=cores).execution.threads == cores
    assert len(caplog.records) == 1


# --- torchrun rendezvous -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("addr", ["nonexistent.invalid", "127.0.0.1"])
def test_an_unreachable_rendezvous_fails_after_its_timeout(addr: str, tmp_path: Path) -> None:
    """WORLD_SIZE=2 with no second process: an address that does not resolve fails at once;
    a reachable one after $SAREVAL_RENDEZVOUS_TIMEOUT seconds; one error line, exit 1."""
    model, store = export_model(tmp_path), small_store(tmp_path / "s.h5")
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARIABLES}
    env |= {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": addr,
            "MASTER_PORT": str(free_port()), "SAREVAL_RENDEZVOUS_TIMEOUT": "2"}  # fmt: skip
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "sareval", "-q", "shape", "-m", str(model), "-d", str(store),
         "-s", "all"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - t0 < 60
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    if addr == "nonexistent.invalid":
        assert lines[0].startswith("error: MASTER_ADDR: cannot resolve 'nonexistent.invalid'")
    else:
        assert lines[0].startswith(
            f"error: MASTER_ADDR: the torchrun rendezvous at 127.0.0.1:{env['MASTER_PORT']} "
            "(rank 0 of 2) did not complete within 2 s ($SAREVAL_RENDEZVOUS_TIMEOUT)"
        )


def test_the_rendezvous_timeout_variable_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    from sareval.evaluator.distributed import RENDEZVOUS_TIMEOUT, rendezvous_timeout

    assert rendezvous_timeout({}) == RENDEZVOUS_TIMEOUT == 60
    assert rendezvous_timeout({"SAREVAL_RENDEZVOUS_TIMEOUT": "2.5"}) == 2.5
    for bad in ("0", "-1", "nan", "soon", "1e9"):
        with pytest.raises(SarevalError, match=r"^SAREVAL_RENDEZVOUS_TIMEOUT: "):
            rendezvous_timeout({"SAREVAL_RENDEZVOUS_TIMEOUT": bad})
