"""Each option's choices are defined once (sareval.choices): the CLI, the API's ShapeConfig and
results.schema.json agree with them."""

from __future__ import annotations

import typing

import click
import pytest

from sareval import choices
from sareval.commands.shape import command as shape_command
from sareval.evaluator.config import FLAT_FIELDS, PARTS, ShapeConfig
from sareval.evaluator.results import schema

#: CLI option of `sareval shape` -> (choices tuple, ShapeConfig field or None, schema config key)
OPTIONS = {
    "absence": (choices.ABSENCES, "absence", "absence"),
    "baseline": (choices.BASELINES, "baseline", "baseline"),
    "empty_coalition": (choices.EMPTY_CHOICES, "empty_coalition", "empty_coalition"),
    "normalization": (choices.Z_CHOICES, "normalization", "normalization"),
    "method": (choices.METHODS, None, "method"),
    "backend": (choices.BACKENDS, "backend", "backend"),
    "provider": (choices.PROVIDERS, "provider", None),
    "precision": (choices.PRECISIONS, "precision", "precision"),
    "estimator": (choices.ESTIMATORS, "estimator", None),
    "map_absent_classes": (choices.MAP_ABSENT_CLASSES, "map_absent_classes", None),
}
#: ShapeConfig fields whose CLI option is not a plain choice -> their choices
API_ONLY = {
    "baseline_statistics": choices.BASELINE_STATISTICS,
}


def config_hint(field: str) -> object:
    """The type hint of a flat ShapeConfig field (in the part that holds it)."""
    part, name = FLAT_FIELDS[field]
    return typing.get_type_hints(PARTS[part])[name]


def literal_of(hint: object) -> object:
    """The ``Literal`` of a field's type hint (itself, or the Literal member of a union)."""
    if typing.get_origin(hint) is typing.Literal:
        return hint
    return next(a for a in typing.get_args(hint) if typing.get_origin(a) is typing.Literal)


def test_every_tuple_is_derived_from_its_literal() -> None:
    """Each choices tuple is ``get_args`` of exactly one Literal of the module, and every
    Literal has its tuple: one definition per option."""
    names = vars(choices)
    literals = {k: v for k, v in names.items() if typing.get_origin(v) is typing.Literal}
    tuples = {k: v for k, v in names.items() if k.isupper() and isinstance(v, tuple)}
    assert len(literals) == len(tuples) >= 13
    for name, values in tuples.items():
        owners = [k for k, lit in literals.items() if typing.get_args(lit) == values]
        assert len(owners) == 1, f"{name} is not get_args of one Literal"
        assert len(set(values)) == len(values) and all(isinstance(v, str) for v in values)


def cli_choices(name: str) -> tuple[str, ...]:
    param = next(p for p in shape_command.params if p.name == name)
    assert isinstance(param.type, click.Choice)
    return tuple(param.type.choices)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_cli_api_and_schema_agree(name: str) -> None:
    values, field, key = OPTIONS[name]
    assert cli_choices(name) == values
    if field is not None:
        assert typing.get_args(literal_of(config_hint(field))) == values
        for bad in ("nonsense", values[0].upper()):
            with pytest.raises(Exception, match=rf"ShapeConfig\.(\w+\.)?{field}"):
                ShapeConfig(**{field: bad})
    if key is not None:
        enum = schema()["properties"]["config"]["properties"][key]["enum"]
        assert [v for v in enum if v is not None] == list(values)


@pytest.mark.parametrize("field", sorted(API_ONLY))
def test_api_only_choices_agree(field: str) -> None:
    values = API_ONLY[field]
    assert typing.get_args(literal_of(config_hint(field))) == values
    for v in values:
        if field == "baseline_statistics" and v != "evaluated":
            ShapeConfig(baseline="band-mean", **{field: v})
        else:
            ShapeConfig(**{field: v})
    with pytest.raises(Exception, match=rf"ShapeConfig\.(\w+\.)?{field}"):
        ShapeConfig(**{field: "nonsense"})


def test_task_and_kind_checks_read_the_one_definition() -> None:
    from sareval.evaluator import metrics, per_sample

    assert metrics.TASKS is choices.TASKS and tuple(metrics.METRIC_NAMES) == choices.TASKS
    assert per_sample.TASKS is choices.TASKS and per_sample.OUTPUT_KINDS is choices.OUTPUT_KINDS


def test_tasks_and_output_kinds_agree_with_the_card_schema() -> None:
    import json

    from sareval.card import SCHEMA_PATH

    card_schema = json.loads(SCHEMA_PATH.read_text())["properties"]
    assert card_schema["task"]["enum"] == list(choices.TASKS)
    assert card_schema["output"]["enum"] == list(choices.OUTPUT_KINDS)
    assert card_schema["input"]["properties"]["call"]["enum"] == list(choices.CALL_STYLES)
    assert schema()["properties"]["task"]["enum"] == list(choices.TASKS)


@pytest.mark.parametrize("name", ["export", "card", "train"])
def test_task_options_read_the_one_definition(name: str) -> None:
    import importlib

    command = importlib.import_module(f"sareval.commands.{name}").command
    subcommands = command.commands.values() if isinstance(command, click.Group) else [command]
    found = [p for c in subcommands for p in c.params if p.name == "task"]
    assert found
    for param in found:
        assert isinstance(param.type, click.Choice)
        assert tuple(param.type.choices) == choices.TASKS
