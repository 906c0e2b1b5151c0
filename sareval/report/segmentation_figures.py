"""Figures of segmentation results (``task: "segmentation"``), each as PNG and SVG.

- ``per_class_iou`` (:func:`sareval.report.figures.per_class_figure` on ``by.class``): each
  modality's relevance on each class's IoU, with intervals.
- ``cloud_pixels_<metric>`` (results with ``by.cloud_pixels``): V(all) and each modality's
  relevance of the metric over the clear, cloudy and unknown pixels of the same images, with
  intervals (:func:`~sareval.report.figures.breakdown_figure`), then, where the results carry
  ``pixel_relevance``, each modality's mean per-pixel Shapley value of the probability of the
  true class over the same pixels, and the pixels per state.
- ``maps_<n>`` (the n-th maps file, ``save_predictions`` of a segmentation evaluation,
  :mod:`sareval.evaluator.relevance_maps`): one row per chosen image, side by side: RGB (S2
  B04, B03, B02) and SAR (VV) from the store, the label, the prediction of all players, and one
  map per player of the per-pixel Shapley value of the probability of the true class, on one
  diverging colour scale (symmetric around 0) shared by every relevance map of the figure. The
  cloud mask's outline (cloudy pixels) is drawn on every panel. RGB and SAR come from the store
  the results file of the same evaluation names (``provenance.store.path``, same content
  digest); without it those two panels are left out and the title says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sareval.errors import InputFileError, SarevalError, StoreError
from sareval.evaluator.pixels import PIXEL_STATES
from sareval.evaluator.relevance_maps import read_maps
from sareval.report.collect import ResultRun, read_maps_run
from sareval.report.figures import (
    Breakdown,
    Getter,
    Palette,
    agg_pyplot,
    breakdown_figure,
    game_settings,
    metric_getters,
    metric_title,
    player_title,
    wrap,
)
from sareval.store import Store, Subset

#: the per-pixel quantity the maps and the mean per-pixel relevance show
MAP_QUANTITY = "true_probability"
#: images drawn from a maps file when none are chosen
DEFAULT_MAP_IMAGES = 3
#: S2 bands of the RGB panel (red, green, blue) and the SAR band of the SAR panel
RGB_BANDS = ("B04", "B03", "B02")
SAR_BAND = "VV"

#: the clear / cloudy / unknown pixels of ``by.cloud_pixels``
CLOUD_PIXELS = Breakdown(
    entries=lambda doc: [(e["label"], e) for e in doc.get("by", {}).get("cloud_pixels") or []],
    order=lambda keys: [s for s in PIXEL_STATES if s in set(keys)],
    tick=str,
    xlabel="pixels of the optical image",
    count="n_pixels",
    unit="pixels",
    count_title="pixels per state",
)


def has_cloud_pixels(results: Sequence[ResultRun]) -> bool:
    return any(r.doc.get("by", {}).get("cloud_pixels") for r in results)


def _pixel_getter(player: str) -> Getter:
    """The mean per-pixel Shapley value of :data:`MAP_QUANTITY` of ``player`` over a pixel
    state (``pixel_relevance.<q>.by_pixels``; no interval)."""

    def get(run: ResultRun, state: Any, entry: dict[str, Any]) -> tuple[float | None, Any]:
        section = (run.doc.get("pixel_relevance") or {}).get(MAP_QUANTITY) or {}
        return (section.get("by_pixels") or {}).get(state, {}).get(player), None

    return get


def cloud_pixels_figure(
    results: Sequence[ResultRun], metric: str = "miou", palette: Palette | None = None
) -> Any:
    """V(all) and relevance of ``metric`` over clear / cloudy / unknown pixels, then the mean
    per-pixel relevance where present, and the pixels per state (module docstring)."""
    with_pixels = any(MAP_QUANTITY in (r.doc.get("pixel_relevance") or {}) for r in results)

    def panels(players: Sequence[str]) -> list[tuple[str, Getter]]:
        out = metric_getters(metric, players)
        if with_pixels:
            out += [(wrap(f"mean per-pixel relevance of {player_title(p)} (probability of the "
                          "true class)", 34), _pixel_getter(p)) for p in players]  # fmt: skip
        return out

    title = (f"{metric_title(metric)} and modality relevance over clear and cloudy pixels "
             f"({game_settings(results)})")  # fmt: skip
    return breakdown_figure(results, CLOUD_PIXELS, panels, title, palette)


def store_for(attrs: dict[str, Any], results: Sequence[ResultRun]) -> Path | None:
    """The store of a maps file: ``provenance.store.path`` of a results file on the same store
    content and subset whose store file still has that content (None: none found)."""
    digest = attrs.get("store_content_digest")
    for r in results:
        store = r.doc.get("provenance", {}).get("store") or {}
        if (
            store.get("content_digest") != digest
            or not store.get("path")
            or r.subset != attrs.get("subset", r.subset)
        ):
            continue
        path = Path(store["path"])
        try:
            with Store(path) as st:
                if st.content_digest == digest:
                    return path
        except StoreError:
            continue
    return None


def _stretch(a: np.ndarray) -> np.ndarray:
    """``a`` scaled to [0, 1] between its 2 and 98 % quantiles (finite values)."""
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return np.zeros_like(a, dtype=float)
    lo, hi = np.percentile(finite, [2, 98])
    return np.clip((a - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)  # type: ignore[no-any-return]


def store_images(
    store_path: Path, subset: str | None, ids: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """RGB (n, H, W, 3) in [0, 1] (each image stretched) and SAR VV (n, H, W) in dB of the
    images ``ids`` (the optical source the subset reads)."""
    with Store(store_path) as st:
        rows_of = {i: r for r, i in enumerate(st.ids())}
        missing = [i for i in ids if i not in rows_of]
        if missing:
            raise StoreError(store_path, f"has no image {missing[0]!r} of the maps file")
        rows = np.array([rows_of[i] for i in ids], dtype=np.int64)
        sub = st.subsets.get(subset or "") or Subset("all", rows, "s2")  # "all": clear S2
        s2, s1 = st.read_unordered(sub, "s2", rows), st.read_unordered(sub, "s1", rows)
        s2_bands, s1_bands = st.bands("s2"), st.bands("s1")
    rgb = np.stack([s2[:, s2_bands.index(b)].astype(float) for b in RGB_BANDS], axis=-1)
    rgb = np.stack([_stretch(img) for img in rgb])
    return rgb, s1[:, s1_bands.index(SAR_BAND)].astype(float)


def choose_images(ids: Sequence[str], images: Sequence[str] | None, path: Path) -> list[int]:
    """Positions of ``images`` in the maps file (all must be there), else of its first
    :data:`DEFAULT_MAP_IMAGES` images."""
    if not images:
        return list(range(min(DEFAULT_MAP_IMAGES, len(ids))))
    where = {i: k for k, i in enumerate(ids)}
    missing = [i for i in images if i not in where]
    if missing:
        raise SarevalError(
            f"images: {', '.join(missing)} not in the maps file {path} (it has {len(ids)} images, "
            f"e.g. {', '.join(ids[:3])})"
        )
    return [where[i] for i in images]


def _class_colours(n: int) -> Any:
    """A categorical colour map of ``n`` classes (tab10 / tab20 colours)."""
    from matplotlib.colors import ListedColormap

    plt = agg_pyplot()
    base = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return ListedColormap([base(i % base.N) for i in range(n)])


def maps_figure(
    path: str | Path,
    images: Sequence[str] | None = None,
    *,
    store: str | Path | None = None,
    title: str = "",
) -> Any:
    """One row per chosen image of the maps file ``path`` (module docstring); ``store``: the
    store the maps come from, for the RGB and SAR panels (None: left out)."""
    from matplotlib.patches import Patch

    plt = agg_pyplot()
    path = Path(path)
    maps = read_maps(path)
    if MAP_QUANTITY not in maps["relevance"]:
        raise InputFileError(path, "has no relevance maps (evaluate with per_sample=True)")
    attrs = read_maps_run(path, None).attrs  # type: ignore[union-attr]  # read_maps: checked
    chosen = choose_images(maps["ids"], images, path)
    ids = [maps["ids"][k] for k in chosen]
    players, classes = list(maps["players"]), list(maps["class_names"])
    full = maps["coalitions"].index("+".join(players))
    labels = maps["labels"][chosen].astype(np.int64)
    prediction = maps["decisions"][full][chosen].astype(np.int64)
    cloudy = maps["cloud_mask"][chosen] == 1
    phi = maps["relevance"][MAP_QUANTITY][chosen]  # (n, M, h, w), NaN at ignored pixels
    h, w = labels.shape[-2:]
    rgb = sar = None
    if store is not None:
        rgb, sar = store_images(Path(store), attrs.get("subset"), ids)
    columns = (["RGB", f"SAR ({SAR_BAND}, dB)"] if rgb is not None else []) + [
        "label", "prediction (all modalities)"
    ] + [f"relevance of {player_title(p)}" for p in players]  # fmt: skip
    k = len(classes)
    ignored = (labels < 0) | (labels >= k)
    label_img = np.ma.masked_array(labels, ignored)
    cmap = _class_colours(k)
    finite = phi[np.isfinite(phi)]
    limit = float(np.abs(finite).max()) if finite.size else 1.0
    limit = limit if limit > 0 and math.isfinite(limit) else 1.0
    panel = 1.9
    fig, axes = plt.subplots(
        len(chosen), len(columns), squeeze=False, layout="constrained",
        figsize=(panel * len(columns) + 1.0, panel * len(chosen) + 1.3),
    )  # fmt: skip
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)  # store images at input size on the map grid
    relevance_image = None
    for i, name in enumerate(ids):
        drawn: list[tuple[Any, Any]] = []
        if rgb is not None and sar is not None:
            drawn.append((rgb[i], {"extent": extent}))
            drawn.append((_stretch(sar[i]), {"cmap": "gray", "extent": extent}))
        drawn.append((label_img[i], {"cmap": cmap, "vmin": -0.5, "vmax": k - 0.5}))
        drawn.append((np.ma.masked_array(prediction[i], ignored[i]),
                      {"cmap": cmap, "vmin": -0.5, "vmax": k - 0.5}))  # fmt: skip
        for j in range(len(players)):
            drawn.append((phi[i, j], {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit}))
        for c, (ax, (image, style)) in enumerate(zip(axes[i], drawn, strict=True)):
            shown = ax.imshow(image, interpolation="nearest", **style)
            if c >= len(drawn) - len(players):
                relevance_image = shown
            if cloudy[i].any():  # padded with clear pixels: a wholly cloudy image is framed
                ax.contour(np.arange(-1, w + 1), np.arange(-1, h + 1),
                           np.pad(cloudy[i], 1).astype(float), levels=[0.5], colors="gold",
                           linewidths=0.9)  # fmt: skip
                ax.set_xlim(extent[:2])
                ax.set_ylim(extent[2:])
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(wrap(columns[c], 22), fontsize=8)
        axes[i, 0].set_ylabel(wrap(name, 18), fontsize=7)
    if relevance_image is not None:
        fig.colorbar(relevance_image, ax=list(axes[:, -1]), shrink=0.8,
                     label="Shapley value of the probability of the true class")  # fmt: skip
    handles = [Patch(color=cmap(c), label=name) for c, name in enumerate(classes)]
    handles.append(Patch(facecolor="none", edgecolor="gold", label="cloudy pixels (outline)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6),
               frameon=False, fontsize=7)  # fmt: skip
    note = "" if rgb is not None else "; RGB and SAR left out: the store was not found"
    head = title or path.name
    fig.suptitle(
        wrap(f"Per-pixel relevance maps (local Shapley values, Z = 1, baseline "
             f"{attrs.get('baseline', '?')}): {head}{note}", 90), fontsize=9,
    )  # fmt: skip
    return fig
