"""sareval.lightning.ShapeCallback in a real PyTorch Lightning training on CPU.

A tiny early-fusion network trains 2 epochs with a CSV logger and a checkpoint per epoch; the
relevance and V(S) logged each epoch must equal a separate ``sareval.evaluate`` of that epoch's
checkpoint loaded into a fresh module, and the callback must leave the module as it found it.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pl = pytest.importorskip("pytorch_lightning")

import sareval  # noqa: E402
from sareval.errors import SarevalError  # noqa: E402
from sareval.lightning import ModalityCollapseWarning, ShapeCallback, logged_values  # noqa: E402

CHANNELS = ["VV", "VH", "B02", "B03", "B04", "B08"]
BANDS = {"s1": ["VV", "VH"], "s2": ["B02", "B03", "B04", "B08"]}
CLASSES = ["water", "forest", "urban"]


def _card() -> sareval.ModelCard:
    return sareval.ModelCard.from_dict(
        {
            "name": "tiny-lightning",
            "task": "single-label",
            "class_names": CLASSES,
            "output": "logits",
            "input": {"name": "input", "channels": CHANNELS},
            "modalities": [
                {"name": "sar", "bands": BANDS["s1"]},
                {"name": "opt", "bands": BANDS["s2"]},
            ],
            "normalization": "none",
        }
    )


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 6, 8, 8) inputs whose SAR and optical channels both carry the class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    x = rng.normal(0, 1, (n, len(CHANNELS), 8, 8)).astype(np.float32)
    x[:, 0] += (y == 0)[:, None, None] * 1.5  # VV: water
    x[:, 3] += (y == 1)[:, None, None] * 1.5  # B03: forest
    x[:, 5] += (y == 2)[:, None, None] * 1.5  # B08: urban
    return x, y


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(len(CHANNELS), 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, len(CLASSES)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.2)


def _loader(x: np.ndarray, y: np.ndarray, shuffle: bool) -> torch.utils.data.DataLoader:
    ds = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    return torch.utils.data.DataLoader(ds, batch_size=16, shuffle=shuffle)


def _as_sensors(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    return {"s1": x[:, :2], "s2": x[:, 2:], "label": y}


def test_logged_relevance_equals_evaluating_each_checkpoint(tmp_path: Path) -> None:
    x, y = _data(96, 0)
    xv, yv = _data(48, 1)
    config = sareval.ShapeConfig(metrics=["oa", "f1_macro"])
    callback = ShapeCallback(_as_sensors(xv, yv), every_n_epochs=1, config=config, card=_card(),
                             bands=BANDS, collapse_share=0.0)  # fmt: skip
    checkpoints = pl.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "ckpt", filename="{epoch}", save_top_k=-1, every_n_epochs=1
    )
    logger = pl.loggers.CSVLogger(tmp_path / "logs", name="run")
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", devices=1, logger=logger, limit_train_batches=4,
        callbacks=[callback, checkpoints], enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=True, num_sanity_val_steps=1,
    )  # fmt: skip
    module = Tiny()
    trainer.fit(module, _loader(x, y, True), _loader(xv, yv, False))
    assert sorted(callback.results) == [0, 1]  # every epoch, not the sanity check

    with open(Path(logger.log_dir) / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("shape/oa/relevance/sar")]
    assert [float(r["epoch"]) for r in rows] == [0.0, 1.0]
    for epoch, row in enumerate(rows):
        fresh = Tiny()
        state = torch.load(tmp_path / "ckpt" / f"epoch={epoch}.ckpt", weights_only=True)
        fresh.load_state_dict(state["state_dict"])
        reference = sareval.evaluate(fresh.eval(), _as_sensors(xv, yv), config, card=_card(),
                                     bands=BANDS)  # fmt: skip
        want = logged_values(reference)
        assert reference.counts == callback.results[epoch].counts
        names = [
            "shape/oa/relevance/sar", "shape/oa/relevance/opt", "shape/oa/value/sar+opt",
            "shape/f1_macro/relevance/opt", "shape/oa/cooperation", "shape/oa/share/sar",
        ]  # fmt: skip
        assert set(names) <= set(want)
        for name in want:
            assert float(row[name]) == want[name], name  # exact: logged as Python floats
        assert want["shape/oa/relevance/sar"] == reference.relevance["oa"]["sar"]
    # the two epochs' weights differ, and so does what the callback measured
    assert rows[0]["shape/oa/value/sar+opt"] != rows[1]["shape/oa/value/sar+opt"] or (
        rows[0]["shape/oa/relevance/sar"] != rows[1]["shape/oa/relevance/sar"]
    )


def test_module_state_is_restored_and_collapse_warns() -> None:
    xv, yv = _data(32, 2)
    module = Tiny()
    x, y = (torch.from_numpy(a) for a in _data(96, 0))
    optimiser = torch.optim.SGD(module.parameters(), lr=0.2)
    for _ in range(30):  # trained on SAR alone: the optical bands never reach the network
        with torch.no_grad():
            module.net[0].weight[:, 2:] = 0
        optimiser.zero_grad()
        nn.functional.cross_entropy(module(x), y).backward()
        optimiser.step()
    with torch.no_grad():
        module.net[0].weight[:, 2:] = 0
    module.train()
    module.net[1].eval()  # mixed modes, one frozen parameter
    module.net[5].bias.requires_grad_(False)
    modes = [m.training for m in module.modules()]
    grads = [p.requires_grad for p in module.parameters()]
    weights = {k: v.clone() for k, v in module.state_dict().items()}
    config = sareval.ShapeConfig(metrics=["oa"])
    callback = ShapeCallback(
        _as_sensors(xv, yv), card=_card(), bands=BANDS, config=config, interactions=True
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = callback.evaluate(module)
        callback._check_collapse(result, 3)
    assert [m.training for m in module.modules()] == modes
    assert [p.requires_grad for p in module.parameters()] == grads
    assert torch.is_grad_enabled()
    assert all(torch.equal(weights[k], v) for k, v in module.state_dict().items())
    assert result.relevance["oa"]["opt"] == 0.0
    collapse = [w for w in caught if issubclass(w.category, ModalityCollapseWarning)]
    assert len(collapse) == 1 and "epoch 3: opt has 0.0% of the oa relevance" in str(
        collapse[0].message
    )
    logged = logged_values(result, interactions=True)
    assert logged["shape/oa/sii/sar+opt"] == result.interactions["oa"]["sii"]["sar+opt"]
    assert logged["shape/oa/moebius/sar+opt"] == pytest.approx(result.cooperation["oa"])


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(SarevalError, match="every_n_epochs: expected an integer >= 1, got 0"):
        ShapeCallback({}, every_n_epochs=0, card=_card())
    with pytest.raises(SarevalError, match=r"card: expected a sareval\.ModelCard"):
        ShapeCallback({}, card=None)  # type: ignore[arg-type]
    with pytest.raises(SarevalError, match=r"collapse_share: expected a fraction in \[0, 1\)"):
        ShapeCallback({}, card=_card(), collapse_share=1.5)
    with pytest.raises(SarevalError, match=r"attribute: Tiny\.backbone is not a torch\.nn\.Module"):
        ShapeCallback({}, card=_card(), attribute="backbone")._module(Tiny())
