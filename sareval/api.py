"""The Python API: :func:`evaluate` a model on data, get a typed :class:`ShapeResult`.

>>> import sareval
>>> result = sareval.evaluate("resnet50.onnx", sareval.open_store("test.h5").subset("clear"))
>>> result.relevance["f1_macro"]["sar"]                         # doctest: +SKIP

``model``: a model file with its card (:mod:`sareval.formats`), or an in-memory
``torch.nn.Module`` / callable on tensors plus ``card=``; in-memory modules run on the torch
backend by default, without export, and are never moved or changed in place.
``data``: a store subset, ``(path, subset)``, a dict of arrays per sensor with labels
(:class:`~sareval.evaluator.sources.ArrayData`), or a torch Dataset / iterable of batches
(:class:`~sareval.evaluator.sources.TorchData`). Every choice is a field of :class:`ShapeConfig`
(its parts :class:`Game`, :class:`Reporting`, :class:`Execution`, :class:`Estimation`); keyword
``overrides`` replace fields of ``config`` by their flat names. :func:`perceptual_score` is the
other algorithm (permuting each player instead of masking it). Errors are
:class:`~sareval.errors.SarevalError` subclasses whose message names the argument and what was
expected.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import numpy as np

from sareval.card import ModelCard
from sareval.errors import SarevalError, StoreError
from sareval.evaluator.backends import load_model
from sareval.evaluator.config import (
    PERMUTATIONS,
    Estimation,
    Execution,
    Game,
    Reporting,
    ShapeConfig,
)
from sareval.evaluator.interactions import doc_game, record_from_doc, to_shapiq
from sareval.evaluator.results import console_table, read_results, save_results
from sareval.evaluator.run_output import RunOutput
from sareval.evaluator.runner import run_evaluation
from sareval.evaluator.sources import ArrayData, StoreSubset, TorchData, as_source
from sareval.store import LabelSpec, SensorSpec, Store, StoreWriter, check_content

SOURCE_KEYWORDS = (
    "bands", "class_names", "cloud_cover", "ids", "keys", "image", "label_key",
    "cloud_cover_key", "id_key", "ignore_index", "cloud_mask",
)  # fmt: skip


class MapDataset(Protocol):
    """A map-style dataset (``torch.utils.data.Dataset`` with a length): items by index."""

    def __getitem__(self, index: int, /) -> Any: ...

    def __len__(self) -> int: ...


#: a model file (with its card inside), or an in-memory module / callable on tensors
ModelInput: TypeAlias = "str | os.PathLike[str] | Callable[..., Any]"
#: a store subset, ``(store path, subset)``, arrays per sensor with labels, a dataset or an
#: iterable of batches (:func:`~sareval.evaluator.sources.as_source`)
DataInput: TypeAlias = (
    "StoreSubset | ArrayData | TorchData | tuple[str | os.PathLike[str], str] "
    "| Mapping[str, Any] | MapDataset | Iterable[Any]"
)


def evaluate(
    model: ModelInput,
    data: DataInput,
    config: ShapeConfig | None = None,
    *,
    card: ModelCard | None = None,
    data_options: Mapping[str, Any] | None = None,
    progress: bool = False,
    save_predictions: str | Path | None = None,
    overwrite: bool = False,
    **overrides: Any,
) -> ShapeResult:
    """SHAPE relevance of ``model`` on ``data`` (see module docstring).

    ``overrides``: :class:`ShapeConfig` fields by their flat names (``normalization="full"``,
    ``replicates=1000``, ``batch_size=16``, ...; :data:`~sareval.evaluator.config.FLAT_FIELDS`)
    or whole parts (``execution=Execution(...)``). ``data_options``: for arrays or datasets
    given directly, their options (``bands``, ``class_names``, ``cloud_cover``, ``ids``,
    ``keys``, ``image``, ``label_key``, ...: :data:`SOURCE_KEYWORDS`), the same as
    :class:`ArrayData`'s / :class:`TorchData`'s arguments; given as flat keywords they still
    work, with a :class:`DeprecationWarning`. ``save_predictions``: an HDF5 file of every
    sample's outputs per coalition.
    """
    if "method" in overrides or "permutations" in overrides:
        raise SarevalError(
            "method: perceptual scores are their own function, "
            "sareval.perceptual_score(model, data, permutations=...)"
        )
    options = _data_options(data_options, overrides)
    return _run(
        model, data, config, card, progress, save_predictions, overwrite, {**overrides, **options}
    )


def _data_options(
    data_options: Mapping[str, Any] | None, overrides: dict[str, Any]
) -> dict[str, Any]:
    """``data_options`` checked, plus the data keywords given flat in ``overrides`` (removed
    from it; deprecated)."""
    if data_options is not None and not isinstance(data_options, Mapping):
        raise SarevalError(
            f"data_options: expected a mapping option -> value, got {type(data_options).__name__}"
        )
    options = dict(data_options or {})
    unknown = sorted(set(options) - set(SOURCE_KEYWORDS))
    if unknown:
        raise SarevalError(
            f"data_options: unknown option(s) {', '.join(map(str, unknown))}; "
            f"known: {', '.join(SOURCE_KEYWORDS)}"
        )
    flat = [k for k in SOURCE_KEYWORDS if k in overrides]
    for key in flat:
        if key in options:
            raise SarevalError(f"data_options: {key!r} is also given as a keyword; give it once")
        warnings.warn(
            f"evaluate({key}=...): data keywords are deprecated; pass "
            f"data_options={{{key!r}: ...}} or build sareval.ArrayData / sareval.TorchData",
            DeprecationWarning,
            stacklevel=3,
        )
        options[key] = overrides.pop(key)
    return options


def perceptual_score(
    model: Any,
    data: Any,
    *,
    permutations: int = PERMUTATIONS,
    card: ModelCard | None = None,
    players: Mapping[str, Any] | None = None,
    metrics: Sequence[str] | None = None,
    seed: int = 0,
    execution: Execution | None = None,
    data_options: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> ShapeResult:
    """Perceptual scores (Gat et al. 2021; :mod:`sareval.evaluator.perceptual`) of ``model``
    on ``data``: the relative drop of each metric when a player's bands are taken from another
    sample, averaged over ``permutations`` seeded permutations of the data.

    ``players``, ``metrics``, ``seed`` and ``execution`` mean what they mean in
    :class:`ShapeConfig`; ``data_options`` as :func:`evaluate`'s. The result's ``method`` is
    ``perceptual``, its ``relevance`` the scores.
    """
    if isinstance(permutations, bool) or not isinstance(permutations, int) or permutations < 1:
        raise SarevalError(f"permutations: expected an integer >= 1, got {permutations!r}")
    options = _data_options(data_options, {})
    config = ShapeConfig(
        game=Game(players=players),
        reporting=Reporting(metrics=metrics, seed=seed),
        execution=execution or Execution(),
    )
    return _run(model, data, config, card, progress, None, False, options, permutations)


def _run(
    model: Any,
    data: Any,
    config: ShapeConfig | None,
    card: ModelCard | None,
    progress: bool,
    save_predictions: str | Path | None,
    overwrite: bool,
    overrides: dict[str, Any],
    permutations: int | None = None,
) -> ShapeResult:
    """Load ``model``, adapt ``data``, run the evaluation (:func:`evaluate`,
    :func:`perceptual_score`)."""
    if config is not None and not isinstance(config, ShapeConfig):
        raise SarevalError(f"config: expected a sareval.ShapeConfig, got {type(config).__name__}")
    source_kw = {k: overrides.pop(k) for k in SOURCE_KEYWORDS if k in overrides}
    cfg = (config or ShapeConfig()).replace(**overrides) if overrides else config or ShapeConfig()
    loaded = load_model(model, card)
    source = as_source(data, **source_kw)
    try:
        output = run_evaluation(
            loaded, source, cfg, progress=progress, save_predictions=save_predictions,
            overwrite=overwrite, permutations=permutations,
        )  # fmt: skip
    finally:
        if isinstance(data, tuple) and isinstance(source, StoreSubset):
            source.store.close()  # opened here from (path, subset)
    return ShapeResult.from_run(output)


# --- stores -----------------------------------------------------------------------------------
class StoreHandle:
    """An open store (:func:`open_store`): ``.subset(name)`` is what :func:`evaluate` reads."""

    def __init__(self, path: str | Path) -> None:
        self.store = Store(path)

    def subset(self, name: str) -> StoreSubset:
        """The named subset (``clear``, ``cloudy``, ...) as data for :func:`evaluate`."""
        return StoreSubset(self.store, name)

    @property
    def subsets(self) -> list[str]:
        """Names of the store's subsets."""
        return list(self.store.subsets)

    def close(self) -> None:
        """Close the HDF5 file."""
        self.store.close()

    def __enter__(self) -> StoreHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(path: str | Path) -> StoreHandle:
    """Open a store built by ``sareval preprocess`` or :func:`write_store` (read-only)."""
    return StoreHandle(path)


def write_store(
    path: str | Path,
    arrays: Mapping[str, Any],
    labels: Mapping[str, tuple[Any, Sequence[str]]],
    subsets: Mapping[str, Any] | None = None,
    *,
    bands: Mapping[str, Sequence[str]] | None = None,
    cloudy: Any = None,
    cloud_cover: Any = None,
    cloud_mask: Any = None,
    ids: Sequence[str] | None = None,
    dataset: str = "custom",
    split: str = "test",
    compression: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write arrays as a store (layout: :mod:`sareval.store`), atomically.

    ``arrays``: sensor -> (N, C, H, W) (``s1`` float32 dB, ``s2`` uint16 DN, extras such as
    ``dem``); ``bands`` as in :class:`~sareval.evaluator.sources.ArrayData`. ``labels``: label-set
    name -> (values, class names): (N,) indices, (N, K) multi-hot, or (N, H, W) label maps
    (segmentation; 255: a pixel without a class). ``subsets``: name -> rows
    (default ``{"all": every row}``), or name -> (rows, "s2_cloudy") to read ``cloudy`` (N, C, H,
    W) optical images, whose availability is where they are not all zero. ``cloud_cover`` (N,): the
    cover of ``cloudy`` where given (subsets reading the clear ``s2`` then have none), else of
    ``s2`` (:attr:`~sareval.store.Store.cloud_cover_source`); ``cloud_mask`` (N, H, W) uint8 the
    per-pixel mask of that image (1 cloudy, 0 clear; 255 on rows of unknown cover), whose mean
    must be the cover.
    """
    if not isinstance(arrays, Mapping) or not arrays:
        raise SarevalError("arrays: expected a mapping sensor name -> (N, C, H, W) array")
    src = ArrayData(arrays, np.zeros(len(next(iter(arrays.values()))), np.int64), bands=bands)
    n = len(src)
    h, w = src.image_size
    sensors = [SensorSpec(s, names, str(src.sample_spec(s)[1])) for s, names in src.bands.items()]
    if not isinstance(labels, Mapping) or not labels:
        raise SarevalError("labels: expected a mapping label-set name -> (values, class names)")
    label_specs, label_values, given = [], {}, {}
    for name, value in labels.items():
        if not (isinstance(value, tuple) and len(value) == 2):
            raise SarevalError(f"labels[{name!r}]: expected (values, class names)")
        values, class_names = value
        y = np.asarray(values)
        if len(y) != n or y.ndim not in (1, 2, 3) or (y.ndim == 3 and y.shape[1:] != (h, w)):
            raise SarevalError(
                f"labels[{name!r}]: expected (N,), (N, K) or (N, H, W) = ({n}, {h}, {w})"
            )
        kind = {1: "index", 2: "multi_hot", 3: "map"}[y.ndim]
        names = tuple(str(c) for c in class_names)
        label_specs.append(LabelSpec(name, kind, names, 0.5 if kind == "multi_hot" else None))
        given[name] = (kind, y, names)
        label_values[name] = {
            "index": lambda v: v.astype(np.int64),
            "multi_hot": lambda v: (v != 0).astype(np.uint8),
            "map": lambda v: v.astype(np.uint8),
        }[kind](y)
    task = label_specs[0].task
    arrays_np = {s: src.sensor_array(s) for s in src.bands}
    available = None
    if cloudy is not None:
        if "s2" not in arrays_np:
            raise SarevalError("cloudy: needs the clear optical images arrays['s2']")
        cl = np.asarray(cloudy)
        if cl.shape != arrays_np["s2"].shape:
            raise SarevalError(f"cloudy: expected shape {arrays_np['s2'].shape}, got {cl.shape}")
        arrays_np["s2_cloudy"] = cl.astype(arrays_np["s2"].dtype)
        available = np.asarray(cl.reshape(n, -1).any(axis=1))
    cover = np.full(n, np.nan, np.float32)
    if cloud_cover is not None:
        cover = np.asarray(cloud_cover, np.float32)
        if cover.shape != (n,):
            raise SarevalError(f"cloud_cover: expected shape ({n},), got {cover.shape}")
    id_list = [str(i) for i in ids] if ids is not None else [f"sample_{i}" for i in range(n)]
    if len(id_list) != n:
        raise SarevalError(f"ids: expected {n} ids, got {len(id_list)}")
    mask = None
    if cloud_mask is not None:
        mask = np.asarray(cloud_mask)
        if mask.shape != (n, h, w):
            raise SarevalError(f"cloud_mask: expected shape ({n}, {h}, {w}), got {mask.shape}")
        mask = mask.astype(np.uint8)
    checked: dict[str, tuple[np.ndarray, Any]] = {}
    for name, value in (subsets or {"all": np.arange(n)}).items():
        sub_rows, optical = value if isinstance(value, tuple) else (value, "s2")
        checked[name] = (np.asarray(sub_rows), optical)
    bands_of = {s: list(b) for s, b in src.bands.items()}
    if cloudy is not None:
        bands_of["s2_cloudy"] = bands_of["s2"]
    try:  # what Store checks when it opens the file (one validator), before anything is written
        check_content(n, id_list, bands_of, given, cover, checked, images=list(arrays_np),
                      cloud_mask=mask)  # fmt: skip
    except ValueError as e:
        raise StoreError(path, f"malformed store: {e}") from None
    spec = {name: (rows.astype(np.int64), str(opt), name) for name, (rows, opt) in checked.items()}
    writer = StoreWriter(
        path, dataset=dataset, split=split, default_task=task, ids=id_list,
        height=h, width=w, sensors=sensors, labels=label_specs, config={"write_store": True},
        with_cloudy=cloudy is not None, compression=compression, overwrite=overwrite,
        with_cloud_mask=mask is not None,
    )  # fmt: skip
    try:
        writer.write_rows(0, arrays_np, label_values, cloud_cover=cover,
                          cloudy_available=available, cloud_mask=mask)  # fmt: skip
        return writer.finish(spec)
    except BaseException:
        writer.abort()
        raise


# --- results ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShapeResult:
    """Typed access to a results document (layout: :mod:`sareval.evaluator.results`).

    ``values[metric][coalition]`` (V), ``relevance[metric][player]``, ``cooperation[metric]``,
    ``intervals[metric]`` (95 % bootstrap intervals, when computed), ``interactions[metric]``
    (interaction indices; :meth:`to_shapiq` for shapiq's plots), ``by_class`` and
    ``by_cloud_cover`` (sections as in the JSON; each metric entry carries its ``"ci"`` from
    the same bootstrap replicates when computed), ``counts``; ``doc`` is the whole document.
    ``str(result)`` is the console table, per-class and per-bin tables included.
    """

    doc: dict[str, Any]

    @classmethod
    def from_run(cls, output: RunOutput) -> ShapeResult:
        """The result of one evaluation (:func:`~sareval.evaluator.runner.run_evaluation`)."""
        return cls(output.to_document())

    @property
    def players(self) -> list[str]:
        """Players of the game (modalities or band groups), in card order."""
        return list(self.doc["players"])

    @property
    def coalitions(self) -> list[str]:
        """Coalition names (``none``, ``sar``, ..., ``sar+opt``) in evaluation order."""
        return list(self.doc["coalitions"])

    @property
    def n_samples(self) -> int:
        """Samples evaluated."""
        return int(self.doc["n_samples"])

    @property
    def config(self) -> dict[str, Any]:
        """Every choice of the run (:class:`ShapeConfig` fields and execution details)."""
        return dict(self.doc["config"])

    def _section(self, key: str) -> dict[str, Any]:
        return {m: e[key] for m, e in self.doc["metrics"].items()}

    @property
    def values(self) -> dict[str, dict[str, float]]:
        """``values[metric][coalition]``: V(S), the metric with only the players in S."""
        return self._section("V")

    @property
    def relevance(self) -> dict[str, dict[str, float]]:
        """``relevance[metric][player]``: Shapley value / Z (Owen value for nested players)."""
        return self._section("relevance")

    @property
    def cooperation(self) -> dict[str, float]:
        """``cooperation[metric]``: the interaction term C / Z (None for sampled games)."""
        return self._section("cooperation")

    @property
    def intervals(self) -> dict[str, dict[str, Any]]:
        """``intervals[metric]``: 95 % bootstrap intervals of V, relevance and cooperation."""
        return {m: e["ci"] for m, e in self.doc["metrics"].items() if e.get("ci")}

    @property
    def interactions(self) -> dict[str, dict[str, Any]]:
        """``interactions[metric][index][coalition]``: interaction indices of the game (exact
        games; ``{}`` otherwise), in the metric's units: ``moebius``, ``sii``, ``k_sii``,
        ``banzhaf``, ``banzhaf_interaction``, ``shapley_taylor`` (order 2; definitions:
        :mod:`sareval.evaluator.interactions`). Their bootstrap intervals, from the same
        replicates as relevance, are ``intervals[metric]["interactions"]``."""
        return record_from_doc(self.doc)

    def to_shapiq(self, metric: str, index: str = "k_sii", order: int = 2) -> Any:
        """``index`` of ``metric``'s game as shapiq's ``InteractionValues`` (players numbered in
        :attr:`players` order), for shapiq's plots; needs the optional package shapiq."""
        return to_shapiq(doc_game(self.doc, metric), self.players, index, order)

    @property
    def by_class(self) -> dict[str, Any]:
        """Per-class sections ``{class: {"n_samples", "metrics"}}`` (``by_class=True``)."""
        return dict(self.doc.get("by", {}).get("class", {}))

    @property
    def by_cloud_cover(self) -> list[dict[str, Any]]:
        """Per cloud-cover bin sections ``{"label", "bin", "n_samples", "metrics", "counts"}``
        in bin order (``cloud_cover_bins``), then the ``unknown`` bin (NaN cover; ``"bin"``
        None), so that the ``n_samples`` sum to :attr:`n_samples`. Files written before the
        unknown bin was always recorded give it only when it held samples."""
        by = self.doc.get("by", {})
        bins = [dict(b) for b in by.get("cloud_cover", [])]
        if "cloud_cover_unknown" in by:
            bins.append({**by["cloud_cover_unknown"], "bin": None})
        return bins

    @property
    def by_cloud_pixels(self) -> list[dict[str, Any]]:
        """Segmentation: ``{"label", "n_pixels", "metrics", "counts"}`` for the clear, cloudy
        and unknown pixels (per-pixel cloud mask of the optical image read), in that order."""
        return [dict(e) for e in self.doc.get("by", {}).get("cloud_pixels", [])]

    @property
    def counts(self) -> dict[str, Any]:
        """Integer counts per coalition: the sufficient statistics of every metric."""
        return dict(self.doc["counts"])

    def save(self, path: str | Path, *, csv: str | Path | None = None,
             overwrite: bool = False) -> Path:  # fmt: skip
        """The schema-valid results JSON the CLI writes (and the CSV table with ``csv``)."""
        return save_results(self.doc, path, csv, overwrite)

    def __str__(self) -> str:
        return console_table(self.doc)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ShapeResult) and _json_equal(self.doc, other.doc)


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def load_result(path: str | Path) -> ShapeResult:
    """A results JSON written by ``sareval shape`` / ``merge`` or :meth:`ShapeResult.save`."""
    return ShapeResult(read_results(path))


__all__ = [
    "ArrayData",
    "Estimation",
    "Execution",
    "Game",
    "Reporting",
    "ShapeConfig",
    "ShapeResult",
    "StoreHandle",
    "TorchData",
    "evaluate",
    "load_result",
    "open_store",
    "perceptual_score",
    "write_store",
]
