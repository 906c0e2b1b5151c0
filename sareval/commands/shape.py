"""``sareval shape``: SHAPE modality relevance of a model on a store subset."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

import sareval
from sareval.atomic import check_outputs, is_stream, output_set
from sareval.card import read_card
from sareval.choices import (
    ABSENCES,
    BACKENDS,
    BASELINES,
    EMPTY_CHOICES,
    ESTIMATORS,
    MAP_ABSENT_CLASSES,
    METHODS,
    PRECISIONS,
    PROVIDERS,
    Z_CHOICES,
)
from sareval.commands.options import (
    FIELD_FLAGS,
    as_cli_message,
    field_default,
    overwrite_option,
    progress_enabled,
    report_written,
)
from sareval.commands.parsing import (
    parse_baseline_statistics,
    parse_by,
    parse_metrics,
    parse_players,
    parse_shard,
)
from sareval.errors import SarevalError
from sareval.evaluator.config import PERMUTATIONS
from sareval.evaluator.distributed import torchrun_env
from sareval.evaluator.results import console_table, write_csv, write_results

EDGES = re.compile(r"^[0-9.eE+-]+(,[0-9.eE+-]+)+$")
#: old spellings kept for one release: flag -> (its replacement, the ShapeConfig field)
DEPRECATED_FLAGS = {
    "--bootstrap": ("--replicates", "replicates"),
    "--samples": ("--orderings", "orderings"),
    "--z": ("--normalization", "normalization"),
    "--empty": ("--empty-coalition", "empty_coalition"),
}


class ShapeCommand(click.Command):
    """Accepts ``--by cloud-cover 0,0.1,...,1`` (two tokens) as ``--by cloud-cover=0,...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        joined: list[str] = []
        i = 0
        while i < len(args):
            if (
                args[i] == "--by"
                and i + 2 < len(args)
                and args[i + 1] == "cloud-cover"
                and EDGES.match(args[i + 2])
            ):
                joined += ["--by", f"cloud-cover={args[i + 2]}"]
                i += 3
                continue
            joined.append(args[i])
            i += 1
        return super().parse_args(ctx, joined)


@contextlib.contextmanager
def api_errors_as_options() -> Iterator[None]:
    """Name the CLI's flags in the library's errors (``ShapeConfig.reporting.normalization`` ->
    ``--normalization``; the table: :data:`sareval.commands.options.FIELD_FLAGS`)."""
    try:
        yield
    except SarevalError as e:
        raise SarevalError(as_cli_message(str(e))) from None


def _distributed() -> bool:
    """True under torchrun (several ranks)."""
    return torchrun_env() is not None


def is_main_process() -> bool:
    """True unless this is a torchrun rank other than 0 (an incomplete environment is an error)."""
    env = torchrun_env()
    return env is None or env.rank == 0


def _deprecated(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Warn once that an old spelling (``--bootstrap``) was used."""
    if value is not None and param.name is not None:
        old = "--" + param.name.removeprefix("old_").replace("_", "-")
        click.echo(f"warning: {old} is deprecated; use {DEPRECATED_FLAGS[old][0]}", err=True)
    return value


def deprecated_option(old: str, kind: Any) -> Any:
    """A hidden option for the old spelling ``old`` of a flag (:data:`DEPRECATED_FLAGS`)."""
    new = DEPRECATED_FLAGS[old][0]
    name = "old_" + old.removeprefix("--").replace("-", "_")
    return click.option(
        old, name, type=kind, default=None, hidden=True, callback=_deprecated,
        help=f"Deprecated spelling of {new}.",
    )  # fmt: skip


@click.command("shape", cls=ShapeCommand)
@click.option(
    "--model",
    "-m",
    "model",
    required=True,
    type=click.Path(path_type=Path),
    help="Model file with a card: .onnx, TorchScript .pt, torch.export .pt2.",
)
@click.option(
    "--data", "-d", "data", required=True, type=click.Path(path_type=Path), help="The store (.h5)."
)
@click.option("--subset", "-s", required=True, help="Named subset of the store, e.g. clear.")
@click.option(
    "--batch-size",
    default=field_default("batch_size"),
    show_default=True,
    type=click.IntRange(1),
    help="Samples per step (the model sees (2^M - 1) x this many rows).",
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default=field_default("backend"),
    help="Default: onnxruntime for .onnx files, torch for TorchScript / torch.export files.",
)
@click.option(
    "--device", default=field_default("device"), show_default=True, help="cpu, cuda or cuda:N."
)
@click.option(
    "--provider",
    type=click.Choice(PROVIDERS),
    default=field_default("provider"),
    help="onnxruntime execution provider (default: cuda on --device cuda, else cpu).",
)
@click.option(
    "--absence",
    type=click.Choice(ABSENCES),
    default=field_default("absence"),
    show_default=True,
    help="What an absent modality is to the model: fill (with --baseline), omit the input, "
    "mask its tokens, or marginal (from other samples); the card lists those it supports.",
)
@click.option(
    "--baseline",
    type=click.Choice(BASELINES),
    default=field_default("baseline"),
    show_default=True,
    help="Value of an absent modality: 0 after normalisation, raw 0, or band mean.",
)
@click.option(
    "--baseline-statistics",
    default=field_default("baseline_statistics"),
    show_default=True,
    help="Where --baseline band-mean takes its per-band means: evaluated (the evaluated data), "
    "card (the card's normalisation means) or STORE:SUBSET, e.g. train.h5:clear.",
)
@click.option(
    "--empty-coalition",
    type=click.Choice(EMPTY_CHOICES),
    default=field_default("empty_coalition"),
    show_default=True,
    help="V(no modality): the model on the all-baseline input, or the majority class.",
)
@deprecated_option("--empty", click.Choice(EMPTY_CHOICES))
@click.option(
    "--normalization",
    type=click.Choice(Z_CHOICES),
    default=field_default("normalization"),
    show_default=True,
    help="SHAPE normalization factor: Z = 1 (the study) or Z = V(all modalities) (SHAPE paper).",
)
@deprecated_option("--z", click.Choice(Z_CHOICES))
@click.option(
    "--players",
    default=None,
    help='Split modalities into players, e.g. "sar;opt_rgb=B02,B03,B04;'
    'opt_rest=B05,B06,B07,B08,B8A,B11,B12"; nested (Owen values inside groups): '
    '"sar:VV=VV;sar:VH=VH;opt:rgb=B02,B03,B04;opt:rest=B05,B06,B07,B08,B8A,B11,B12".',
)
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="shape",
    show_default=True,
    help="SHAPE (Shapley over coalitions) or perceptual score (sareval.perceptual_score).",
)
@click.option(
    "--permutations",
    default=PERMUTATIONS,
    show_default=True,
    type=click.IntRange(1),
    help="Permutations per modality for --method perceptual.",
)
@click.option(
    "--replicates",
    default=field_default("replicates"),
    show_default=True,
    type=click.IntRange(0),
    help="Bootstrap replicates for 95% confidence intervals (0: none).",
)
@deprecated_option("--bootstrap", click.IntRange(0))
@click.option("--seed", default=field_default("seed"), show_default=True, type=int)
@click.option(
    "--by",
    multiple=True,
    help="Extra breakdowns: 'class', 'cloud-cover' (deciles) or "
    "'cloud-cover 0,0.5,0.9,1'. Repeatable.",
)
@click.option(
    "--metric",
    "metric",
    multiple=True,
    help="Keep only this metric (oa, f1_macro, ...; repeatable, or comma-separated) in the "
    "table, the JSON and the CSV, per class and per bin too. Default: every metric.",
)
@click.option(
    "--map-absent-classes",
    type=click.Choice(MAP_ABSENT_CLASSES),
    default=field_default("map_absent_classes"),
    show_default=True,
    help="map_macro over a class without positives: skip it (torchmetrics, reBEN) or count "
    "AP 0 (scikit-learn).",
)
@click.option(
    "--save-predictions",
    type=click.Path(path_type=Path),
    default=None,
    help="Write per-sample, per-coalition outputs and ids to this HDF5 file.",
)
@click.option("--shard", default=None, help="Evaluate part i of n (i/n) for `sareval merge`.")
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Results JSON (a CSV table is written next to it).",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(path_type=Path),
    default=None,
    help="CSV table path (default: --out with .csv; none when --out is a device or FIFO).",
)
@click.option(
    "--share",
    is_flag=True,
    default=field_default("share"),
    help="Share work across coalitions (torch: late-fusion encoders; both backends: an "
    "early-fusion first conv); an unrecognised network runs unshared with a warning (recorded).",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=field_default("precision"),
    show_default=True,
    help="Torch backend: run the network under fp16/bf16 autocast (recorded in the results).",
)
@click.option(
    "--estimator",
    type=click.Choice(ESTIMATORS),
    default=field_default("estimator"),
    show_default=True,
    help="exact (all 2^M coalitions), sampled (permutations), or auto: the cheaper one.",
)
@click.option(
    "--orderings",
    default=field_default("orderings"),
    show_default=True,
    type=click.IntRange(2),
    help="Player orderings for --estimator sampled (even: antithetic pairs).",
)
@deprecated_option("--samples", click.IntRange(2))
@click.option(
    "--max-rows",
    default=field_default("max_rows"),
    type=click.IntRange(1),
    help="Model rows per execution (default: from half the available memory).",
)
@click.option(
    "--per-sample",
    is_flag=True,
    default=field_default("per_sample"),
    help="Per-sample Shapley values of each sample's score and false-prediction detection "
    "from them (AUROC/AP vs the max-softmax baseline); arrays go to --save-predictions.",
)
@click.option(
    "--threads",
    default=field_default("threads"),
    type=click.IntRange(0),
    help="onnxruntime threads (0: auto).",
)
@click.option(
    "--pad-last-batch/--no-pad-last-batch",
    default=field_default("pad_last_batch"),
    help="Pad the last batch to --batch-size (default: on for CUDA).",
)
@overwrite_option
def command(
    model: Path,
    data: Path,
    subset: str,
    players: str | None,
    method: str,
    permutations: int,
    by: tuple[str, ...],
    metric: tuple[str, ...],
    save_predictions: Path | None,
    shard: str | None,
    out: Path | None,
    csv_path: Path | None,
    baseline_statistics: str,
    overwrite: bool,
    **fields: Any,
) -> None:
    """Relevance of each modality (Shapley value over coalitions of modalities) for every metric.

    \b
    sareval shape --model resnet50.onnx --data test.h5 --subset very_cloudy --out r.json
    sareval shape -m m.onnx -d test.h5 -s cloudy --by class --by cloud-cover 0,0.5,0.9,1
    sareval shape -m m.onnx -d test.h5 -s cloudy --metric oa --metric f1_macro --replicates 500
    sareval shape -m m.onnx -d test.h5 -s clear --shard 0/4 --out part0.json
    torchrun --nproc-per-node 2 $(which sareval) shape -m m.onnx -d test.h5 -s clear -o r.json

    Every non-empty coalition of a batch runs in one execution; the empty coalition is
    evaluated once. Prints a table (per-class and per-bin tables with --by; single-label
    metrics identical by definition, e.g. oa = f1_micro, in one row); --out writes the
    results JSON and a CSV table.
    """
    for old, (new, name) in DEPRECATED_FLAGS.items():
        value = fields.pop("old_" + old.removeprefix("--").replace("-", "_"))
        if value is not None:
            if fields[name] != field_default(name):
                raise SarevalError(f"{old}: give {new} or its old spelling {old}, not both")
            fields[name] = value
    if shard is not None and out is None:
        raise SarevalError("--shard needs --out (the shard's counts go to `sareval merge`)")
    if csv_path is None and out is not None and not is_stream(out):
        csv_path = out.with_suffix(".csv")  # none beside a device or FIFO
    main = is_main_process()
    if main:  # refuse existing or colliding outputs before the evaluation, not after
        outputs = {"--out": out, "--csv": csv_path, "--save-predictions": save_predictions}
        check_outputs(outputs, overwrite, json_option="--out", inputs=(model, data))
    by_class, edges = parse_by(by)
    choices: dict[str, Any] = dict(
        fields,
        players=parse_players(players, read_card(model)) if players else None,
        by_class=by_class, cloud_cover_bins=edges, metrics=parse_metrics(metric),
        shard=parse_shard(shard) if shard is not None else None,
        baseline_statistics=parse_baseline_statistics(baseline_statistics),
    )  # fmt: skip
    with api_errors_as_options():
        run = _run_for(method, permutations, choices)
        if not main:  # a torchrun rank: writes only its predictions file
            run(model, (data, subset), save_predictions=save_predictions, overwrite=overwrite)
            return
        # torchrun writes one predictions file per rank: those stay outside the set
        in_set = None if _distributed() else save_predictions
        with output_set((out, csv_path, in_set), overwrite) as written:
            result = run(
                model, (data, subset),
                save_predictions=written.temp(in_set) if in_set else save_predictions,
                overwrite=overwrite or in_set is not None,
            )  # fmt: skip
            doc = result.doc
            if out is not None:
                write_results(doc, written.temp(out), overwrite=True)
            if csv_path is not None:
                write_csv(doc, written.temp(csv_path), overwrite=True)
    click.echo(console_table(doc))
    report_written(out, csv_path, save_predictions)


#: the options that perceptual scores do not take (they are SHAPE's: game, reporting, estimation)
SHAPE_ONLY = (
    "absence", "baseline", "baseline_statistics", "empty_coalition", "normalization", "replicates",
    "by_class", "cloud_cover_bins", "per_sample", "map_absent_classes", "estimator", "orderings",
)  # fmt: skip


def _run_for(method: str, permutations: int, choices: dict[str, Any]) -> Any:
    """``sareval.evaluate`` with the options as a :class:`~sareval.ShapeConfig`, or, for
    ``--method perceptual``, ``sareval.perceptual_score`` (refusing SHAPE's own options)."""
    import functools

    if method == "shape":
        config = sareval.ShapeConfig(**choices)
        return functools.partial(sareval.evaluate, config=config, progress=progress_enabled())
    given = [n for n in SHAPE_ONLY if choices[n] != field_default(n)]
    if given:
        flags = ", ".join(FIELD_FLAGS[f"ShapeConfig.{p}.{n}"] for n in given
                          for p in ("game", "reporting", "estimation")
                          if f"ShapeConfig.{p}.{n}" in FIELD_FLAGS)  # fmt: skip
        raise SarevalError(f"--method perceptual: takes none of {flags}")
    execution = sareval.ShapeConfig(**{
        n: v for n, v in choices.items() if n not in (*SHAPE_ONLY, "players", "metrics", "seed")
    }).execution  # fmt: skip

    def run(model: Any, data: Any, save_predictions: Any = None, overwrite: bool = False) -> Any:
        if save_predictions is not None:
            raise SarevalError("--save-predictions: not available with --method perceptual")
        return sareval.perceptual_score(
            model, data, permutations=permutations, players=choices["players"],
            metrics=choices["metrics"], seed=choices["seed"], execution=execution,
            progress=progress_enabled(),
        )  # fmt: skip

    return run
