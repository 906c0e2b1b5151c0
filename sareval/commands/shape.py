"""``sareval shape``: SHAPE modality relevance of a model on a store subset."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from sareval.atomic import check_outputs, is_stream, output_set
from sareval.choices import (
    BACKENDS,
    BASELINES,
    EMPTY_CHOICES,
    ESTIMATORS,
    METHODS,
    PRECISIONS,
    PROVIDERS,
    Z_CHOICES,
)
from sareval.commands.options import overwrite_option, progress_enabled, report_written
from sareval.errors import SarevalError

EDGES = re.compile(r"^[0-9.eE+-]+(,[0-9.eE+-]+)+$")


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


def parse_by(by: tuple[str, ...]) -> tuple[bool, tuple[float, ...] | None]:
    """``("class", "cloud-cover=0,0.5,1")`` -> (by class?, cloud-cover bin edges or None);
    ``cloud-cover`` alone is deciles."""
    from sareval.evaluator.config import DECILES
    from sareval.evaluator.relevance import parse_bin_edges

    by_class, edges = False, None
    for item in by:
        if item == "class":
            by_class = True
        elif item == "cloud-cover":
            edges = DECILES
        elif item.startswith("cloud-cover="):
            edges = tuple(parse_bin_edges(item.split("=", 1)[1]))
        else:
            raise SarevalError(
                f"--by {item!r}: expected 'class', 'cloud-cover' or 'cloud-cover=0,0.1,...,1'"
            )
    return by_class, edges


def parse_metrics(metric: tuple[str, ...]) -> tuple[str, ...] | None:
    """``("oa", "f1_macro,kappa")`` -> ("oa", "f1_macro", "kappa") in order, without
    repeats; None (every metric) when no ``--metric`` is given."""
    names = [m.strip() for item in metric for m in item.split(",")]
    if any(not m for m in names):
        raise SarevalError("--metric: empty metric name")
    return tuple(dict.fromkeys(names)) or None


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` -> (i, n)."""
    from sareval.evaluator.distributed import parse_shard as parse

    return None if text is None else parse(text)


@contextlib.contextmanager
def api_errors_as_options() -> Iterator[None]:
    """Name the CLI's options in errors of :class:`sareval.ShapeConfig` (``ShapeConfig.z`` ->
    ``--z``, ``ShapeConfig.cloud_cover_bins`` -> ``--by cloud-cover``, ``ShapeConfig.metrics``
    -> ``--metric``)."""
    try:
        yield
    except SarevalError as e:
        text = str(e).replace("ShapeConfig.cloud_cover_bins", "--by cloud-cover")
        text = text.replace("ShapeConfig.metrics", "--metric")
        text = re.sub(r"ShapeConfig\.(\w+)", lambda m: "--" + m.group(1).replace("_", "-"), text)
        raise SarevalError(text) from None


def _distributed() -> bool:
    """True under torchrun (several ranks)."""
    from sareval.evaluator.distributed import torchrun_env

    return torchrun_env() is not None


def is_main_process() -> bool:
    """True unless this is a torchrun rank other than 0 (an incomplete environment is an error)."""
    from sareval.evaluator.distributed import torchrun_env

    env = torchrun_env()
    return env is None or env.rank == 0


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
    default=64,
    show_default=True,
    type=click.IntRange(1),
    help="Samples per step (the model sees (2^M - 1) x this many rows).",
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default=None,
    help="Default: onnxruntime for .onnx files, torch for TorchScript / torch.export files.",
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option(
    "--provider",
    type=click.Choice(PROVIDERS),
    default=None,
    help="onnxruntime execution provider (default: cuda on --device cuda, else cpu).",
)
@click.option(
    "--baseline",
    type=click.Choice(BASELINES),
    default="input-zero",
    show_default=True,
    help="Value of an absent modality: 0 after normalisation, raw 0, or band mean.",
)
@click.option(
    "--empty",
    type=click.Choice(EMPTY_CHOICES),
    default="baseline",
    show_default=True,
    help="Empty coalition: all-baseline input or majority class.",
)
@click.option(
    "--z",
    type=click.Choice(Z_CHOICES),
    default="one",
    show_default=True,
    help="Normaliser: Z = 1 (the study) or Z = V(all modalities) (SHAPE paper).",
)
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
    help="SHAPE (Shapley over coalitions) or perceptual score.",
)
@click.option(
    "--permutations",
    default=5,
    show_default=True,
    type=click.IntRange(1),
    help="Permutations per modality for --method perceptual.",
)
@click.option(
    "--bootstrap",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Bootstrap replicates for 95% confidence intervals (0: none).",
)
@click.option("--seed", default=0, show_default=True, type=int)
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
    help="Share work across coalitions (torch: late-fusion encoders; both backends: an "
    "early-fusion first conv); an unrecognised network runs unshared with a warning (recorded).",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="fp32",
    show_default=True,
    help="Torch backend: run the network under fp16/bf16 autocast (recorded in the results).",
)
@click.option(
    "--estimator",
    type=click.Choice(ESTIMATORS),
    default="auto",
    show_default=True,
    help="exact (all 2^M coalitions), sampled (permutations), or auto: the cheaper one.",
)
@click.option(
    "--samples",
    default=128,
    show_default=True,
    type=click.IntRange(2),
    help="Orderings for --estimator sampled (even: antithetic pairs).",
)
@click.option(
    "--max-rows",
    default=None,
    type=click.IntRange(1),
    help="Model rows per execution (default: from half the available memory).",
)
@click.option(
    "--per-sample",
    is_flag=True,
    help="Per-sample Shapley values of each sample's score and false-prediction detection "
    "from them (AUROC/AP vs the max-softmax baseline); arrays go to --save-predictions.",
)
@click.option("--threads", default=0, type=click.IntRange(0), help="onnxruntime threads (0: auto).")
@click.option(
    "--pad-last-batch/--no-pad-last-batch",
    default=None,
    help="Pad the last batch to --batch-size (default: on for CUDA).",
)
@overwrite_option
def command(
    model: Path,
    data: Path,
    subset: str,
    batch_size: int,
    backend: str | None,
    device: str,
    provider: str | None,
    baseline: str,
    empty: str,
    z: str,
    players: str | None,
    method: str,
    permutations: int,
    bootstrap: int,
    seed: int,
    by: tuple[str, ...],
    metric: tuple[str, ...],
    save_predictions: Path | None,
    shard: str | None,
    out: Path | None,
    csv_path: Path | None,
    precision: str,
    share: bool,
    estimator: str,
    samples: int,
    max_rows: int | None,
    per_sample: bool,
    threads: int,
    pad_last_batch: bool | None,
    overwrite: bool,
) -> None:
    """Relevance of each modality (Shapley value over coalitions of modalities) for every metric.

    \b
    sareval shape --model resnet50.onnx --data test.h5 --subset very_cloudy --out r.json
    sareval shape -m m.onnx -d test.h5 -s cloudy --by class --by cloud-cover 0,0.5,0.9,1
    sareval shape -m m.onnx -d test.h5 -s cloudy --metric oa --metric f1_macro --bootstrap 500
    sareval shape -m m.onnx -d test.h5 -s clear --shard 0/4 --out part0.json
    torchrun --nproc-per-node 2 $(which sareval) shape -m m.onnx -d test.h5 -s clear -o r.json

    Every non-empty coalition of a batch runs in one execution; the empty coalition is
    evaluated once. Prints a table (per-class and per-bin tables with --by; single-label
    metrics identical by definition, e.g. oa = f1_micro, in one row); --out writes the
    results JSON and a CSV table.
    """
    import sareval
    from sareval.card import read_card
    from sareval.evaluator.players import parse_players
    from sareval.evaluator.results import console_table, write_csv, write_results

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
        players=parse_players(players, read_card(model)) if players else None,
        baseline=baseline, empty=empty, z=z, by_class=by_class, cloud_cover_bins=edges,
        metrics=parse_metrics(metric),
        bootstrap=bootstrap, seed=seed, method=method, permutations=permutations,
        batch_size=batch_size, backend=backend, device=device, provider=provider,
        precision=precision, threads=threads, pad_last_batch=pad_last_batch,
        shard=parse_shard(shard), estimator=estimator, samples=samples, max_rows=max_rows,
        per_sample=per_sample, share=share,
    )  # fmt: skip
    with api_errors_as_options():
        config = sareval.ShapeConfig(**choices)
        if not main:  # a torchrun rank: writes only its predictions file
            sareval.evaluate(
                model, (data, subset), config, progress=progress_enabled(),
                save_predictions=save_predictions, overwrite=overwrite,
            )  # fmt: skip
            return
        # torchrun writes one predictions file per rank: those stay outside the set
        in_set = None if _distributed() else save_predictions
        with output_set((out, csv_path, in_set), overwrite) as written:
            result = sareval.evaluate(
                model, (data, subset), config, progress=progress_enabled(),
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
