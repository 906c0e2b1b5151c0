"""``sareval preprocess``: a dataset's GeoTIFF tree -> one HDF5 store per split."""

from __future__ import annotations

from pathlib import Path

import click

from sareval.atomic import check_outputs
from sareval.commands.options import overwrite_option, progress_enabled, report_written
from sareval.locks import output_lock
from sareval.preprocess.bigearthnet import preprocess_bigearthnet
from sareval.preprocess.bigearthnet_v2 import preprocess_bigearthnet_v2
from sareval.preprocess.dfc2020 import SPLITS as DFC2020_SPLITS
from sareval.preprocess.dfc2020 import preprocess_dfc2020
from sareval.preprocess.pipeline import COMPRESSIONS, DEFAULT_COMPRESSION
from sareval.preprocess.sen12ms import preprocess_sen12ms
from sareval.store import Store

EXISTING_FILE = click.Path(dir_okay=False, path_type=Path)
DIRECTORY = click.Path(file_okay=False, path_type=Path)


def common_options(f: click.decorators.FC) -> click.decorators.FC:
    """Options shared by every dataset: very-cloudy subset, workers, compression, output."""
    decorators = [
        click.option(
            "--very-cloudy-threshold",
            type=click.FloatRange(0, 1),
            default=None,
            help="very_cloudy = cloudy patches with cloud cover >= this fraction [default: 0.9].",
        ),
        click.option(
            "--very-cloudy-list",
            type=EXISTING_FILE,
            help="very_cloudy = the cloudy patches named in this file (one a line) instead.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=1),
            default=None,
            help="Reader processes [default: the CPU cores].",
        ),
        click.option(
            "--compression",
            type=click.Choice(COMPRESSIONS),
            default=DEFAULT_COMPRESSION,
            show_default=True,
            help="HDF5 compression: none is the fastest to write and read (see "
            "benchmarks/RESULTS.md); lzf halves the size; lz4/zstd need hdf5plugin wherever "
            "the store is read.",
        ),
        click.option(
            "--chunk-rows",
            type=click.IntRange(min=1),
            default=None,
            help="Samples per HDF5 chunk [default: about 4 MB of S2 a chunk].",
        ),
        click.option("--out", "-o", type=EXISTING_FILE, required=True, help="The store (.h5)."),
        overwrite_option,
    ]
    for d in reversed(decorators):
        f = d(f)
    return f


def _resolve(threshold: float | None, listed: Path | None) -> float:
    """The very-cloudy threshold; the two ways of defining the subset exclude each other."""
    if threshold is not None and listed is not None:
        raise click.UsageError("give --very-cloudy-threshold or --very-cloudy-list, not both")
    return 0.9 if threshold is None else threshold


def _lock(out: Path) -> None:
    """Hold ``<out>.lock`` until the command ends: a second run on ``out`` is refused."""
    click.get_current_context().with_resource(output_lock(out))


@click.group("preprocess")
def command() -> None:
    """Convert a dataset's GeoTIFF tree into an HDF5 store (one file per split).

    \b
    sareval preprocess sen12ms SEN12MS/ --split-list SEN12MS/test_list.pkl \\
        --labels SEN12MS/IGBP_probability_labels.pkl --cr-root SEN12MS-CR/ --out test.h5
    sareval preprocess bigearthnet --s2-root BigEarthNet-v1.0 --s1-root BigEarthNet-S1-v1.0 \\
        --split-csv test.csv --cloudy-list patches_with_cloud_and_shadow.csv --out test.h5
    sareval preprocess bigearthnet-v2 --s2-root BigEarthNet-S2 --s1-root BigEarthNet-S1 \\
        --metadata metadata.parquet --split test --out reben-test.h5
    sareval preprocess dfc2020 DFC2020/ --split validation --out dfc-validation.h5

    Writes <out>.partial and renames it when complete; re-running an interrupted job resumes.
    """


@command.command("sen12ms")
@click.argument("root", type=DIRECTORY)
@click.option(
    "--split-list",
    type=EXISTING_FILE,
    help="train_list/test_list (.pkl or .txt) of s2 file names [default: every patch in ROOT].",
)
@click.option(
    "--labels",
    type=EXISTING_FILE,
    help="IGBP_probability_labels.pkl [default: computed from the lc files' IGBP layer].",
)
@click.option("--cr-root", type=DIRECTORY, help="SEN12MS-CR tree: adds the cloudy optical version.")
@click.option(
    "--multi-label-threshold",
    type=click.FloatRange(0, 1),
    default=0.1,
    show_default=True,
    help="A simplified IGBP class is present when its fraction is >= this.",
)
@click.option(
    "--skip-unlabelled",
    is_flag=True,
    help="Without --labels: leave out patches whose lc layer has no IGBP class pixel (an "
    "error otherwise); the count is recorded in the store and shown by `sareval info`.",
)
@common_options
def sen12ms(
    root: Path,
    split_list: Path | None,
    labels: Path | None,
    cr_root: Path | None,
    multi_label_threshold: float,
    skip_unlabelled: bool,
    very_cloudy_threshold: float | None,
    very_cloudy_list: Path | None,
    workers: int | None,
    compression: str,
    chunk_rows: int | None,
    out: Path,
    overwrite: bool,
) -> None:
    """SEN12MS (+ SEN12MS-CR) ROOT -> store.

    \b
    sareval preprocess sen12ms SEN12MS/ --split-list SEN12MS/test_list.pkl \\
        --labels SEN12MS/IGBP_probability_labels.pkl --cr-root SEN12MS-CR/ --out test.h5
    """
    inputs = _given(root, split_list, labels, cr_root, very_cloudy_list)
    check_outputs({"--out": out}, overwrite, inputs=inputs, streams=False)
    _lock(out)
    path = preprocess_sen12ms(
        root,
        out,
        split_list=split_list,
        labels=labels,
        cr_root=cr_root,
        very_cloudy_threshold=_resolve(very_cloudy_threshold, very_cloudy_list),
        very_cloudy_list=very_cloudy_list,
        multi_label_threshold=multi_label_threshold,
        workers=workers,
        compression=compression,
        chunk_rows=chunk_rows,
        overwrite=overwrite,
        progress=progress_enabled(),
        skip_unlabelled=skip_unlabelled,
    )
    _report(path)


@command.command("bigearthnet")
@click.option("--s2-root", type=DIRECTORY, required=True, help="The BigEarthNet-v1.0 tree.")
@click.option("--s1-root", type=DIRECTORY, required=True, help="The BigEarthNet-S1-v1.0 tree.")
@click.option("--split-csv", type=EXISTING_FILE, required=True, help="train/val/test.csv.")
@click.option(
    "--cloudy-list",
    type=EXISTING_FILE,
    help="patches_with_cloud_and_shadow.csv: adds the cloudy and very_cloudy subsets.",
)
@click.option(
    "--snow-list", type=EXISTING_FILE, help="patches_with_seasonal_snow.csv: adds the snow subset."
)
@click.option(
    "--resampling",
    type=click.Choice(["cubic-tf1", "nearest"]),
    default="cubic-tf1",
    show_default=True,
    help="20/60 m bands to the 10 m grid; cubic-tf1 is what the BigEarthNet-MM models used.",
)
@common_options
def bigearthnet(
    s2_root: Path,
    s1_root: Path,
    split_csv: Path,
    cloudy_list: Path | None,
    snow_list: Path | None,
    resampling: str,
    very_cloudy_threshold: float | None,
    very_cloudy_list: Path | None,
    workers: int | None,
    compression: str,
    chunk_rows: int | None,
    out: Path,
    overwrite: bool,
) -> None:
    """BigEarthNet S2 + S1 trees and a split CSV -> store.

    \b
    sareval preprocess bigearthnet --s2-root BigEarthNet-v1.0 --s1-root BigEarthNet-S1-v1.0 \\
        --split-csv test.csv --cloudy-list patches_with_cloud_and_shadow.csv \\
        --snow-list patches_with_seasonal_snow.csv --out test.h5
    """
    inputs = _given(s2_root, s1_root, split_csv, cloudy_list, snow_list, very_cloudy_list)
    check_outputs({"--out": out}, overwrite, inputs=inputs, streams=False)
    _lock(out)
    path = preprocess_bigearthnet(
        s2_root,
        s1_root,
        split_csv,
        out,
        cloudy_list=cloudy_list,
        snow_list=snow_list,
        very_cloudy_threshold=_resolve(very_cloudy_threshold, very_cloudy_list),
        very_cloudy_list=very_cloudy_list,
        resampling=resampling,
        workers=workers,
        compression=compression,
        chunk_rows=chunk_rows,
        overwrite=overwrite,
        progress=progress_enabled(),
    )
    _report(path)


@command.command("bigearthnet-v2")
@click.option("--s2-root", type=DIRECTORY, required=True, help="The BigEarthNet-S2 tree.")
@click.option("--s1-root", type=DIRECTORY, required=True, help="The BigEarthNet-S1 tree.")
@click.option(
    "--metadata",
    type=EXISTING_FILE,
    required=True,
    help="metadata.parquet: patch_id, s1_name, split, labels; the snow/cloud flags if present.",
)
@click.option(
    "--split",
    type=click.Choice(["train", "validation", "test"]),
    help="Only this split [default: every patch, with the splits as subsets].",
)
@click.option(
    "--snow-cloud-metadata",
    type=EXISTING_FILE,
    help="metadata_for_patches_with_snow_cloud_or_shadow.parquet: adds those patches.",
)
@click.option(
    "--reference-maps",
    type=DIRECTORY,
    help="The Reference_Maps tree: keeps each patch's per-pixel CLC codes in the store.",
)
@click.option(
    "--resampling",
    type=click.Choice(["nearest", "cubic-tf1"]),
    default="nearest",
    show_default=True,
    help="20/60 m bands to the 10 m grid; nearest is what the reBEN models' loader does.",
)
@common_options
def bigearthnet_v2(
    s2_root: Path,
    s1_root: Path,
    metadata: Path,
    split: str | None,
    snow_cloud_metadata: Path | None,
    reference_maps: Path | None,
    resampling: str,
    very_cloudy_threshold: float | None,
    very_cloudy_list: Path | None,
    workers: int | None,
    compression: str,
    chunk_rows: int | None,
    out: Path,
    overwrite: bool,
) -> None:
    """BigEarthNet v2.0 (reBEN) S2 + S1 trees and metadata.parquet -> store.

    \b
    sareval preprocess bigearthnet-v2 --s2-root BigEarthNet-S2 --s1-root BigEarthNet-S1 \\
        --metadata metadata.parquet --split test \\
        --snow-cloud-metadata metadata_for_patches_with_snow_cloud_or_shadow.parquet \\
        --reference-maps Reference_Maps --out reben-test.h5
    """
    inputs = _given(s2_root, s1_root, metadata, snow_cloud_metadata, reference_maps,
                    very_cloudy_list)  # fmt: skip
    check_outputs({"--out": out}, overwrite, inputs=inputs, streams=False)
    _lock(out)
    path = preprocess_bigearthnet_v2(
        s2_root,
        s1_root,
        metadata,
        out,
        split=split,
        snow_cloud_metadata=snow_cloud_metadata,
        reference_maps=reference_maps,
        very_cloudy_threshold=_resolve(very_cloudy_threshold, very_cloudy_list),
        very_cloudy_list=very_cloudy_list,
        resampling=resampling,
        workers=workers,
        compression=compression,
        chunk_rows=chunk_rows,
        overwrite=overwrite,
        progress=progress_enabled(),
    )
    _report(path)


@command.command("dfc2020")
@click.argument("root", type=DIRECTORY)
@click.option(
    "--split",
    type=click.Choice(DFC2020_SPLITS),
    default="validation",
    show_default=True,
    help="The release: ROOT/ROIs0000_validation or ROOT/ROIs0000_test.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Reader processes [default: the CPU cores].",
)
@click.option(
    "--compression",
    type=click.Choice(COMPRESSIONS),
    default=DEFAULT_COMPRESSION,
    show_default=True,
    help="HDF5 compression (as for the other datasets).",
)
@click.option(
    "--chunk-rows",
    type=click.IntRange(min=1),
    default=None,
    help="Samples per HDF5 chunk [default: about 4 MB of S2 a chunk].",
)
@click.option("--out", "-o", type=EXISTING_FILE, required=True, help="The store (.h5).")
@overwrite_option
def dfc2020(
    root: Path,
    split: str,
    workers: int | None,
    compression: str,
    chunk_rows: int | None,
    out: Path,
    overwrite: bool,
) -> None:
    """DFC2020 ROOT (ROIs0000_validation/, ROIs0000_test/) -> store with lc10_map labels.

    \b
    sareval preprocess dfc2020 DFC2020/ --split validation --out dfc-validation.h5
    """
    check_outputs({"--out": out}, overwrite, inputs=[root], streams=False)
    _lock(out)
    path = preprocess_dfc2020(
        root,
        out,
        split=split,
        workers=workers,
        compression=compression,
        chunk_rows=chunk_rows,
        overwrite=overwrite,
        progress=progress_enabled(),
    )
    _report(path)


def _given(*paths: Path | None) -> list[Path]:
    """The input files and dataset folders that were given (an output must not be one of
    them, nor an existing non-HDF5 file inside an input folder)."""
    return [p for p in paths if p is not None]


def _report(path: Path) -> None:
    if not progress_enabled():
        return
    with Store(path) as store:
        sizes = ", ".join(f"{name} {len(sub)}" for name, sub in store.subsets.items())
        report_written(f"{path}: {store.n_samples} samples ({sizes})")
