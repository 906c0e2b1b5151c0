"""One logged format for relevance per epoch: ``sareval train``'s ``metrics.jsonl`` records and a
Lightning CSVLogger ``metrics.csv`` written by :class:`sareval.lightning.ShapeCallback` carry the
same names (:mod:`sareval.evaluator.log_names`), and ``sareval report`` reads both into the same
history structure and draws the epochs figure from either.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pl = pytest.importorskip("pytorch_lightning")

import sareval  # noqa: E402
from sareval.evaluator.log_names import games_from_names, log_names  # noqa: E402
from sareval.lightning import ShapeCallback, logged_values  # noqa: E402
from sareval.report import make_report  # noqa: E402
from sareval.report.collect import collect  # noqa: E402
from sareval.train.loop import train  # noqa: E402
from tests.test_lightning_callback import (  # noqa: E402
    BANDS,
    Tiny,
    _as_sensors,
    _card,
    _data,
    _loader,
)
from tests.test_train import config, write_store  # noqa: E402


def _summary(doc: dict[str, Any]) -> dict[str, Any]:
    """players and V / relevance / cooperation per metric: what the epochs figure reads."""
    return {
        "players": list(doc["players"]),
        "metrics": {
            m: {"V": e["V"], "relevance": e["relevance"], "cooperation": e.get("cooperation")}
            for m, e in doc["metrics"].items()
        },
    }


def _shape(game: dict[str, Any]) -> tuple[Any, ...]:
    """The structure of a history's validation entry, without its numbers."""
    return (
        tuple(game["players"]),
        tuple((m, tuple(e["V"]), tuple(e["relevance"])) for m, e in game["metrics"].items()),
    )


@pytest.fixture(scope="module")
def lightning_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("lightning")
    x, y = _data(64, 0)
    xv, yv = _data(32, 1)
    callback = ShapeCallback(_as_sensors(xv, yv), config=sareval.ShapeConfig(metrics=["oa"]),
                             card=_card(), bands=BANDS, collapse_share=0.0)  # fmt: skip
    logger = pl.loggers.CSVLogger(d / "logs", name="run")
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", devices=1, logger=logger, limit_train_batches=2,
        callbacks=[callback], enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(Tiny(), _loader(x, y, True), _loader(xv, yv, False))
    return {"csv": Path(logger.log_dir) / "metrics.csv", "callback": callback, "dir": d}


@pytest.fixture(scope="module")
def train_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("train")
    stores = write_store(d / "train.h5", 16, 0), write_store(d / "val.h5", 8, 1)
    out = d / "run"
    evaluation = sareval.ShapeConfig(metrics=["oa"])
    train(
        config(stores, out, epochs=2, val_subsets=("clear",), evaluation=evaluation), export=False
    )
    return out / "metrics.jsonl"


def test_train_records_carry_the_callbacks_names(train_run: Path) -> None:
    records = [json.loads(line) for line in train_run.read_text().splitlines()]
    for r in records:
        val = r["val"]["clear"]
        names = {k: v for k, v in r.items() if k.startswith("val/")}
        assert names == {f"val/clear/{k}": v for k, v in log_names(val).items()}
        assert names["val/clear/shape/oa/relevance/sar"] == val["metrics"]["oa"]["relevance"]["sar"]
        assert games_from_names(r) == {"clear": _summary(val)}
    # a history of the names alone (no "val") reads back into the same structure
    bare = train_run.with_name("names-only.jsonl")
    lines = [{k: v for k, v in r.items() if k != "val"} for r in records]
    bare.write_text("".join(json.dumps(r) + "\n" for r in lines))
    (full,) = collect([train_run]).histories
    (names_only,) = collect([bare]).histories
    for a, b in zip(full.epochs, names_only.epochs, strict=True):
        assert b["val"] == {"clear": _summary(a["val"]["clear"])}


def test_lightning_csv_reads_into_the_same_structure(
    lightning_run: dict[str, Any], train_run: Path
) -> None:
    (history,) = collect([lightning_run["csv"]]).histories
    results = lightning_run["callback"].results
    assert [e["epoch"] for e in history.epochs] == [1, 2]  # finished epochs, as train counts
    for record in history.epochs:
        doc = results[record["epoch"] - 1].doc
        assert record["val"] == {"val": _summary(doc)}  # exact: the CSV keeps every float
        assert record["train_loss"] is None  # the module logs no training loss
    # the logged columns are the callback's names
    header = lightning_run["csv"].read_text().splitlines()[0].split(",")
    assert set(logged_values(results[0])) <= set(header)
    (trained,) = collect([train_run]).histories
    lightning_shape = {_shape(g) for e in history.epochs for g in e["val"].values()}
    train_shape = {_shape(g) for e in trained.epochs for g in e["val"].values()}
    assert (
        lightning_shape
        == train_shape
        == {(("sar", "opt"), (("oa", ("none", "sar", "opt", "sar+opt"), ("sar", "opt")),))}
    )


def test_report_draws_the_epochs_figure_from_a_lightning_run(
    lightning_run: dict[str, Any], train_run: Path
) -> None:
    out = lightning_run["dir"] / "report"
    report = make_report([("lightning", lightning_run["dir"] / "logs")], out)
    assert out / "epochs_oa.png" in report.figures and (out / "epochs_oa.svg").exists()
    # both kinds of history in one figure
    both = make_report([("lightning", lightning_run["csv"]), ("train", train_run)],
                       lightning_run["dir"] / "report-both")  # fmt: skip
    assert [h.label for h in both.collection.histories] == ["lightning", "train"]
    assert lightning_run["dir"] / "report-both" / "epochs_oa.png" in both.figures


def test_sorted_columns_keep_the_player_order_and_bad_cells_are_named(tmp_path: Path) -> None:
    doc = {
        "players": ["sar", "opt"],
        "metrics": {"oa": {"V": {"none": 0.25, "sar": 0.5, "opt": 0.75, "sar+opt": 1.0},
                           "relevance": {"sar": 0.25, "opt": 0.5}, "cooperation": 0.0}},
    }  # fmt: skip
    names = sorted(log_names(doc))  # a logger's column order: "opt" before "sar"
    path = tmp_path / "metrics.csv"
    cells = [repr(log_names(doc)[n]) for n in names]
    path.write_text(",".join(["epoch", "step", *names]) + "\n" + ",".join(["0", "4", *cells])
                    + "\n,,"  + "," * (len(names) - 1) + "\n")  # fmt: skip
    (history,) = collect([path]).histories
    assert history.epochs == [{"epoch": 1, "train_loss": None, "val": {"val": _summary(doc)}}]
    assert list(history.epochs[0]["val"]["val"]["metrics"]["oa"]["V"]) == list(
        doc["metrics"]["oa"]["V"]
    )
    path.write_text(path.read_text().replace(cells[0], "high", 1))
    with pytest.raises(sareval.SarevalError, match=f"{names[0]}: 'high' is not a number"):
        collect([path])
