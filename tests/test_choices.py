"""Each option's choices are defined once (sareval.choices): the CLI, the API's ShapeConfig and
results.schema.json agree with them."""

from __future__ import annotations

import typing

import click
import pytest

from sareval import choices
from sareval.commands.shape import command as shape_command
from sareval.evaluator.config import ShapeConfig
from sareval.evaluator.results import schema

#: CLI option of `sareval shape` -> (choices tuple, ShapeConfig field, schema config key)
OPTIONS = {
    "baseline": (choices.BASELINES, "baseline", "baseline"),
    "empty": (choices.EMPTY_CHOICES, "empty", "empty"),
    "z": (choices.Z_CHOICES, "z", "z"),
    "method": (choices.METHODS, "method", "method"),
    "backend": (choices.BACKENDS, "backend", "backend"),
    "provider": (choices.PROVIDERS, "provider", None),
    "precision": (choices.PRECISIONS, "precision", "precision"),
}


def cli_choices(name: str) -> tuple[str, ...]:
    param = next(p for p in shape_command.params if p.name == name)
    assert isinstance(param.type, click.Choice)
    return tuple(param.type.choices)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_cli_api_and_schema_agree(name: str) -> None:
    values, field, key = OPTIONS[name]
    assert cli_choices(name) == values
    hint = typing.get_type_hints(ShapeConfig)[field]
    literal = (
        next(a for a in typing.get_args(hint) if typing.get_origin(a) is typing.Literal)
        if typing.get_origin(hint) is not typing.Literal
        else hint
    )
    assert typing.get_args(literal) == values
    for bad in ("nonsense", values[0].upper()):
        with pytest.raises(Exception, match=f"ShapeConfig.{field}"):
            ShapeConfig(**{field: bad})
    if key is not None:
        enum = schema()["properties"]["config"]["properties"][key]["enum"]
        assert [v for v in enum if v is not None] == list(values)


def test_tasks_and_output_kinds_agree_with_the_card_schema() -> None:
    import json

    from sareval.card import SCHEMA_PATH

    card_schema = json.loads(SCHEMA_PATH.read_text())["properties"]
    assert card_schema["task"]["enum"] == list(choices.TASKS)
    assert card_schema["output"]["enum"] == list(choices.OUTPUT_KINDS)
    assert card_schema["input"]["properties"]["call"]["enum"] == list(choices.CALL_STYLES)
    assert schema()["properties"]["task"]["enum"] == list(choices.TASKS)
