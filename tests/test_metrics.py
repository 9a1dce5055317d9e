"""Metrics checked against hand-made answers and a naive loop-by-loop reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

from core.analysis.metrics import compute_metrics, roc_auc, wilson_interval
from tests.helpers import EVALUATE_KEYS
from tests.references import naive_wilson


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


# ---- naive references for every figure of the report -------------------------------------------------


def naive_auc(positives: list[float], negatives: list[float]) -> float:
    """Every (positive, negative) pair: 1 when the positive scores higher, ½ on a tie."""
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in positives for q in negatives)
    return wins / (len(positives) * len(negatives))


def naive_report(S: np.ndarray, y: list[int], names: list[str]) -> dict:
    """Everything `compute_metrics` reports, one sample and one class at a time. A miss is confused
    with the best-scoring other class (the first such class on a tie)."""
    n, c = S.shape
    ranks, correct, incorrect, best_other, predicted = [], [], [], [], []
    for i in range(n):
        row = [float(s) for s in S[i]]
        truth = row[y[i]]
        ranks.append(sum(1 for s in row if s >= truth))
        correct.append(truth)
        others = [j for j in range(c) if j != y[i]]
        incorrect.extend(row[j] for j in others)
        rival = max(others, key=lambda j: (row[j], -j)) if others else 0
        best_other.extend([row[rival]] if others else [])
        predicted.append(y[i] if ranks[-1] == 1 else rival)
    per_class, per_class_count = {}, {}
    for k in sorted(set(y)):
        rows = [i for i in range(n) if y[i] == k]
        per_class[names[k]] = sum(1 for i in rows if ranks[i] == 1) / len(rows)
        per_class_count[names[k]] = len(rows)
    pairs: dict[tuple[int, int], int] = {}
    for i in range(n):
        if ranks[i] > 1:
            pairs[(y[i], predicted[i])] = pairs.get((y[i], predicted[i]), 0) + 1
    confusion = [(names[t], names[p], pairs[(t, p)]) for t, p in sorted(pairs, key=lambda tp: (-pairs[tp], tp))]

    def share(k: int) -> float:
        return sum(1 for r in ranks if r <= k) / n

    return {
        "ranks": ranks,
        "p": {k: share(k) for k in range(1, c + 2)},
        "mrr": sum(1 / r for r in ranks) / n,
        "correct": correct,
        "incorrect": incorrect,
        "best_other": best_other,
        "margin": sum(a - b for a, b in zip(correct, best_other, strict=True)) / n if best_other else None,
        "predicted": predicted,
        "per_class": per_class,
        "per_class_count": per_class_count,
        "confusion": confusion,
        "auc": naive_auc(correct, incorrect) if incorrect else None,
    }


def assert_top(rep, S: np.ndarray, top: int) -> None:
    """The `top` best classes of each sample, best first (tied classes in any order)."""
    kept = max(1, min(top, S.shape[1]))
    for i, row in enumerate(S):
        indices = rep.top_indices[i].tolist()
        assert len(set(indices)) == len(indices) == kept
        assert rep.top_scores[i].tolist() == pytest.approx(sorted(row.tolist(), reverse=True)[:kept])
        assert rep.top_scores[i].tolist() == pytest.approx(row[indices].tolist())


def random_case(seed: int, n: int = 80, c: int = 12) -> tuple[np.ndarray, list[int], list[str]]:
    """Continuous scores (no accidental ties), some misses tied exactly with their best rival, and a
    few rows where the truth wins: every branch of the definitions is exercised."""
    rng = np.random.default_rng(seed)
    S = rng.uniform(-1, 1, (n, c)).astype(np.float32)
    y = rng.integers(0, c, n)
    for i in range(0, n, 7):  # a tie between the truth and its best rival counts against the truth
        S[i, y[i]] = max(S[i, j] for j in range(c) if j != y[i])
    for i in range(3, n, 5):
        S[i, y[i]] = 1.5
    return S, [int(v) for v in y], [f"class {i}" for i in range(c)]


@pytest.mark.parametrize("seed", [3, 4])
def test_every_figure_matches_the_naive_report(seed: int) -> None:
    S, y, names = random_case(seed)
    rep, ref = compute_metrics(S, np.array(y), names), naive_report(S, y, names)
    n, c = S.shape
    assert rep.ranks.tolist() == ref["ranks"]
    assert rep.precision_at_1 == pytest.approx(ref["p"][1])
    assert rep.precision_at_3 == pytest.approx(ref["p"][3])
    assert rep.precision_at_5 == pytest.approx(ref["p"][5])
    assert rep.mrr == pytest.approx(ref["mrr"])
    assert rep.kinetics_accuracy == pytest.approx((ref["p"][1] + ref["p"][5]) / 2)
    assert rep.similarities_correct.tolist() == pytest.approx(ref["correct"])
    assert sorted(rep.similarities_incorrect.tolist()) == pytest.approx(sorted(ref["incorrect"]))
    assert rep.best_incorrect.tolist() == pytest.approx(ref["best_other"])
    assert rep.mean_margin == pytest.approx(ref["margin"], abs=1e-6)
    assert rep.auc == pytest.approx(ref["auc"])
    assert rep.predicted_index.tolist() == ref["predicted"]
    assert_top(rep, S, 5)
    assert rep.per_class == pytest.approx(ref["per_class"])
    assert rep.per_class_count == ref["per_class_count"]
    assert rep.confusion == ref["confusion"]
    assert len({count for *_, count in rep.confusion}) > 1  # the order by count is really tested
    assert rep.class_names == names and rep.true_index.tolist() == y
    assert (rep.n_videos, rep.n_classes) == (n, c)
    for k in (1, 2, 3, 5, 8):
        assert rep.interval(k) == pytest.approx(naive_wilson(sum(1 for r in ref["ranks"] if r <= k), n))


def test_to_json_holds_every_figure_under_its_documented_name() -> None:
    S, y, names = random_case(5, n=40, c=8)
    rep, ref = compute_metrics(S, np.array(y), names), naive_report(S, y, names)
    data = rep.to_json()
    assert data == {
        "precision_at_1": pytest.approx(ref["p"][1]),
        "precision_at_3": pytest.approx(ref["p"][3]),
        "precision_at_5": pytest.approx(ref["p"][5]),
        "mrr": pytest.approx(ref["mrr"]),
        "mean_similarity_correct": pytest.approx(np.mean(ref["correct"]), abs=1e-6),
        "mean_similarity_incorrect": pytest.approx(np.mean(ref["incorrect"]), abs=1e-6),
        "n_videos": 40,
        "n_classes": 8,
        "per_class": pytest.approx(ref["per_class"]),
        "per_class_count": ref["per_class_count"],
        "kinetics_accuracy": pytest.approx((ref["p"][1] + ref["p"][5]) / 2),
        "mean_margin": pytest.approx(ref["margin"], abs=1e-6),
        "roc_auc": pytest.approx(ref["auc"]),
        "ci95": {
            f"precision_at_{k}": pytest.approx(list(naive_wilson(sum(r <= k for r in ref["ranks"]), 40)))
            for k in (1, 3, 5)
        },
        "confusion": [{"true": t, "predicted": p, "count": n} for t, p, n in ref["confusion"]],
    }
    json.dumps(data)  # plain JSON types only


def test_top_keeps_the_best_classes_in_order() -> None:
    S, y, names = random_case(6, n=30, c=9)
    for top in (1, 2, 3, 5, 8, 9, 20):
        rep = compute_metrics(S, np.array(y), names, top=top)
        assert_top(rep, S, top)
        assert rep.top_scores.shape == (30, min(top, 9))
    assert compute_metrics(S, np.array(y), names, top=0).top_indices.shape == (30, 1)  # at least the best one
    assert compute_metrics(S, np.array(y), names).top_indices.shape == (30, 5)  # five by default


def test_one_class_and_two_classes() -> None:
    """With one class every sample is right and there is no rival: no margin, no AUC, no confusion."""
    one = compute_metrics(np.array([[0.2], [-0.4], [0.9]]), np.array([0, 0, 0]), ["only"])
    assert one.ranks.tolist() == [1, 1, 1] and one.precision_at_1 == 1.0 and one.mrr == 1.0
    assert one.predicted_index.tolist() == [0, 0, 0] and one.confusion == []
    assert one.best_incorrect.size == 0 and math.isnan(one.mean_margin) and math.isnan(one.auc)
    assert one.top_indices.tolist() == [[0], [0], [0]]
    data = one.to_json()
    assert data["mean_margin"] is None and data["roc_auc"] is None and data["mean_similarity_incorrect"] is None
    S = np.array([[0.9, 0.1], [0.2, 0.6], [0.3, 0.3], [0.5, 0.7]])
    y = [0, 0, 1, 1]
    two, ref = compute_metrics(S, np.array(y), ["a", "b"]), naive_report(S, y, ["a", "b"])
    assert two.ranks.tolist() == ref["ranks"] == [1, 2, 2, 1]
    assert two.confusion == ref["confusion"] == [("a", "b", 1), ("b", "a", 1)]
    assert two.predicted_index.tolist() == [0, 1, 0, 1]
    assert two.mean_margin == pytest.approx(ref["margin"])


def test_scores_are_compared_at_float32_precision() -> None:
    """The index stores float32: scores that differ only below that precision are a tie (which counts
    against the truth), whatever precision the caller passes."""
    S = np.array([[0.3, 0.3 + 1e-10, -0.5]], dtype=np.float64)
    rep = compute_metrics(S, np.array([1]), list("abc"))
    assert rep.ranks.tolist() == [2] and rep.precision_at_1 == 0.0 and rep.confusion == [("b", "a", 1)]


def test_compact_label_arrays_give_the_same_report() -> None:
    """True indices held as uint8 (enough for 20 classes) must not overflow anywhere (confusion pairs)."""
    S, y, names = random_case(7, n=60, c=20)
    wide = compute_metrics(S, np.array(y, dtype=np.int64), names)
    narrow = compute_metrics(S, np.array(y, dtype=np.uint8), names)
    assert narrow.confusion == wide.confusion == naive_report(S, y, names)["confusion"]
    assert narrow.per_class == wide.per_class and narrow.ranks.tolist() == wide.ranks.tolist()


@pytest.mark.filterwarnings("error")  # an empty evaluation must not print numpy warnings either
def test_no_samples_and_no_warnings() -> None:
    for S in (np.zeros((0, 3)), np.array([])):
        rep = compute_metrics(S, np.zeros(0, np.int64), list("abc"))
        assert (rep.n_videos, rep.n_classes) == (0, 3) and rep.top_indices.shape == (0, 3)
        for value in (rep.precision_at_1, rep.precision_at_3, rep.precision_at_5, rep.mrr):
            assert math.isnan(value)
        for value in (rep.mean_similarity_correct, rep.mean_similarity_incorrect, rep.mean_margin, rep.auc):
            assert math.isnan(value)
        data = rep.to_json()
        assert data["precision_at_1"] is None and data["mrr"] is None and data["roc_auc"] is None
        assert data["ci95"] == {
            "precision_at_1": [0.0, 0.0],
            "precision_at_3": [0.0, 0.0],
            "precision_at_5": [0.0, 0.0],
        }
        assert data["per_class"] == {} and data["confusion"] == []
    assert math.isnan(roc_auc(np.array([]), np.array([0.1, 0.2])))
    assert math.isnan(roc_auc(np.array([0.1, 0.2]), np.array([])))


def test_bad_shapes_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match=r"^similarity has 3 columns but 2 class names were given$"):
        compute_metrics(np.zeros((2, 3)), np.array([0, 1]), ["a", "b"])
    bad = r"^true_index must hold one valid class index per row of similarity$"
    for y in ([0, 3], [-1, 0], [0], [0, 1, 2]):  # a class index one past the end, negative, too few, too many
        with pytest.raises(ValueError, match=bad):
            compute_metrics(np.zeros((2, 3)), np.array(y), list("abc"))
    compute_metrics(np.zeros((2, 3)), np.array([0, 2]), list("abc"))  # the last class is valid


@pytest.mark.parametrize(
    "successes, n", [(0, 1), (1, 1), (0, 5), (3, 5), (5, 5), (1, 2), (94, 218), (116, 218), (1, 1000), (2.5, 7)]
)
def test_wilson_interval_matches_its_definition(successes: float, n: int) -> None:
    low, high = wilson_interval(successes, n)
    assert (low, high) == pytest.approx(naive_wilson(successes, n), abs=1e-9)
    assert 0.0 <= low <= successes / n <= high <= 1.0
    if float(successes).is_integer():  # and scipy's, for whole counts
        ci = binomtest(int(successes), n).proportion_ci(confidence_level=0.95, method="wilson")
        assert (low, high) == pytest.approx((ci.low, ci.high), abs=1e-9)
    assert wilson_interval(successes, n, z=1.0) == pytest.approx(naive_wilson(successes, n, z=1.0), abs=1e-9)


def test_wilson_interval_stays_within_zero_and_one() -> None:
    """At 0 and at n successes the formula's ends can stray past [0, 1] by a rounding error."""
    for n in range(1, 120):
        none, every = wilson_interval(0, n), wilson_interval(n, n)
        assert 0.0 <= none[0] < 1e-12 < none[1] and every[0] < 1.0 - 1e-12 < every[1] <= 1.0
    assert wilson_interval(0, 0) == (0.0, 0.0) and wilson_interval(3, -2) == (0.0, 0.0)


def test_auc_matches_the_pairwise_definition() -> None:
    rng = np.random.default_rng(11)
    for size in (1, 2, 7, 40):
        positives = rng.uniform(-1, 1, size).round(1)  # rounding: ties between and within the groups
        negatives = rng.uniform(-1, 1, size * 3 + 1).round(1)
        assert roc_auc(positives, negatives) == pytest.approx(naive_auc(list(positives), list(negatives)))
    assert roc_auc(np.array([0.5]), np.array([0.5])) == 0.5  # one of each, tied
    assert roc_auc(np.array([0.2, 0.9]), np.array([0.4])) == 0.5
