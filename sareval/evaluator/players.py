"""``--players``: the CLI's text form of :attr:`sareval.ShapeConfig.players`.

Syntax: entries separated by ``;``, each either a modality of the card (``sar``, meaning its
bands) or a new player with its bands (``opt_rgb=B02,B03,B04``). Every input channel must belong
to exactly one player; players keep the order given. Example (SEN12MS s1s2, four players, 15
coalitions in one batch)::

    sar;opt_rgb=B02,B03,B04;opt_nir=B05,B06,B07,B08,B8A;opt_swir=B11,B12
"""

from __future__ import annotations

from sareval.card import ModelCard
from sareval.errors import SarevalError


def parse_players(spec: str, card: ModelCard) -> dict[str, tuple[str, ...]]:
    """``spec`` as a mapping player -> band names (modality names resolved with ``card``)."""
    players: dict[str, tuple[str, ...]] = {}
    for entry in (e.strip() for e in spec.split(";")):
        if not entry:
            continue
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
