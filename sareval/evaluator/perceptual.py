"""Perceptual score (Gat et al. 2021): each player permuted across samples.

The score of player m is the relative drop of a metric when m is taken from another sample::

    P_m = (V(full) - mean_j V(m permuted by pi_j)) / V(full)     (NaN when V(full) = 0)

``pi_j`` (j < ``permutations``) is a seeded permutation of the WHOLE subset's positions
(``numpy.random.default_rng([seed, j]).permutation(N)``), so sample i gets player m's bands
from sample ``pi_j(i)`` whatever the batch size, shard or rank; a fixed point of pi_j keeps its
own bands, as in a plain permutation. The reader thread reads the partners' rows (random
access into the store) next to each batch. Cost: 1 + M x permutations forward passes of every
sample; the permutations cost O(N) integers each. Counts are kept per condition (the full
model ``sar+opt`` and ``<player>@perm<j>``), so shards merge exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sareval.evaluator.coalitions import coalition_name
from sareval.evaluator.counting import CoalitionCounter, CountResult
from sareval.evaluator.preamble import Preamble
from sareval.evaluator.reader import BatchReader
from sareval.evaluator.results import perceptual_sections
from sareval.progress import progress_bar
from sareval.store import Batch


def condition_names(players: tuple[str, ...], permutations: int) -> list[str]:
    """The full model's coalition name, then ``<player>@perm<j>``, player-major."""
    full = coalition_name(frozenset(players), players)
    return [full] + [f"{p}@perm{j}" for p in players for j in range(permutations)]


def perceptual_pass(
    ev: Any,
    engine: Any,
    pre: Preamble,
    *,
    start: int,
    stop: int,
    batch_size: int,
    permutations: int,
    seed: int,
    progress: bool,
    queue_size: int,
    reduce: Callable[[CountResult], CountResult],
) -> tuple[list[str], dict[str, Any], None]:
    """Count every condition over positions ``[start, stop)``; returns (names, sections, None)."""
    st, sub, card = ev.store, ev.subset, ev.card
    players = card.modality_names
    names = condition_names(players, permutations)
    perms = [np.random.default_rng([seed, j]).permutation(len(sub)) for j in range(permutations)]
    where = {b: (s, i) for s in pre.sensors for i, b in enumerate(st.bands(s))}
    owned = {  # player -> sensor -> store channel indices of its bands
        m.name: {
            s: np.array([where[b][1] for b in m.bands if where[b][0] == s], dtype=np.int64)
            for s in pre.sensors
        }
        for m in card.modalities
    }

    def read_partners(batch: Batch) -> list[dict[str, np.ndarray]]:
        return [
            {s: st.read_unordered(sub, s, sub.rows[perm[batch.positions]]) for s in pre.sensors}
            for perm in perms
        ]

    counter = CoalitionCounter(
        card.task, card.n_classes, len(names), output_kind=card.output, threshold=card.threshold
    )
    full_mask = np.ones((1, pre.n_channels), dtype=bool)
    bar = progress_bar(total=stop - start, disable=not progress, unit="sample", dynamic_ncols=True,
               desc=f"perceptual {sub.name}")  # fmt: skip
    reader = BatchReader(
        st, sub, start, stop, batch_size, sensors=pre.sensors, label_sets=[ev.labels.name],
        queue_size=queue_size, prepare=read_partners,
    )  # fmt: skip
    try:
        with reader:
            for batch, partners in reader:
                b = len(batch)
                raw = {s: batch.arrays[s][:b] for s in pre.sensors}
                outputs = [engine.run(raw, full_mask)[0]]
                for player in players:
                    for partner in partners:
                        mixed = {s: a.copy() for s, a in raw.items()}
                        for s, idx in owned[player].items():
                            if len(idx):
                                mixed[s][:, idx] = partner[s][:, idx]
                        outputs.append(engine.run(mixed, full_mask)[0])
                y = ev.to_model_order(batch.labels[ev.labels.name])
                counter.add(np.stack(outputs), y)
                bar.update(b)
    finally:
        bar.close()
    counts = reduce(counter.result())
    counts.check_finite(names)
    sections = perceptual_sections(
        players=players, names=names, permutations=permutations, counts=counts.total,
        ties=counts.ties.tolist(),
    )  # fmt: skip
    return names, sections, None
