"""Cards for your own models: per-band normalisation statistics computed from data.

:meth:`sareval.ModelCard.custom` builds a card in one call; when it is given data
(``normalize_from``) the per-band transform comes from :func:`compute_normalization`, with the
statistic stated and recorded in the card's ``provenance["normalization"]``:

- ``"mean-std"``: ``mean`` and population ``std`` of each band over its finite pixels (float64;
  NaN and +-inf pixels left out): the network sees ``(x - mean) / std``;
- ``"percentiles"``: the ``(lo, hi)`` percentiles of each band's finite pixels
  (``numpy.percentile``, linear interpolation): values are clipped to ``[p_lo, p_hi]`` and scaled
  to [0, 1] (``mean = p_lo``, ``std = p_hi - p_lo``).

Data: a store subset (``sareval.open_store(path).subset("clear")``: mean-std from the store's
per-row statistics, percentiles by reading the subset one sensor at a time), or a mapping of
arrays (numpy or torch) keyed by modality name ((N, C, H, W) in the modality's band order) or by
band name (any shape).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sareval.errors import SarevalError
from sareval.store import Store, Subset

STATISTICS = ("mean-std", "percentiles")
_READ_ROWS = 256  # rows per read when a store subset is scanned for percentiles


def _numpy(value: Any, what: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu().numpy()
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        raise SarevalError(f"{what}: expected real numbers, got dtype {a.dtype}")
    return a


def _band_arrays(
    data: Mapping[str, Any], modalities: Mapping[str, Sequence[str]], bands: Sequence[str]
) -> dict[str, np.ndarray]:
    """Band name -> its values (any shape) from a mapping keyed by modality or band names."""
    out: dict[str, np.ndarray] = {}
    for key, value in data.items():
        what = f"ModelCard.custom normalize_from[{key!r}]"
        a = _numpy(value, what)
        if key in modalities:
            names = list(modalities[key])
            if a.ndim != 4 or a.shape[1] != len(names):
                raise SarevalError(
                    f"{what}: expected (N, {len(names)}, H, W) for bands {', '.join(names)}; "
                    f"got shape {a.shape}"
                )
            out.update({b: a[:, i] for i, b in enumerate(names)})
        elif key in bands:
            out[key] = a
        else:
            raise SarevalError(
                f"{what}: {key!r} is neither a modality ({', '.join(modalities)}) nor a band of "
                "the card"
            )
    return out


def _mean_std(values: np.ndarray, band: str) -> tuple[float, float, int]:
    x = values.astype(np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise SarevalError(f"ModelCard.custom normalize_from: band {band!r} has no finite pixel")
    mean = float(x.mean())
    return mean, float(np.sqrt(np.mean(np.square(x - mean)))), int(x.size)


def _percentiles(values: np.ndarray, band: str, q: tuple[float, float]) -> tuple[float, float, int]:
    x = values.astype(np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise SarevalError(f"ModelCard.custom normalize_from: band {band!r} has no finite pixel")
    lo, hi = np.percentile(x, q)
    return float(lo), float(hi), int(x.size)


def _transform(band: str, statistic: str, a: float, b: float, nan: float | None) -> dict[str, Any]:
    """The card's normalisation entry of ``band`` from its statistic (a, b)."""
    if statistic == "mean-std":
        if not b > 0:
            raise SarevalError(
                f"ModelCard.custom normalize_from: band {band!r} is constant ({a:g}); its std is "
                "0: give its normalization explicitly"
            )
        return {"nan": nan, "clip": None, "mean": a, "std": b}
    if not b > a:
        raise SarevalError(
            f"ModelCard.custom normalize_from: band {band!r} has equal percentiles ({a:g}); "
            "give its normalization explicitly"
        )
    return {"nan": nan, "clip": [a, b], "mean": a, "std": b - a}


def _is_store_subset(data: Any) -> bool:
    """A store subset (``sareval.open_store(path).subset(name)``), told by its parts: an open
    :class:`~sareval.store.Store` and one of its :class:`~sareval.store.Subset` s."""
    return isinstance(getattr(data, "store", None), Store) and isinstance(
        getattr(data, "subset", None), Subset
    )


def _store_stats(
    data: Any, bands: Sequence[str], statistic: str, q: tuple[float, float]
) -> tuple[dict[str, tuple[float, float, int]], dict[str, Any]]:
    """Per-band statistics of a store subset (the store's own band names)."""
    store, sub = data.store, data.subset
    where = {b: (s, i) for s in store.sensors for i, b in enumerate(store.bands(s))}
    missing = [b for b in bands if b not in where]
    if missing:
        raise SarevalError(
            f"ModelCard.custom normalize_from: bands {missing} are not in {data.description} "
            f"(it has {', '.join(where)})"
        )
    stats: dict[str, tuple[float, float, int]] = {}
    for s in dict.fromkeys(where[b][0] for b in bands):
        mine = [b for b in bands if where[b][0] == s]
        idx = [where[b][1] for b in mine]
        source = store.source_of(sub, s)
        if statistic == "mean-std":
            mean = store.band_mean(source, sub.rows)
            std = store.band_std(source, sub.rows)
            n = store.finite_counts(source, sub.rows).sum(0)
            stats.update(
                {
                    b: (float(mean[i]), float(std[i]), int(n[i]))
                    for b, i in zip(mine, idx, strict=True)
                }
            )
            continue
        chunks: dict[str, list[np.ndarray]] = {b: [] for b in mine}
        for a in range(0, len(sub.rows), _READ_ROWS):
            x = store.read_source(source, sub.rows[a : a + _READ_ROWS])
            for b, i in zip(mine, idx, strict=True):
                chunks[b].append(x[:, i].ravel())
        for b in mine:
            stats[b] = _percentiles(np.concatenate(chunks[b]), b, q)
    record = {
        "source": data.description,
        "store_content_digest": store.content_digest,
        "samples": len(sub.rows),
    }
    return stats, record


def compute_normalization(
    data: Any,
    modalities: Mapping[str, Sequence[str]],
    bands: Sequence[str],
    *,
    statistic: str = "mean-std",
    percentiles: tuple[float, float] = (1.0, 99.0),
    nan: float | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """``(normalization entries by band, provenance record)`` of ``bands`` computed from
    ``data`` (module docstring); ``nan``: the raw value NaN pixels take (None: left as NaN)."""
    if statistic not in STATISTICS:
        raise SarevalError(
            f"ModelCard.custom statistic: {statistic!r} is not one of {', '.join(STATISTICS)}"
        )
    q = (float(percentiles[0]), float(percentiles[1]))
    if not 0.0 <= q[0] < q[1] <= 100.0:
        raise SarevalError(
            f"ModelCard.custom percentiles: {percentiles} is not (lo, hi) with 0 <= lo < hi <= 100"
        )
    if _is_store_subset(data):
        stats, record = _store_stats(data, bands, statistic, q)
    elif isinstance(data, Mapping):
        arrays = _band_arrays(data, modalities, bands)
        one = _mean_std if statistic == "mean-std" else lambda v, b: _percentiles(v, b, q)
        stats = {b: one(v, b) for b, v in arrays.items()}
        record = {"source": "arrays"}
    else:
        raise SarevalError(
            "ModelCard.custom normalize_from: expected a store subset "
            "(sareval.open_store(path).subset(name)) or a mapping of arrays by modality or band "
            f"name; got {type(data).__name__}"
        )
    entries = {b: _transform(b, statistic, *stats[b][:2], nan) for b in bands if b in stats}
    definition = (
        "mean and population std over finite pixels (float64)"
        if statistic == "mean-std"
        else f"percentiles {q[0]:g} and {q[1]:g} of finite pixels (numpy.percentile, linear): "
        "clip to them, scale to [0, 1]"
    )
    record = {
        "statistic": statistic,
        "definition": definition,
        **({"percentiles": list(q)} if statistic == "percentiles" else {}),
        **record,
        "bands": [b for b in bands if b in stats],
        "finite_pixels": {b: stats[b][2] for b in bands if b in stats},
    }
    return entries, record
