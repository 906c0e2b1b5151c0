"""SHAPE relevance during anyone's PyTorch Lightning training: :class:`ShapeCallback`.

At the end of every ``every_n_epochs``-th validation epoch the callback runs
:func:`sareval.evaluate` on the LightningModule (or its submodule named ``attribute``) in
memory, on the torch backend, on the module's device: no export, no copy of the weights to
disk. Afterwards every submodule's training flag, every parameter's ``requires_grad``, the
module's device and the grad mode are what they were. The values go to every logger of the
trainer (``trainer.loggers``, at ``trainer.global_step``, as Python floats: a CSV logger keeps
them exactly) under stable names::

    shape/<metric>/relevance/<player>      relevance (Shapley value / Z)
    shape/<metric>/value/<coalition>       V(S), coalitions named as in results (``sar+opt``)
    shape/<metric>/cooperation             C / Z (exact games)
    shape/<metric>/share/<player>          relevance_i / sum_j relevance_j (collapse check)
    shape/<metric>/<index>/<interaction>   with ``interactions=True``: every index of
                                           :mod:`sareval.evaluator.interactions` (order 2)

plus ``epoch``. When a player's share of the relevance of ``collapse_metric`` (default: the
first metric of the result) falls below ``collapse_share`` the callback warns
(:class:`ModalityCollapseWarning`, and the ``sareval`` logger): the network has stopped using
that modality ("modality collapse"). ``results`` keeps each evaluated epoch's
:class:`~sareval.api.ShapeResult`.

Needs the optional extra ``lightning`` (``pip install sareval[lightning]``: pytorch-lightning);
the package ``lightning`` (``lightning.pytorch``) is used when pytorch-lightning is absent.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch

from sareval.api import ShapeResult, evaluate
from sareval.card import ModelCard
from sareval.errors import SarevalError
from sareval.evaluator.config import ShapeConfig
from sareval.evaluator.log_names import PREFIX, log_names, relevance_shares

try:
    from pytorch_lightning import Callback, LightningModule, Trainer
except ImportError:  # the unified package
    try:
        from lightning.pytorch import Callback, LightningModule, Trainer  # type: ignore[no-redef]
    except ImportError:
        raise ImportError(
            "sareval.lightning needs PyTorch Lightning: pip install 'sareval[lightning]'"
        ) from None

log = logging.getLogger(__name__)


class ModalityCollapseWarning(UserWarning):
    """A player's share of the relevance fell below ``ShapeCallback.collapse_share``."""


def _device_of(module: torch.nn.Module) -> torch.device:
    for tensor in [*module.parameters(), *module.buffers()]:
        return tensor.device
    return torch.device("cpu")


def logged_values(result: ShapeResult, interactions: bool = False) -> dict[str, float]:
    """The values :class:`ShapeCallback` logs for ``result``, under their stable names
    (:func:`sareval.evaluator.log_names.log_names`, also used by ``sareval train``)."""
    return log_names(result.doc, interactions)


class ShapeCallback(Callback):
    """SHAPE relevance of the module on ``data`` at validation epoch end (module docstring).

    ``data``: what :func:`sareval.evaluate` takes (arrays per sensor with ``label``, a torch
    Dataset via :class:`sareval.TorchData`, a store subset); ``config``: a
    :class:`sareval.ShapeConfig` (its ``device`` is replaced by the module's, its ``backend``
    by ``torch``); ``card``: the module's :class:`sareval.ModelCard`; ``attribute``: evaluate
    ``pl_module.<attribute>`` instead of the LightningModule; ``data_options``: the source
    options of :func:`sareval.evaluate` (``bands=``, ``class_names=``, ...).
    """

    def __init__(
        self,
        data: Any,
        every_n_epochs: int = 1,
        config: ShapeConfig | None = None,
        *,
        card: ModelCard,
        collapse_share: float = 0.05,
        collapse_metric: str | None = None,
        attribute: str | None = None,
        interactions: bool = False,
        **data_options: Any,
    ) -> None:
        super().__init__()
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int):
            raise SarevalError(f"every_n_epochs: expected an integer >= 1, got {every_n_epochs!r}")
        if every_n_epochs < 1:
            raise SarevalError(f"every_n_epochs: expected an integer >= 1, got {every_n_epochs}")
        if config is not None and not isinstance(config, ShapeConfig):
            raise SarevalError(
                f"config: expected a sareval.ShapeConfig, got {type(config).__name__}"
            )
        if not isinstance(card, ModelCard):
            raise SarevalError(f"card: expected a sareval.ModelCard, got {type(card).__name__}")
        if not 0.0 <= collapse_share < 1.0:
            raise SarevalError(
                f"collapse_share: expected a fraction in [0, 1), got {collapse_share}"
            )
        self.data, self.every_n_epochs = data, every_n_epochs
        self.config = config or ShapeConfig()
        self.card, self.attribute = card, attribute
        self.collapse_share, self.collapse_metric = collapse_share, collapse_metric
        self.interactions = interactions
        self.data_options = data_options
        self.results: dict[int, ShapeResult] = {}

    def _module(self, pl_module: LightningModule) -> torch.nn.Module:
        if self.attribute is None:
            return pl_module
        module = getattr(pl_module, self.attribute, None)
        if not isinstance(module, torch.nn.Module):
            raise SarevalError(
                f"attribute: {type(pl_module).__name__}.{self.attribute} is not a torch.nn.Module"
            )
        return module

    def evaluate(self, module: torch.nn.Module) -> ShapeResult:
        """:func:`sareval.evaluate` of ``module`` in memory, everything about it restored."""
        modes = [(m, m.training) for m in module.modules()]
        grads = [(p, p.requires_grad) for p in module.parameters()]
        device = _device_of(module)
        grad_enabled = torch.is_grad_enabled()
        try:
            module.eval()  # already so at validation end: evaluate() then needs no copy
            config = self.config.replace(device=str(device), backend="torch")
            return evaluate(
                module, self.data, config, card=self.card, data_options=self.data_options
            )
        finally:
            for m, training in modes:
                m.training = training
            for p, requires_grad in grads:
                p.requires_grad_(requires_grad)
            if _device_of(module) != device:
                module.to(device)
            torch.set_grad_enabled(grad_enabled)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Evaluate, log and check for collapse every ``every_n_epochs`` epochs (not during
        the sanity check; on global rank 0 only)."""
        epoch = trainer.current_epoch
        if trainer.sanity_checking or (epoch + 1) % self.every_n_epochs:
            return
        if not trainer.is_global_zero:
            return
        result = self.evaluate(self._module(pl_module))
        self.results[epoch] = result
        values = logged_values(result, self.interactions)
        for logger in trainer.loggers:
            logger.log_metrics({**values, "epoch": float(epoch)}, step=trainer.global_step)
        self._check_collapse(result, epoch)

    def _check_collapse(self, result: ShapeResult, epoch: int) -> None:
        metrics = list(result.doc["metrics"])
        metric = self.collapse_metric or (metrics[0] if metrics else None)
        if metric is None:
            return
        if metric not in result.doc["metrics"]:
            raise SarevalError(
                f"collapse_metric: {metric!r} is not in the result ({', '.join(metrics)})"
            )
        shares = relevance_shares(result.doc["metrics"][metric]["relevance"])
        for player, share in shares.items():
            if share < self.collapse_share:
                message = (
                    f"epoch {epoch}: {player} has {share:.1%} of the {metric} relevance, below "
                    f"collapse_share {self.collapse_share:.1%} (modality collapse?)"
                )
                log.warning(message)
                warnings.warn(message, ModalityCollapseWarning, stacklevel=2)


__all__ = [
    "PREFIX",
    "ModalityCollapseWarning",
    "ShapeCallback",
    "logged_values",
    "relevance_shares",
]
