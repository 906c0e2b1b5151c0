"""Build and export a fusion model: checkpoint (or random init) + card -> model file.

:func:`export_model` is what ``sareval export`` runs: :func:`resolve_card` decides the card
(a preset, or a card JSON; a SEN12MS toolbox checkpoint's ``_arguments.txt`` fills in what was
not given and must agree with what was), :func:`build_network` builds the architecture and
loads the weights strictly, :func:`write_model` writes it in a format of
:mod:`sareval.formats` with the card and checks parity before keeping it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sareval import __version__
from sareval.card import ModelCard, make_card, read_card
from sareval.classes import IGBP17
from sareval.errors import SarevalError
from sareval.presets import get_preset

Echo = Callable[[str], Any]


@dataclass
class CardPlan:
    """How the final card is made once the checkpoint hash is known (:meth:`card`)."""

    arch: str
    fusion: str
    preset: str | None
    task: str
    size: int | None
    class_names: tuple[str, ...] | None = None
    #: segmentation: what the network's output is (:data:`sareval.models.LABEL_MATCHING`)
    label_matching: str = "nearest-labels"
    base: ModelCard | None = None
    base_path: Path | None = None

    def card(self, sha: str | None) -> ModelCard:
        """The card, with ``sha`` (None: random initialisation) in its provenance."""
        if self.base is None:
            assert self.preset is not None
            return make_card(
                self.preset,
                self.task,
                architecture=self.arch,
                fusion=self.fusion,
                checkpoint_sha256=sha,
                random_init=sha is None,
                input_size=self.size,
                class_names=self.class_names,
                label_matching=self.label_matching,
            )
        d = self.base.to_dict()
        d["input"]["height"] = d["input"]["height"] or self.size
        d["input"]["width"] = d["input"]["width"] or self.size
        d["provenance"] = {
            **d.get("provenance", {}),
            "architecture": self.arch,
            "fusion": self.fusion,
            "checkpoint_sha256": sha,
            "random_init": sha is None,
            "sareval_version": __version__,
        }
        return ModelCard.from_dict(d, source=self.base_path or "(card)")


def agree(option: str, given: str | None, from_run: str | None, run: Any) -> str | None:
    """``given`` unless it contradicts the run arguments; else the run's value."""
    if given is not None and from_run is not None and given != from_run:
        raise SarevalError(
            f"{option} {given} contradicts {run.path} ({from_run}); drop {option} or check "
            "that the checkpoint is the one you mean"
        )
    return given if given is not None else from_run


def resolve_card(
    *,
    arch: str | None,
    checkpoint: Path | None,
    preset: str | None,
    card_path: Path | None,
    task: str | None,
    fusion: str,
    input_size: int | None,
    echo: Echo = print,
) -> CardPlan:
    """The card plan from the options and the checkpoint's run arguments (if any).

    A segmentation architecture (:data:`sareval.models.SEGMENTATION_ARCHITECTURES`) implies
    task ``segmentation`` and needs it."""
    from sareval.models import (
        LABEL_MATCHING,
        SEGMENTATION_ARCHITECTURES,
        arguments_path,
        read_arguments,
    )

    if preset and card_path:
        raise SarevalError("give preset= or card_path=, not both")
    run = None
    found = arguments_path(checkpoint) if checkpoint is not None else None
    if found is not None:
        run = read_arguments(found)
        echo(f"run arguments: {found} (model {run.values.get('model')}, {run.preset}, {run.task})")
    arch = agree("arch=", arch, run.arch if run else None, run)
    if arch is None:
        raise SarevalError("give arch= (no _arguments.txt beside the checkpoint names one)")
    if card_path is not None:
        base = read_card(card_path)
        if task is not None and task != base.task:
            raise SarevalError(f"task= {task} contradicts the card's task {base.task}")
        if run is not None and run.task != base.task:
            raise SarevalError(f"{run.path}: task {run.task} contradicts the card's {base.task}")
        if (
            input_size is not None
            and base.height is not None
            and (input_size != base.height or input_size != base.width)
        ):
            raise SarevalError(
                f"input_size= {input_size} contradicts the card's {base.height}x{base.width}"
            )
        return CardPlan(
            arch, fusion, None, base.task, base.height or input_size, base=base, base_path=card_path
        )
    preset = agree("preset=", preset, run.preset if run else None, run)
    if preset is None:
        raise SarevalError("give preset= or card_path= (the card says which bands go where)")
    if arch in SEGMENTATION_ARCHITECTURES:
        if task is not None and task != "segmentation":
            raise SarevalError(f"task= {task}: arch= {arch} is a segmentation network")
        task = "segmentation"
    task = agree("task=", task, run.task if run else None, run)
    if task is None:
        raise SarevalError("give task= single-label, multi-label or segmentation")
    class_names = IGBP17 if run is not None and not run.igbp_simple else None
    return CardPlan(
        arch,
        fusion,
        preset,
        task,
        input_size or get_preset(preset).size,
        class_names=class_names,
        label_matching=LABEL_MATCHING.get(arch, "nearest-labels"),
    )


def build_network(
    plan: CardPlan, checkpoint: Path | None, seed: int, echo: Echo = print
) -> tuple[Any, ModelCard]:
    """The architecture for the plan's card, with the checkpoint loaded strictly (or seeded
    random weights); returns (module, final card)."""
    import torch

    from sareval.models import build_model_for_card, check_input_size, load_checkpoint

    card = plan.card(None)
    if card.height is None or card.width is None:
        raise SarevalError("the card gives no input height/width; pass input_size=")
    torch.manual_seed(seed)
    model = build_model_for_card(plan.arch, card, plan.fusion)
    if card.height != card.width:
        check_input_size(plan.arch, max(card.height, card.width))
    if checkpoint is None:
        echo(f"no checkpoint: random initialisation (seed {seed}), recorded in the card")
        return model, card
    info = load_checkpoint(model, checkpoint)
    epoch = f", epoch {info.epoch}" if info.epoch is not None else ""
    echo(f"loaded {checkpoint} strictly{epoch} (sha256 {info.sha256[:12]}...)")
    return model, plan.card(info.sha256)


def write_model(
    model: Any,
    card: ModelCard,
    out: Path,
    *,
    fmt: str,
    opset: int | None = None,
    tolerance: float = 1e-4,
    provider: str = "cpu",
    overwrite: bool = False,
    echo: Echo = print,
) -> Path:
    """Write ``model`` with ``card`` as ``fmt`` (a :mod:`sareval.formats` kind), parity-checked."""
    if fmt == "onnx":
        from sareval.export.onnx_export import export_onnx

        report = export_onnx(
            model,
            card,
            out,
            opset=opset,
            overwrite=overwrite,
            tolerance=tolerance,
            provider=provider,
        )
    elif fmt == "torchscript":
        from sareval.export.torchscript_export import export_torchscript

        report = export_torchscript(model, card, out, overwrite=overwrite, tolerance=tolerance)
    elif fmt == "torch-export":
        from sareval.export.torchscript_export import export_program

        report = export_program(model, card, out, overwrite=overwrite, tolerance=tolerance)
    else:
        raise SarevalError(f"format {fmt!r}: expected onnx, torchscript or torch-export")
    if report is not None:
        for line in report.lines():
            echo(line)
    return out


def export_model(
    *,
    arch: str | None,
    checkpoint: Path | None,
    preset: str | None,
    card_path: Path | None,
    task: str | None,
    fusion: str,
    input_size: int | None,
    out: Path,
    fmt: str,
    opset: int | None,
    tolerance: float,
    provider: str,
    seed: int,
    overwrite: bool,
    echo: Echo = print,
) -> Path:
    """The work of ``sareval export`` (options as there); returns the written path."""
    plan = resolve_card(
        arch=arch,
        checkpoint=checkpoint,
        preset=preset,
        card_path=card_path,
        task=task,
        fusion=fusion,
        input_size=input_size,
        echo=echo,
    )
    model, card = build_network(plan, checkpoint, seed, echo)
    what = (
        f"{plan.arch} ({plan.fusion} fusion, {card.n_channels} channels, {card.n_classes} classes)"
    )
    echo(f"exporting {what} to {fmt} ...")
    return write_model(
        model,
        card,
        out,
        fmt=fmt,
        opset=opset,
        tolerance=tolerance,
        provider=provider,
        overwrite=overwrite,
        echo=echo,
    )
