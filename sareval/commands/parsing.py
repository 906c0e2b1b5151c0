"""The CLI's text forms, parsed into the library's typed values (the only text parsers).

- ``--players``: :func:`parse_players` -> ``Game.players``. Entries separated by ``;``, each
  either a modality of the card (``sar``, meaning its bands) or a new player with its bands
  (``opt_rgb=B02,B03,B04``); every input channel belongs to exactly one player, players keep the
  order given::

      sar;opt_rgb=B02,B03,B04;opt_nir=B05,B06,B07,B08,B8A;opt_swir=B11,B12

  Nested players (Owen values inside groups) prefix each entry with its group:
  ``sar:VV=VV;sar:VH=VH;opt:rgb=B02,B03,B04;opt:nir=B05,B06,B07,B08,B8A;opt:swir=B11,B12``.
- ``--shard i/n``: :func:`parse_shard` -> ``Execution.shard`` ``(i, n)``.
- ``--by class|cloud-cover[=0,0.5,1]``: :func:`parse_by` -> ``Reporting.by_class``,
  ``Reporting.cloud_cover_bins``; ``--metric a,b``: :func:`parse_metrics`.
- ``--baseline-statistics evaluated|card|STORE:SUBSET``: :func:`parse_baseline_statistics`.
- ``sareval report --compare A B``, each ``[LABEL=]a.h5[,b.h5...]``: :func:`parse_setup`,
  :func:`parse_comparison` -> :class:`~sareval.report.compare.Setup` pairs.

Errors name the option; the values are then checked by the library's objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sareval.card import ModelCard
from sareval.choices import BASELINE_STATISTICS
from sareval.errors import SarevalError
from sareval.evaluator.config import DECILES
from sareval.report.compare import Setup


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


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise SarevalError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise SarevalError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def parse_bin_edges(text: str) -> list[float]:
    """``"0,0.1,0.5,1"`` -> the numbers (``Reporting`` checks they increase within [0, 1])."""
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise SarevalError(
            f"--by cloud-cover={text}: bad bin edges: expected numbers like 0,0.1,0.5,1"
        ) from None


def parse_by(by: tuple[str, ...]) -> tuple[bool, tuple[float, ...] | None]:
    """``("class", "cloud-cover=0,0.5,1")`` -> (by class?, cloud-cover bin edges or None);
    ``cloud-cover`` alone is deciles."""
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


def parse_baseline_statistics(text: str) -> str | tuple[str, str]:
    """``evaluated`` / ``card`` as is; ``STORE:SUBSET`` (e.g. ``train.h5:clear``) -> (store
    path, subset name), split at the last colon."""
    if text in BASELINE_STATISTICS:
        return text
    path, sep, subset = text.rpartition(":")
    if not sep or not path or not subset:
        raise SarevalError(
            f"--baseline-statistics {text!r}: expected {', '.join(BASELINE_STATISTICS)} or "
            "STORE:SUBSET, e.g. train.h5:clear"
        )
    return path, subset


def parse_labelled_path(spec: str) -> str | tuple[str, str]:
    """``LABEL=PATH`` -> ``(label, path)``; a bare PATH (or an existing path that holds '=')
    as it is (a report input of :func:`sareval.report.make_report`)."""
    label, sep, path = spec.partition("=")
    if sep and label and not Path(spec).exists():
        return label, path
    return spec


def parse_setup(spec: str) -> Setup:
    """``"clear=a.h5,b.h5"`` -> Setup("clear", (a.h5, b.h5)); without ``LABEL=`` the label is
    the first file's stem. An empty label (``"=a.h5"``) or no file is refused."""
    label, sep, files = spec.partition("=")
    if not sep:
        label, files = "", spec
    elif not label.strip():
        raise SarevalError(f"--compare {spec!r}: the label before '=' is empty; write "
                           "LABEL=FILE[,FILE...] or FILE[,FILE...]")  # fmt: skip
    paths = [Path(p) for p in files.split(",") if p.strip()]
    if not paths:
        raise SarevalError(f"--compare {spec!r}: expected LABEL=FILE[,FILE...]")
    return Setup(label.strip() or paths[0].stem, tuple(paths))


def parse_comparison(spec_a: str, spec_b: str) -> tuple[Setup, Setup]:
    """Both setups of one ``--compare A B`` pair; the same label for both is refused, naming
    the pair."""
    a, b = parse_setup(spec_a), parse_setup(spec_b)
    if a.label == b.label:
        raise SarevalError(
            f"--compare {spec_a!r} {spec_b!r}: both setups are labelled {a.label!r}; give them "
            "different labels (LABEL=FILE[,FILE...])"
        )
    return a, b
