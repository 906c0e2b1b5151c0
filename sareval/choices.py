"""Every option's choices, defined once: the API (:class:`sareval.ShapeConfig`), the CLI
(``click.Choice``) and ``results.schema.json`` read them from here (a test checks all three).
"""

from __future__ import annotations

from typing import Literal

#: where an absent modality's channels go: 0 after normalisation (the study), raw 0, band mean
BASELINES = ("input-zero", "raw-zero", "band-mean")
#: the empty coalition: the all-baseline input, or the subset's majority-class predictor
EMPTY_CHOICES = ("baseline", "majority")
#: the SHAPE normaliser: Z = 1 (the study) or Z = V(all players) (SHAPE paper)
Z_CHOICES = ("one", "full")
METHODS = ("shape", "perceptual")
BACKENDS = ("onnxruntime", "torch")
PROVIDERS = ("cpu", "cuda", "tensorrt")
#: fp16/bf16: the network under autocast; bf16-pure: a bf16 copy of the network, channels-last
#: (the preamble, masking and decisions stay fp32/exact; never the default)
PRECISIONS = ("fp32", "fp16", "bf16", "bf16-pure")
TASKS = ("single-label", "multi-label")
OUTPUT_KINDS = ("logits", "probabilities")
#: how a torch module with several inputs is called: forward(a, b) or forward({"a": .., "b": ..})
CALL_STYLES = ("positional", "dict")
#: how relevance is computed from coalitions: all 2^M, sampled permutations, or the cheaper one
ESTIMATORS = ("auto", "exact", "sampled")
#: map_macro over a class without positives: left out (torchmetrics / reBEN) or AP 0 (sklearn)
MAP_ABSENT_CLASSES = ("skip", "zero")
#: where the band-mean baseline's per-band means come from (or a (store, subset) pair)
BASELINE_STATISTICS = ("evaluated", "card")

Baseline = Literal["input-zero", "raw-zero", "band-mean"]
Empty = Literal["baseline", "majority"]
Z = Literal["one", "full"]
Method = Literal["shape", "perceptual"]
Backend = Literal["onnxruntime", "torch"]
Provider = Literal["cpu", "cuda", "tensorrt"]
Precision = Literal["fp32", "fp16", "bf16", "bf16-pure"]
Task = Literal["single-label", "multi-label"]
Estimator = Literal["auto", "exact", "sampled"]
MapAbsentClasses = Literal["skip", "zero"]
BaselineStatistics = Literal["evaluated", "card"]
