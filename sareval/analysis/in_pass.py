"""Per-sample relevance and false-prediction detection, collected during the evaluator's pass.

``ShapeConfig(per_sample=True)`` makes :func:`sareval.evaluate` hand every batch's outputs of
all 2^M coalitions (the empty one included: the all-baseline input's output) to a
:class:`PerSampleCollector`, at no extra forward pass. At the end it gives

- the per-sample Shapley values (:mod:`sareval.analysis.per_sample`) of the probability of the
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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sareval.analysis.detection import BASELINE, detection_table, detector_scores
from sareval.analysis.per_sample import PerSampleShapley, per_sample_shapley, summarize_per_sample

#: the per-sample quantities stored and summarised
QUANTITIES = ("prob_true", "prob_pred", "accuracy")


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
        self.parts: list[tuple[PerSampleShapley, dict[str, np.ndarray], np.ndarray]] = []

    def add(self, outputs: np.ndarray, labels: np.ndarray, cloud_cover: np.ndarray) -> None:
        """One batch: outputs (2^M, B, K) of every coalition, labels in model order, cover."""
        kw: dict[str, Any] = dict(kind=self.kind, task=self.task, threshold=self.threshold)
        values = per_sample_shapley(outputs, self.players, labels, **kw)
        scores = detector_scores(outputs, self.players, **kw)
        self.parts.append((values, scores, np.asarray(cloud_cover, np.float64)))

    def state(self) -> list[Any]:
        """What a torchrun rank sends to the main rank (:meth:`merged`)."""
        return self.parts

    @staticmethod
    def merged(states: Sequence[list[Any]]) -> list[Any]:
        """The ranks' parts in rank order (ranks read consecutive position ranges)."""
        return [p for s in states for p in s]

    def arrays(self) -> dict[str, np.ndarray]:
        """``per_sample/<quantity>`` (N, M) and ``detector/<name>`` (N,): the predictions file."""
        values = PerSampleShapley.concatenate([v for v, _, _ in self.parts])
        out = {f"per_sample/{q}": values.quantity(q).astype(np.float32) for q in QUANTITIES}
        for name in self.parts[0][1]:
            out[f"detector/{name}"] = np.concatenate([s[name] for _, s, _ in self.parts])
        out["correct"] = values.correct
        return out

    def section(self) -> dict[str, Any]:
        """The results sections ``per_sample`` and ``detection`` (module docstring)."""
        values = PerSampleShapley.concatenate([v for v, _, _ in self.parts])
        cover = np.concatenate([c for _, _, c in self.parts])
        summary_kw: dict[str, Any] = dict(
            labels=values.labels, task=self.task, class_names=self.class_names
        )
        if self.bin_edges is not None:
            summary_kw.update(cloud_cover=cover, bin_edges=list(self.bin_edges))
        per_sample = {
            "definition": "Shapley value of each sample's model score (not the dataset-level "
            "SHAPE score); prob_true: probability of the true class(es), prob_pred: of the "
            "predicted class, accuracy: of the sample's correctness",
            **{q: summarize_per_sample(values.quantity(q), self.players, **summary_kw)
               for q in QUANTITIES},
        }  # fmt: skip
        scores = {name: np.concatenate([s[name] for _, s, _ in self.parts])
                  for name in self.parts[0][1]}  # fmt: skip
        wrong = ~values.correct
        detection: dict[str, Any] = {"n_wrong": int(wrong.sum()), "n": int(wrong.size)}
        if 0 < wrong.sum() < wrong.size:
            rows = detection_table(scores, wrong, n_boot=self.n_boot, seed=self.seed)
            detection["rows"] = [r.to_dict() for r in rows]
            better = [r.detector for r in rows if r.beats_baseline]
            detection["summary"] = (
                f"{', '.join(better)} beat{'s' if len(better) == 1 else ''} the {BASELINE} "
                "baseline (the AUROC difference's interval lies above 0)"
                if better
                else f"no relevance-based detector beats the {BASELINE} baseline"
            )
        else:
            detection["summary"] = "not computed: the model is right (or wrong) on every sample"
        return {"per_sample": per_sample, "detection": detection}
