"""Metrics checked against hand-made answers and a naive loop-by-loop reference."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.metrics import compute_metrics, roc_auc, wilson_interval
from tests.helpers import EVALUATE_KEYS


def naive(S: np.ndarray, y: np.ndarray) -> dict:
    """The definitions, one sample at a time."""
    n, c = S.shape
    ranks, correct, incorrect = [], [], []
    for i in range(n):
        true_score = S[i, y[i]]
        rank = sum(1 for j in range(c) if S[i, j] >= true_score)  # ties count against the truth
        ranks.append(rank)
        correct.append(true_score)
        incorrect.extend(S[i, j] for j in range(c) if j != y[i])
    ranks = np.array(ranks)
    per_class = {}
    for k in sorted(set(y.tolist())):
        rows = [i for i in range(n) if y[i] == k]
        per_class[k] = sum(1 for i in rows if ranks[i] == 1) / len(rows)
    return {
        "p1": np.mean(ranks <= 1),
        "p3": np.mean(ranks <= 3),
        "p5": np.mean(ranks <= 5),
        "mrr": np.mean([1 / r for r in ranks]),
        "correct": np.mean(correct),
        "incorrect": np.mean(incorrect),
        "per_class": per_class,
    }


def test_hand_made_matrix() -> None:
    names = ["a", "b", "c", "d"]
    S = np.array(
        [
            [0.9, 0.1, 0.2, 0.3],  # a: rank 1
            [0.5, 0.4, 0.3, 0.2],  # b: rank 2
            [0.1, 0.2, 0.3, 0.4],  # c: rank 2
            [0.4, 0.3, 0.2, 0.1],  # d: rank 4
            [-0.2, 0.5, -0.1, 0.0],  # b again: rank 1 (negative cosines are kept, not clamped)
        ]
    )
    y = np.array([0, 1, 2, 3, 1])
    rep = compute_metrics(S, y, names)
    assert rep.ranks.tolist() == [1, 2, 2, 4, 1]
    assert rep.precision_at_1 == pytest.approx(2 / 5)
    assert rep.precision_at_3 == pytest.approx(4 / 5)
    assert rep.precision_at_5 == pytest.approx(1.0)
    assert rep.mrr == pytest.approx((1 + 0.5 + 0.5 + 0.25 + 1) / 5)
    assert rep.mean_similarity_correct == pytest.approx((0.9 + 0.4 + 0.3 + 0.1 + 0.5) / 5)
    assert rep.mean_similarity_incorrect == pytest.approx((S.sum() - (0.9 + 0.4 + 0.3 + 0.1 + 0.5)) / 15)
    assert rep.per_class == {"a": 1.0, "b": 0.5, "c": 0.0, "d": 0.0}
    assert rep.per_class_count == {"a": 1, "b": 2, "c": 1, "d": 1}
    assert rep.confusion == [("b", "a", 1), ("c", "d", 1), ("d", "a", 1)]
    assert rep.top_indices[1].tolist() == [0, 1, 2, 3] and rep.top_scores[4, 0] == pytest.approx(0.5)
    assert rep.mean_margin == pytest.approx(np.mean([0.9 - 0.3, 0.4 - 0.5, 0.3 - 0.4, 0.1 - 0.4, 0.5 - 0.0]))
    assert rep.kinetics_accuracy == pytest.approx((0.4 + 1.0) / 2)
    data = rep.to_json()
    assert set(data) >= EVALUATE_KEYS
    assert data["n_videos"] == 5 and data["n_classes"] == 4


def test_ties_count_against_the_true_class() -> None:
    rep = compute_metrics(np.zeros((3, 4)), np.array([0, 1, 2]), list("abcd"))
    assert rep.precision_at_1 == 0.0 and rep.ranks.tolist() == [4, 4, 4]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, c = 60, 9
    S = rng.uniform(-1, 1, (n, c)).round(2)  # rounding makes ties happen
    y = rng.integers(0, c, n)
    names = [f"class {i}" for i in range(c)]
    rep, ref = compute_metrics(S, y, names), naive(S, y)
    assert rep.precision_at_1 == pytest.approx(ref["p1"])
    assert rep.precision_at_3 == pytest.approx(ref["p3"])
    assert rep.precision_at_5 == pytest.approx(ref["p5"])
    assert rep.mrr == pytest.approx(ref["mrr"])
    assert rep.mean_similarity_correct == pytest.approx(ref["correct"], abs=1e-6)
    assert rep.mean_similarity_incorrect == pytest.approx(ref["incorrect"], abs=1e-6)
    assert rep.per_class == pytest.approx({names[k]: v for k, v in ref["per_class"].items()})
    assert len(rep.similarities_correct) == n and len(rep.similarities_incorrect) == n * (c - 1)
    labels = np.r_[np.ones(n), np.zeros(n * (c - 1))]
    scores = np.r_[rep.similarities_correct, rep.similarities_incorrect]
    assert rep.auc == pytest.approx(roc_auc_score(labels, scores))
    assert sum(count for _, _, count in rep.confusion) == int((rep.ranks > 1).sum())


def test_wilson_interval_and_auc_edges() -> None:
    low, high = wilson_interval(94, 218)  # the reference study's 0.43 over 218 videos
    assert low == pytest.approx(0.366, abs=2e-3) and high == pytest.approx(0.498, abs=2e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert roc_auc(np.array([1.0]), np.array([0.0, 1.0, 2.0])) == pytest.approx(0.5)


def test_empty_and_shape_errors() -> None:
    rep = compute_metrics(np.zeros((0, 3)), np.zeros(0, int), list("abc"))
    assert rep.n_videos == 0 and rep.n_classes == 3 and np.isnan(rep.precision_at_1)
    assert rep.to_json()["precision_at_1"] is None
    with pytest.raises(ValueError):
        compute_metrics(np.zeros((2, 3)), np.array([0, 5]), list("abc"))
    with pytest.raises(ValueError):
        compute_metrics(np.zeros((2, 3)), np.array([0, 1]), list("ab"))
