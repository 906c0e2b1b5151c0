"""``sareval synth``: generate a small seeded dataset tree in a real on-disk layout."""

from __future__ import annotations

from pathlib import Path

import click

from sareval.commands.options import overwrite_option, progress_enabled
from sareval.preprocess.pipeline import check_utf8_paths
from sareval.preprocess.synth_bigearthnet import generate_bigearthnet
from sareval.preprocess.synth_bigearthnet_v2 import generate_bigearthnet_v2
from sareval.preprocess.synth_dfc2020 import generate_dfc2020
from sareval.preprocess.synth_sen12ms import generate_sen12ms

out_dir_argument = click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
seed_option = click.option("--seed", default=0, show_default=True, help="Random seed.")


@click.group(name="synth")
def command() -> None:
    """Generate a small SEN12MS(-CR), BigEarthNet or DFC2020 tree in the real layout.

    \b
    Examples:
      sareval synth sen12ms data/synth --patches 200 --size 256 --seed 0
      sareval synth bigearthnet data/synth-ben --patches 200 --size 120
      sareval synth bigearthnet-v2 data/synth-reben --patches 200 --size 120
      sareval synth dfc2020 data/synth-dfc --patches 50 --size 256

    OUT_DIR must not exist or be empty (or pass --overwrite); it is written to a temporary
    sibling directory and renamed when complete.
    """


@command.command(name="sen12ms")
@out_dir_argument
@click.option("--patches", default=200, show_default=True, help="Number of patches.")
@click.option("--size", default=256, show_default=True, help="Patch size in pixels (10 m).")
@seed_option
@click.option(
    "--cr-fraction",
    default=0.7,
    show_default=True,
    help="Fraction of patches (whole scenes) that also get a SEN12MS-CR cloudy version.",
)
@click.option("--compress", type=click.Choice(["none", "deflate", "lzw"]), default="none",
              show_default=True, help="GeoTIFF compression.")  # fmt: skip
@overwrite_option
def sen12ms(
    out_dir: Path, patches: int, size: int, seed: int, cr_fraction: float, compress: str,
    overwrite: bool,
) -> None:  # fmt: skip
    """Write OUT_DIR/sen12ms/ (s1, s2, lc, label and split pickles) and OUT_DIR/sen12mscr/.

    \b
    Example:
      sareval synth sen12ms data/synth --patches 2000 --size 256 --seed 1
    """
    check_utf8_paths(out_dir)  # GDAL writes UTF-8 names: refuse others up front
    summary = generate_sen12ms(
        out_dir, n_patches=patches, size=size, seed=seed, cr_fraction=cr_fraction,
        overwrite=overwrite, compress=None if compress == "none" else compress,
        progress=progress_enabled(),
    )  # fmt: skip
    click.echo(
        f"{out_dir}: {summary['n_patches']} SEN12MS patches ({summary['n_train']} train, "
        f"{summary['n_test']} test), {summary['n_cloudy']} with a SEN12MS-CR cloudy version"
    )


@command.command(name="bigearthnet")
@out_dir_argument
@click.option("--patches", default=200, show_default=True, help="Number of patch pairs.")
@click.option(
    "--size", default=120, show_default=True, help="10 m patch size in pixels (divisible by 6)."
)
@seed_option
@click.option("--compress", type=click.Choice(["none", "deflate", "lzw"]), default="none",
              show_default=True, help="GeoTIFF compression.")  # fmt: skip
@overwrite_option
def bigearthnet(
    out_dir: Path, patches: int, size: int, seed: int, compress: str, overwrite: bool
) -> None:
    """Write OUT_DIR/BigEarthNet-v1.0/, OUT_DIR/BigEarthNet-S1-v1.0/, split and list CSVs.

    \b
    Example:
      sareval synth bigearthnet data/synth-ben --patches 500 --seed 1
    """
    check_utf8_paths(out_dir)  # GDAL writes UTF-8 names: refuse others up front
    summary = generate_bigearthnet(
        out_dir, n_patches=patches, size=size, seed=seed, overwrite=overwrite,
        compress=None if compress == "none" else compress,
        progress=progress_enabled(),
    )  # fmt: skip
    click.echo(
        f"{out_dir}: {summary['n_patches']} BigEarthNet pairs ({summary['n_train']} train, "
        f"{summary['n_val']} val, {summary['n_test']} test, {summary['n_cloudy']} cloudy, "
        f"{summary['n_snow']} snow)"
    )


@command.command(name="bigearthnet-v2")
@out_dir_argument
@click.option("--patches", default=200, show_default=True, help="Number of patch pairs.")
@click.option(
    "--size", default=120, show_default=True, help="10 m patch size in pixels (divisible by 6)."
)
@seed_option
@click.option("--compress", type=click.Choice(["none", "deflate", "lzw"]), default="none",
              show_default=True, help="GeoTIFF compression.")  # fmt: skip
@overwrite_option
def bigearthnet_v2(
    out_dir: Path, patches: int, size: int, seed: int, compress: str, overwrite: bool
) -> None:
    """Write OUT_DIR/BigEarthNet-S2/, BigEarthNet-S1/, Reference_Maps/ and the metadata parquets
    of BigEarthNet v2.0 (reBEN).

    \b
    Example:
      sareval synth bigearthnet-v2 data/synth-reben --patches 500 --seed 1
    """
    check_utf8_paths(out_dir)  # GDAL writes UTF-8 names: refuse others up front
    summary = generate_bigearthnet_v2(
        out_dir, n_patches=patches, size=size, seed=seed, overwrite=overwrite,
        compress=None if compress == "none" else compress,
        progress=progress_enabled(),
    )  # fmt: skip
    click.echo(
        f"{out_dir}: {summary['n_patches']} reBEN pairs ({summary['n_train']} train, "
        f"{summary['n_validation']} validation, {summary['n_test']} test, "
        f"{summary['n_cloudy']} cloudy, {summary['n_snow']} snow)"
    )


@command.command(name="dfc2020")
@out_dir_argument
@click.option("--patches", default=20, show_default=True, help="Patches per release.")
@click.option("--size", default=256, show_default=True, help="Patch size in pixels (10 m).")
@seed_option
@click.option(
    "--cloud-fraction",
    default=0.3,
    show_default=True,
    help="Fraction of patches whose s2 has clouds.",
)
@click.option("--compress", type=click.Choice(["none", "deflate", "lzw"]), default="none",
              show_default=True, help="GeoTIFF compression.")  # fmt: skip
@overwrite_option
def dfc2020(
    out_dir: Path, patches: int, size: int, seed: int, cloud_fraction: float, compress: str,
    overwrite: bool,
) -> None:  # fmt: skip
    """Write OUT_DIR/ROIs0000_validation/ and ROIs0000_test/ (s1, s2, lc, dfc label maps) of
    DFC2020.

    \b
    Example:
      sareval synth dfc2020 data/synth-dfc --patches 50 --seed 1
    """
    check_utf8_paths(out_dir)  # GDAL writes UTF-8 names: refuse others up front
    summary = generate_dfc2020(
        out_dir, n_patches=patches, size=size, seed=seed, cloud_fraction=cloud_fraction,
        overwrite=overwrite, compress=None if compress == "none" else compress,
    )  # fmt: skip
    click.echo(
        f"{out_dir}: {summary['n_patches']} DFC2020 patches per release (validation, test), "
        f"{len(summary['cloud_cover'])} with clouds"
    )
