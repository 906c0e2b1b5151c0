"""The configuration objects and the CLI agree: every `sareval shape` option that sets a
ShapeConfig field has the field's default, every field path in library messages has its flag,
flat and deprecated names route to the right part, old results records still read."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import click
import pytest

from sareval.commands.options import FIELD_FLAGS, as_cli_message, field_default
from sareval.commands.parsing import parse_baseline_statistics
from sareval.commands.shape import DEPRECATED_FLAGS
from sareval.commands.shape import command as shape_command
from sareval.errors import SarevalError
from sareval.evaluator.config import (
    DEPRECATED_NAMES,
    FLAT_FIELDS,
    PARTS,
    Estimation,
    Execution,
    Game,
    Reporting,
    ShapeConfig,
    upgrade_record,
)

#: fields set by an option whose value is parsed (not the field's own default)
PARSED = {"players", "metrics", "by_class", "cloud_cover_bins", "shard"}
#: fields without a CLI option (API only)
API_ONLY = {"queue_size"}


def option(name: str) -> click.Option:
    found = [p for p in shape_command.params if isinstance(p, click.Option) and p.name == name]
    assert len(found) == 1, f"no option {name}"
    return found[0]


def test_every_field_has_its_option_with_the_fields_default() -> None:
    for name, (part, field) in FLAT_FIELDS.items():
        if name in API_ONLY:
            assert f"ShapeConfig.{part}.{field}" not in FIELD_FLAGS
            continue
        flag = FIELD_FLAGS[f"ShapeConfig.{part}.{field}"]
        assert flag.split()[0] in {o for p in shape_command.params for o in p.opts}, flag
        if name in PARSED:
            continue
        default = next(f.default for f in dataclasses.fields(PARTS[part]) if f.name == field)
        assert option(name).default == default == field_default(name), name
    # the parsed ones: nothing given means the field's default
    assert option("players").default is None is field_default("players")
    assert option("shard").default is None is field_default("shard")
    assert option("by").multiple and option("metric").multiple  # none given: no breakdown
    assert field_default("cloud_cover_bins") is None and field_default("by_class") is False


def test_a_changed_field_default_changes_the_cli() -> None:
    """The defaults are read, not repeated: the options hold the very objects of the fields."""
    defaults = {f.name: f.default for part in PARTS.values() for f in dataclasses.fields(part)}
    assert option("batch_size").default is defaults["batch_size"]
    assert option("orderings").default is defaults["orderings"]
    assert option("normalization").default is defaults["normalization"]


def test_field_flags_cover_every_path_and_name_real_options() -> None:
    paths = {f"ShapeConfig.{p}.{f}" for p, f in FLAT_FIELDS.values()}
    assert set(FIELD_FLAGS) == paths - {"ShapeConfig.execution.queue_size"}
    msg = "ShapeConfig.execution.precision: 'fp16' needs ShapeConfig.execution.backend 'torch'"
    assert as_cli_message(msg) == "--precision: 'fp16' needs --backend 'torch'"
    assert as_cli_message("ShapeConfig.reporting.cloud_cover_bins: x") == "--by cloud-cover: x"
    assert as_cli_message("a.json: output exists; pass overwrite=True") == (
        "a.json: output exists; pass --overwrite"
    )


def test_flat_keywords_route_to_their_part() -> None:
    c = ShapeConfig(players={"s": ["VV"]}, by_class=True, batch_size=16, replicates=100,
                    normalization="full", orderings=8)  # fmt: skip
    assert c.game == Game(players={"s": ["VV"]})
    assert c.reporting == Reporting(by_class=True, replicates=100, normalization="full")
    assert c.execution == Execution(batch_size=16)
    assert c.estimation == Estimation(orderings=8)
    assert c == ShapeConfig(
        game=Game(players={"s": ["VV"]}),
        reporting=Reporting(by_class=True, replicates=100, normalization="full"),
        execution=Execution(batch_size=16),
        estimation=Estimation(orderings=8),
    )
    assert c.replace(seed=3).reporting.seed == 3 and c.replace(seed=3).execution == c.execution
    assert c.replace(execution=Execution(device="cuda:1")).execution.device == "cuda:1"
    with pytest.raises(SarevalError, match=r"unknown ShapeConfig field\(s\) colour"):
        ShapeConfig(colour=1)
    with pytest.raises(SarevalError, match=r"ShapeConfig\.game: expected a sareval\.Game"):
        ShapeConfig(game=Reporting())  # type: ignore[arg-type]


@pytest.mark.parametrize(("old", "new"), sorted(DEPRECATED_NAMES.items()))
def test_deprecated_names_warn_and_mean_the_new_field(old: str, new: str) -> None:
    value = {"bootstrap": 7, "samples": 8, "z": "full", "empty": "majority"}[old]
    with pytest.warns(DeprecationWarning, match=f"'{old}' is deprecated; use '{new}'"):
        c = ShapeConfig(**{old: value})
    assert c == ShapeConfig(**{new: value})
    assert upgrade_record({old: value}) == {new: value}


def test_rules_across_parts() -> None:
    with pytest.raises(SarevalError, match="replicates needs every sample in one job"):
        ShapeConfig(replicates=10, shard=(0, 2))
    with pytest.raises(SarevalError, match="intervals are for exact games"):
        ShapeConfig(replicates=10, estimator="sampled")
    with pytest.raises(SarevalError, match="per_sample: needs an exact game"):
        ShapeConfig(per_sample=True, empty_coalition="majority")
    with pytest.raises(SarevalError, match=r"precision: 'bf16' needs ShapeConfig\.execution"):
        Execution(precision="bf16", backend="onnxruntime")
    Execution(precision="bf16")  # the backend is decided from the model later
    with pytest.raises(SarevalError, match=r"'cpu' does not run on ShapeConfig\.execution\.device"):
        Execution(provider="cpu", device="cuda")
    for bad in ("gpu", "cpu:0", "cuda:x", "cuda:"):
        with pytest.raises(SarevalError, match=f"ShapeConfig.execution.device: '{bad}'"):
            Execution(device=bad)
    with pytest.raises(SarevalError, match=r"cloud_cover_bins: edges must lie in \[0, 1\]"):
        Reporting(cloud_cover_bins=[0, 2])


def test_library_and_cli_messages(tmp_path) -> None:
    from click.testing import CliRunner

    from sareval.cli import cli

    args = ["shape", "-m", "m.onnx", "-d", "d.h5", "-s", "all"]
    res = CliRunner().invoke(cli, [*args, "--replicates", "3", "--shard", "0/2", "-o", "x.json"])
    assert res.exit_code == 1
    assert res.output.strip().endswith(
        "error: --replicates needs every sample in one job: --shard must be None (use torchrun "
        "instead)"
    )
    res = CliRunner().invoke(cli, [*args, "--bootstrap", "3", "--replicates", "4"])
    assert res.exit_code == 1 and "give --replicates or its old spelling --bootstrap" in res.output
    assert set(DEPRECATED_FLAGS) == {f"--{n}" for n in DEPRECATED_NAMES}


def test_baseline_statistics_text_form() -> None:
    assert parse_baseline_statistics("card") == "card"
    assert parse_baseline_statistics("/a/train.h5:clear") == ("/a/train.h5", "clear")
    with pytest.raises(SarevalError, match="--baseline-statistics 'x'"):
        parse_baseline_statistics("x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = ShapeConfig(baseline="band-mean", baseline_statistics=("t.h5", "clear"))
    assert c.to_record()["baseline_statistics"] == ["t.h5", "clear"]


def _as_old(doc: dict) -> dict:
    """``doc`` as written before the renames: the old config keys, nothing else changed."""
    old = json.loads(json.dumps(doc))
    for name, new in DEPRECATED_NAMES.items():
        if new in old["config"]:
            old["config"][name] = old["config"].pop(new)
    return old


def test_old_results_files_load_and_merge(tmp_path, tmp_path_factory) -> None:
    """Results files and shards written with the old names (bootstrap, samples, z, empty) still
    load, and old shards merge into the document of one run (counts identical)."""
    from click.testing import CliRunner
    from shape_testing import get_assets

    import sareval
    from sareval.cli import cli

    assets = get_assets(tmp_path_factory)
    model = assets.onnx["single-label"]
    whole = sareval.evaluate(model, (assets.store, "tail"), normalization="full")
    paths = []
    for i in range(2):
        part = sareval.evaluate(model, (assets.store, "tail"), normalization="full", shard=(i, 2))
        path = tmp_path / f"old{i}.json"
        path.write_text(json.dumps(_as_old(part.doc)))
        paths.append(path)
    assert "z" in json.loads(paths[0].read_text())["config"]
    loaded = sareval.load_result(paths[0])
    assert loaded.config["normalization"] == "full" and "z" not in loaded.config
    out = tmp_path / "merged.json"
    res = CliRunner().invoke(cli, ["-q", "merge", *map(str, paths), "--out", str(out)])
    assert res.exit_code == 0, res.output
    merged = sareval.load_result(out)
    assert merged.counts == whole.counts and merged.relevance == whole.relevance


def test_new_flags_reach_the_record_and_perceptual_refuses_shape_options(
    tmp_path, tmp_path_factory
) -> None:
    from click.testing import CliRunner
    from shape_testing import get_assets

    from sareval.cli import cli

    assets = get_assets(tmp_path_factory)
    args = ["-q", "shape", "-m", str(assets.onnx["multi-label"]), "-d", str(assets.store)]
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, [
        *args, "-s", "tail", "--baseline", "band-mean", "--baseline-statistics",
        f"{assets.store}:clear", "--map-absent-classes", "zero", "-o", str(out),
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    config = json.loads(out.read_text())["config"]
    statistics = config["baseline_statistics"]  # where the means came from, and its digest
    assert Path(statistics["store"]) == Path(assets.store) and statistics["subset"] == "clear"
    assert config["map_absent_classes"] == "zero"
    res = CliRunner().invoke(cli, [*args, "-s", "tail", "--method", "perceptual", "--replicates",
                                   "3", "--by", "class"])  # fmt: skip
    assert res.exit_code == 1
    refused = "error: --method perceptual: takes none of --replicates, --by class"
    assert res.output.strip() == refused
