"""Segmentation as a SHAPE game: pixel confusion matrices of every coalition, per image.

A segmentation model returns outputs (N, K, H', W') for inputs (N, C, H, W) with H = s H',
W = s W' (one integer s >= 1). The value of a coalition is a metric of the K x K pixel
confusion matrix (rows = true class) summed over every labelled pixel of the data set
(:class:`~sareval.evaluator.metrics.SegmentationCounts`); pixels whose label is the card's
``ignore_index`` are never counted.

Label matching (``ModelCard.label_matching``), recorded in the card of every result:
- ``nearest-labels``: label maps (and cloud masks) are downsampled to (H', W') by nearest
  neighbour: output cell (i, j) takes label pixel (s i + s // 2, s j + s // 2);
- ``upsample-logits``: outputs are upsampled to (H, W) bilinearly
  (``torch.nn.functional.interpolate``, ``align_corners=False``), decisions taken there.

Pixel states (from the per-pixel cloud mask of the optical image read, matched like the
labels): 0 ``clear``, 1 ``cloudy``, 2 ``unknown`` (no mask, or the mask's 255). Every count
is kept per (image group g, pixel state p): group index ``g * 3 + p`` of the
:class:`~sareval.evaluator.counting.CountResult` (g: the image's cloud-cover bin, or 0), so
that the clear / cloudy pixel split and the per-bin breakdown of images come from the same
integers.

Per-image state (for intervals that resample images, not pixels): with ``keep_per_image`` the
counter keeps every image's confusion matrices (J, 3, K, K) as int32 (a 256 x 256 map has at
most 65,536 pixels): N x J x 3 x K^2 x 4 bytes; SEN12MS's test split (18,106 images, K = 10,
two players: J = 4 row sets) takes 87 MB. :func:`check_per_image_memory` refuses more than
:data:`PER_IMAGE_BUDGET` before the pass.

One kernel: every count is one ``bincount`` over the flat code
``(((image * J + j) * 3 + p) * (K + 1) + y) * K + d`` (y = K for an ignored pixel, dropped
afterwards), on the outputs' device (torch; numpy outputs are wrapped without a copy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sareval.errors import SarevalError
from sareval.evaluator.counting import TIE_TOLERANCE, ConstantRows, CountResult
from sareval.evaluator.metrics import Counts, SegmentationCounts

PIXEL_STATES: tuple[str, ...] = ("clear", "cloudy", "unknown")
N_STATES = len(PIXEL_STATES)
UNKNOWN_MASK = 255  # the store's cloud-mask value of an unknown pixel
PER_IMAGE_BUDGET = 4 << 30  # bytes the per-image confusion matrices may take


def check_per_image_memory(n_images: int, n_rows: int, n_classes: int) -> None:
    """Refuse per-image state (intervals over images) larger than :data:`PER_IMAGE_BUDGET`."""
    need = n_images * n_rows * N_STATES * n_classes * n_classes * 4
    if need > PER_IMAGE_BUDGET:
        raise SarevalError(
            f"ShapeConfig.reporting.replicates: intervals over {n_images:,} images need their "
            f"per-image confusion matrices ({need / 2**30:.1f} GiB, budget "
            f"{PER_IMAGE_BUDGET / 2**30:.0f} GiB); evaluate fewer images per run (shards)"
        )


def scale_of(input_hw: tuple[int, int], output_hw: tuple[int, int]) -> int:
    """The integer s with input = s x output (checked by the backends already)."""
    return input_hw[0] // output_hw[0]


def match_maps(maps: Any, scale: int) -> Any:
    """Nearest downsampling (B, H, W) -> (B, H / s, W / s): pixel (s i + s // 2, s j + s // 2)."""
    if scale == 1:
        return maps
    return maps[:, scale // 2 :: scale, scale // 2 :: scale]


def upsample(outputs: Any, size: tuple[int, int]) -> Any:
    """Bilinear upsampling of outputs (..., K, h, w) to (..., K, H, W) (align_corners False)."""
    import torch.nn.functional as F

    lead = outputs.shape[:-3]
    flat = outputs.reshape(-1, *outputs.shape[-3:])
    up = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return up.reshape(*lead, *up.shape[-3:])


def pixel_states(cloud_mask: Any, shape: tuple[int, int, int], device: Any) -> Any:
    """Pixel states (B, H, W) int64 from a cloud mask (B, H, W) uint8 (0 / 1 / 255) or None."""
    import torch

    if cloud_mask is None:
        return torch.full(shape, 2, dtype=torch.int64, device=device)
    m = torch.as_tensor(np.asarray(cloud_mask)).to(device).long()
    return torch.where(m == UNKNOWN_MASK, 2, (m != 0).long())


def to_torch(a: Any) -> Any:
    import torch

    return a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))


@dataclass(frozen=True)
class Matching:
    """How one model's outputs meet label maps: ``how`` (``nearest-labels`` /
    ``upsample-logits``), the input size (H, W) and the ignored label value (None: none)."""

    how: str
    input_hw: tuple[int, int]
    ignore_index: int | None

    def outputs(self, outputs: Any) -> Any:
        """Outputs at the resolution decisions are taken (upsampled for ``upsample-logits``)."""
        if self.how == "upsample-logits" and tuple(outputs.shape[-2:]) != self.input_hw:
            return upsample(outputs.float(), self.input_hw)
        return outputs

    def maps(self, maps: Any, output_hw: tuple[int, int]) -> Any:
        """Label maps or cloud masks (B, H, W) at ``output_hw`` (nearest)."""
        if maps is None:
            return None
        return match_maps(maps, scale_of(self.input_hw, output_hw))


def constant_map(empty_output: np.ndarray | None, decision: np.ndarray, matching: Matching,
                 tol: float) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The empty coalition's decision map and near-tie map at the decision resolution:
    from its model output (K, h, w), or a majority class ``decision`` (0-d) over the map."""
    if empty_output is None:
        return np.asarray(decision, np.int64), np.zeros((), bool)
    out = matching.outputs(to_torch(np.asarray(empty_output, np.float32))[None])[0]
    out = out.double()
    dec = out.argmax(0)
    if out.shape[0] < 2:
        tie = out[0] != out[0]
    else:
        top2 = out.topk(2, dim=0).values
        tie = top2[0] - top2[1] <= tol
    return dec.numpy().astype(np.int64), tie.numpy()


class PixelCounter:
    """Pixel confusion matrices of every row set (the constant one first) per (image group,
    pixel state); see the module docstring. ``add`` takes outputs (n, B, K, h, w) (numpy or a
    torch tensor), label maps (B, H, W) in model order (values < K or ``ignore_index``), image
    groups (B,) or None and a cloud mask (B, H, W) or None. ``draws`` D > 1 (marginal
    imputation): B = D x images, row d B' + b draw d of image b; the kept per-image matrices
    are summed over each image's draws (so resampling images resamples them with their
    draws)."""

    def __init__(
        self,
        n_classes: int,
        n_rows: int,
        matching: Matching,
        *,
        constant: ConstantRows | None = None,
        constant_tie: np.ndarray | None = None,
        n_groups: int = 1,
        tol: float = TIE_TOLERANCE,
        device: Any = None,
        keep_per_image: bool = False,
        draws: int = 1,
    ) -> None:
        import torch

        self.t = torch
        self.k, self.matching, self.tol = n_classes, matching, tol
        self.device = torch.device(device or "cpu")
        self.constant = constant
        self.constant_tie = constant_tie
        self.n_total = n_rows + (constant is not None)
        self.n_groups = n_groups  # image groups
        size = n_groups * self.n_total * N_STATES * n_classes * n_classes
        self.state = torch.zeros(size, dtype=torch.int64, device=self.device)
        self.ties = torch.zeros(self.n_total, dtype=torch.int64, device=self.device)
        self.nonfinite = torch.zeros(self.n_total, dtype=torch.int64, device=self.device)
        self.keep_per_image = keep_per_image
        self.draws = draws  # marginal imputation: rows d B + b are draw d of image b
        self.per_image: list[np.ndarray] = []
        self.n_images = 0

    def _decisions(self, out: Any) -> tuple[Any, Any, Any]:
        """Decisions (n, B, h, w) (argmax, ties to the lowest class), near-tie and non-finite
        maps of the evaluated rows: one running pass over the K class planes (elementwise
        operations; torch's reductions over a non-last axis are ~100x slower here)."""
        t = self.t
        planes = out.movedim(2, 0).contiguous()  # (K, n, B, h, w): contiguous class planes
        top1 = planes[0]
        second = t.full_like(top1, float("-inf"))
        dec = t.zeros(top1.shape, dtype=t.int64, device=top1.device)
        finite = t.isfinite(top1)
        for k in range(1, len(planes)):
            x = planes[k]
            finite &= t.isfinite(x)
            dec.masked_fill_(x > top1, k)  # strict: a tie keeps the lower class, as argmax
            second = t.maximum(second, t.minimum(top1, x))  # the larger of the two others
            top1 = t.maximum(top1, x)
        tie = (top1.double() - second.double()) <= self.tol
        return dec, tie, ~finite

    def add(self, outputs: Any, labels: Any, groups: Any = None, cloud_mask: Any = None) -> Any:
        """Count a batch; returns the decisions (n_total, B, h, w) as a torch tensor."""
        t = self.t
        out = self.matching.outputs(to_torch(outputs).to(self.device))
        b, (h, w) = out.shape[1], tuple(out.shape[-2:])
        y = self.matching.maps(to_torch(np.asarray(labels)), (h, w)).to(self.device).long()
        if tuple(y.shape) != (b, h, w):
            raise SarevalError(
                f"label maps of shape {tuple(y.shape)} do not match outputs of {h} x {w}"
            )
        mask = self.matching.maps(cloud_mask, (h, w))
        states = pixel_states(mask, (b, h, w), self.device)
        ignore = self.matching.ignore_index
        valid = t.ones_like(y, dtype=t.bool) if ignore is None else y != ignore
        y = t.where(valid, y, self.k)
        dec, tie, bad = self._decisions(out)
        first = int(self.constant is not None)
        self.ties[first:] += (tie & valid).flatten(1).sum(1)
        self.nonfinite[first:] += bad.flatten(1).sum(1)
        if self.constant is not None:
            const = t.as_tensor(self.constant.decision, device=self.device).long()
            dec = t.cat([const.expand(1, b, h, w), dec])
            if self.constant_tie is not None:
                ctie = t.as_tensor(self.constant_tie, device=self.device).expand(b, h, w)
                self.ties[0] += (ctie & valid).sum()
        j_n, k = self.n_total, self.k
        image = t.arange(b, device=self.device).view(1, b, 1, 1)
        row = t.arange(j_n, device=self.device).view(j_n, 1, 1, 1)
        codes = (((image * j_n + row) * N_STATES + states[None]) * (k + 1) + y[None]) * k + dec
        per_image = t.bincount(codes.reshape(-1), minlength=b * j_n * N_STATES * (k + 1) * k)
        per_image = per_image.view(b, j_n, N_STATES, k + 1, k)[:, :, :, :k, :]  # drop ignored
        g = (
            t.zeros(b, dtype=t.int64, device=self.device)
            if groups is None
            else t.as_tensor(np.asarray(groups), device=self.device).long()
        )
        by_group = t.zeros((self.n_groups, j_n, N_STATES, k, k), dtype=t.int64, device=self.device)
        by_group.index_add_(0, g, per_image)
        self.state += by_group.reshape(-1)
        self.n_images += b
        if self.keep_per_image:  # one image's matrices: the sum over its draws
            per_image = per_image.view(self.draws, b // self.draws, *per_image.shape[1:]).sum(0)
            self.per_image.append(per_image.to(t.int32).cpu().numpy())
        return dec

    def result(self) -> CountResult:
        """Counts ``counts[g * 3 + p][j]`` (image group g, pixel state p, row set j)."""
        k = self.k
        state = self.state.cpu().numpy().reshape(self.n_groups, self.n_total, N_STATES, k, k)
        counts: list[list[Counts]] = [
            [
                SegmentationCounts(k, state={"confusion": state[g, j, p]})
                for j in range(self.n_total)
            ]
            for g in range(self.n_groups)
            for p in range(N_STATES)
        ]
        return CountResult(
            counts,
            self.ties.cpu().numpy().copy(),
            self.nonfinite.cpu().numpy().copy(),
            np.array([self.n_images], np.int64),
        )

    def per_image_state(self) -> np.ndarray | None:
        """(N, J, 3, K, K) int32 confusion matrices of every image counted, in pass order."""
        if not self.keep_per_image:
            return None
        if not self.per_image:
            return np.zeros((0, self.n_total, N_STATES, self.k, self.k), np.int32)
        return np.concatenate(self.per_image)


def sum_states(counts: list[list[Any]], n_image_groups: int) -> dict[str, Any]:
    """Counts of a :class:`PixelCounter` result regrouped: ``images[g][j]`` (image group g,
    every pixel state), ``pixels[p][j]`` (pixel state p, every image group)."""

    def total(cells: list[list[Any]]) -> list[Any]:
        out = list(cells[0])
        for more in cells[1:]:
            out = [a + b for a, b in zip(out, more, strict=True)]
        return out

    images = [
        total([counts[g * N_STATES + p] for p in range(N_STATES)]) for g in range(n_image_groups)
    ]
    pixels = [
        total([counts[g * N_STATES + p] for g in range(n_image_groups)]) for p in range(N_STATES)
    ]
    return {"images": images, "pixels": pixels}
