"""Every option's choices, defined once: the API (:class:`sareval.ShapeConfig`), the CLI
(``click.Choice``) and ``results.schema.json`` read them from here (a test checks all three).

Each ``Literal`` is the single definition; the tuple beside it is derived with
:func:`typing.get_args` (the order of the ``Literal`` is the order shown to users).
"""

from __future__ import annotations

from typing import Literal, get_args

#: where an absent modality's channels go: 0 after normalisation (the study), raw 0, band mean
Baseline = Literal["input-zero", "raw-zero", "band-mean"]
BASELINES: tuple[Baseline, ...] = get_args(Baseline)
#: the empty coalition: the all-baseline input, or the subset's majority-class predictor
Empty = Literal["baseline", "majority"]
EMPTY_CHOICES: tuple[Empty, ...] = get_args(Empty)
#: the SHAPE normaliser: Z = 1 (the study) or Z = V(all players) (SHAPE paper)
Z = Literal["one", "full"]
Z_CHOICES: tuple[Z, ...] = get_args(Z)
Method = Literal["shape", "perceptual"]
METHODS: tuple[Method, ...] = get_args(Method)
Backend = Literal["onnxruntime", "torch"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)
Provider = Literal["cpu", "cuda", "tensorrt"]
PROVIDERS: tuple[Provider, ...] = get_args(Provider)
#: fp16/bf16: the network under autocast; bf16-pure: a bf16 copy of the network, channels-last
#: (the preamble, masking and decisions stay fp32/exact; never the default); bf16-verified: a
#: bf16 copy whose near-margin rows re-run in fp32: the fp32 decisions (evaluator.bf16_verified)
Precision = Literal["fp32", "fp16", "bf16", "bf16-pure", "bf16-verified"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
#: scene classification (one / several classes per image) or a class per pixel
Task = Literal["single-label", "multi-label", "segmentation"]
TASKS: tuple[Task, ...] = get_args(Task)
#: segmentation: how label maps meet outputs (N, K, H', W') of another size: labels
#: downsampled by nearest neighbour to (H', W') (the default), or logits upsampled bilinearly
LabelMatching = Literal["nearest-labels", "upsample-logits"]
LABEL_MATCHINGS: tuple[LabelMatching, ...] = get_args(LabelMatching)
#: what "absent" means to the model (the game's absence operator): fill the channels with the
#: baseline value, omit the input, mask its tokens, or impute it from other samples
Absence = Literal["fill", "omit", "mask", "marginal"]
ABSENCES: tuple[Absence, ...] = get_args(Absence)
OutputKind = Literal["logits", "probabilities"]
OUTPUT_KINDS: tuple[OutputKind, ...] = get_args(OutputKind)
#: how a torch module with several inputs is called: forward(a, b) or forward({"a": .., "b": ..})
CallStyle = Literal["positional", "dict"]
CALL_STYLES: tuple[CallStyle, ...] = get_args(CallStyle)
#: how relevance is computed from coalitions: all 2^M, sampled permutations, or the cheaper one
Estimator = Literal["auto", "exact", "sampled"]
ESTIMATORS: tuple[Estimator, ...] = get_args(Estimator)
#: map_macro over a class without positives: left out (torchmetrics / reBEN) or AP 0 (sklearn)
MapAbsentClasses = Literal["skip", "zero"]
MAP_ABSENT_CLASSES: tuple[MapAbsentClasses, ...] = get_args(MapAbsentClasses)
#: where the band-mean baseline's per-band means come from (or a (store, subset) pair)
BaselineStatistics = Literal["evaluated", "card"]
BASELINE_STATISTICS: tuple[BaselineStatistics, ...] = get_args(BaselineStatistics)
