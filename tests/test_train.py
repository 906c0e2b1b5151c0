"""`sareval train`: a tiny run end to end, resume after interruption, metrics.jsonl content."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import sareval
from sareval.bands import S1_BANDS, S2_BANDS
from sareval.classes import IGBP10
from sareval.cli import cli
from sareval.commands.train import parse_seeds
from sareval.errors import OutputExistsError, SarevalError
from sareval.store import LabelSpec, SensorSpec, Store, StoreWriter
from sareval.train.loop import TrainConfig, load_training_state, train

SIZE = 32


def write_store(path: Path, n: int = 24, seed: int = 0) -> Path:
    """A SEN12MS-like store (32x32 px) whose class shows in both modalities; half cloudy."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    s1 = rng.normal(-15 + 3 * y[:, None, None, None], 2, (n, 2, SIZE, SIZE)).astype(np.float32)
    s1[1, 0, 0, 0] = np.nan
    s2 = rng.normal(1500 + 800 * y[:, None, None, None], 300, (n, 13, SIZE, SIZE))
    s2 = np.clip(s2, 0, 65535).astype(np.uint16)
    available = rng.random(n) < 0.5
    available[:2] = True
    cloudy = np.where(available[:, None, None, None], 6000, 0).astype(np.uint16)
    cloudy = np.broadcast_to(cloudy, s2.shape).copy()
    ids = [f"ROIs1158_spring_s2_{i // 8}_p{i}.tif" for i in range(n)]
    writer = StoreWriter(
        path, dataset="sen12ms", split="train", default_task="single-label", ids=ids,
        height=SIZE, width=SIZE,
        sensors=[SensorSpec("s1", S1_BANDS, "float32"), SensorSpec("s2", S2_BANDS, "uint16")],
        labels=[LabelSpec("igbp10_single", "index", IGBP10),
                LabelSpec("igbp10_multi", "multi_hot", IGBP10, 0.1)],
        config={"test": "train"}, with_cloudy=True,
    )  # fmt: skip
    writer.write_rows(
        0,
        {"s1": s1, "s2": s2, "s2_cloudy": cloudy},
        {"igbp10_single": y, "igbp10_multi": np.eye(10, dtype=np.uint8)[y]},
        cloud_cover=np.where(available, 0.95, np.nan),
        cloudy_available=available,
    )
    rows = np.arange(n)
    writer.finish({
        "clear": (rows, "s2", "all rows"),
        "cloudy": (rows[available], "s2_cloudy", "rows with a cloudy version"),
    })  # fmt: skip
    return path


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("stores")
    return write_store(d / "train.h5", 16, 0), write_store(d / "val.h5", 8, 1)


def config(stores: tuple[Path, Path], out: Path, **kw: Any) -> TrainConfig:
    base = {
        "data": str(stores[0]), "val": str(stores[1]), "out": str(out), "epochs": 2,
        "batch_size": 8, "cloudy_prob": 0.8, "seed": 3, "device": "cpu", "progress": False,
    }  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def without_timing(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_tiny_run_writes_metrics_checkpoints_and_model(
    stores: tuple[Path, Path], tmp_path: Path
) -> None:
    from sareval.card import read_card

    out = tmp_path / "run"
    result = train(config(stores, out, cloudy_prob=1.0))
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in records] == [1, 2]
    with Store(stores[0]) as s:
        available = s.file["s2_cloudy_available"][()]
        mean_vv = float(s.band_mean("s1")[0])
        std_b02 = float(s.band_std("s2")[1])
    for r in records:
        assert np.isfinite(r["train_loss"]) and r["train_loss"] > 0
        assert r["train_samples"] == 16
        # p = 1: exactly the samples with a cloudy version were read cloudy
        assert r["train_cloudy_fraction"] == pytest.approx(available.mean())
        assert set(r["val"]) == {"clear", "cloudy"}
        for subset, n in (("clear", 8), ("cloudy", None)):
            v = r["val"][subset]
            assert v["players"] == ["sar", "opt"]
            if n:
                assert v["n_samples"] == n
            oa = v["metrics"]["oa"]
            assert set(oa["V"]) == {"none", "sar", "opt", "sar+opt"}
            # efficiency: relevances sum to V(all) - V(none) (Z = 1)
            total = oa["relevance"]["sar"] + oa["relevance"]["opt"]
            assert total == pytest.approx(oa["V"]["sar+opt"] - oa["V"]["none"], abs=1e-12)
    assert result.history[-1]["epoch"] == 2
    state = load_training_state(out / "last.pt")
    assert state["epoch"] == 2 and (out / "best.pt").exists()
    card = read_card(out / "model.onnx")
    assert card.modality_names == ("sar", "opt")
    assert card.transform("VV").mean == pytest.approx(mean_vv, rel=1e-6)
    assert card.transform("B02").std == pytest.approx(std_b02, rel=1e-6)
    assert card.provenance["training"]["cloudy_prob"] == 1.0
    digest = hashlib.sha256((out / "model.pt").read_bytes()).hexdigest()
    assert card.provenance["checkpoint_sha256"] == digest
    # the exported model gives the trained module's outputs through the evaluator's preamble
    from shape_testing import evaluate_doc as evaluate_shape

    via_onnx = evaluate_shape(out / "model.onnx", stores[1], "clear", progress=False)
    assert via_onnx["metrics"]["oa"]["V"] == records[-1]["val"]["clear"]["metrics"]["oa"]["V"]


def test_resume_after_interruption_equals_uninterrupted_run(
    stores: tuple[Path, Path], tmp_path: Path
) -> None:
    full = tmp_path / "full"
    train(config(stores, full, epochs=2, val_subsets=("cloudy",)), export=False)

    cut = tmp_path / "cut"

    def interrupt(record: dict[str, Any]) -> None:
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config(stores, cut, epochs=2, val_subsets=("cloudy",)), on_epoch_end=interrupt,
              export=False)  # fmt: skip
    after_one = load_training_state(cut / "last.pt")
    assert after_one["epoch"] == 1
    assert len((cut / "metrics.jsonl").read_text().splitlines()) == 1
    resumed = train(config(stores, cut, epochs=2, val_subsets=("cloudy",)), export=False)
    assert resumed.resumed_from == 1 and resumed.epochs_run == 1

    a, b = load_training_state(full / "last.pt"), load_training_state(cut / "last.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert without_timing(a["history"]) == without_timing(b["history"])
    ha = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    hb = [json.loads(x) for x in (cut / "metrics.jsonl").read_text().splitlines()]
    assert without_timing(ha) == without_timing(hb)
    assert ha[-1]["val"]["cloudy"]["metrics"]["oa"]["V"]
    # the weights did move in the resumed epoch: the comparison above can fail
    c = after_one["model"]
    assert any(not torch.equal(v, c[k]) for k, v in a["model"].items() if v.is_floating_point())


def test_existing_output_and_changed_config_are_refused(
    stores: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    train(config(stores, out, epochs=1, val=None), export=False)
    with pytest.raises(SarevalError, match="cloudy_prob"):
        train(config(stores, out, epochs=1, val=None, cloudy_prob=0.0), export=False)
    (out / "model.onnx").write_text("placeholder: a finished run")
    with pytest.raises(OutputExistsError):
        train(config(stores, out, epochs=1, val=None), export=False)
    train(config(stores, out, epochs=1, val=None), overwrite=True, export=False)
    assert not (out / "model.onnx").exists()
    with pytest.raises(SarevalError, match="no validation subset"):
        train(config(stores, tmp_path / "x", val_subsets=("nope",)), export=False)


BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"epochs": 0}, "TrainConfig.epochs: expected an integer >= 1, got 0"),
    ({"batch_size": True}, "TrainConfig.batch_size: expected an integer >= 1, got True"),
    ({"cloudy_prob": 1.5}, "TrainConfig.cloudy_prob: expected a number in [0, 1], got 1.5"),
    ({"cloudy_prob": float("nan")}, "TrainConfig.cloudy_prob: expected a number in [0, 1]"),
    ({"lr": 0.0}, "TrainConfig.lr: expected a finite number > 0, got 0.0"),
    ({"betas": (0.9, 1.0)}, "TrainConfig.betas: expected two numbers in [0, 1)"),
    ({"betas": "ab"}, "TrainConfig.betas: expected two numbers in [0, 1)"),
    ({"task": "regression"}, "TrainConfig.task: 'regression' is not one of single-label, mul"),
    ({"fusion": "middle"}, "TrainConfig.fusion: 'middle' is not one of early, late"),
    ({"arch": "alexnet"}, "TrainConfig.arch: 'alexnet' is not one of resnet18"),
    ({"preset": "nope"}, "TrainConfig.preset: 'nope' is not one of "),
    ({"device": "tpu"}, "TrainConfig.device: 'tpu' is not cpu, cuda or cuda:N"),
    ({"workers": -1}, "TrainConfig.workers: expected an integer >= 0, got -1"),
    ({"weight_decay": -1e-4}, "TrainConfig.weight_decay: expected a finite number >= 0, got"),
    ({"val_subsets": "clear"}, "TrainConfig.val_subsets: expected distinct subset names"),
    ({"val_subsets": ("a", "a")}, "TrainConfig.val_subsets: expected distinct subset names"),
    ({"select_metric": "nope"}, "TrainConfig.select_metric: 'nope' is not one of oa, "),
    ({"data": ""}, "TrainConfig.data: expected a path, got ''"),
    ({"in_memory": 1}, "TrainConfig.in_memory: expected a bool, got 1"),
    ({"evaluation": {"z": "full"}}, "TrainConfig.evaluation: expected a sareval.ShapeConfig"),
    (
        {"evaluation": sareval.ShapeConfig(metrics=["aa"])},
        "TrainConfig.evaluation: ShapeConfig.reporting.metrics must include 'oa'",
    ),
]


@pytest.mark.parametrize("changes, message", BAD_FIELDS, ids=[str(c) for c, _ in BAD_FIELDS])
def test_config_fields_are_checked_once_naming_the_field(
    changes: dict[str, Any], message: str
) -> None:
    base = {"data": "train.h5", "out": "run", "val": "val.h5"}
    with pytest.raises(SarevalError) as info:
        TrainConfig(**{**base, **changes})
    assert str(info.value).startswith(message), str(info.value)
    assert isinstance(info.value, ValueError) and "--" not in str(info.value)


def test_config_is_frozen_and_round_trips(tmp_path: Path) -> None:
    evaluation = sareval.ShapeConfig(baseline="band-mean", metrics=["oa", "aa"], by_class=True)
    cfg = TrainConfig(data=tmp_path / "t.h5", out="run", betas=[0.8, 0.99],
                      val_subsets=["clear"], evaluation=evaluation)  # fmt: skip
    assert cfg.data == str(tmp_path / "t.h5") and cfg.betas == (0.8, 0.99)
    assert cfg.val_subsets == ("clear",) and cfg.selection_metric == "oa"
    with pytest.raises(AttributeError):
        cfg.epochs = 3  # type: ignore[misc]
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["evaluation"] == {"baseline": "band-mean", "metrics": ["oa", "aa"], "by_class": True}
    again = TrainConfig.from_dict(d)
    assert again == cfg and again.evaluation == evaluation
    assert TrainConfig(data="t", out="o").to_dict()["evaluation"] == {}
    # a configuration recorded before ``evaluation``: its ``shape_options`` (old names too)
    old = {**d, "shape_options": {"z": "full", "baseline": "band-mean"}}
    del old["evaluation"]
    upgraded = TrainConfig.from_dict(old)  # read without a deprecation warning
    assert upgraded.evaluation == sareval.ShapeConfig(normalization="full", baseline="band-mean")


def test_cli_names_options_in_config_errors(stores: tuple[Path, Path], tmp_path: Path) -> None:
    args = ["train", "--data", str(stores[0]), "--val", str(stores[1]), "--select-metric",
            "bogus", "--out", str(tmp_path / "r")]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1
    assert "error: --select-metric: 'bogus' is not one of oa, " in res.output, res.output
    assert not (tmp_path / "r").exists()


def test_parse_seeds() -> None:
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("3,1, 7") == [3, 1, 7]
    for bad in ("", "a-b", "1,1"):
        with pytest.raises(SarevalError, match="--seeds"):
            parse_seeds(bad)


@pytest.mark.slow
def test_cli_several_seeds(stores: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = [
        "-q", "train", "--data", str(stores[0]), "--val", str(stores[1]), "--val-subsets",
        "clear", "--cloudy-prob", "0.5", "--epochs", "1", "--batch-size", "8", "--seeds", "0-1",
        "--device", "cpu", "--out", str(out),
    ]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    for s in (0, 1):
        assert (out / f"seed-{s}" / "model.onnx").exists()
        cfg = json.loads((out / f"seed-{s}" / "config.json").read_text())
        assert cfg["seed"] == s and cfg["cloudy_prob"] == 0.5
    assert "seed-1: 1 epochs" in res.output
    # re-running the command skips finished runs and resumes unfinished ones
    last = out / "seed-1" / "last.pt"
    (out / "seed-1" / "model.onnx").unlink()
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "seed-0: complete (1 epochs), skipped" in res.output
    assert (out / "seed-1" / "model.onnx").exists() and last.exists()
    single = [*args[: args.index("--seeds")], *args[args.index("--seeds") + 2 :]]
    single[single.index(str(out))] = str(out / "seed-0")
    res = CliRunner().invoke(cli, single)
    assert res.exit_code == 1 and "output exists" in res.output


def test_resume_onto_other_data_is_refused_and_config_records_digests(
    stores: tuple[Path, Path], tmp_path: Path
) -> None:
    """A run's config.json records absolute store paths and content digests; resuming after the
    store at the same path was replaced by other data is refused, naming the digest."""
    import shutil

    from sareval.store import Store

    data = tmp_path / "train.h5"
    shutil.copy(stores[0], data)
    out = tmp_path / "run"
    train(config(stores, out, data=str(data), epochs=1), export=False)
    record = json.loads((out / "config.json").read_text())
    assert record["data"] == str(data.resolve())
    with Store(data) as st:
        assert record["store_digests"]["data"] == st.content_digest
    data.unlink()
    write_store(data, 16, seed=7)  # other content at the same path
    with pytest.raises(SarevalError, match=r"TrainConfig\.data store content digest differs"):
        train(config(stores, out, data=str(data), epochs=2), export=False)
