"""``sareval.evaluate(..., absence=...)`` end to end: every operator's V(S) against a naive loop
that builds each coalition's inputs by hand (token removal for ``mask``, ``None`` inputs for
``omit``, the documented donor draws for ``marginal``), to the count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix

import sareval
from sareval.card import ModelCard
from sareval.errors import SarevalError
from sareval.evaluator.absence import MARGINAL_DRAWS, donor_rows, read_donors
from sareval.evaluator.sources import ArrayData
from sareval.models.two_branch import build_two_branch
from sareval.models.vit import vit_for_card

N, SIZE, K = 24, 32, 3
SAR, OPT = ["VV", "VH"], ["B02", "B03", "B04"]
NORM = {b: {"mean": -15.0, "std": 4.0} for b in SAR} | {
    b: {"mean": 1000.0, "std": 500.0} for b in OPT
}
COALITIONS = {"none": (), "sar": ("sar",), "opt": ("opt",), "sar+opt": ("sar", "opt")}


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    y = rng.integers(0, K, N)
    s1 = (
        rng.normal(-15, 4, (N, 2, SIZE, SIZE)).astype(np.float32)
        + 3.0 * (y == 1)[:, None, None, None]
    )
    s2 = rng.integers(0, 2000, (N, 13, SIZE, SIZE)).astype(np.uint16)
    s2[:, 2] += (800 * (y == 2)).astype(np.uint16)[:, None, None]
    return {"s1": s1, "s2": s2, "y": y}


def normalised(data: dict[str, np.ndarray]) -> torch.Tensor:
    """The card's channels (VV, VH, B02, B03, B04) normalised by hand."""
    x = np.concatenate([data["s1"], data["s2"][:, [1, 2, 3]].astype(np.float32)], 1)
    means = np.array([NORM[b]["mean"] for b in SAR + OPT], np.float32)[None, :, None, None]
    stds = np.array([NORM[b]["std"] for b in SAR + OPT], np.float32)[None, :, None, None]
    return torch.from_numpy(((x - means) / stds).astype(np.float32))


def card(absence: list[str], **kwargs: object) -> ModelCard:
    return ModelCard.custom(
        {"sar": SAR, "opt": OPT}, task="single-label", class_names=["a", "b", "c"],
        input_size=SIZE, normalization=NORM, absence=absence, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def counts_of(pred: np.ndarray, y: np.ndarray) -> list[list[int]]:
    return confusion_matrix(y, pred, labels=range(K)).tolist()  # type: ignore[no-any-return]


def evaluate(model: torch.nn.Module, data: dict[str, np.ndarray], c: ModelCard,
             **kwargs: object) -> sareval.ShapeResult:  # fmt: skip
    source = ArrayData({"s1": data["s1"], "s2": data["s2"]}, data["y"])
    return sareval.evaluate(model, source, card=c, batch_size=5, **kwargs)  # type: ignore[arg-type]


def test_mask_equals_token_removal_per_coalition(data) -> None:
    c = card(["fill", "mask"])
    torch.manual_seed(0)
    vit = vit_for_card(c, dim=32, depth=2, heads=2, patch_size=8).eval()
    r = evaluate(vit, data, c, absence="mask")
    x = normalised(data)
    with torch.no_grad():
        for name, present in COALITIONS.items():
            if not present:
                continue  # the empty coalition: the all-baseline input (below)
            idx = [["sar", "opt"].index(p) for p in present]
            pred = vit.forward_modalities(x, idx).argmax(1).numpy()
            assert r.counts[name]["confusion"] == counts_of(pred, data["y"]), name
    assert r.config["absence"] == "mask"


def test_omit_calls_the_two_branch_model_with_the_absent_branch_none(data) -> None:
    c = card(["fill", "omit"], inputs={"s1": SAR, "s2": OPT})
    torch.manual_seed(1)
    net = build_two_branch(2, 3, K).eval()
    r = evaluate(net, data, c, absence="omit", empty_coalition="majority")
    x = normalised(data)
    with torch.no_grad():
        for name, present in COALITIONS.items():
            if not present:
                continue
            s1 = x[:, :2] if "sar" in present else None
            s2 = x[:, 2:] if "opt" in present else None
            pred = net(s1, s2).argmax(1).numpy()
            assert r.counts[name]["confusion"] == counts_of(pred, data["y"]), name
    majority = np.bincount(data["y"], minlength=K).argmax()
    assert r.counts["none"]["confusion"] == counts_of(np.full(N, majority), data["y"])


def test_omit_without_an_input_fails_in_one_line_naming_it(data) -> None:
    c = card(["fill", "omit"], inputs={"s1": SAR, "s2": OPT})
    torch.manual_seed(1)
    net = build_two_branch(2, 3, K).eval()
    with pytest.raises(SarevalError, match="majority") as e:
        evaluate(net, data, c, absence="omit")  # the empty coalition: no input at all
    assert "\n" not in str(e.value)


def test_marginal_takes_absent_inputs_from_the_documented_donors(data) -> None:
    c = card(["fill", "marginal"])
    torch.manual_seed(2)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(5, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(8, K),
    ).eval()  # fmt: skip
    seed = 4
    r = evaluate(net, data, c, absence="marginal", seed=seed, replicates=40)
    source = ArrayData({"s1": data["s1"], "s2": data["s2"]}, data["y"])
    pool_raw, positions = read_donors(source, source.labels_for(c), ["s1", "s2"], seed=seed)
    assert len(positions) == N  # a pool of min(256, N) samples
    x = normalised(data)
    pool = normalised({**pool_raw, "y": data["y"]})
    rows = donor_rows(np.arange(N), len(positions), MARGINAL_DRAWS, seed)  # (D, N)
    y = np.concatenate([data["y"]] * MARGINAL_DRAWS)
    correct = {}
    with torch.no_grad():
        for name, present in COALITIONS.items():
            on = torch.zeros(5, dtype=torch.bool)
            if "sar" in present:
                on[:2] = True
            if "opt" in present:
                on[2:] = True
            preds = []
            for d in range(MARGINAL_DRAWS):
                donor = pool[torch.from_numpy(rows[d])]
                xin = torch.where(on[None, :, None, None], x, donor)
                preds.append(net(xin).argmax(1).numpy())
            assert r.counts[name]["confusion"] == counts_of(np.concatenate(preds), y), name
            correct[name] = np.concatenate(preds) == y
    # intervals resample SAMPLES, each with its donor draws (rows d N + i belong to sample i)
    sample = np.tile(np.arange(N), MARGINAL_DRAWS)
    reps = []
    for g in np.random.default_rng(seed).spawn(40):
        w = np.bincount(g.integers(0, N, size=N), minlength=N)[sample]
        reps.append((w * correct["sar"]).sum() / w.sum())
    want = np.percentile(reps, [2.5, 97.5])
    assert r.intervals["oa"]["V"]["sar"] == pytest.approx(want.tolist(), abs=1e-12)
    assert r.doc["n_samples"] == N
    spread = r.doc["marginal_draws"]
    assert spread["draws"] == MARGINAL_DRAWS
    assert set(spread["standard_error"]["oa"]["relevance"]) == {"sar", "opt"}
    assert r.config["absence_details"] == {"draws": MARGINAL_DRAWS, "pool": N, "seed": seed}


def test_an_operator_the_card_does_not_list_is_refused(data) -> None:
    c = card(["fill", "marginal"])
    with pytest.raises(SarevalError, match=r"ShapeConfig.game.absence") as e:
        evaluate(torch.nn.Identity(), data, c, absence="mask")
    assert "\n" not in str(e.value)


def test_a_model_that_ignores_its_mask_is_refused(data) -> None:
    class Ignores(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(5, K)

        def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
            return self.head(x.mean((2, 3)))  # type: ignore[no-any-return]

    with pytest.raises(SarevalError, match="mask") as e:
        evaluate(Ignores().eval(), data, card(["fill", "mask"]), absence="mask")
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_an_exported_mask_model_is_one_graph_with_the_module_counts(data, tmp_path) -> None:
    import onnx

    from sareval.export import export_onnx

    c = card(["fill", "mask"])
    torch.manual_seed(0)
    vit = vit_for_card(c, dim=32, depth=2, heads=2, patch_size=8).eval()
    path = tmp_path / "vit.onnx"
    export_onnx(vit, c, path)
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["input", "present"]
    from_file = evaluate(path, data, c, absence="mask")  # type: ignore[arg-type]
    from_module = evaluate(vit, data, c, absence="mask")
    assert from_file.counts == from_module.counts
    assert from_file.config["backend"] == "onnxruntime"
