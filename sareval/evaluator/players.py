"""``--players``: the CLI's text form of :attr:`sareval.ShapeConfig.players`.

Syntax: entries separated by ``;``, each either a modality of the card (``sar``, meaning its
bands) or a new player with its bands (``opt_rgb=B02,B03,B04``). Every input channel must belong
to exactly one player; players keep the order given. Example (SEN12MS s1s2, four players, 15
coalitions in one batch)::

    sar;opt_rgb=B02,B03,B04;opt_nir=B05,B06,B07,B08,B8A;opt_swir=B11,B12

Nested players (Owen values inside groups, Shapley values of the groups) prefix each entry with
its group: ``sar:VV=VV;sar:VH=VH;opt:rgb=B02,B03,B04;opt:nir=B05,B06,B07,B08,B8A;opt:swir=B11,B12``.
"""

from __future__ import annotations

from typing import Any

from sareval.card import ModelCard
from sareval.errors import SarevalError


def parse_players(spec: str, card: ModelCard) -> dict[str, Any]:
    """``spec`` as a mapping player -> band names (modality names resolved with ``card``), or
    group -> {player -> band names} when every entry has a ``group:`` prefix."""
    entries = [e.strip() for e in spec.split(";") if e.strip()]
    grouped = [":" in e.split("=", 1)[0] for e in entries]
    if any(grouped):
        if not all(grouped):
            raise SarevalError("--players: give every entry a group (group:name=bands) or none")
        nested: dict[str, dict[str, tuple[str, ...]]] = {}
        for e in entries:
            group, rest = (part.strip() for part in e.split(":", 1))
            nested.setdefault(group, {}).update(parse_players(rest, card))
        return nested
    players: dict[str, tuple[str, ...]] = {}
    for entry in entries:
        if "=" in entry:
            name, bands_text = (part.strip() for part in entry.split("=", 1))
            bands = tuple(b.strip() for b in bands_text.split(",") if b.strip())
            if not name or not bands:
                raise SarevalError(f"--players: entry {entry!r} needs a name and bands")
        else:
            name = entry
            if name not in card.modality_names:
                raise SarevalError(
                    f"--players: {name!r} is not a modality of the model card "
                    f"({', '.join(card.modality_names)}); give its bands as {name}=B02,B03"
                )
            bands = card.modality(name).bands
        if name in players:
            raise SarevalError(f"--players: player {name!r} is given twice")
        players[name] = bands
    if not players:
        raise SarevalError("--players: no players given")
    return players
