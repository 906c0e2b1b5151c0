"""One model that takes all four absence operators: the ViT with one input per modality
(:class:`~sareval.models.vit.MultimodalViTInputs`). ``omit`` (the absent input's key left out:
its tokens removed) and ``mask`` (every input given, absent tokens masked) must agree, each
against a loop that calls the model by hand; ``fill`` and ``marginal`` run the same module."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix

import sareval
from sareval.card import ModelCard
from sareval.errors import SarevalError
from sareval.evaluator.sources import ArrayData
from sareval.models.vit import MultimodalViTInputs, vit_for_card, vit_inputs_for_card

N, SIZE, K = 30, 16, 3
SAR, OPT = ["VV", "VH"], ["B02", "B03", "B04"]
NORM = {b: {"mean": 0.0, "std": 2.0} for b in SAR + OPT}
COALITIONS = {"sar": ("sar",), "opt": ("opt",), "sar+opt": ("sar", "opt")}


def card(**kwargs: object) -> ModelCard:
    return ModelCard.custom(
        {"sar": SAR, "opt": OPT}, task="single-label", class_names=["a", "b", "c"],
        input_size=SIZE, normalization=NORM, inputs={"s1": SAR, "s2": OPT}, call="dict",
        absence=["fill", "omit", "mask", "marginal"], **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    y = rng.integers(0, K, N)
    s1 = rng.normal(0, 2, (N, 2, SIZE, SIZE)).astype(np.float32) + (y == 1)[:, None, None, None]
    s2 = rng.normal(0, 2, (N, 13, SIZE, SIZE)).astype(np.float32)
    s2[:, 3] += 2.0 * (y == 2)[:, None, None]
    return {"s1": s1, "s2": s2, "y": y}


@pytest.fixture(scope="module")
def vit() -> MultimodalViTInputs:
    torch.manual_seed(3)
    return vit_inputs_for_card(card(), dim=32, depth=2, heads=2, patch_size=4).eval()


def inputs(d: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The card's inputs normalised by hand: s1 (VV, VH), s2 (B02, B03, B04)."""
    return {"s1": torch.from_numpy(d["s1"] / 2.0), "s2": torch.from_numpy(d["s2"][:, 1:4] / 2.0)}


def evaluate(model: object, d: dict[str, np.ndarray], **kwargs: object) -> sareval.ShapeResult:
    source = ArrayData({"s1": d["s1"], "s2": d["s2"]}, d["y"])
    return sareval.evaluate(model, source, card=card(), batch_size=7, **kwargs)  # type: ignore[arg-type]


def counts(logits: torch.Tensor, y: np.ndarray) -> list[list[int]]:
    pred = logits.argmax(1).numpy()
    return confusion_matrix(y, pred, labels=range(K)).tolist()  # type: ignore[no-any-return]


def test_omit_is_token_removal_and_mask_equals_it(vit, data) -> None:
    x = inputs(data)
    key = {"sar": "s1", "opt": "s2"}
    omitted = evaluate(vit, data, absence="omit", empty_coalition="majority")
    masked = evaluate(vit, data, absence="mask", empty_coalition="majority")
    with torch.no_grad():
        for name, present in COALITIONS.items():
            given = {key[p]: x[key[p]] for p in present}
            by_hand = vit(given)  # the absent input's key left out
            row = torch.tensor([[p in present for p in ("sar", "opt")]] * N)
            by_mask = vit(x, row)
            assert torch.allclose(by_hand, by_mask, atol=1e-5), name
            assert omitted.counts[name]["confusion"] == counts(by_hand, data["y"]), name
            assert masked.counts[name]["confusion"] == counts(by_mask, data["y"]), name
    assert omitted.values["oa"] == masked.values["oa"]
    assert omitted.config["absence"] == "omit" and masked.config["absence"] == "mask"


def test_fill_gives_the_model_zeros_for_the_absent_input(vit, data) -> None:
    x = inputs(data)
    filled = evaluate(vit, data, absence="fill", empty_coalition="majority")
    with torch.no_grad():
        for name, present in COALITIONS.items():
            given = {"s1": x["s1"] if "sar" in present else torch.zeros_like(x["s1"]),
                     "s2": x["s2"] if "opt" in present else torch.zeros_like(x["s2"])}  # fmt: skip
            assert filled.counts[name]["confusion"] == counts(vit(given), data["y"]), name


def test_marginal_runs_the_dict_model_and_leaves_the_full_coalition_alone(vit, data) -> None:
    """With every modality present no donor is used: V(sar+opt) is fill's, draw for draw."""
    filled = evaluate(vit, data, absence="fill", empty_coalition="majority")
    imputed = evaluate(vit, data, absence="marginal", empty_coalition="majority", seed=2)
    full = filled.counts["sar+opt"]["confusion"]
    draws = imputed.config["absence_details"]["draws"]
    assert imputed.counts["sar+opt"]["confusion"] == (np.array(full) * draws).tolist()
    assert imputed.values["oa"]["sar"] != filled.values["oa"]["sar"]  # donors, not zeros


def test_the_dict_vit_refuses_what_it_cannot_take(vit, data) -> None:
    x = inputs(data)
    with pytest.raises(SarevalError, match="unknown input"):
        vit({"s1": x["s1"], "s3": x["s2"]})
    with pytest.raises(SarevalError, match=r"inputs\['s2'\]"):
        vit({"s1": x["s1"], "s2": x["s1"]})
    with pytest.raises(SarevalError, match="every input"):
        vit({"s1": x["s1"]}, torch.ones(N, 2, dtype=torch.bool))
    one_input = ModelCard.custom(
        {"sar": SAR, "opt": OPT}, task="single-label", class_names=["a", "b", "c"],
        input_size=SIZE, normalization=NORM,
    )  # fmt: skip
    with pytest.raises(SarevalError, match="inputs must be its modalities"):
        vit_inputs_for_card(one_input)


def test_the_dict_vit_has_the_one_input_vits_weights_and_outputs(vit, data) -> None:
    """Same state dict as the one-input ViT, same logits with all inputs given."""
    one = vit_for_card(card(), dim=32, depth=2, heads=2, patch_size=4).eval()
    one.load_state_dict(vit.state_dict(), strict=True)
    x = inputs(data)
    with torch.no_grad():
        full = torch.cat([x["s1"], x["s2"]], 1)
        assert torch.equal(one(full), vit(x))


def test_onnx_export_of_a_several_input_model_is_one_line(vit, tmp_path) -> None:
    from sareval.export import export_onnx

    with pytest.raises(SarevalError, match="one-input models; this card has inputs s1, s2") as e:
        export_onnx(vit, card(), tmp_path / "vit.onnx")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "vit.onnx").exists()
