"""torchgeo's SEN12MS, BigEarthNet (v1) and BigEarthNetV2 datasets, as data.

Read from torchgeo 0.8.1's ``torchgeo/datasets/bigearthnet.py`` and ``sen12ms.py`` (this
module does not import torchgeo). What their ``__getitem__`` returns:

- ``BigEarthNetV2(bands=...)``: ``all`` -> ``image_s1`` + ``image_s2``; ``s1`` / ``s2`` ->
  ``image``; always ``mask`` (the reference map (1, H, W): CORINE codes of the 19 classes
  replaced by their ordinals 0..18 in ``class_set`` order, every other code left as it is, as
  its ``_load_map`` does) and ``label`` (19 0/1 int64 in ``BigEarthNetV2.class_set`` order:
  the official BigEarthNet-19 order, not alphabetical).
- ``BigEarthNet(bands=..., num_classes=19 | 43)``: ``image`` (``all``: S1 then S2 stacked) and
  ``label`` (``num_classes`` 0/1 int64 in ``BigEarthNet.class_sets[num_classes]`` order).
- Both glob a patch folder's ``*.tif`` and sort them: S1 by file name, so ``..._VH.tif``
  comes before ``..._VV.tif`` (channels **VH, VV**); S2 by the band suffix with ``B8A`` sorted
  as ``B08A`` (B01 .. B08, B8A, B09, B11, B12; BigEarthNet has no B10). Every band is read at
  120 x 120 by rasterio with ``out_dtype='int32'`` and bilinear resampling, then cast to
  float32: the 20 m and 60 m bands are bilinear-upsampled (a store made by
  ``sareval preprocess`` resamples with cubic-tf1 or nearest) and S1 dB are rounded to whole
  numbers (NaN -> 0).
- ``SEN12MS(bands=...)``: ``image`` (the S1 file's bands, then the S2 file's, then selected in
  the order of ``bands``, names of ``SEN12MS.band_names``: VV, VH, B01 .. B12 with B8A and
  B10) and ``mask`` (the lc file's first layer: IGBP 1..17 per pixel); no scene label, so the
  labels are computed from the mask as ``sareval preprocess sen12ms`` does without
  ``--labels``. Files are read at their own 256 x 256, S1 float32 dB as stored, S2 uint16 via
  int32 to float32 (exact).

On-disk layouts they expect: BigEarthNetV2: ``metadata.parquet`` (``patch_id``, ``s1_name``,
``split`` in train / validation / test, ``labels``: 19-class names), ``BigEarthNet-S1/``,
``BigEarthNet-S2/``, ``Reference_Maps/`` (product folder = the id without its last 2 (S2) or
3 (S1) ``_`` parts); BigEarthNet: ``bigearthnet-{train,val,test}.csv`` (``s2,s1`` per line),
``BigEarthNet-v1.0/``, ``BigEarthNet-S1-v1.0/`` with the labels read from the S1 folder's
json (the S2 folder's for ``bands='s2'``); SEN12MS: ``{train,test}_list.txt`` (S2 file names)
and the four season folders.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from sareval.adapters.conventions import DatasetConventions, unwrap_dataset
from sareval.bands import BIGEARTHNET_S2_BANDS, S1_BANDS, S2_BANDS
from sareval.classes import BEN19, CLC43, IGBP10
from sareval.errors import SarevalError

#: S1 channels as torchgeo's BigEarthNet classes produce them (sorted file names)
BEN_S1_ORDER: tuple[str, ...] = ("VH", "VV")
#: S2 channels of BigEarthNet (v1 and v2) as sorted by torchgeo (B8A as "B08A")
BEN_S2_ORDER: tuple[str, ...] = BIGEARTHNET_S2_BANDS
BEN_IMAGE_SIZE = (120, 120)
BEN_READING = (
    "every band read at 120x120 by rasterio as int32 with bilinear resampling, then float32: "
    "20 m / 60 m bands bilinear-upsampled, S1 dB rounded to whole dB (NaN -> 0)"
)
#: why each band's values differ from the files' (BigEarthNet v1 and v2 in torchgeo)
BEN_ALTERED: dict[str, str] = {
    **{b: "rounded to whole dB (int32) and NaN -> 0" for b in S1_BANDS},
    **{
        b: "bilinear-upsampled to 120x120 and rounded to integers"
        for b in ("B01", "B05", "B06", "B07", "B8A", "B09", "B11", "B12")
    },
}
#: BigEarthNetV2 ``bands`` argument -> item key -> band names
BEN_V2_IMAGES: dict[str, dict[str, tuple[str, ...]]] = {
    "all": {"image_s1": BEN_S1_ORDER, "image_s2": BEN_S2_ORDER},
    "s1": {"image": BEN_S1_ORDER},
    "s2": {"image": BEN_S2_ORDER},
}
#: BigEarthNet (v1) ``bands`` argument -> item key -> band names (``all``: S1 then S2 stacked)
BEN_V1_IMAGES: dict[str, dict[str, tuple[str, ...]]] = {
    "all": {"image": BEN_S1_ORDER + BEN_S2_ORDER},
    "s1": {"image": BEN_S1_ORDER},
    "s2": {"image": BEN_S2_ORDER},
}
#: BigEarthNet (v1) ``num_classes`` -> class names in label order (``class_sets``)
BEN_V1_CLASSES: dict[int, tuple[str, ...]] = {19: BEN19, 43: CLC43}
#: the band names torchgeo's SEN12MS accepts in ``bands`` (``SEN12MS.band_names``)
SEN12MS_BAND_NAMES: tuple[str, ...] = S1_BANDS + S2_BANDS
SEN12MS_READING = (
    "the files' own size (256x256 in the release), S1 float32 dB as stored, S2 uint16 via "
    "int32 to float32 (exact); "
    "labels from the IGBP mask as 'sareval preprocess sen12ms' without --labels"
)


def _choice(name: str, attr: str, value: Any, known: Any) -> None:
    if value not in known:
        raise SarevalError(
            f"data: torchgeo's {name}.{attr} is {value!r}; the conventions sareval knows are "
            f"for {', '.join(map(repr, known))}"
        )


def _check_classes(name: str, attr: str, have: Any, want: tuple[str, ...]) -> None:
    """A dataset's own class list, when it has one, must be the list sareval knows."""
    if have is not None and tuple(have) != want:
        raise SarevalError(
            f"data: torchgeo's {name}.{attr} differs from the class list sareval knows for it "
            "(another torchgeo version?): pass class_names=... explicitly"
        )


def _bigearthnet_v2(ds: Any) -> DatasetConventions:
    bands = getattr(ds, "bands", "all")
    _choice("BigEarthNetV2", "bands", bands, tuple(BEN_V2_IMAGES))
    _check_classes("BigEarthNetV2", "class_set", getattr(ds, "class_set", None), BEN19)
    return DatasetConventions(
        "torchgeo.BigEarthNetV2",
        dict(BEN_V2_IMAGES[bands]),
        "label",
        "multi_hot",
        BEN19,
        BEN_IMAGE_SIZE,
        BEN_READING,
        altered=dict(BEN_ALTERED),
        attributes={"bands": bands},
        map_key="mask",
        map_kind="ordinal",
    )


def _bigearthnet(ds: Any) -> DatasetConventions:
    bands = getattr(ds, "bands", "all")
    num_classes = getattr(ds, "num_classes", 19)
    _choice("BigEarthNet", "bands", bands, tuple(BEN_V1_IMAGES))
    _choice("BigEarthNet", "num_classes", num_classes, tuple(BEN_V1_CLASSES))
    classes = BEN_V1_CLASSES[num_classes]
    sets = getattr(ds, "class_sets", None)
    _check_classes(
        "BigEarthNet", f"class_sets[{num_classes}]", None if sets is None else sets[num_classes],
        classes,
    )  # fmt: skip
    return DatasetConventions(
        "torchgeo.BigEarthNet",
        dict(BEN_V1_IMAGES[bands]),
        "label",
        "multi_hot",
        classes,
        BEN_IMAGE_SIZE,
        BEN_READING,
        altered=dict(BEN_ALTERED),
        attributes={"bands": bands, "num_classes": num_classes},
    )


def _sen12ms(ds: Any) -> DatasetConventions:
    bands = getattr(ds, "bands", SEN12MS_BAND_NAMES)
    if isinstance(bands, str) or not all(isinstance(b, str) for b in bands):
        raise SarevalError(
            f"data: torchgeo's SEN12MS.bands is {bands!r}; expected a sequence of band names"
        )
    unknown = [b for b in bands if b not in SEN12MS_BAND_NAMES]
    if unknown:
        raise SarevalError(f"data: torchgeo's SEN12MS.bands has unknown band(s) {unknown}")
    return DatasetConventions(
        "torchgeo.SEN12MS",
        {"image": tuple(bands)},
        "mask",
        "igbp_mask",
        IGBP10,
        None,  # the files' own size (256 x 256 in the release): torchgeo does not resample
        SEN12MS_READING,
        attributes={"bands": list(bands)},
        map_key="mask",
        map_kind="igbp",
    )


#: torchgeo dataset class name -> its conventions from an instance's attributes
TORCHGEO_DATASETS: dict[str, Callable[[Any], DatasetConventions]] = {
    "BigEarthNetV2": _bigearthnet_v2,
    "BigEarthNet": _bigearthnet,
    "SEN12MS": _sen12ms,
}


def torchgeo_conventions(dataset: Any) -> DatasetConventions | None:
    """The conventions of a torchgeo SEN12MS / BigEarthNet / BigEarthNetV2 instance (or a
    subclass, or a ``Subset`` of one), else None. A class counts as torchgeo's when it is
    named so and defined in a ``torchgeo`` module. Refuses one with ``transforms``: sareval
    needs the raw values (the model card normalises)."""
    inner, _ = unwrap_dataset(dataset)
    for cls in type(inner).__mro__:
        make = TORCHGEO_DATASETS.get(cls.__name__)
        if make is None or cls.__module__.split(".")[0] != "torchgeo":
            continue
        if getattr(inner, "transforms", None) is not None:
            raise SarevalError(
                f"data: torchgeo's {cls.__name__} has transforms: sareval needs the raw values "
                "(the model card normalises them); build it with transforms=None"
            )
        conv = make(inner)
        module = sys.modules.get("torchgeo")
        version = getattr(module, "__version__", None)
        return DatasetConventions(**{**conv.__dict__, "version": version})
    return None
