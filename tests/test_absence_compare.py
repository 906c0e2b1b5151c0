"""The four absence operators side by side on ONE model (the ViT with one input per modality,
which takes fill, omit, mask and marginal) that learned to use SAR only when the optical image
is cloudy (trained with modality dropout, so that masked tokens are in its training
distribution): one call (:func:`sareval.compare_absence`), intervals, the documented direction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sareval
from sareval.card import ModelCard
from sareval.models.vit import vit_inputs_for_card

N, SIZE, K = 320, 16, 2
NORM = {b: {"mean": 0.0, "std": 1.0} for b in ("VV", "VH", "B02", "B03", "B04")}


def make_data(rng: np.random.Generator, n: int, cloudy: float) -> dict[str, np.ndarray]:
    """Class 1: bright optical (B04) and a weak SAR step (a per-image offset blurs it: SAR
    alone is right about 3 times in 4); clouds flatten the optical image."""
    y = rng.integers(0, K, n)
    s1 = rng.normal(0, 1, (n, 2, SIZE, SIZE)).astype(np.float32)
    s1 += (1.5 * y + rng.normal(0, 1, n))[:, None, None, None].astype(np.float32)
    s2 = rng.normal(0, 0.3, (n, 13, SIZE, SIZE)).astype(np.float32)
    s2[:, 3] += (2.0 * y)[:, None, None].astype(np.float32)
    clouds = rng.random(n) < cloudy
    s2[clouds] = 3.0  # optical information destroyed
    return {"s1": s1, "s2": s2, "y": y}


def normalised(d: dict[str, np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([d["s1"], d["s2"][:, [1, 2, 3]]], 1))


def inputs(d: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {"s1": torch.from_numpy(d["s1"]), "s2": torch.from_numpy(d["s2"][:, [1, 2, 3]])}


@pytest.mark.slow
def test_four_operators_in_one_call_differ_in_the_documented_direction(tmp_path) -> None:
    card = ModelCard.custom(
        {"sar": ["VV", "VH"], "opt": ["B02", "B03", "B04"]}, task="single-label",
        class_names=["dark", "bright"], input_size=SIZE, normalization=NORM,
        inputs={"s1": ["VV", "VH"], "s2": ["B02", "B03", "B04"]}, call="dict",
        absence=["fill", "omit", "mask", "marginal"],
    )  # fmt: skip
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    vit = vit_inputs_for_card(card, dim=32, depth=2, heads=2, patch_size=4)
    train = make_data(rng, 800, cloudy=0.5)
    x, y = inputs(train), torch.from_numpy(train["y"])
    opt = torch.optim.Adam(vit.parameters(), lr=3e-3)
    for _ in range(5):
        for i in range(0, len(y), 64):
            xb, yb = {k: v[i : i + 64] for k, v in x.items()}, y[i : i + 64]
            present = torch.rand(len(yb), 2) > 0.3  # modality dropout
            present[~present.any(1), 0] = True
            loss = torch.nn.functional.cross_entropy(vit(xb, present), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    vit.eval()
    test = make_data(rng, N, cloudy=0.0)  # clear images: optical decides
    data = sareval.ArrayData(
        {"s1": test["s1"], "s2": test["s2"]}, test["y"],
        bands={"s1": ["VV", "VH"], "s2": [f"B{i:02d}" for i in range(1, 9)] + ["B8A", "B09",
                                                                          "B10", "B11", "B12"]},
    )  # fmt: skip
    cmp = sareval.compare_absence(
        vit, data, ["mask", "omit", "fill", "marginal"], card=card, metrics=["oa"],
        replicates=200, workdir=tmp_path, empty_coalition="majority",
    )  # fmt: skip
    print(cmp.table("oa"))
    mask, omit = cmp.results["mask"], cmp.results["omit"]
    assert mask.values["oa"]["sar+opt"] > 0.9
    # omit removes the absent tokens, mask hides them: the same model output to float rounding
    for coalition, v in mask.values["oa"].items():
        assert abs(omit.values["oa"][coalition] - v) <= 1 / N, coalition
    same = cmp.differences["omit"].relevance("oa", "opt")
    assert abs(same.estimate) <= 1 / N and same.lo <= 0 <= same.hi
    # mask: optical removed, the model falls back on SAR; marginal: another image's optical
    # misleads it. So optical matters more under marginal: the paired interval (samples
    # resampled with their donor draws) lies above 0, and so does fill's (zeros mislead too)
    marginal = cmp.differences["marginal"].relevance("oa", "opt")
    assert marginal.lo > 0, (marginal.estimate, marginal.lo)
    assert (
        cmp.results["marginal"].intervals["oa"]["relevance"]["opt"][0]
        > (mask.intervals["oa"]["relevance"]["opt"][1])
    )
    fill = cmp.differences["fill"].relevance("oa", "opt")
    assert fill.lo <= fill.estimate <= fill.hi
    assert "no pairing" not in cmp.table("oa")
    figure = cmp.figure("oa", tmp_path / "absence.png")
    assert figure.stat().st_size > 0
