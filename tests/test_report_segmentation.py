"""Reports of segmentation results: the per-class IoU, clear / cloudy pixel and maps figures show
the numbers of the results and maps files (read back from the drawn artists), the tables carry
the same numbers, and the maps figure's RGB / SAR panels are the store's images."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import sareval
from sareval.card import ModelCard
from sareval.cli import cli
from sareval.errors import SarevalError
from sareval.evaluator.relevance_maps import read_maps
from sareval.report import make_report
from sareval.report import segmentation_figures as sf
from sareval.report.collect import ResultRun, collect
from sareval.report.tables import breakdown_markdown, choose_metrics

K, N, SIZE = 3, 6, 16
CLASSES = ["water", "forest", "urban"]
PLAYERS = {"sar": ["VV", "VH"], "opt": ["B02", "B03", "B04"]}
S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
            "B12"]  # fmt: skip
NORM = {"VV": {"mean": -12.0, "std": 3.0}, "VH": {"mean": -18.0, "std": 3.0}} | {
    b: {"mean": 1000.0, "std": 500.0} for b in ("B02", "B03", "B04")
}


class Net(torch.nn.Module):
    """One 3x3 convolution: logits (N, K, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv2d(5, K, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store of N images (clear and cloudy S2, label maps, per-pixel cloud masks), a results
    file of its ``cloudy`` subset (bootstrap, by class, per-pixel relevance) and its maps file."""
    d = tmp_path_factory.mktemp("report_segmentation")
    rng = np.random.default_rng(5)
    y = rng.integers(0, K, (N, SIZE, SIZE)).astype(np.uint8)
    y[:, :2] = 255  # unlabelled rows of pixels
    s1 = rng.normal(-15, 3, (N, 2, SIZE, SIZE)).astype(np.float32)
    s1[:, 0] += 4.0 * (y == 1)
    s2 = rng.integers(200, 3000, (N, 13, SIZE, SIZE)).astype(np.uint16)
    s2[:, 2] += (1500 * (y == 2)).astype(np.uint16)
    mask = np.zeros((N, SIZE, SIZE), np.uint8)
    mask[:, :, : SIZE // 2] = 1  # the left half of every image under cloud
    cloudy = s2.copy()
    cloudy[:, :, mask[0] == 1] = 6000
    store = d / "store.h5"
    sareval.write_store(
        store, {"s1": s1, "s2": s2}, {"lc": (y, CLASSES)},
        {"cloudy": (np.arange(N), "s2_cloudy")}, cloudy=cloudy,
        cloud_cover=mask.reshape(N, -1).mean(1), cloud_mask=mask,
        ids=[f"img{i}" for i in range(N)],
    )  # fmt: skip
    card = ModelCard.custom(PLAYERS, task="segmentation", class_names=CLASSES, input_size=SIZE,
                            normalization=NORM, name="tiny")  # fmt: skip
    run = d / "run"
    with sareval.open_store(store) as st:
        r = sareval.evaluate(
            Net().eval(), st.subset("cloudy"), card=card, by_class=True, per_sample=True,
            replicates=30, save_predictions=run / "maps.h5",
        )  # fmt: skip
    r.save(run / "shape.json")
    return {"dir": d, "run": run, "store": store, "doc": r.doc, "s2_cloudy": cloudy, "s1": s1}


def runs_of(evaluated: dict[str, Any]) -> list[ResultRun]:
    return [ResultRun("tiny", "cloudy", evaluated["run"] / "shape.json", evaluated["doc"])]


@pytest.mark.slow
def test_report_of_a_segmentation_run_has_its_figures_and_tables(evaluated, tmp_path) -> None:
    report = make_report([evaluated["run"]], tmp_path / "report")
    doc = evaluated["doc"]
    assert report.metrics == ["miou", "oa", "f1_macro"]  # the task's defaults, mIoU first
    names = {p.name for p in report.figures}
    for stem in ("per_class_iou", "cloud_pixels_miou", "maps_1", "relevance"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names, stem
    text = (tmp_path / "report" / "summary.md").read_text()
    assert "## Segmentation" in text and "### iou per class" in text
    # each class's IoU relevance of SAR with its interval, as the results have them
    for name in CLASSES:
        m = doc["by"]["class"][name]["metrics"]["iou"]
        lo, hi = m["ci"]["relevance"]["sar"]
        cell = f"{m['relevance']['sar']:.3f} [{lo:.3f}, {hi:.3f}]"
        row = next(line for line in text.splitlines() if f"| {name} |" in line)
        assert cell in row, (name, row)
    # the clear and cloudy pixels of the same images, with their pixel counts
    section = text.split("### miou over clear and cloudy pixels")[1].split("###")[0]
    for entry in doc["by"]["cloud_pixels"]:
        if not entry["n_pixels"]:
            assert f"| 1 | {entry['label']} |" not in section  # (1 run)
            continue
        m = entry["metrics"]["miou"]
        row = next(line for line in section.splitlines() if f"| 1 | {entry['label']} |" in line)
        assert f"| {entry['n_pixels']} |" in row
        assert f"{m['V']['sar+opt']:.3f}" in row and f"{m['relevance']['opt']:.3f}" in row


def test_cloud_pixels_figure_draws_the_results_values(evaluated) -> None:
    doc = evaluated["doc"]
    fig = sf.cloud_pixels_figure(runs_of(evaluated), "miou")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["mean IoU (all)", "relevance of SAR", "relevance of optical"]
    assert titles[-1] == "pixels per state"
    states = [e["label"] for e in doc["by"]["cloud_pixels"]]
    assert states == ["clear", "cloudy", "unknown"]
    for ax, (key, player) in zip(fig.axes[:3], (("V", "sar+opt"), ("relevance", "sar"),
                                                ("relevance", "opt")), strict=True):  # fmt: skip
        (container,) = ax.containers
        points = container.lines[0].get_ydata()
        for i, e in enumerate(doc["by"]["cloud_pixels"]):
            if not e["n_pixels"]:
                assert math.isnan(points[i])  # no pixels: no point
                continue
            m = e["metrics"]["miou"]
            assert points[i] == pytest.approx(m[key][player])
        segments = [s for s in container.lines[2][0].get_segments() if len(s) == 2]
        wanted = [tuple(e["metrics"]["miou"]["ci"][key][player])
                  for e in doc["by"]["cloud_pixels"] if e["n_pixels"]]  # fmt: skip
        assert np.allclose([(s[0][1], s[1][1]) for s in segments], wanted)
    # the mean per-pixel relevance panels: pixel_relevance.true_probability.by_pixels
    by_pixels = doc["pixel_relevance"]["true_probability"]["by_pixels"]
    for ax, player in zip(fig.axes[3:5], ("sar", "opt"), strict=True):
        assert "per-pixel" in ax.get_title().replace("\n", " ")
        points = ax.containers[0].lines[0].get_ydata()
        for i, state in enumerate(states):
            want = by_pixels[state][player]
            assert math.isnan(points[i]) if want is None else points[i] == pytest.approx(want)
    bars = [p.get_height() for p in fig.axes[-1].patches]
    assert bars == [e["n_pixels"] for e in doc["by"]["cloud_pixels"]]


def stretch(a: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(a, [2, 98])
    return np.clip((a - lo) / (hi - lo), 0, 1)  # type: ignore[no-any-return]


def test_maps_figure_shows_the_chosen_images_of_the_maps_and_store(evaluated) -> None:
    path = evaluated["run"] / "maps.h5"
    maps = read_maps(path)
    fig = sf.maps_figure(path, ["img4", "img1"], store=evaluated["store"])
    axes = np.array(fig.axes[: 2 * 6]).reshape(2, 6)  # the colour bar comes last
    assert [ax.get_title().replace("\n", " ") for ax in axes[0]] == [
        "RGB", "SAR (VV, dB)", "label", "prediction (all modalities)", "relevance of SAR",
        "relevance of optical",
    ]  # fmt: skip
    full = maps["coalitions"].index("sar+opt")
    phi = maps["relevance"]["true_probability"]
    limit = np.nanmax(np.abs(phi[[4, 1]]))
    for row, k in zip(axes, (4, 1), strict=True):
        # the cloudy S2 the subset reads, B04 / B03 / B02, each band stretched 2-98 %
        rgb = np.stack([evaluated["s2_cloudy"][k, S2_BANDS.index(b)].astype(float)
                        for b in ("B04", "B03", "B02")], -1)  # fmt: skip
        assert np.allclose(row[0].images[0].get_array(), stretch(rgb))
        assert np.allclose(row[1].images[0].get_array(), stretch(evaluated["s1"][k, 0]))
        label = row[2].images[0].get_array()
        assert np.array_equal(label.mask, maps["labels"][k] == 255)
        assert np.array_equal(label.data[~label.mask], maps["labels"][k][~label.mask])
        prediction = row[3].images[0].get_array()
        assert np.array_equal(prediction.data[~prediction.mask],
                              maps["decisions"][full, k][~prediction.mask])  # fmt: skip
        for j, ax in enumerate(row[4:]):
            image = ax.images[0]
            assert np.allclose(image.get_array(), phi[k, j], equal_nan=True)
            assert image.get_clim() == pytest.approx((-limit, limit))  # one shared scale
        assert all(ax.collections for ax in row)  # the cloud outline on every panel
    assert "left out" not in fig._suptitle.get_text()


def test_maps_figure_without_store_leaves_rgb_and_sar_out(evaluated) -> None:
    fig = sf.maps_figure(evaluated["run"] / "maps.h5")
    n_images = sf.DEFAULT_MAP_IMAGES
    assert len(fig.axes) == n_images * 4 + 1
    assert fig.axes[0].get_title() == "label"
    assert "RGB and SAR left out" in fig._suptitle.get_text().replace("\n", " ")


def test_the_store_is_found_from_the_results_and_checked(evaluated, tmp_path) -> None:
    found = collect([evaluated["run"]])
    (maps_run,) = found.maps
    assert maps_run.label == "tiny" and maps_run.subset == "cloudy"
    assert sf.store_for(maps_run.attrs, found.results) == evaluated["store"].resolve()
    other = dict(maps_run.attrs, store_content_digest="0" * 64)
    assert sf.store_for(other, found.results) is None  # another store's maps: no RGB from it


def test_bad_image_choices_are_one_line_errors(evaluated, tmp_path) -> None:
    with pytest.raises(SarevalError, match=r"images: nope not in the maps file .*maps\.h5"):
        sf.maps_figure(evaluated["run"] / "maps.h5", ["img1", "nope"])
    with pytest.raises(SarevalError, match="map_images: expected a list of image ids"):
        make_report([evaluated["run"]], tmp_path / "r", map_images="img1")  # type: ignore[arg-type]
    with pytest.raises(SarevalError, match="map_images: no segmentation maps file"):
        make_report([evaluated["run"] / "shape.json"], tmp_path / "r", map_images=["img1"])


@pytest.mark.slow
def test_cli_draws_the_chosen_images(evaluated, tmp_path) -> None:
    out = tmp_path / "report"
    args = ["report", f"seg={evaluated['run']}", "--images", "img2,img0", "--metric", "miou",
            "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert (out / "maps_1.png").is_file() and (out / "cloud_pixels_miou.png").is_file()
    svg = (out / "maps_1.svg").read_text()
    assert "img2" in svg and "img0" in svg and "img1" not in svg


def test_tables_take_segmentation_metric_names(evaluated) -> None:
    runs = runs_of(evaluated)
    assert choose_metrics(runs, None) == ["miou", "oa", "f1_macro"]
    assert choose_metrics(runs, ["fwiou", "kappa"]) == ["fwiou", "kappa"]
    table = breakdown_markdown(runs, "cloud_pixels", "fwiou")
    assert table.startswith("### fwiou over clear and cloudy pixels")
    assert breakdown_markdown(runs, "cloud_pixels", "no_such_metric") == ""
    doc = json.loads((evaluated["run"] / "shape.json").read_text())
    assert doc["task"] == "segmentation"
