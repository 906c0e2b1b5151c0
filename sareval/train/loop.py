"""Training a fusion classifier or segmenter with clear/cloudy mixing and SHAPE relevance per
epoch.

One run writes into its output directory::

    config.json     the run's configuration (what ``resume`` compares against)
    metrics.jsonl   one JSON object per finished epoch: epoch, train_loss, train_cloudy_fraction,
                    seconds, and ``val`` = {subset: {"n_samples", "metrics": {metric: {"V",
                    "relevance", "cooperation"}}}} from the evaluator on the validation store
                    (segmentation: also "n_pixels" and "pixels" = {clear | cloudy | unknown:
                    {"n_pixels", "metrics"}}, the same game on the pixels of each cloud state),
                    and the same values under the names :class:`sareval.lightning.ShapeCallback`
                    logs, per subset: ``val/<subset>/shape/<metric>/relevance/<player>`` etc.
                    (:mod:`sareval.evaluator.log_names`)
    last.pt         checkpoint after the last finished epoch (weights, optimiser, epoch,
                    RNG states, metric history, best score); loads with ``weights_only=True``
    best.pt         the same at the epoch with the best selection score
    model.pt        final weights (state dict), hashed into the card's provenance
    model.onnx      the final model with its card (z-score constants from the training store),
                    ready for ``sareval shape``

Task ``segmentation`` (a segmentation ``arch``: :data:`SEGMENTATION_ARCHITECTURES`): pixel-wise
cross-entropy over the labelled pixels (the card's ``ignore_index`` never counts), outputs
matched to the label maps by the card's ``label_matching``, the evaluator's rule
(:class:`sareval.evaluator.pixels.Matching`): labels downsampled by nearest neighbour to the
output size, or logits upsampled bilinearly to the label size::

    loss = sum_{labelled pixels x} -log softmax(out(x))[y_x] / #labelled pixels   (0 if none)

The epoch's sample order comes from a generator seeded with ``(seed, epoch)`` and its cloudy
draws from :func:`sareval.train.mixing.cloudy_draws`, so a run resumed from ``last.pt`` ends with
the same weights and metrics as an uninterrupted one (bit for bit on CPU).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from sareval.api import evaluate, open_store
from sareval.atomic import atomic_output
from sareval.card import ModelCard, card_with_statistics, make_card
from sareval.choices import TASKS, Task
from sareval.errors import OutputExistsError, SarevalError
from sareval.evaluator.config import ShapeConfig, parse_device, upgrade_record
from sareval.evaluator.log_names import log_names, subset_names
from sareval.evaluator.metrics import METRIC_NAMES
from sareval.evaluator.pixels import Matching
from sareval.evaluator.preamble import build_preamble, coalition_module
from sareval.evaluator.sources import Labels, map_converter
from sareval.presets import PRESETS
from sareval.progress import progress_bar
from sareval.store import Store
from sareval.train.mixing import CloudMixingDataset

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "sareval-train-checkpoint"
#: Files a run writes; ``--overwrite`` removes exactly these.
RUN_FILES = (
    "config.json",
    "metrics.jsonl",
    "last.pt",
    "best.pt",
    "model.pt",
    "model.onnx",
    "card.json",
)
#: Config fields that may change when a run is resumed (they do not change the results).
RESUMABLE_CHANGES = ("epochs", "workers", "device", "progress", "eval_batch_size")
#: Default metric that picks ``best.pt`` (its V(all modalities) on the first validation subset).
SELECT_METRIC = {"single-label": "oa", "multi-label": "f1_micro", "segmentation": "miou"}


def _path(where: str, value: Any, optional: bool = False) -> str | None:
    """A path field as a string (``str`` or ``os.PathLike``)."""
    if value is None and optional:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise SarevalError(f"{where}: expected a path, got {value!r}")
    return value


def _int(where: str, value: Any, low: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        bound = "" if low is None else f" >= {low}"
        raise SarevalError(f"{where}: expected an integer{bound}, got {value!r}")


def _number(where: str, value: Any, low: float, high: float, *, open_low: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > high or value < low or (open_low and value == low):
        bracket = "(" if open_low else "["
        wanted = (
            f"a finite number {'>' if open_low else '>='} {low:g}"
            if math.isinf(high)
            else f"a number in {bracket}{low:g}, {high:g}]"
        )
        raise SarevalError(f"{where}: expected {wanted}, got {value!r}")
    return float(value)


def _flag(where: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise SarevalError(f"{where}: expected a bool, got {value!r}")


def _choice(where: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise SarevalError(f"{where}: {value!r} is not one of {', '.join(allowed)}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (stored in ``config.json`` and every checkpoint).

    Frozen; every field is checked once, here, and a bad value is a
    :class:`~sareval.errors.SarevalError` naming ``TrainConfig.<field>``. ``device``: ``cpu``,
    ``cuda``, ``cuda:N`` or ``auto``. ``select_metric``: the metric whose V(all modalities) on
    the first validation subset picks ``best.pt`` (``""``: :data:`SELECT_METRIC` of the task).
    ``evaluation``: the per-epoch SHAPE evaluation on the validation subsets, a
    :class:`~sareval.evaluator.config.ShapeConfig` (``ShapeConfig(baseline="band-mean",
    normalization="full")``); its backend, device and batch size are the run's (torch,
    ``device``, ``eval_batch_size``). ``arch``: a classifier for the scene tasks, a
    segmentation network (``unet``, ``resnet18-unet``, ``deeplabv3-resnet18/50``) for task
    ``segmentation``.
    """

    data: str
    out: str
    val: str | None = None
    arch: str = "resnet18"
    preset: str = "study-resnet18"
    task: Task = "single-label"
    fusion: str = "early"
    cloudy_prob: float = 0.0
    epochs: int = 25
    batch_size: int = 64
    seed: int = 0
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    workers: int = 0
    device: str = "cpu"
    val_subsets: tuple[str, ...] = ("clear", "cloudy")
    train_subset: str = "clear"
    eval_batch_size: int = 64
    select_metric: str = ""
    in_memory: bool = False
    progress: bool = True
    evaluation: ShapeConfig = field(default_factory=ShapeConfig)

    def __post_init__(self) -> None:
        from sareval.models.fusion import FUSIONS
        from sareval.models.registry import ARCHITECTURES, SEGMENTATION_ARCHITECTURES

        set_ = object.__setattr__
        set_(self, "data", _path("TrainConfig.data", self.data))
        set_(self, "out", _path("TrainConfig.out", self.out))
        set_(self, "val", _path("TrainConfig.val", self.val, optional=True))
        _choice("TrainConfig.arch", self.arch, (*ARCHITECTURES, *SEGMENTATION_ARCHITECTURES))
        _choice("TrainConfig.preset", self.preset, tuple(PRESETS))
        _choice("TrainConfig.task", self.task, TASKS)
        if (self.arch in SEGMENTATION_ARCHITECTURES) != (self.task == "segmentation"):
            archs = SEGMENTATION_ARCHITECTURES if self.task == "segmentation" else ARCHITECTURES
            raise SarevalError(
                f"TrainConfig.arch: {self.arch} does not fit task {self.task}; "
                f"choose one of {', '.join(archs)}"
            )
        _choice("TrainConfig.fusion", self.fusion, FUSIONS)
        set_(self, "cloudy_prob", _number("TrainConfig.cloudy_prob", self.cloudy_prob, 0, 1))
        for name, low in (("epochs", 1), ("batch_size", 1), ("workers", 0),
                          ("eval_batch_size", 1), ("seed", None)):  # fmt: skip
            _int(f"TrainConfig.{name}", getattr(self, name), low)
        set_(self, "lr", _number("TrainConfig.lr", self.lr, 0, math.inf, open_low=True))
        set_(self, "weight_decay",
             _number("TrainConfig.weight_decay", self.weight_decay, 0, math.inf))  # fmt: skip
        betas = self.betas
        if isinstance(betas, str) or not isinstance(betas, Sequence) or len(betas) != 2:
            raise SarevalError(f"TrainConfig.betas: expected two numbers in [0, 1), got {betas!r}")
        set_(self, "betas", tuple(_number("TrainConfig.betas", b, 0, 1) for b in betas))
        if 1.0 in self.betas:
            raise SarevalError(f"TrainConfig.betas: expected two numbers in [0, 1), got {betas!r}")
        if self.device != "auto":
            parse_device(self.device, "TrainConfig.device")
        subsets = self.val_subsets
        if (
            isinstance(subsets, str)
            or not isinstance(subsets, Sequence)
            or not all(isinstance(s, str) and s for s in subsets)
            or len(set(subsets)) != len(subsets)
        ):
            raise SarevalError(
                f"TrainConfig.val_subsets: expected distinct subset names, got {subsets!r}"
            )
        set_(self, "val_subsets", tuple(subsets))
        if not isinstance(self.train_subset, str) or not self.train_subset:
            raise SarevalError(
                f"TrainConfig.train_subset: expected a subset name, got {self.train_subset!r}"
            )
        if not isinstance(self.select_metric, str) or (
            self.select_metric and self.select_metric not in METRIC_NAMES[self.task]
        ):
            raise SarevalError(
                f"TrainConfig.select_metric: {self.select_metric!r} is not one of "
                f"{', '.join(METRIC_NAMES[self.task])}"
            )
        _flag("TrainConfig.in_memory", self.in_memory)
        _flag("TrainConfig.progress", self.progress)
        self._check_evaluation()

    def _check_evaluation(self) -> None:
        ev = self.evaluation
        if not isinstance(ev, ShapeConfig):
            raise SarevalError(
                f"TrainConfig.evaluation: expected a sareval.ShapeConfig, got {type(ev).__name__}"
            )
        if ev.execution.shard is not None:
            raise SarevalError(
                "TrainConfig.evaluation: ShapeConfig.execution.shard must be None "
                "(validation evaluates every sample)"
            )
        metrics = ev.reporting.metrics
        if self.val and metrics is not None and self.selection_metric not in metrics:
            raise SarevalError(
                f"TrainConfig.evaluation: ShapeConfig.reporting.metrics must include "
                f"{self.selection_metric!r}, the metric that picks best.pt "
                "(TrainConfig.select_metric)"
            )

    @property
    def selection_metric(self) -> str:
        """The metric that picks ``best.pt``: ``select_metric`` or the task's default."""
        return self.select_metric or SELECT_METRIC[self.task]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields; ``evaluation`` as the flat ShapeConfig fields that differ from
        their defaults (``{}`` for the default evaluation)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["betas"] = list(self.betas)
        d["val_subsets"] = list(self.val_subsets)
        default = ShapeConfig().to_record()
        d["evaluation"] = {
            k: v for k, v in self.evaluation.to_record().items() if default.get(k) != v
        }
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """:meth:`to_dict` output, or a ``config`` recorded before ``evaluation`` existed (its
        ``shape_options``, old field names included)."""
        d = dict(d)
        d.pop("store_digests", None)  # config.json's record of the stores
        flat = dict(d.pop("evaluation", None) or d.pop("shape_options", None) or {})
        d.pop("shape_options", None)
        flat = upgrade_record(flat)
        if isinstance(flat.get("shard"), list):
            flat["shard"] = tuple(flat["shard"])
        d["betas"] = tuple(d["betas"])
        d["val_subsets"] = tuple(d["val_subsets"])
        return cls(**d, evaluation=ShapeConfig(**flat))


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` did: the run directory, epochs run now, the epoch it resumed after
    (0: a new run), the whole history (``metrics.jsonl``) and the exported model (or None)."""

    out: Path
    epochs_run: int
    resumed_from: int
    history: list[dict[str, Any]]
    model_file: Path | None


# --- helpers -----------------------------------------------------------------------------------
def resolve_device(device: str, where: str = "TrainConfig.device") -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; refuse ``cuda`` without a GPU (errors
    name ``where``)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _ = parse_device(device, where)
    if kind == "cuda" and not torch.cuda.is_available():
        raise SarevalError(f"{where}: {device!r}: no CUDA device is available")
    return device


@contextlib.contextmanager
def deterministic(device: str) -> Iterator[None]:
    """Deterministic kernels while training (strict on CPU; ``warn_only`` on CUDA, where some
    kernels have no deterministic version); the previous setting is restored afterwards."""
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    warn_before = torch.is_deterministic_algorithms_warn_only_enabled()
    if device.startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_before)


def _label_permutation(store_classes: Sequence[str], card_classes: Sequence[str]) -> np.ndarray:
    """``perm[j]`` = store column of the card's class ``j``."""
    return np.array([list(store_classes).index(c) for c in card_classes], dtype=np.int64)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import torch

    # a file object, not a path: the archive name inside must not vary with the temporary name
    with atomic_output(path, overwrite=True) as tmp, tmp.open("wb") as f:
        torch.save(state, f)


def load_training_state(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by :func:`train` (``weights_only=True``: no code is unpickled)."""
    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SarevalError(f"{path}: not a readable training checkpoint ({e})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise SarevalError(f"{path}: not a sareval training checkpoint")
    return state


def _write_text_atomic(path: Path, text: str) -> None:
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(text)


def _games(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """V, relevance, cooperation of each metric of a results ``metrics`` section."""
    return {
        name: {k: m[k] for k in ("V", "relevance", "cooperation") if k in m}
        for name, m in metrics.items()
        if isinstance(m, dict) and "V" in m
    }


def _metrics_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The scalar part of an evaluator result: V, relevance, cooperation per metric; for
    segmentation also the labelled pixels and the same per pixel state (clear / cloudy /
    unknown pixels of the same images)."""
    summary = {
        "n_samples": result["n_samples"],
        "players": result["players"],
        "metrics": _games(result["metrics"]),
    }
    if "n_pixels" in result:
        summary["n_pixels"] = result["n_pixels"]
        summary["pixels"] = {
            part["label"]: {"n_pixels": part["n_pixels"], "metrics": _games(part["metrics"])}
            for part in (result.get("by") or {}).get("cloud_pixels") or []
        }
    return summary


def _prepare_out(config: TrainConfig, overwrite: bool) -> dict[str, Any] | None:
    """Create the run directory; return the checkpoint to resume from, or None."""
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise SarevalError(
            f"{out}: TrainConfig.out must be a directory (a file of that name exists)"
        )
    if overwrite and out.exists():
        for name in RUN_FILES:
            with contextlib.suppress(FileNotFoundError):
                (out / name).unlink()
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pt"
    if not last.exists():
        metrics = out / "metrics.jsonl"
        if (metrics.exists() and metrics.stat().st_size) or (out / "model.onnx").exists():
            raise OutputExistsError(out)
        return None
    state = load_training_state(last)
    _check_same_config(out, state, config)
    if state["epoch"] >= config.epochs and (out / "model.onnx").exists():
        raise OutputExistsError(out)
    return state


def run_is_complete(config: TrainConfig) -> bool:
    """True when ``config.out`` holds a finished run of ``config`` (all epochs and the model).

    A run of another configuration raises :class:`SarevalError` (as :func:`train` would)."""
    out = Path(config.out)
    if not (out / "last.pt").is_file() or not (out / "model.onnx").is_file():
        return False
    state = load_training_state(out / "last.pt")
    _check_same_config(out, state, config)
    return int(state["epoch"]) >= config.epochs


def _check_same_config(out: Path, state: dict[str, Any], config: TrainConfig) -> None:
    old = dict(state["config"])
    with contextlib.suppress(SarevalError, KeyError, TypeError):
        old = TrainConfig.from_dict(old).to_dict()  # a checkpoint with ``shape_options``
    new = config.to_dict()
    diff = [k for k in new if k not in RESUMABLE_CHANGES and old.get(k) != new[k]]
    if diff:
        raise SarevalError(
            f"{out}: holds a run with another configuration ({', '.join(diff)} differ); "
            "start again with overwrite=True or choose another TrainConfig.out"
        )


# --- the loop ----------------------------------------------------------------------------------
def train(
    config: TrainConfig,
    *,
    overwrite: bool = False,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    export: bool = True,
) -> TrainResult:
    """Train one run (resuming from ``OUT/last.pt`` when present); see the module docstring.

    Adam (PyTorch defaults unless ``lr``/``betas``/``weight_decay`` say otherwise); loss =
    cross-entropy (single-label), BCE-with-logits (multi-label) or pixel-wise cross-entropy
    over the labelled pixels (segmentation, module docstring); no augmentation.
    ``on_epoch_end(record)`` is called after each epoch's checkpoint is written.
    """
    device = resolve_device(config.device)
    resume = _prepare_out(config, overwrite)
    with deterministic(device):
        return _train(config, device, resume, on_epoch_end, export)


@dataclass
class _Run:
    """What an epoch needs: the data, the card (with the training statistics), the network,
    its optimiser, the loss (outputs, targets) -> scalar, the store label rows -> targets in
    the card's class order, and the validation setup."""

    card: Any
    dataset: Any
    model: Any
    wrapped: Any
    optimizer: Any
    criterion: Callable[[Any, Any], Any]
    targets: Callable[[np.ndarray], Any]
    select_metric: str
    val_subsets: list[str]
    digests: dict[str, str]


def _card_and_labels(
    config: TrainConfig,
) -> tuple[Any, Any, Callable[[np.ndarray], Any], dict[str, str], dict[str, tuple[str, ...]]]:
    """The card with the training subset's band statistics, the label set, the function store
    label rows -> the loss's targets (:func:`_targets`), the stores' content digests
    (recorded, checked on resume) and the training store's bands per sensor."""
    from sareval.models.segmentation import LABEL_MATCHING

    with Store(config.data) as store:
        card = make_card(
            config.preset,
            config.task,
            architecture=config.arch,
            fusion=config.fusion,
            checkpoint_sha256=None,
            random_init=False,
            input_size=store.image_size[0],
            label_matching=LABEL_MATCHING.get(config.arch, "nearest-labels"),
        )
        rows = store.subset(config.train_subset).rows
        mean: dict[str, float] = {}
        std: dict[str, float] = {}
        bands = {s: store.bands(s) for s in ("s1", "s2")}
        for sensor, names in bands.items():
            mean.update(zip(names, store.band_mean(sensor, rows).tolist(), strict=True))
            std.update(zip(names, store.band_std(sensor, rows).tolist(), strict=True))
        card = card_with_statistics(card, mean, std)
        spec = store.find_labels(card.task, card.class_names)
        digests = {"data": store.content_digest}
    if config.val:
        with Store(config.val) as vstore:
            bad = [s for s in config.val_subsets if s not in vstore.subsets]
            if bad:
                raise SarevalError(
                    f"{config.val}: no validation subset {bad}; known: "
                    f"{', '.join(sorted(vstore.subsets))}"
                )
            digests["val"] = vstore.content_digest
    return card, spec, _targets(card, spec, config.data), digests, bands


def _targets(card: ModelCard, spec: Any, source: str) -> Callable[[np.ndarray], Any]:
    """Store label rows -> the loss's targets in the card's class order (torch, on the CPU):
    class indices (B,) int64 (single-label), multi-hot (B, K) float32 (multi-label), label
    maps (B, H, W) int64 with the card's ``ignore_index`` (segmentation: the evaluator's
    conversion, :func:`sareval.evaluator.sources.map_converter`)."""
    import torch

    perm = _label_permutation(spec.class_names, card.class_names)
    if card.task == "single-label":
        inverse = np.argsort(perm)
        return lambda y: torch.from_numpy(inverse[y])
    if card.task == "multi-label":
        return lambda y: torch.from_numpy(y[:, perm].astype(np.float32))
    labels = Labels("map", spec.class_names, spec.name, spec.ignore_index)
    convert = map_converter(labels, card, spec.class_names, source)
    return lambda y: torch.from_numpy(convert(y))


def segmentation_loss(card: ModelCard) -> Callable[[Any, Any], Any]:
    """Pixel-wise cross-entropy (module docstring) of logits (B, K, H', W') against label maps
    (B, H, W) in the card's class order, matched as the card's ``label_matching`` says."""
    import torch.nn.functional as F

    if card.height is None or card.width is None:
        raise SarevalError("segmentation training needs a card with the input height and width")
    matching = Matching(card.label_matching, (card.height, card.width), card.ignore_index)
    ignore = -100 if card.ignore_index is None else card.ignore_index

    def loss(outputs: Any, maps: Any) -> Any:
        out = matching.outputs(outputs)  # upsample-logits: logits at the label size
        y = matching.maps(maps, (out.shape[-2], out.shape[-1]))  # nearest-labels
        n = (y != ignore).sum().clamp(min=1)  # on the device: no synchronisation
        return F.cross_entropy(out.float(), y, ignore_index=ignore, reduction="sum") / n

    return loss


def _setup(config: TrainConfig, device: str) -> _Run:
    """Data, card, network (on ``device``), optimiser and loss of a run."""
    import torch

    from sareval.models.registry import build_model_for_card

    card, spec, targets, digests, bands = _card_and_labels(config)
    dataset = CloudMixingDataset(
        config.data,
        spec.name,
        config.cloudy_prob,
        seed=config.seed,
        subset=config.train_subset,
        in_memory=config.in_memory,
    )
    model = build_model_for_card(config.arch, card, config.fusion).to(device)
    # the evaluator's preamble: raw store tensors -> the card's network input (shared code)
    wrapped = coalition_module(build_preamble(card, bands, source=str(config.data)), model)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    criterion: Callable[[Any, Any], Any]
    if config.task == "segmentation":
        criterion = segmentation_loss(card)
    elif config.task == "single-label":
        criterion = torch.nn.CrossEntropyLoss()
    else:
        criterion = torch.nn.BCEWithLogitsLoss()
    return _Run(
        card,
        dataset,
        model,
        wrapped.to(device),
        optimizer,
        criterion,
        targets,
        config.selection_metric,
        list(config.val_subsets) if config.val else [],
        digests,
    )


def _train_epoch(run: _Run, config: TrainConfig, epoch: int, device: str) -> tuple[float, int]:
    """One epoch of Adam steps over the mixed clear/cloudy data; (mean loss, samples seen)."""
    import torch

    run.dataset.set_epoch(epoch)
    n = len(run.dataset)
    order = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    loader: Any = torch.utils.data.DataLoader(
        run.dataset,
        batch_size=config.batch_size,
        sampler=torch.utils.data.RandomSampler(run.dataset, generator=order),
        num_workers=config.workers,
        drop_last=n > config.batch_size and n % config.batch_size == 1,  # BatchNorm needs > 1
        pin_memory=device.startswith("cuda"),
    )
    run.model.train()
    normalise: Any = run.wrapped.normalise  # the coalition module's preamble
    total_loss, seen = 0.0, 0
    for batch in progress_bar(
        loader, desc=f"epoch {epoch + 1}", leave=False, disable=not config.progress
    ):
        s1 = batch["s1"].to(device, non_blocking=True)
        s2 = batch["s2"].to(device, non_blocking=True)
        y = batch["label"].numpy()
        target = run.targets(y).to(device)
        run.optimizer.zero_grad(set_to_none=True)
        loss = run.criterion(run.model(normalise({"s1": s1, "s2": s2})), target)
        loss.backward()
        run.optimizer.step()
        total_loss += float(loss.detach()) * len(y)
        seen += len(y)
    run.model.eval()
    return total_loss / max(seen, 1), seen


def _validate(run: _Run, config: TrainConfig, device: str) -> dict[str, Any]:
    """SHAPE relevance of the current network on each validation subset."""
    out = {}
    for subset in run.val_subsets:
        with open_store(str(config.val)) as val_store:
            result = evaluate(
                run.model,
                val_store.subset(subset),
                config.evaluation,
                card=run.card,
                backend="torch",
                device=device,
                batch_size=config.eval_batch_size,
            )
        out[subset] = _metrics_summary(result.doc)
    return out


def _train(
    config: TrainConfig,
    device: str,
    resume: dict[str, Any] | None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None,
    export: bool,
) -> TrainResult:
    import torch

    out = Path(config.out)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    run = _setup(config, device)
    history: list[dict[str, Any]] = []
    best_score = -float("inf")
    start_epoch = 0
    if resume is not None:
        _check_same_stores(out, resume, run.digests)
        run.model.load_state_dict(resume["model"])
        run.optimizer.load_state_dict(resume["optimizer"])
        history = list(resume["history"])
        best_score = float(resume["best_score"])
        start_epoch = int(resume["epoch"])
        torch.set_rng_state(resume["rng"]["torch"])
        random.setstate(_as_random_state(resume["rng"]["python"]))
        log.info("resuming %s after epoch %d", out, start_epoch)
    _write_text_atomic(
        out / "config.json", json.dumps(_config_record(config, run), indent=2) + "\n"
    )
    _write_text_atomic(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    epochs = progress_bar(
        range(start_epoch, config.epochs),
        desc=f"train {out.name}",
        unit="epoch",
        disable=not config.progress,
        initial=start_epoch,
        total=config.epochs,
    )
    for epoch in epochs:
        t0 = time.perf_counter()
        loss, seen = _train_epoch(run, config, epoch, device)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": loss,
            "train_samples": seen,
            "train_cloudy_fraction": run.dataset.cloudy_fraction,
            "cloudy_prob": config.cloudy_prob,
            "seed": config.seed,
            "val": _validate(run, config, device),
        }
        for subset, summary in record["val"].items():  # the callback's names, per subset
            names = subset_names(subset, log_names(summary))
            record.update({k: None if math.isnan(v) else v for k, v in names.items()})
        record["seconds"] = time.perf_counter() - t0
        score = _selection_score(record, run.val_subsets, run.select_metric)
        history.append(record)
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": config.to_dict(),
            "epoch": epoch + 1,
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "history": history,
            "best_score": max(best_score, score),
            "rng": {"torch": torch.get_rng_state(), "python": _plain_random_state()},
            "card": run.card.to_json(),
            "digests": run.digests,
        }
        _save_checkpoint(out / "last.pt", state)
        if score > best_score:
            best_score = score
            _link_or_copy(out / "last.pt", out / "best.pt")
        _write_text_atomic(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
        epochs.set_postfix(_postfix(record, run.select_metric))
        if on_epoch_end is not None:
            on_epoch_end(record)
    model_file = _export(run.model, run.card, out, config) if export else None
    return TrainResult(out, len(history) - start_epoch, start_epoch, history, model_file)


def _config_record(config: TrainConfig, run: _Run) -> dict[str, Any]:
    """``config.json``: the configuration with absolute, resolvable store paths and the stores'
    content digests (a resume onto other data at the same path is refused)."""
    d = config.to_dict()
    d["data"] = str(Path(config.data).resolve())
    d["val"] = str(Path(config.val).resolve()) if config.val else None
    d["store_digests"] = run.digests
    return d


def _check_same_stores(out: Path, resume: dict[str, Any], digests: dict[str, str]) -> None:
    """Refuse resuming onto stores whose content differs from the run's (same paths or not)."""
    old = resume.get("digests") or {}
    changed = [k for k in digests if k in old and old[k] != digests[k]]
    if changed:
        which = ", ".join(f"TrainConfig.{k}" for k in changed)
        raise SarevalError(
            f"{out}: the run was trained on other data ({which} store content digest differs "
            "from the one recorded in last.pt); start again with overwrite=True"
        )


def _selection_score(record: dict[str, Any], val_subsets: list[str], metric: str) -> float:
    """V(all modalities) of ``metric`` on the first validation subset; -train loss without one."""
    if not val_subsets:
        return -float(record["train_loss"])
    val = record["val"][val_subsets[0]]
    if metric not in val["metrics"]:
        raise SarevalError(
            f"TrainConfig.select_metric: {metric!r} is not among the evaluated metrics "
            f"({', '.join(val['metrics'])})"
        )
    return float(val["metrics"][metric]["V"]["+".join(val["players"])])


def _postfix(record: dict[str, Any], metric: str) -> dict[str, str]:
    post = {"loss": f"{record['train_loss']:.3f}"}
    for subset, r in record["val"].items():
        m = r["metrics"].get(metric)
        if m:
            rel = " ".join(f"{k}={v:.2f}" for k, v in m["relevance"].items())
            post[subset] = rel
    return post


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` = the current ``src`` (a hard link: ``src`` is later replaced, never rewritten)."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    tmp.replace(dst)


def _plain_random_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _as_random_state(state: list[Any]) -> tuple[Any, ...]:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def _export(model: Any, card: Any, out: Path, config: TrainConfig) -> Path:
    """Write ``model.pt`` (state dict) and ``model.onnx`` with the card (provenance: its hash)."""
    import hashlib

    import torch

    from sareval.export.onnx_export import export_onnx

    model = model.to("cpu").eval()
    # same bytes for the same weights: a reproducible hash in the card
    with atomic_output(out / "model.pt", overwrite=True) as tmp, tmp.open("wb") as f:
        torch.save(model.state_dict(), f)
    digest = hashlib.sha256((out / "model.pt").read_bytes()).hexdigest()
    d = card.to_dict()
    d["provenance"] = {
        **d.get("provenance", {}),
        "checkpoint_sha256": digest,
        "training": {
            "data": str(config.data),
            "cloudy_prob": config.cloudy_prob,
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "seed": config.seed,
            "lr": config.lr,
        },
    }
    final = ModelCard.from_dict(d, source=out / "card.json")
    _write_text_atomic(out / "card.json", final.to_json() + "\n")
    export_onnx(model, final, out / "model.onnx", overwrite=True, check=True)
    return out / "model.onnx"
