"""Per-sample relevance and false-prediction detection, collected during the evaluator's pass.

``ShapeConfig(per_sample=True)`` makes :func:`sareval.evaluate` hand every batch's outputs of
all 2^M coalitions (the empty one included: the all-baseline input's output) to a
:class:`PerSampleCollector`, at no extra forward pass. At the end it gives

- the per-sample Shapley values (:mod:`sareval.evaluator.per_sample`) of the probability of the
  true class (``prob_true``; multi-label: summed over the true classes) and of the predicted
  class (``prob_pred``), and of each sample's correctness (``accuracy``, whose mean is SHAPE's
  OA / subset-accuracy relevance with Z = 1), as (N, M) arrays for the predictions file;
- a results section ``per_sample``: their distribution (mean, quantiles), by class and by
  cloud-cover bin; and ``detection``: how well per-sample quantities (the SAR share of the
  relevance, the cooperation term, disagreement between coalitions) separate wrong from correct
  predictions of the full model, as AUROC and AP with bootstrap intervals, against the maximum
  softmax probability baseline (``msp``), with a plain statement when none beats it.

These per-sample values are a different quantity from the dataset-level SHAPE score: a Shapley
value of one sample's model score, not of a metric over the whole subset.

Every value depends on its own sample only, so the collected :class:`PerSampleState` (labels,
correctness, Shapley values, detector scores, cloud cover per sample) concatenates: batches,
torchrun ranks (gathered on the main rank) and shards give the one-process state, sample order
included (which detection's bootstrap depends on). A shard's results document carries that state
instead of the two sections (``per_sample_state``, :mod:`sareval.evaluator.embedded`, float64:
exact); ``sareval merge`` concatenates the shards' states in shard order and computes the
sections with :func:`per_sample_sections`, as a single run does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sareval.errors import SarevalError
from sareval.evaluator.detection import (
    BASELINE,
    detection_table,
    detector_scores,
    summary_sentence,
)
from sareval.evaluator.embedded import decode_arrays, encode_arrays
from sareval.evaluator.per_sample import per_sample_shapley, summarize_per_sample

#: the per-sample quantities stored and summarised
QUANTITIES = ("prob_true", "prob_pred", "accuracy")
#: detection's bootstrap replicates when ``ShapeConfig.reporting.replicates`` is 0
DETECTION_BOOT = 200
#: the name of the state in a shard's results document
STATE_SECTION = "per_sample_state"


@dataclass
class PerSampleState:
    """Per-sample values in sample order (module docstring); merge with :meth:`concat`."""

    labels: np.ndarray  # (n,) class indices or (n, K) multi-hot, in model order
    correct: np.ndarray  # (n,) bool: the full coalition's decision is right
    values: dict[str, np.ndarray]  # quantity (QUANTITIES) -> (n, M) float64 Shapley values
    detectors: dict[str, np.ndarray]  # detector name -> (n,) float64 score
    cover: np.ndarray  # (n,) float64 cloud cover (NaN: unknown)

    @property
    def n(self) -> int:
        return int(self.correct.shape[0])

    @classmethod
    def concat(cls, states: Sequence[PerSampleState]) -> PerSampleState:
        """The states' samples joined in the given order."""
        if not states:
            raise SarevalError("per-sample values: nothing to concatenate")
        first = states[0]
        return cls(
            np.concatenate([s.labels for s in states]),
            np.concatenate([s.correct for s in states]),
            {q: np.concatenate([s.values[q] for s in states]) for q in first.values},
            {d: np.concatenate([s.detectors[d] for s in states]) for d in first.detectors},
            np.concatenate([s.cover for s in states]),
        )

    def to_json(self) -> dict[str, Any]:
        """The state embedded in a shard's document (:mod:`sareval.evaluator.embedded`)."""
        arrays = {"labels": self.labels, "correct": self.correct, "cover": self.cover,
                  "detector_names": np.array(list(self.detectors), dtype=str)}  # fmt: skip
        arrays.update({f"value.{q}": v for q, v in self.values.items()})
        arrays.update({f"detector.{d}": v for d, v in self.detectors.items()})
        return encode_arrays(arrays, self.n)

    @classmethod
    def from_json(cls, data: Any, source: str, m: int) -> PerSampleState:
        """Decode :meth:`to_json` output of ``m`` players; a wrong digest, n or layout is a
        one-line error naming ``source``."""
        required = ("labels", "correct", "cover", "detector_names",
                    *(f"value.{q}" for q in QUANTITIES))  # fmt: skip
        z, n = decode_arrays(data, source, STATE_SECTION, required, may_hold_nan=("cover",))
        names = [str(d) for d in np.atleast_1d(z["detector_names"])]
        try:
            state = cls(
                z["labels"], z["correct"].astype(bool, copy=False),
                {q: z[f"value.{q}"].astype(np.float64, copy=False) for q in QUANTITIES},
                {d: z[f"detector.{d}"].astype(np.float64, copy=False) for d in names},
                z["cover"].astype(np.float64, copy=False),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as e:
            raise SarevalError(f"{source}: unreadable {STATE_SECTION!r} section ({e})") from None
        shapes = [state.correct.shape, state.cover.shape, state.labels.shape[:1],
                  *(v.shape for v in state.detectors.values())]  # fmt: skip
        if (
            any(shape != (n,) for shape in shapes)
            or any(v.shape != (n, m) for v in state.values.values())
            or BASELINE not in state.detectors
        ):
            raise SarevalError(
                f"{source}: {STATE_SECTION!r} section arrays do not fit together "
                f"({n} samples of {m} players declared)"
            )
        return state


class PerSampleCollector:
    """Collects per-sample values batch by batch (module docstring)."""

    def __init__(
        self,
        players: Sequence[str],
        *,
        kind: str,
        task: str,
        threshold: float,
        class_names: Sequence[str],
        bin_edges: Sequence[float] | None,
        n_boot: int,
        seed: int,
    ) -> None:
        self.players = tuple(players)
        self.kind, self.task, self.threshold = kind, task, threshold
        self.class_names, self.bin_edges = list(class_names), bin_edges
        self.n_boot, self.seed = n_boot, seed
        self.parts: list[PerSampleState] = []

    def add(self, outputs: np.ndarray, labels: np.ndarray, cloud_cover: np.ndarray,
            draws: int = 1) -> None:  # fmt: skip
        """One batch: outputs (2^M, B, K) of every coalition, labels in model order, cover.

        ``draws`` D (marginal imputation): outputs (2^M, D B, K), row d B + b draw d of sample
        b; a sample's Shapley values and detector scores are the means over its D draws of
        those of each draw (Shapley values are linear in the game), and it is ``correct`` when
        the full coalition's decision is right in every draw (its input has no donor part)."""
        kw: dict[str, Any] = dict(kind=self.kind, task=self.task, threshold=self.threshold)
        b = outputs.shape[1] // draws
        per_draw = [outputs[:, d * b : (d + 1) * b] for d in range(draws)]
        values = [per_sample_shapley(o, self.players, labels, **kw) for o in per_draw]
        detectors = [detector_scores(o, self.players, **kw) for o in per_draw]
        self.parts.append(
            PerSampleState(
                values[0].labels,
                np.all([v.correct for v in values], axis=0),
                {q: np.mean([v.quantity(q) for v in values], axis=0) for q in QUANTITIES},
                {n: np.mean([d[n] for d in detectors], axis=0) for n in detectors[0]},
                np.asarray(cloud_cover, np.float64),
            )
        )

    def state(self) -> PerSampleState:
        """The samples collected so far (a torchrun rank sends it to the main rank, a shard
        embeds it in its document)."""
        return PerSampleState.concat(self.parts)

    def arrays(self) -> dict[str, np.ndarray]:
        """``per_sample/<quantity>`` (N, M) and ``detector/<name>`` (N,): the predictions file."""
        state = self.state()
        out = {f"per_sample/{q}": state.values[q].astype(np.float32) for q in QUANTITIES}
        out.update({f"detector/{name}": v for name, v in state.detectors.items()})
        out["correct"] = state.correct
        return out

    def section(self, state: PerSampleState | None = None) -> dict[str, Any]:
        """The results sections ``per_sample`` and ``detection`` of ``state`` (default: the
        samples collected here)."""
        return per_sample_sections(
            self.state() if state is None else state, self.players, task=self.task,
            class_names=self.class_names, bin_edges=self.bin_edges, n_boot=self.n_boot,
            seed=self.seed,
        )  # fmt: skip


def per_sample_sections(
    state: PerSampleState,
    players: Sequence[str],
    *,
    task: str,
    class_names: Sequence[str],
    bin_edges: Sequence[float] | None,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """The results sections ``per_sample`` and ``detection`` (module docstring)."""
    players = tuple(players)
    summary_kw: dict[str, Any] = dict(labels=state.labels, task=task, class_names=class_names)
    if bin_edges is not None:
        summary_kw.update(cloud_cover=state.cover, bin_edges=list(bin_edges))
    per_sample = {
        "definition": "Shapley value of each sample's model score (not the dataset-level "
        "SHAPE score); prob_true: probability of the true class(es), prob_pred: of the "
        "predicted class, accuracy: of the sample's correctness",
        **{q: summarize_per_sample(state.values[q], players, **summary_kw) for q in QUANTITIES},
    }
    return {"per_sample": per_sample, "detection": _detection(state, n_boot, seed)}


def _detection(state: PerSampleState, n_boot: int, seed: int) -> dict[str, Any]:
    wrong = ~state.correct
    detection: dict[str, Any] = {"n_wrong": int(wrong.sum()), "n": int(wrong.size)}
    if 0 < wrong.sum() < wrong.size:
        rows = detection_table(state.detectors, wrong, n_boot=n_boot, seed=seed)
        detection["rows"] = [r.to_dict() for r in rows]
        detection["summary"] = summary_sentence(rows)
    else:
        detection["summary"] = "not computed: the model is right (or wrong) on every sample"
    return detection
