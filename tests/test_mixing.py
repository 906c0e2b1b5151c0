"""Cloud mixing: cloudy draws follow the probability, and only where a cloudy version exists."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from sareval.errors import SarevalError, StoreError
from sareval.train.mixing import CloudMixingDataset, cloudy_draws


def test_empirical_cloudy_fraction_matches_probability() -> None:
    available = np.arange(2000) % 3 != 0  # 2/3 of the samples have a cloudy version
    for p in (0.2, 0.5, 0.8):
        draws = np.stack([cloudy_draws(available, p, seed=1, epoch=e) for e in range(25)])
        frac = draws[:, available].mean()
        # 25 x 1333 Bernoulli draws: std ~ 0.003; 5 sigma tolerance
        assert abs(frac - p) < 0.015, (p, frac)
        assert not draws[:, ~available].any()
        if p == 0.5:  # drawn anew every epoch: no sample is fixed to one source
            per_sample = draws[:, available].mean(0)
            assert per_sample.min() > 0
            assert per_sample.max() < 1


def test_probability_zero_and_one() -> None:
    available = np.arange(100) % 2 == 0
    for epoch in range(5):
        assert not cloudy_draws(available, 0.0, 0, epoch).any()
        np.testing.assert_array_equal(cloudy_draws(available, 1.0, 0, epoch), available)
    with pytest.raises(SarevalError, match="cloudy_prob"):
        cloudy_draws(available, 1.5, 0, 0)


def test_draws_reproducible_by_seed_and_epoch() -> None:
    available = np.ones(500, bool)
    a = cloudy_draws(available, 0.5, seed=3, epoch=2)
    np.testing.assert_array_equal(a, cloudy_draws(available, 0.5, seed=3, epoch=2))
    assert (a != cloudy_draws(available, 0.5, seed=4, epoch=2)).any()
    assert (a != cloudy_draws(available, 0.5, seed=3, epoch=3)).any()


@pytest.mark.parametrize("in_memory", [False, True])
def test_dataset_reads_the_drawn_source(tiny_store: Path, in_memory: bool) -> None:
    ds = CloudMixingDataset(tiny_store, "igbp10_single", 0.5, seed=0, in_memory=in_memory)
    with h5py.File(tiny_store, "r") as f:
        s1, s2, s2c = f["s1"][()], f["s2"][()], f["s2_cloudy"][()]
        available = f["s2_cloudy_available"][()]
        labels = f["labels/igbp10_single"][()]
    seen_cloudy = np.zeros(len(ds), bool)
    seen_clear = np.zeros(len(ds), bool)
    for epoch in range(30):
        ds.set_epoch(epoch)
        # a shuffled batch read at once, as the DataLoader does with __getitems__
        order = np.random.default_rng(epoch).permutation(len(ds))
        items = ds.__getitems__(list(order))
        for i, item in zip(order, items, strict=True):
            row = item["row"]
            assert row == i
            np.testing.assert_array_equal(item["s1"], s1[row])
            assert item["label"] == labels[row]
            assert item["cloudy"] == ds.cloudy[i]
            expected = s2c[row] if item["cloudy"] else s2[row]
            np.testing.assert_array_equal(item["s2"], expected.astype(np.int32))
            assert item["s2"].dtype == np.int32
            if item["cloudy"]:
                assert available[row]
                seen_cloudy[i] = True
            else:
                seen_clear[i] = True
    # every available sample came cloudy in some epoch and clear in another
    np.testing.assert_array_equal(seen_cloudy, available)
    assert seen_clear.all()
    assert ds[3]["row"] == 3
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_dataset_in_dataloader_with_workers_is_reproducible(tiny_store: Path) -> None:
    import torch

    def epoch_sources(workers: int) -> list[tuple[int, bool]]:
        ds = CloudMixingDataset(tiny_store, "igbp10_single", 0.8, seed=7)
        ds.set_epoch(4)
        loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=workers)
        return [
            (int(r), bool(c))
            for batch in loader
            for r, c in zip(batch["row"], batch["cloudy"], strict=True)
        ]

    assert epoch_sources(0) == epoch_sources(2)


def test_cloudy_prob_without_cloudy_data_is_refused(tiny_store: Path, tmp_path: Path) -> None:
    ds = CloudMixingDataset(tiny_store, "igbp10_single", 0.0)
    assert ds.cloudy_fraction == 0.0
    with pytest.raises(StoreError, match="subset 'cloudy' reads s2_cloudy"):
        CloudMixingDataset(tiny_store, "igbp10_single", 0.5, subset="cloudy")
    with pytest.raises(StoreError, match="no label set"):
        CloudMixingDataset(tiny_store, "nope", 0.5)
