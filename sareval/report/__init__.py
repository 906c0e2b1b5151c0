"""Reports: tables and figures from results files and training histories.

:func:`make_report` writes into ``out``: ``summary.md``, ``summary.csv``, ``runs.csv`` (see
:mod:`sareval.report.tables`) and the figures of :mod:`sareval.report.figures` and
:mod:`sareval.report.per_sample_figures` as PNG and SVG (the per-metric figures once for every
reported metric: ``decomposition_<metric>``, ``cloud_cover_<metric>``, ``epochs_<metric>``,
and per model label ``interactions_<metric>_<n>``: pairwise interactions with intervals); for
segmentation results (:mod:`sareval.report.segmentation_figures`) also ``per_class_iou``,
``cloud_pixels_<metric>`` and, per maps file among the inputs, ``maps_<n>`` (the images
``map_images``, else the first few), and summary.md gets the per-class IoU and clear / cloudy
pixel tables (:func:`~sareval.report.tables.breakdown_markdown`);
with ``compare`` also ``comparisons.md`` and ``comparisons.csv``: differences of two setups with
paired bootstrap intervals and p-values (:mod:`sareval.report.compare`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sareval.atomic import atomic_output, check_output_folder
from sareval.errors import SarevalError
from sareval.report import compare as cmp
from sareval.report import figures as fg
from sareval.report import per_sample_figures as psf
from sareval.report import segmentation_figures as sf
from sareval.report.collect import Collection, ReportInput, collect, labelled_path
from sareval.report.compare import (
    Comparison,
    Setup,
    check_pair,
    compare_predictions,
)
from sareval.report.tables import (
    SummaryRow,
    breakdown_markdown,
    choose_metrics,
    csv_text,
    markdown,
    runs_csv_text,
    summarize,
)


@dataclass
class Report:
    out: Path
    collection: Collection
    metrics: list[str]
    rows: list[SummaryRow]
    tables: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def markdown(self) -> str:
        return markdown(self.rows)


def make_report(
    inputs: Sequence[ReportInput],
    out: str | Path,
    *,
    metrics: Sequence[str] | None = None,
    overwrite: bool = False,
    compare: Sequence[tuple[Setup, Setup]] = (),
    replicates: int = 999,
    n_boot: int | None = None,
    interaction_index: str = "sii",
    map_images: Sequence[str] | None = None,
) -> Report:
    """Read ``inputs`` (paths or ``(label, path)``, see :mod:`sareval.report.collect`), write the
    report.

    ``compare``: pairs of :class:`~sareval.report.compare.Setup` ``(a, b)`` compared B - A from
    their predictions files (:func:`~sareval.report.compare.compare_predictions`, bootstrap
    ``replicates`` (``n_boot``: its deprecated name), ``metrics`` or the task's defaults).
    ``interaction_index``: the pairwise index of the ``interactions_*`` figures, ``sii``
    (Shapley interaction index) or ``banzhaf_interaction``. ``map_images``: ids of the images
    the ``maps_<n>`` figures show (each must be in every maps file; default: the first few)."""
    if interaction_index not in fg.INTERACTION_INDICES:
        raise SarevalError(
            f"interaction_index: expected one of {', '.join(fg.INTERACTION_INDICES)}, "
            f"got {interaction_index!r}"
        )
    replicates = cmp.deprecated_replicates("make_report", replicates, n_boot)
    given = [labelled_path(spec)[1] for spec in inputs]
    for pair in compare:
        if not (isinstance(pair, tuple) and len(pair) == 2
                and all(isinstance(s, Setup) for s in pair)):  # fmt: skip
            raise SarevalError(
                f"compare: expected pairs (Setup, Setup) of sareval.report.Setup, got {pair!r}"
            )
        check_pair(*pair)
    given += [p for pair in compare for setup in pair for p in setup.files]
    out = check_output_folder("out", out, overwrite, given)
    comparisons = []
    for sa, sb in compare:
        fa, fb = list(sa.files), list(sb.files)
        found_ab = compare_predictions(
            fa, fb, a=sa.label, b=sb.label, metrics=metrics, replicates=replicates
        )
        comparisons.append(found_ab)
    if not inputs:
        out.mkdir(parents=True, exist_ok=True)
        report = Report(out, Collection(), list(metrics or []), [], comparisons=comparisons)
        _write_comparisons(report)
        return report
    if isinstance(map_images, str):
        raise SarevalError(f"map_images: expected a list of image ids, got {map_images!r}")
    found = collect(inputs)
    if map_images and not found.maps:
        raise SarevalError("map_images: no segmentation maps file among the inputs")
    chosen = choose_metrics(found.results, metrics) if found.results else list(metrics or [])
    rows = summarize(found.results, chosen)
    report = Report(out, found, chosen, rows, comparisons=comparisons)
    out.mkdir(parents=True, exist_ok=True)
    _write_comparisons(report)
    if rows:
        for name, text in (
            ("summary.md", markdown(rows) + _segmentation_tables(found, chosen)),
            ("summary.csv", csv_text(rows)),
            ("runs.csv", runs_csv_text(found.results, chosen)),
        ):
            with atomic_output(out / name, overwrite=True) as tmp:
                tmp.write_text(text)
            report.tables.append(out / name)
        report.figures += _result_figures(found, rows, chosen, out)
        report.figures += _interaction_figures(found, chosen, out, interaction_index)
    for n, run in enumerate(found.maps, 1):
        store = sf.store_for(run.attrs, found.results)
        title = f"{run.label} · {run.subset} ({run.path.name})"
        fig = sf.maps_figure(run.path, map_images, store=store, title=title)
        report.figures += fg.save(fig, out, f"maps_{n}")
    if found.detections:
        fig = psf.roc_grid_figure(found.detections, found.results)
        report.figures += fg.save(fig, out, "detection_roc")
    if found.histories:
        have = {
            m
            for h in found.histories
            for rec in h.epochs
            for v in rec.get("val", {}).values()
            for m in v["metrics"]
        }
        epoch_metrics = [m for m in chosen if m in have] or sorted(have)[:1] or ["oa"]
        for metric in epoch_metrics:
            fig = fg.epochs_figure(found.histories, metric, fg.Palette.of(models=found.labels()))
            report.figures += fg.save(fig, out, f"epochs_{metric}")
    return report


def _result_figures(
    found: Collection, rows: Sequence[SummaryRow], metrics: Sequence[str], out: Path
) -> list[Path]:
    """The figures of the results files (module docstring of :mod:`sareval.report.figures`);
    one file per metric for the per-metric figures, each naming its metric, Z and baseline."""
    results = found.results
    settings = fg.game_settings(results)
    paths = fg.save(fg.relevance_figure(rows, metrics, settings), out, "relevance")
    paths += fg.save(fg.performance_figure(rows, metrics, settings), out, "performance")
    for metric in metrics:
        fig = fg.decomposition_figure(rows, metric, settings)
        paths += fg.save(fig, out, f"decomposition_{metric}")
        if fg.has_cloud_cover(results):
            paths += fg.save(fg.cloud_cover_figure(results, metric), out, f"cloud_cover_{metric}")
        if sf.has_cloud_pixels(results):
            fig = sf.cloud_pixels_figure(results, metric)
            paths += fg.save(fig, out, f"cloud_pixels_{metric}")
    for metric in fg.CLASS_FIGURE_METRICS:
        if fg.has_by_class(results, metric):
            paths += fg.save(fg.per_class_figure(results, metric), out, f"per_class_{metric}")
    for quantity in psf.PER_SAMPLE_FIGURE_QUANTITIES:
        if psf.has_per_sample(results, quantity):
            fig = psf.per_sample_figure(results, quantity)
            paths += fg.save(fig, out, f"per_sample_{quantity}")
    return paths


def _segmentation_tables(found: Collection, metrics: Sequence[str]) -> str:
    """The breakdown tables of segmentation results: IoU per class, then each metric over
    clear / cloudy / unknown pixels ("" without segmentation results)."""
    results = [r for r in found.results if r.doc.get("task") == "segmentation"]
    if not results:
        return ""
    parts = [breakdown_markdown(results, "class", "iou")]
    parts += [breakdown_markdown(results, "cloud_pixels", m) for m in metrics]
    text = "\n".join(p for p in parts if p)
    return "\n## Segmentation\n\n" + text if text else ""


def _interaction_figures(
    found: Collection, metrics: Sequence[str], out: Path, index: str
) -> list[Path]:
    """``interactions_<metric>_<n>``: the pairwise interaction matrices of the n-th model label
    (1-based, in :meth:`Collection.labels` order), for labels with >= 2 players and exact games."""
    paths: list[Path] = []
    labels = found.labels()
    for metric in metrics:
        matrices = fg.interaction_matrices(found.results, metric, index)
        for n, label in enumerate(labels, 1):
            mine = [m for m in matrices if m.label == label]
            if mine:
                fig = fg.interactions_figure(mine)
                paths += fg.save(fig, out, f"interactions_{metric}_{n}")
    return paths


def _write_comparisons(report: Report) -> None:
    """``comparisons.md`` and ``comparisons.csv`` of ``report.comparisons`` (if any)."""
    import csv
    import io

    if not report.comparisons:
        return
    rows = [row for c in report.comparisons for row in c.rows()]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    for name, text in (
        ("comparisons.md", cmp.markdown(report.comparisons)),
        ("comparisons.csv", buf.getvalue()),
    ):
        with atomic_output(report.out / name, overwrite=True) as tmp:
            tmp.write_text(text)
        report.tables.append(report.out / name)
