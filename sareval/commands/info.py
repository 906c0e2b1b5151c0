"""``sareval info FILE``: what a store (.h5) or a model file holds (model-file kinds:
:mod:`sareval.formats`, the one registry)."""

from __future__ import annotations

from pathlib import Path

import click

from sareval.errors import InputFileError
from sareval.export.describe import describe_model
from sareval.formats import all_suffixes, is_model_path
from sareval.store import Store, is_store_path
from sareval.store_summary import store_summary


@click.command("info")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--verify",
    is_flag=True,
    help="Stores: re-hash every row against its stored hash (reads the whole store).",
)
def command(file: Path, verify: bool) -> None:
    """Summarise a store or a model file.

    \b
    sareval info test.h5        dataset, task, bands, labels, subsets and sizes, NaN counts,
                                cloud-cover histogram
    sareval info resnet50.onnx  the model card: modalities, bands, normalisation, classes
    """
    click.echo(describe(file))
    if verify:
        with Store(file) as store:
            n = store.verify_rows()
        click.echo(f"verified: all {n} rows match their hashes and the content digest")


def describe(file: Path) -> str:
    """The text ``sareval info`` prints for ``file``."""
    if not file.exists():
        raise InputFileError(file, "file not found")
    if is_model_path(file):
        return describe_model(file)
    if is_store_path(file):
        with Store(file) as store:
            return store_summary(store)
    models = ", ".join(all_suffixes(cards=True))
    raise InputFileError(file, f"not a store (.h5) or a model file ({models})")
