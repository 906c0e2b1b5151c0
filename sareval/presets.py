"""Presets: the known input pipelines, from which :func:`sareval.card.make_card` builds cards.

==================  ====  =========================================================  =========
preset              ch.   channels (card order of players: sar, opt)                  classes
==================  ====  =========================================================  =========
sen12ms-s1s2        12    B02 B03 B04 B05 B06 B07 B08 B8A B11 B12, VV VH              IGBP10
sen12ms-s2          10    B02 B03 B04 B05 B06 B07 B08 B8A B11 B12                     IGBP10
sen12ms-s1           2    VV VH                                                       IGBP10
bigearthnet-mm      12    B04 B03 B02 B08 B05 B06 B07 B8A B11 B12, VV VH              BEN19
reben-s1s2          12    B02 B03 B04 B08 B05 B06 B07 B11 B12 B8A, VH VV              BEN19 a-z
reben-s2            10    B02 B03 B04 B08 B05 B06 B07 B11 B12 B8A                     BEN19 a-z
reben-s1             2    VH VV                                                       BEN19 a-z
reben-s1s2-v0.2.0   12    VV VH, B02 B03 B04 B05 B06 B07 B08 B8A B11 B12              BEN19 a-z
reben-s2-v0.2.0     10    B02 B03 B04 B05 B06 B07 B08 B8A B11 B12                     BEN19 a-z
reben-s1-v0.2.0      2    VV VH                                                       BEN19 a-z
study-resnet18      15    B01 .. B12 (13 incl. B10), VV VH                            IGBP10
==================  ====  =========================================================  =========

**SEN12MS** (classification toolbox ``dataset.py`` / ``test.py``, checked against its source):
S1 ``nan_to_num`` (NaN -> 0) then clip [-25, 0] dB; S2 raw DN, neither clipped nor divided;
then a per-channel z-score with the toolbox's training statistics (:data:`SEN12MS_MEAN`,
:data:`SEN12MS_STD`). 256x256. Single-label: argmax; multi-label: sigmoid >= 0.5.

**BigEarthNet-MM** (TF models, multi-label only, 120x120): z-score per band with
:data:`BIGEARTHNET_MEAN` / :data:`BIGEARTHNET_STD`; no clipping, no NaN handling (none in the
published pipeline). The 20 m bands are upsampled to 120x120 by the store (TF1 legacy bicubic;
bicubic weights sum to 1, so resampling commutes with the per-band z-score the TF code applies
first). Provenance of the statistics:

- S2: ``BAND_STATS`` of the bigearthnet-models-tf repository (``BigEarthNet.py``), identical in
  bigearthnet_common ``constants.py`` (``BAND_STATS_S2``, which cites that file) and in the
  BigEarthNet-MM loaders read here. *Unverified*: the MM TF repository's own ``BigEarthNet.py``
  was not read; its ``main_model.py`` z-scores with ``BAND_STATS['S2']`` and
  ``BAND_STATS['S1']``, and every copy of those tables found has these values.
- S1: VV mean -12.619993741972035, std 5.115911777546365; VH mean -19.29044597721542, std
  5.464428464912864 (bigearthnet_common ``BAND_STATS_S1``; agrees with the rounded
  -12.62 / 5.12, -19.29 / 5.46 of the reference). Same caveat.

**reBEN** (BigEarthNet v2.0 models of Clasen et al., timm networks trained with ConfigILM by
reben-training-scripts; multi-label, 120x120, sigmoid >= 0.5): classes in alphabetical order
(ConfigILM ``BENv2_utils.NEW_LABELS = sorted(...)``, used by the training script's metrics);
z-score per band with :data:`REBEN_MEAN` / :data:`REBEN_STD`, ConfigILM's ``"120_nearest"``
table (statistics of the train split after nearest upsampling to 120 px: the default of
``band_combi_to_mean_std`` that ``BENv2DataModule`` uses); no clipping, no NaN handling. The
20/60 m bands are upsampled to 120 px with torch ``interpolate(mode="nearest")`` in ConfigILM's
``BENv2DataSet``: preprocess the store with ``--resampling nearest`` (the bigearthnet-v2
default). Channel orders by release:

- ``reben-s1s2`` / ``-s2`` / ``-s1``: the earlier models (before v0.2.0), trained through
  ConfigILM's ``BENv2DataSet`` whose channel configurations are ``STANDARD_BANDS[12]`` (10 m,
  then 20 m bands with B8A last, then VH, VV), ``[10]`` and ``["S1"] = [VH, VV]``
  (reben-training-scripts ``get_bands``; ConfigILM ``BENv2_utils.py``, read here).
- ``reben-s1s2-v0.2.0`` / ``-s2-v0.2.0`` / ``-s1-v0.2.0``: the v0.2.0 models (e.g.
  ``BIFOLD-BigEarthNetv2-0/resnet50-all-v0.2.0``): VV, VH, then B02..B12 in band order
  (BigEarthNet.txt's ``S1S2-10m20m`` / ``S2-10m20m`` combinations and third-party inference
  code for resnet50-all-v0.2.0, which also uses the ``120_nearest`` statistics). *Unverified*
  against the v0.2.0 training code or model cards, as are its S2-only and S1-only orders.

**Segmentation** (task ``segmentation``: the SEN12MS presets, which also fit DFC2020's SEN12MS
layout, and the reBEN presets): SEN12MS ``lc`` and DFC2020 maps in the 10 simplified IGBP
classes (:data:`~sareval.classes.IGBP10`); reBEN reference maps in the 19 classes in
:data:`~sareval.classes.BEN19` order (the order the store's labels use; no published reBEN
segmentation model fixes another). Cards: ignore index 255 (:func:`sareval.card.make_card`).

**study-resnet18** (the study's own ResNet18; all 13 S2 bands + VV, VH: the store holds them
and the cloudy S2 of SEN12MS-CR has all 13): S1 NaN -> 0, clip [-25, 0]; S2 clip [0, 10000];
z-score statistics are those of the TRAINING store, filled in at train time by
:func:`sareval.card.card_with_statistics` (until then mean 0, std 1, marked in provenance).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sareval.bands import (
    BIGEARTHNET_MM_S2_BANDS,
    S1_BANDS,
    S2_BANDS,
    SEN12MS_S2_LAND_BANDS,
)
from sareval.choices import TASKS
from sareval.classes import BEN19, IGBP10
from sareval.errors import SarevalError

#: SEN12MS toolbox training statistics (``test.py``: bands_mean / bands_std), by band
SEN12MS_MEAN: dict[str, float] = {
    "B02": 1226.4215,
    "B03": 1137.3799,
    "B04": 1139.6792,
    "B05": 1350.9973,
    "B06": 1932.9058,
    "B07": 2211.1584,
    "B08": 2154.9846,
    "B8A": 2409.1128,
    "B11": 2001.8622,
    "B12": 1356.0801,
    "VV": -11.76858,
    "VH": -18.294598,
}
SEN12MS_STD: dict[str, float] = {
    "B02": 741.6254,
    "B03": 740.883,
    "B04": 960.1045,
    "B05": 946.76056,
    "B06": 985.52747,
    "B07": 1082.4341,
    "B08": 1057.7628,
    "B8A": 1136.1942,
    "B11": 1132.7898,
    "B12": 991.48016,
    "VV": 4.525339,
    "VH": 4.3586307,
}
#: BigEarthNet per-band statistics (see the module docstring for their provenance)
BIGEARTHNET_MEAN: dict[str, float] = {
    "B01": 340.76769064,
    "B02": 429.9430203,
    "B03": 614.21682446,
    "B04": 590.23569706,
    "B05": 950.68368468,
    "B06": 1792.46290469,
    "B07": 2075.46795189,
    "B08": 2218.94553375,
    "B8A": 2266.46036911,
    "B09": 2246.0605464,
    "B11": 1594.42694882,
    "B12": 1009.32729131,
    "VV": -12.619993741972035,
    "VH": -19.29044597721542,
}
BIGEARTHNET_STD: dict[str, float] = {
    "B01": 554.81258967,
    "B02": 572.41639287,
    "B03": 582.87945694,
    "B04": 675.88746967,
    "B05": 729.89827633,
    "B06": 1096.01480586,
    "B07": 1273.45393088,
    "B08": 1365.45589904,
    "B8A": 1356.13789355,
    "B09": 1302.3292881,
    "B11": 1079.19066363,
    "B12": 818.86747235,
    "VV": 5.115911777546365,
    "VH": 5.464428464912864,
}

#: reBEN (BigEarthNet v2) train-split statistics after nearest upsampling to 120 px: ConfigILM
#: ``BENv2_utils.means["120_nearest"]`` / ``stds["120_nearest"]`` (S1 statistics from v1)
REBEN_MEAN: dict[str, float] = {
    "B01": 361.0767822265625,
    "B02": 438.3720703125,
    "B03": 614.0556640625,
    "B04": 588.4096069335938,
    "B05": 942.8433227539062,
    "B06": 1769.931640625,
    "B07": 2049.551513671875,
    "B08": 2193.2919921875,
    "B09": 2241.455322265625,
    "B11": 1568.226806640625,
    "B12": 997.7324829101562,
    "B8A": 2235.556640625,
    "VH": -19.352558135986328,
    "VV": -12.643863677978516,
}
REBEN_STD: dict[str, float] = {
    "B01": 575.0687255859375,
    "B02": 607.02685546875,
    "B03": 603.2968139648438,
    "B04": 684.56884765625,
    "B05": 738.4326782226562,
    "B06": 1100.4560546875,
    "B07": 1275.805419921875,
    "B08": 1369.3717041015625,
    "B09": 1316.393310546875,
    "B11": 1070.1612548828125,
    "B12": 813.5276489257812,
    "B8A": 1356.5440673828125,
    "VH": 5.590505599975586,
    "VV": 5.133493900299072,
}
#: the reBEN models' output order: the 19 class names sorted (ConfigILM ``NEW_LABELS``)
REBEN_CLASSES: tuple[str, ...] = tuple(sorted(BEN19))
#: reBEN channel orders: the earlier release (ConfigILM STANDARD_BANDS) and v0.2.0
REBEN_S2_EARLY = ("B02", "B03", "B04", "B08", "B05", "B06", "B07", "B11", "B12", "B8A")
REBEN_S1_EARLY = ("VH", "VV")
REBEN_S2_V020 = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
REBEN_S1_V020 = ("VV", "VH")

S1_CLEAN: dict[str, Any] = {"nan": 0.0, "clip": (-25.0, 0.0)}  # SEN12MS toolbox load_s1
S2_CLIP = (0.0, 10000.0)


@dataclass(frozen=True)
class Preset:
    """A known input pipeline: channels, players, per-band transforms, classes, tasks, size."""

    name: str
    description: str
    channels: tuple[str, ...]
    #: band -> the fields of its :class:`~sareval.card.BandTransform`
    normalization: Mapping[str, Mapping[str, Any]]
    class_names: tuple[str, ...]
    tasks: tuple[str, ...]
    size: int
    statistics: str  # where the z-score constants come from
    notes: Mapping[str, str]
    #: task segmentation: the classes of the label maps, when not ``class_names``
    segmentation_class_names: tuple[str, ...] | None = None

    def classes_for(self, task: str) -> tuple[str, ...]:
        """The class names, in output order, of a ``task`` model."""
        if task == "segmentation" and self.segmentation_class_names is not None:
            return self.segmentation_class_names
        return self.class_names


def _transform(
    *,
    nan: float | None = None,
    clip: tuple[float, float] | None = None,
    mean: float = 0.0,
    std: float = 1.0,
) -> dict[str, Any]:
    """One band's transform: the fields of :class:`~sareval.card.BandTransform`."""
    return {"nan": nan, "clip": clip, "mean": mean, "std": std}


def _sen12ms(name: str, description: str, channels: tuple[str, ...]) -> Preset:
    norm = {}
    for b in channels:
        clean: dict[str, Any] = S1_CLEAN if b in S1_BANDS else {"nan": None, "clip": None}
        norm[b] = _transform(
            nan=clean["nan"], clip=clean["clip"], mean=SEN12MS_MEAN[b], std=SEN12MS_STD[b]
        )
    return Preset(
        name=name,
        description=description,
        channels=channels,
        normalization=norm,
        class_names=IGBP10,
        tasks=TASKS,
        size=256,
        statistics="SEN12MS classification toolbox (test.py bands_mean/bands_std)",
        notes={},
    )


def _bigearthnet_mm() -> Preset:
    channels = (*BIGEARTHNET_MM_S2_BANDS, *S1_BANDS)
    norm = {b: _transform(mean=BIGEARTHNET_MEAN[b], std=BIGEARTHNET_STD[b]) for b in channels}
    return Preset(
        name="bigearthnet-mm",
        description="BigEarthNet-MM TF VGG16/VGG19: 10 S2 bands + VV, VH at 120x120, 19 classes",
        channels=channels,
        normalization=norm,
        class_names=BEN19,
        tasks=("multi-label",),
        size=120,
        statistics=(
            "bigearthnet-models-tf BigEarthNet.py BAND_STATS (S2) and bigearthnet_common "
            "BAND_STATS_S1; not checked against the BigEarthNet-MM repository's own file"
        ),
        notes={
            "input_resampling": (
                "20 m bands upsampled to 120x120 with TF1 resize_bicubic (ONNX Resize cubic, "
                "asymmetric, cubic_coeff_a -0.75), done by the store"
            )
        },
    )


def _reben(suffix: str, release: str, channels: tuple[str, ...], what: str) -> Preset:
    norm = {b: _transform(mean=REBEN_MEAN[b], std=REBEN_STD[b]) for b in channels}
    verified = release == "earlier"
    return Preset(
        name=f"reben-{suffix}",
        description=f"reBEN (BigEarthNet v2.0) {release} {what} models: {len(channels)} "
        "channels at 120x120, 19 classes in alphabetical order",
        channels=channels,
        normalization=norm,
        class_names=REBEN_CLASSES,
        tasks=("multi-label", "segmentation"),
        size=120,
        statistics='ConfigILM BENv2_utils means/stds["120_nearest"]'
        + ("" if verified else " (unverified for v0.2.0: assumed unchanged)"),
        notes={
            "input_resampling": (
                "20/60 m bands upsampled to 120x120 with torch nearest (store: resampling= nearest)"
            ),
            "channel_order": (
                "ConfigILM STANDARD_BANDS (reben-training-scripts get_bands)"
                if verified
                else "v0.2.0 order: VV, VH, B02..B12 (unverified against the v0.2.0 code)"
            ),
        },
        segmentation_class_names=BEN19,
    )


def _study_resnet18() -> Preset:
    channels = (*S2_BANDS, *S1_BANDS)
    norm = {}
    for b in channels:
        if b in S1_BANDS:
            norm[b] = _transform(nan=S1_CLEAN["nan"], clip=S1_CLEAN["clip"])
        else:
            norm[b] = _transform(clip=S2_CLIP)
    return Preset(
        name="study-resnet18",
        description="the study's ResNet18: 13 S2 bands + VV, VH; statistics of the training store",
        channels=channels,
        normalization=norm,
        class_names=IGBP10,
        tasks=TASKS,
        size=256,
        statistics="placeholder (mean 0, std 1): fill from the training store",
        notes={},
    )


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        _sen12ms(
            "sen12ms-s1s2",
            "SEN12MS toolbox s1s2 models (ResNet50, DenseNet121): 10 S2 bands + VV, VH",
            (*SEN12MS_S2_LAND_BANDS, *S1_BANDS),
        ),
        _sen12ms("sen12ms-s2", "SEN12MS toolbox s2 models: 10 S2 bands", SEN12MS_S2_LAND_BANDS),
        _sen12ms("sen12ms-s1", "SEN12MS toolbox s1 models: VV, VH", S1_BANDS),
        _bigearthnet_mm(),
        _reben("s1s2", "earlier", (*REBEN_S2_EARLY, *REBEN_S1_EARLY), "S1+S2"),
        _reben("s2", "earlier", REBEN_S2_EARLY, "S2"),
        _reben("s1", "earlier", REBEN_S1_EARLY, "S1"),
        _reben("s1s2-v0.2.0", "v0.2.0", (*REBEN_S1_V020, *REBEN_S2_V020), "S1+S2"),
        _reben("s2-v0.2.0", "v0.2.0", REBEN_S2_V020, "S2"),
        _reben("s1-v0.2.0", "v0.2.0", REBEN_S1_V020, "S1"),
        _study_resnet18(),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; :class:`SarevalError` listing the known ones otherwise."""
    if name not in PRESETS:
        raise SarevalError(f"preset: unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]
