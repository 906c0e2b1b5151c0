"""Coalitions of players (modalities or band groups) and their names.

A coalition is a ``frozenset`` of player names. The 2^M coalitions of M players are listed in
one fixed order, used everywhere an array is indexed by coalition: the empty coalition first,
then by size, ties in player (card) order, as :func:`itertools.combinations` yields them. For
players ``("sar", "opt")``::

    index   0       1      2      3
    name    none    sar    opt    sar+opt

A coalition's name joins its players with ``+`` in player order; the empty one is ``none``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from itertools import combinations

from sareval.errors import SarevalError

EMPTY_NAME = "none"
SEPARATOR = "+"


def check_players(players: Sequence[str]) -> tuple[str, ...]:
    """Return the players as a tuple; refuse duplicates, empty names and reserved characters."""
    players = tuple(players)
    if not players:
        raise SarevalError("no players (modalities) given")
    if len(set(players)) != len(players):
        raise SarevalError(f"duplicate player names in {list(players)}")
    for player in players:
        if not player or SEPARATOR in player or player == EMPTY_NAME:
            raise SarevalError(
                f"player name {player!r} is not allowed (empty, contains {SEPARATOR!r}, "
                f"or is {EMPTY_NAME!r})"
            )
    return players


@lru_cache(maxsize=64)
def ordered_coalitions(players: tuple[str, ...]) -> tuple[frozenset[str], ...]:
    """:func:`all_coalitions` of players already checked (:func:`check_players`), as one
    cached tuple shared by every caller (hashable input, no copy)."""
    return tuple(
        frozenset(members)
        for size in range(len(players) + 1)
        for members in combinations(players, size)
    )


def all_coalitions(players: Sequence[str]) -> list[frozenset[str]]:
    """All 2^M subsets of ``players``: empty first, then by size, ties in player order."""
    return list(ordered_coalitions(check_players(players)))


@lru_cache(maxsize=64)
def coalition_positions(players: tuple[str, ...]) -> dict[frozenset[str], int]:
    """:func:`coalition_index` of checked players, cached and shared: do not modify it."""
    return {c: i for i, c in enumerate(ordered_coalitions(players))}


def coalition_index(players: Sequence[str]) -> dict[frozenset[str], int]:
    """Position of each coalition in :func:`all_coalitions` order (a fresh dict)."""
    return dict(coalition_positions(check_players(players)))


def coalition_name(coalition: frozenset[str], players: Sequence[str]) -> str:
    """Present players joined by ``+`` in player order (``"sar+opt"``); ``"none"`` if empty."""
    players = tuple(players)
    unknown = set(coalition) - set(players)
    if unknown:
        raise SarevalError(f"coalition has unknown players {sorted(unknown)}; known: {players}")
    if not coalition:
        return EMPTY_NAME
    return SEPARATOR.join(p for p in players if p in coalition)


def coalition_names(players: Sequence[str]) -> list[str]:
    """Names of :func:`all_coalitions` in the same order."""
    return [coalition_name(c, players) for c in all_coalitions(players)]


def parse_coalition_name(name: str, players: Sequence[str]) -> frozenset[str]:
    """Inverse of :func:`coalition_name`; players may be given in any order."""
    players = tuple(players)
    if name == EMPTY_NAME:
        return frozenset()
    members = name.split(SEPARATOR)
    unknown = [m for m in members if m not in players]
    if unknown or len(set(members)) != len(members):
        raise SarevalError(
            f"bad coalition name {name!r}: expected players from {list(players)} joined by "
            f"{SEPARATOR!r}, or {EMPTY_NAME!r}"
        )
    return frozenset(members)


def coalition_mask(coalition: frozenset[str], players: Sequence[str]) -> tuple[bool, ...]:
    """Which players are present, in player order (``(True, False)`` for ``sar`` alone)."""
    coalition_name(coalition, players)  # validates the members
    return tuple(p in coalition for p in players)
