"""A model card's per-channel input transform, applied to raw sensor arrays.

For raw arrays by sensor (each in its own band order), every card channel c is::

    x_c = float32(raw[sensor(c)][:, index(c)])       select + order + cast
    x_c = where(isnan(x_c), nan_c, x_c)              where the card sets nan_c (nan_to_num)
    x_c = min(max(x_c, lo_c), hi_c)                  clip (nan_to_num maps +-inf to +-f32 max)
    x_c = (x_c - mean_c) / std_c                     z-score

:func:`channel_map` builds the constants once for (card, data bands); :func:`normalise_numpy`
and :func:`normalise_torch` apply them. The evaluator's coalition preamble
(:mod:`sareval.evaluator.preamble`) and :meth:`sareval.ModelCard.normalize` both call these,
so a user's pipeline normalises exactly as the evaluator does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sareval.bands import close_band
from sareval.errors import SarevalError

if TYPE_CHECKING:
    import torch

    from sareval.card import ModelCard

F32_MAX = float(np.finfo(np.float32).max)


class ChannelTransforms(Protocol):
    """What :func:`normalise_numpy` reads (:class:`ChannelMap`, the evaluator's preamble)."""

    @property
    def sensors(self) -> tuple[str, ...]: ...
    @property
    def select(self) -> dict[str, np.ndarray]: ...
    @property
    def order(self) -> np.ndarray: ...
    @property
    def nan_fill(self) -> np.ndarray: ...
    @property
    def lo(self) -> np.ndarray: ...
    @property
    def hi(self) -> np.ndarray: ...
    @property
    def mean(self) -> np.ndarray: ...
    @property
    def std(self) -> np.ndarray: ...


@dataclass(frozen=True)
class ChannelMap:
    """``sensors``: data sensors read, in input order; ``select[s]``: indices of sensor ``s``'s
    channels read, so that ``concat_s raw[s][:, select[s]]`` followed by ``order`` gives the
    card's ``channels``. Per-channel float32 ``nan_fill`` (NaN where not replaced), ``lo`` /
    ``hi`` (+-inf where not clipped), ``mean`` / ``std``."""

    channels: tuple[str, ...]
    sensors: tuple[str, ...]
    select: dict[str, np.ndarray]
    order: np.ndarray
    nan_fill: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def channel_map(
    card: ModelCard, data_bands: Mapping[str, Sequence[str]], *, source: str = "store"
) -> ChannelMap:
    """The constants for ``card`` reading data whose sensors hold ``data_bands``; a card band
    missing from the data is an error naming ``source`` (and the likely typo)."""
    where = {b: (s, i) for s, bands in data_bands.items() for i, b in enumerate(bands)}
    missing = [b for b in card.channels if b not in where]
    if missing:
        names = [b for bands in data_bands.values() for b in bands]
        near = {b: close_band(b, names) for b in missing}  # the likely typo: B8a for B8A
        hint = "; ".join(f"did you mean {b} for the data's {n!r}?" for b, n in near.items() if n)
        raise SarevalError(
            f"{source}: the model card's bands {missing} are missing from the data "
            f"(it has: {', '.join(names)})" + (f"; {hint}" if hint else "")
        )
    sensors = tuple(s for s in data_bands if any(where[b][0] == s for b in card.channels))
    select = {
        s: np.array([where[b][1] for b in card.channels if where[b][0] == s], dtype=np.int64)
        for s in sensors
    }
    concat_bands = [b for s in sensors for b in card.channels if where[b][0] == s]
    order = np.array([concat_bands.index(b) for b in card.channels], dtype=np.int64)
    c = card.n_channels
    nan_fill = np.full(c, np.nan, dtype=np.float32)
    lo = np.full(c, -np.inf, dtype=np.float32)
    hi = np.full(c, np.inf, dtype=np.float32)
    mean = np.zeros(c, dtype=np.float32)
    std = np.ones(c, dtype=np.float32)
    for i, band in enumerate(card.channels):
        t = card.transform(band)
        if t.nan is not None:  # numpy's nan_to_num also maps +-inf to +-float32 max
            nan_fill[i], lo[i], hi[i] = t.nan, -F32_MAX, F32_MAX
        if t.clip is not None:
            lo[i], hi[i] = t.clip
        mean[i], std[i] = t.mean, t.std
    return ChannelMap(card.channels, sensors, select, order, nan_fill, lo, hi, mean, std)


def normalise_numpy(t: ChannelTransforms, raw: Mapping[str, np.ndarray]) -> np.ndarray:
    """Selected, ordered, cleaned and normalised channels (B, C, H, W) float32."""
    parts = [raw[s][:, t.select[s]].astype(np.float32) for s in t.sensors]
    x = np.concatenate(parts, axis=1)[:, t.order]
    shape = (1, len(t.order), 1, 1)
    replaces_nan = ~np.isnan(t.nan_fill)
    x = np.where(replaces_nan.reshape(shape) & np.isnan(x), t.nan_fill.reshape(shape), x)
    x = np.where(x < t.lo.reshape(shape), t.lo.reshape(shape), x)
    x = np.where(x > t.hi.reshape(shape), t.hi.reshape(shape), x)
    return ((x - t.mean.reshape(shape)) / t.std.reshape(shape)).astype(np.float32)


def torch_constants(t: ChannelTransforms) -> dict[str, np.ndarray]:
    """The arrays :func:`normalise_torch` takes as tensors (shapes (1, C, 1, 1); ``select_<s>``
    and ``order`` int64), e.g. registered as a module's buffers."""
    shape = (1, len(t.order), 1, 1)
    replaces_nan = ~np.isnan(t.nan_fill)
    out = {f"select_{s}": t.select[s] for s in t.sensors}
    out |= {
        "order": t.order,
        "nan_index": np.flatnonzero(replaces_nan).astype(np.int64),
        "nan_fill": np.where(replaces_nan, t.nan_fill, 0).reshape(shape),
        "lo": t.lo.reshape(shape),
        "hi": t.hi.reshape(shape),
        "mean": t.mean.reshape(shape),
        "std": t.std.reshape(shape),
    }
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def torch_flags(t: ChannelTransforms) -> tuple[bool, tuple[tuple[int, int], ...] | None]:
    """``(replace_nan, runs)`` for :func:`normalise_torch`: whether any channel replaces NaN;
    per sensor, the ``[start, stop)`` its selected channels fill in the card's order when every
    sensor fills one contiguous run (else None: concatenate, then reorder)."""
    where = np.argsort(t.order)  # concatenated channel c -> its position in the card's order
    runs: list[tuple[int, int]] = []
    at = 0
    for s in t.sensors:  # every sensor read holds at least one card channel
        dest = where[at : at + len(t.select[s])]
        at += len(dest)
        if not np.array_equal(dest, np.arange(dest[0], dest[0] + len(dest))):
            return bool((~np.isnan(t.nan_fill)).any()), None
        runs.append((int(dest[0]), int(dest[0]) + len(dest)))
    return bool((~np.isnan(t.nan_fill)).any()), tuple(runs)


def normalise_torch(
    raw: Mapping[str, torch.Tensor],
    sensors: Sequence[str],
    k: Mapping[str, Any],
    flags: tuple[bool, tuple[tuple[int, int], ...] | None],
) -> torch.Tensor:
    """:func:`normalise_numpy` on tensors; ``k``: :func:`torch_constants` as tensors on the
    data's device, ``flags``: :func:`torch_flags`. Raw tensors of any dtype are cast to
    float32 on their device."""
    import torch

    replace_nan, runs = flags
    if runs is not None:  # each sensor's selected channels copied (and cast) into its run
        first = raw[sensors[0]]
        shape = (first.shape[0], max(b for _, b in runs), *first.shape[2:])
        x = torch.empty(shape, dtype=torch.float32, device=first.device)
        for s, (a, b) in zip(sensors, runs, strict=True):
            x[:, a:b] = raw[s].index_select(1, k[f"select_{s}"])
    else:
        parts = [raw[s].to(torch.float32).index_select(1, k[f"select_{s}"]) for s in sensors]
        x = torch.cat(parts, 1).index_select(1, k["order"])
    if replace_nan:  # only the channels that replace NaN: x[:, i] = where(isnan, fill_i, x)
        at = k["nan_index"]
        part = x.index_select(1, at)
        fill = k["nan_fill"].index_select(1, at)
        x.index_copy_(1, at, torch.where(torch.isnan(part), fill, part))
    # x is a fresh tensor (empty / index_select copy): the steps below run in place, which
    # saves three full-batch allocations; clamp = the two wheres of normalise_numpy (NaN kept)
    return x.clamp_(k["lo"], k["hi"]).sub_(k["mean"]).div_(k["std"])
