"""The output shape a model card asks for: one rule for the export checks and card attach.

Scene tasks (single-label, multi-label): ``(batch, K)``. Segmentation: ``(batch, K, H', W')``
with ``H = s H'`` and ``W = s W'`` for one integer ``s >= 1`` (H, W: the card's input size).
"""

from __future__ import annotations

from collections.abc import Sequence

from sareval.card import ModelCard

Dim = int | str | None  # static size, symbolic name, or unknown


def shape_text(dims: list[Dim] | None) -> str:
    if dims is None:
        return "(unknown shape)"
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def output_problem(shape: Sequence[Dim], card: ModelCard, batch: int | None) -> str | None:
    """What is wrong with a model output of ``shape`` for ``card`` (None: nothing).

    Scene tasks: (batch, K); segmentation: (batch, K, H', W') with H = s H' and W = s W' for
    one integer s >= 1 (H, W: the card's, where it gives them). Unknown dims (None, symbolic
    names) pass; ``batch`` None: the batch dimension is not checked."""
    shape = list(shape)
    k = card.n_classes
    if card.is_segmentation:
        if len(shape) != 4:
            return (
                f"output of shape {shape_text(shape)} is {len(shape)}-D; a segmentation "
                f"card needs (batch, {k}, H', W')"
            )
    elif len(shape) != 2:
        what = " (a segmentation model's)" if len(shape) == 4 else ""
        return (
            f"output of shape {shape_text(shape)} is {len(shape)}-D{what}; the card's task "
            f"{card.task} needs (batch, {k})"
        )
    if batch is not None and isinstance(shape[0], int) and shape[0] != batch:
        return f"{shape[0]} rows of output for a batch of {batch}"
    if isinstance(shape[1], int) and shape[1] != k:
        return f"{shape[1]} scores per sample, the card has {k} classes"
    if card.is_segmentation and card.height is not None and card.width is not None:
        oh, ow = shape[2], shape[3]
        if isinstance(oh, int) and isinstance(ow, int):
            h, w = card.height, card.width
            if not (oh and ow and h % oh == 0 and w % ow == 0 and h // oh == w // ow):
                return (
                    f"label maps of {oh} x {ow} for inputs of {h} x {w}; a segmentation "
                    "output must be the input size divided by one integer"
                )
    return None
