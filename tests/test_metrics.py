"""Metrics from counts against scikit-learn, merging, state round trips, decisions and ties."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    fbeta_score,
    hamming_loss,
    precision_score,
    recall_score,
)

from sareval.errors import SarevalError
from sareval.evaluator.metrics import (
    METRIC_NAMES,
    MultiLabelCounts,
    SingleLabelCounts,
    counts_for,
    counts_from_state,
    decide,
    majority_prediction,
    nonfinite_rows,
    ties,
)

TOL = 1e-12


def _single_label_cases() -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Seeded random cases, including empty classes, K = 1 and 2, one sample, constant output."""
    rng = np.random.default_rng(0)
    cases = []
    for seed in range(40):
        k = int(rng.integers(1, 8))
        n = int(rng.choice([1, 2, 5, 30, 200]))
        # draw from a subset of classes so that some classes are empty in y_true or y_pred
        true_pool = rng.choice(k, size=int(rng.integers(1, k + 1)), replace=False)
        pred_pool = rng.choice(k, size=int(rng.integers(1, k + 1)), replace=False)
        y_true = rng.choice(true_pool, size=n)
        y_pred = rng.choice(pred_pool, size=n)
        if seed % 5 == 0:  # a good classifier: mostly right
            right = rng.random(n) < 0.8
            y_pred = np.where(right, y_true, y_pred)
        cases.append((y_true.astype(np.int64), y_pred.astype(np.int64), k))
    cases.append((np.array([2, 2, 2]), np.array([0, 0, 0]), 3))  # constant, disjoint
    cases.append((np.array([1, 1]), np.array([1, 1]), 2))  # perfect on one class: kappa 0/0
    return cases


def _sk_single(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> dict[str, float]:
    labels = list(range(k))
    kw = {"labels": labels, "zero_division": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # one-hot form with an extra all-zero column (no effect on sample-wise F) so that
        # sklearn sees multilabel-indicator input even for K = 1
        onehot_t = np.eye(k, k + 1, dtype=int)[y_true]
        onehot_p = np.eye(k, k + 1, dtype=int)[y_pred]
        recall_all = recall_score(y_true, y_pred, average=None, **kw)
        expected = {
            "oa": accuracy_score(y_true, y_pred),
            "aa": float(np.mean(recall_all)),
            "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
            "f1_micro": fbeta_score(y_true, y_pred, beta=1, average="micro", **kw),
            "f1_macro": fbeta_score(y_true, y_pred, beta=1, average="macro", **kw),
            "f1_samples": fbeta_score(
                onehot_t, onehot_p, beta=1, average="samples", zero_division=0
            ),
            "f2_micro": fbeta_score(y_true, y_pred, beta=2, average="micro", **kw),
            "f2_macro": fbeta_score(y_true, y_pred, beta=2, average="macro", **kw),
            "f2_samples": fbeta_score(
                onehot_t, onehot_p, beta=2, average="samples", zero_division=0
            ),
            "f1_weighted": fbeta_score(y_true, y_pred, beta=1, average="weighted", **kw),
            "precision_micro": precision_score(y_true, y_pred, average="micro", **kw),
            "precision_macro": precision_score(y_true, y_pred, average="macro", **kw),
            "recall_micro": recall_score(y_true, y_pred, average="micro", **kw),
            "recall_macro": recall_score(y_true, y_pred, average="macro", **kw),
            "kappa": cohen_kappa_score(y_true, y_pred, labels=labels),
        }
        per_class = {
            "precision": precision_score(y_true, y_pred, average=None, **kw),
            "recall": recall_all,
            "f1": fbeta_score(y_true, y_pred, beta=1, average=None, **kw),
            "f2": fbeta_score(y_true, y_pred, beta=2, average=None, **kw),
            "support": np.bincount(y_true, minlength=k),
        }
    # sklearn leaves kappa undefined (NaN) when expected agreement is 1; we define it as 0
    if np.isnan(expected["kappa"]):
        expected["kappa"] = 0.0
    return expected, per_class


@pytest.mark.parametrize("case", range(len(_single_label_cases())))
def test_single_label_matches_sklearn(case: int) -> None:
    y_true, y_pred, k = _single_label_cases()[case]
    counts = SingleLabelCounts(k)
    counts.add(y_true, y_pred)
    expected, expected_per_class = _sk_single(y_true, y_pred, k)
    got = counts.metrics()
    assert tuple(got) == METRIC_NAMES["single-label"]
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=TOL), name
    per_class = counts.per_class()
    for name, value in expected_per_class.items():
        np.testing.assert_allclose(per_class[name], value, atol=TOL, rtol=0, err_msg=name)
    # the SEN12MS AA counts an empty class as 0, sklearn's balanced accuracy skips it
    present = np.unique(y_true)
    if len(present) < k:
        assert got["aa"] == pytest.approx(got["balanced_accuracy"] * len(present) / k, abs=TOL)


def test_single_label_confusion_equals_naive_loop() -> None:
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 6, 500), rng.integers(0, 6, 500)
    naive = np.zeros((6, 6), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        naive[t, p] += 1
    counts = SingleLabelCounts(6)
    counts.add(y_true, y_pred)
    assert counts.confusion.dtype == np.int64
    np.testing.assert_array_equal(counts.confusion, naive)
    assert counts.n == 500


def _multi_label_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded random multi-hot cases with all-negative rows, empty classes, K = 1 and 2."""
    rng = np.random.default_rng(2)
    cases = []
    for _ in range(40):
        k = int(rng.integers(1, 9))
        n = int(rng.choice([1, 2, 7, 50, 300]))
        density_t, density_p = rng.uniform(0.0, 0.7, 2)
        y_true = rng.random((n, k)) < density_t
        y_pred = rng.random((n, k)) < density_p
        if rng.random() < 0.5:  # correlated predictions
            keep = rng.random((n, k)) < 0.7
            y_pred = np.where(keep, y_true, y_pred)
        # force all-negative rows in truth and/or prediction, and an empty class
        y_true[rng.random(n) < 0.2] = False
        y_pred[rng.random(n) < 0.2] = False
        if k > 1:
            y_true[:, rng.integers(k)] = False
        cases.append((y_true, y_pred))
    k = 3
    cases.append((np.zeros((4, k), bool), np.zeros((4, k), bool)))  # nothing anywhere
    cases.append((np.ones((4, k), bool), np.ones((4, k), bool)))  # everything right
    cases.append((np.zeros((4, k), bool), np.ones((4, k), bool)))  # all false positives
    return cases


def _toolbox_oa_multi(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The SEN12MS toolbox's ``OA_multi`` as a plain loop; a sample with both sets empty
    scores 1 (the toolbox's 0/0 would make the mean NaN)."""
    total = 0.0
    for t, p in zip(y_true.astype(bool), y_pred.astype(bool), strict=True):
        cross, union = int(np.sum(t & p)), int(np.sum(t | p))
        total += 1.0 if union == 0 else cross / union
    return total / len(y_true)


def _toolbox_multilabel_aa(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The toolbox's ``multi_conf_mat`` average accuracy: mean over classes of (TP+TN)/N."""
    n, k = y_true.shape
    accs = [sum(bool(y_true[i, j]) == bool(y_pred[i, j]) for i in range(n)) / n for j in range(k)]
    return float(np.mean(accs))


def test_multi_label_oa_edge_cases() -> None:
    """Both sets empty -> 1; disjoint -> 0; subset -> |pred| / |true|; AA = 1 - Hamming."""
    y_true = np.array([[0, 0, 0], [1, 1, 0], [1, 1, 1], [0, 0, 1]], bool)
    y_pred = np.array([[0, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1]], bool)
    counts = MultiLabelCounts(3)
    counts.add(y_true, y_pred)
    got = counts.metrics()
    assert got["oa"] == pytest.approx((1 + 0 + 1 / 3 + 1) / 4, abs=TOL)
    assert got["aa"] == pytest.approx(1 - got["hamming_loss"], abs=TOL)
    assert got["aa"] == pytest.approx(_toolbox_multilabel_aa(y_true, y_pred), abs=TOL)
    assert MultiLabelCounts(3).metrics()["oa"] == 0.0  # no samples: 0/0 = 0


def test_higher_is_better() -> None:
    from sareval.evaluator.metrics import higher_is_better

    assert not higher_is_better("hamming_loss")
    assert all(higher_is_better(m) for t in METRIC_NAMES for m in METRIC_NAMES[t]
               if m != "hamming_loss")  # fmt: skip


@pytest.mark.parametrize("case", range(len(_multi_label_cases())))
def test_multi_label_matches_sklearn(case: int) -> None:
    y_true, y_pred = _multi_label_cases()[case]
    n, k = y_true.shape
    counts = MultiLabelCounts(k)
    counts.add(y_true.astype(np.uint8), y_pred)
    got = counts.metrics()
    assert tuple(got) == METRIC_NAMES["multi-label"]
    # an extra all-zero column (excluded by labels=range(K), no effect on any count) makes
    # sklearn see multilabel-indicator input even for K = 1
    t = np.pad(y_true.astype(int), ((0, 0), (0, 1)))
    p = np.pad(y_pred.astype(int), ((0, 0), (0, 1)))
    kw = {"zero_division": 0, "labels": list(range(k))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = {
            "oa": _toolbox_oa_multi(y_true, y_pred),
            "aa": _toolbox_multilabel_aa(y_true, y_pred),
            "subset_accuracy": accuracy_score(t, p),
            "hamming_loss": hamming_loss(t, p) * (k + 1) / k,
        }
        for avg in ("micro", "macro", "samples"):
            expected[f"f1_{avg}"] = fbeta_score(t, p, beta=1, average=avg, **kw)
            expected[f"f2_{avg}"] = fbeta_score(t, p, beta=2, average=avg, **kw)
            expected[f"precision_{avg}"] = precision_score(t, p, average=avg, **kw)
            expected[f"recall_{avg}"] = recall_score(t, p, average=avg, **kw)
        expected_per_class = {
            "precision": precision_score(t, p, average=None, **kw),
            "recall": recall_score(t, p, average=None, **kw),
            "f1": fbeta_score(t, p, beta=1, average=None, **kw),
            "f2": fbeta_score(t, p, beta=2, average=None, **kw),
            "support": t[:, :k].sum(axis=0),
        }
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=TOL), name
    per_class = counts.per_class()
    for name, value in expected_per_class.items():
        np.testing.assert_allclose(per_class[name], value, atol=TOL, rtol=0, err_msg=name)
    # tp/fp/fn/tn, n and exact matches against a naive loop
    for j in range(k):
        assert counts.tp[j] == sum(t[i, j] and p[i, j] for i in range(n))
        assert counts.fp[j] == sum((not t[i, j]) and p[i, j] for i in range(n))
        assert counts.fn[j] == sum(t[i, j] and not p[i, j] for i in range(n))
        assert counts.tn[j] == sum(not t[i, j] and not p[i, j] for i in range(n))
    assert counts.n == n
    assert counts.exact_match == sum(bool((t[i] == p[i]).all()) for i in range(n))


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
def test_merge_of_split_batches_equals_one_batch(task: str) -> None:
    rng = np.random.default_rng(3)
    k, n = 5, 257
    if task == "single-label":
        y_true, y_pred = rng.integers(0, k, n), rng.integers(0, k, n)
    else:
        y_true, y_pred = rng.random((n, k)) < 0.3, rng.random((n, k)) < 0.4
    whole = counts_for(task, k)
    whole.add(y_true, y_pred)
    for batch in (1, 7, 64):
        streamed = counts_for(task, k)
        for start in range(0, n, batch):
            streamed.add(y_true[start : start + batch], y_pred[start : start + batch])
        assert streamed == whole
        assert streamed.metrics() == whole.metrics()  # bit-identical
    # shards merged with + (and in another order)
    shards = []
    for lo, hi in ((0, 100), (100, 101), (101, n)):
        shard = counts_for(task, k)
        shard.add(y_true[lo:hi], y_pred[lo:hi])
        shards.append(shard)
    assert shards[0] + shards[1] + shards[2] == whole
    assert shards[2].merge(shards[0]).merge(shards[1]) == whole
    acc = counts_for(task, k)
    for shard in shards:
        acc += shard
    assert acc == whole
    assert acc.metrics() == whole.metrics()
    # empty batches change nothing
    whole.add(y_true[:0], y_pred[:0])
    assert whole == acc


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
def test_state_round_trip(task: str) -> None:
    rng = np.random.default_rng(4)
    k = 4
    counts = counts_for(task, k)
    if task == "single-label":
        counts.add(rng.integers(0, k, 50), rng.integers(0, k, 50))
    else:
        counts.add(rng.random((50, k)) < 0.5, rng.random((50, k)) < 0.5)
    state = counts.to_state()
    assert all(v.dtype == np.int64 for v in state.values())
    back = counts_from_state(task, state)
    assert back == counts and back.metrics() == counts.metrics()
    as_json = {name: value.tolist() for name, value in state.items()}  # JSON-like lists
    assert type(counts).from_state(as_json) == counts
    state[next(iter(state))][...] = 0  # a copy: the counts themselves are untouched
    assert back == counts


def test_bad_state_and_bad_batches_are_refused() -> None:
    with pytest.raises(SarevalError, match="shape"):
        SingleLabelCounts.from_state({"confusion": np.zeros((2, 3), np.int64)})
    with pytest.raises(SarevalError, match="lacks fields"):
        MultiLabelCounts.from_state({"tp": np.zeros(3, np.int64)})
    with pytest.raises(SarevalError, match="negative"):
        SingleLabelCounts.from_state({"confusion": -np.ones((2, 2), np.int64)})
    with pytest.raises(SarevalError, match="outside"):
        SingleLabelCounts(3).add(np.array([0, 3]), np.array([0, 1]))
    with pytest.raises(SarevalError, match="shape"):
        MultiLabelCounts(3).add(np.zeros((2, 4), bool), np.zeros((2, 4), bool))
    with pytest.raises(SarevalError, match="cannot merge"):
        SingleLabelCounts(3) + SingleLabelCounts(4)
    with pytest.raises(SarevalError, match="unknown task"):
        counts_for("regression", 3)


def test_empty_counts_give_zero_metrics() -> None:
    for task in ("single-label", "multi-label"):
        assert all(v == 0.0 for v in counts_for(task, 3).metrics().values())


def test_decide_single_label_ties_to_lowest_index() -> None:
    outputs = np.array([[1.0, 3.0, 3.0], [0.5, 0.5, 0.5], [-1.0, -2.0, -3.0]], np.float32)
    np.testing.assert_array_equal(decide(outputs, "single-label"), [1, 0, 0])
    assert decide(outputs, "single-label").dtype == np.int64


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.9])
def test_decide_multi_label_logits_equal_sigmoid_rule(threshold: float) -> None:
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 3, (400, 6)).astype(np.float32)
    probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    expected = probs >= threshold
    from_logits = decide(logits, "multi-label", "logits", threshold)
    from_probs = decide(probs, "multi-label", "probabilities", threshold)
    # away from the threshold the sigmoid rule and the logit rule agree
    far = np.abs(probs - threshold) > 1e-9
    np.testing.assert_array_equal(from_logits[far], expected[far])
    np.testing.assert_array_equal(from_probs, expected)
    assert decide(np.zeros((1, 2)), "multi-label", "logits", 0.5).all()  # sigmoid(0) >= 0.5


def test_ties() -> None:
    single = np.array([[1.0, 1.000001, 0.0], [1.0, 2.0, 0.0], [5.0, 0.0, 5.0]])
    np.testing.assert_array_equal(ties(single, "single-label"), [True, False, True])
    assert not ties(np.zeros((3, 1)), "single-label").any()  # one class never ties
    multi = np.array([[3.0, 0.000002], [3.0, -2.0]])
    np.testing.assert_array_equal(ties(multi, "multi-label"), [True, False])
    probs = np.array([[0.700001, 0.1], [0.5, 0.9]])
    np.testing.assert_array_equal(ties(probs, "multi-label", "probabilities", 0.7), [True, False])
    with pytest.raises(SarevalError, match="shape"):
        ties(np.zeros(3), "single-label")


def test_nonfinite_rows_and_majority() -> None:
    outputs = np.array([[0.0, 1.0], [np.nan, 0.0], [np.inf, 1.0]])
    np.testing.assert_array_equal(nonfinite_rows(outputs), [False, True, True])
    assert int(majority_prediction(np.array([2, 1, 1, 2, 0]), "single-label", 3)) == 1
    y = np.array([[1, 0, 1], [1, 0, 0], [0, 1, 1], [1, 0, 0]], bool)
    np.testing.assert_array_equal(majority_prediction(y, "multi-label", 3), [True, False, False])


def test_multi_label_majority_is_the_modal_label_set() -> None:
    """The most frequent row, not the per-class majority (which is empty here), and the
    empty coalition's F-scores are those of predicting that set for everyone (sklearn)."""
    rng = np.random.default_rng(5)
    k = 6
    common = np.array([1, 0, 1, 0, 0, 0], bool)
    y = rng.random((200, k)) < 0.3
    y[rng.random(200) < 0.25] = common
    assert not (y.mean(axis=0) > 0.5).any()  # the per-class majority would be the empty set
    rows = [tuple(r) for r in y.astype(int)]
    modal = max(set(rows), key=rows.count)
    got = majority_prediction(y.astype(np.uint8), "multi-label", k)
    np.testing.assert_array_equal(got, np.array(modal, bool))
    np.testing.assert_array_equal(got, common)
    counts = MultiLabelCounts(k)
    pred = np.broadcast_to(got, y.shape)
    counts.add(y, pred)
    values = counts.metrics()
    for avg in ("micro", "macro", "samples"):
        for beta in (1, 2):
            expected = fbeta_score(y, pred, beta=beta, average=avg, zero_division=0)
            assert values[f"f{beta}_{avg}"] == pytest.approx(expected, abs=TOL)
    assert values["f1_micro"] > 0
