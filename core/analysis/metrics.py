"""Retrieval metrics from a similarity matrix: pure numpy, no I/O, no loops over pairs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Z_95 = 1.959963984540054


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else float("nan")


def wilson_interval(successes: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (well-behaved at 0, 1 and small n)."""
    if n <= 0:
        return (0.0, 0.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def roc_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """P(a correct pair scores above an incorrect one), ties counting half (Mann-Whitney U)."""
    if positives.size == 0 or negatives.size == 0:
        return float("nan")
    neg = np.sort(negatives)  # values only: the SIMD quicksort, not the far slower stable sort
    below = np.searchsorted(neg, positives, side="left")
    not_above = np.searchsorted(neg, positives, side="right")
    return float((below.sum() + 0.5 * (not_above - below).sum()) / (positives.size * neg.size))


@dataclass
class MetricsReport:
    """Every figure of one evaluation, plus the arrays behind the histogram and tables."""

    precision_at_1: float
    precision_at_3: float
    precision_at_5: float
    mrr: float
    mean_similarity_correct: float
    mean_similarity_incorrect: float
    n_videos: int
    n_classes: int
    per_class: dict[str, float]
    per_class_count: dict[str, int]
    confusion: list[tuple[str, str, int]]
    class_names: list[str]
    true_index: np.ndarray = field(repr=False)
    ranks: np.ndarray = field(repr=False)
    top_indices: np.ndarray = field(repr=False)
    top_scores: np.ndarray = field(repr=False)
    similarities_correct: np.ndarray = field(repr=False)
    similarities_incorrect: np.ndarray = field(repr=False)
    best_incorrect: np.ndarray = field(repr=False)
    predicted_index: np.ndarray = field(repr=False)

    @property
    def kinetics_accuracy(self) -> float:
        """The Kinetics challenge's convention: mean of top-1 and top-5 accuracy."""
        return (self.precision_at_1 + self.precision_at_5) / 2

    def interval(self, k: int) -> tuple[float, float]:
        hits = float((self.ranks <= k).sum())
        return wilson_interval(hits, int(self.ranks.size))

    @property
    def mean_margin(self) -> float:
        """Mean of (correct similarity − best incorrect similarity); > 0 means correctly ranked first."""
        if self.best_incorrect.size == 0:
            return float("nan")
        return float(np.mean(self.similarities_correct - self.best_incorrect))

    @property
    def auc(self) -> float:
        return roc_auc(self.similarities_correct, self.similarities_incorrect)

    def to_json(self) -> dict[str, Any]:
        """The contract of ``evaluate --json`` (extra keys may be added, never renamed)."""
        out: dict[str, Any] = {
            "precision_at_1": self.precision_at_1,
            "precision_at_3": self.precision_at_3,
            "precision_at_5": self.precision_at_5,
            "mrr": self.mrr,
            "mean_similarity_correct": self.mean_similarity_correct,
            "mean_similarity_incorrect": self.mean_similarity_incorrect,
            "n_videos": self.n_videos,
            "n_classes": self.n_classes,
            "per_class": dict(self.per_class),
            "per_class_count": dict(self.per_class_count),
            "kinetics_accuracy": self.kinetics_accuracy,
            "mean_margin": self.mean_margin,
            "roc_auc": self.auc,
            "ci95": {f"precision_at_{k}": list(self.interval(k)) for k in (1, 3, 5)},
            "confusion": [{"true": t, "predicted": p, "count": n} for t, p, n in self.confusion],
        }
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


def compute_metrics(
    similarity: np.ndarray, true_index: np.ndarray, class_names: Sequence[str], top: int = 5
) -> MetricsReport:
    """All metrics of one (samples × classes) similarity matrix and each sample's true class.

    The true class's rank is the number of classes scoring at least as high as it (ties count against it,
    so a constant score never looks good); precision@k is the share of samples whose true class ranks
    within the first k; MRR is the mean of 1/rank."""
    S = np.asarray(similarity, dtype=np.float32)
    y = np.asarray(true_index, dtype=np.int64)
    if S.ndim != 2:
        S = S.reshape(0, len(class_names))
    n, c = S.shape
    if c != len(class_names):
        raise ValueError(f"similarity has {c} columns but {len(class_names)} class names were given")
    if y.shape != (n,) or (n and (y.min() < 0 or y.max() >= c)):
        raise ValueError("true_index must hold one valid class index per row of similarity")
    names = list(class_names)
    rows = np.arange(n)
    correct = S[rows, y]
    ranks = (correct[:, None] <= S).sum(axis=1)
    others = np.ones_like(S, dtype=bool)
    others[rows, y] = False
    incorrect = S[others]
    if c > 1:
        masked = np.where(others, S, -np.inf)
        rival = masked.argmax(axis=1)
        best_incorrect = masked[rows, rival]
    else:
        rival, best_incorrect = np.zeros(n, np.int64), np.zeros(0, np.float32)

    kept = max(1, min(top, c))
    part = np.argpartition(-S, kept - 1, axis=1)[:, :kept] if kept < c else np.tile(np.arange(c), (n, 1))
    part_scores = np.take_along_axis(S, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    top_indices = np.take_along_axis(part, order, axis=1)
    top_scores = np.take_along_axis(part_scores, order, axis=1)

    hit1 = ranks == 1
    counts = np.bincount(y, minlength=c)
    hits = np.bincount(y, weights=hit1, minlength=c)
    present = np.flatnonzero(counts)
    per_class = {names[i]: float(hits[i] / counts[i]) for i in present}
    per_class_count = {names[i]: int(counts[i]) for i in present}

    # A miss is confused with its best-scoring other class (which, ties counting against the truth,
    # is also what top-1 shows whenever the truth is not ranked first).
    wrong = ranks > 1
    pairs = np.bincount(y[wrong] * c + rival[wrong], minlength=c * c)
    nonzero = np.flatnonzero(pairs)
    by_count = nonzero[np.lexsort((nonzero, -pairs[nonzero]))]
    confusion = [(names[i // c], names[i % c], int(pairs[i])) for i in by_count]

    return MetricsReport(
        precision_at_1=_mean(ranks <= 1),
        precision_at_3=_mean(ranks <= 3),
        precision_at_5=_mean(ranks <= 5),
        mrr=_mean(1.0 / ranks),
        mean_similarity_correct=_mean(correct),
        mean_similarity_incorrect=_mean(incorrect),
        n_videos=int(n),
        n_classes=int(c),
        per_class=per_class,
        per_class_count=per_class_count,
        confusion=confusion,
        class_names=names,
        true_index=y,
        ranks=ranks,
        top_indices=top_indices,
        top_scores=top_scores,
        similarities_correct=correct,
        similarities_incorrect=incorrect,
        best_incorrect=best_incorrect,
        predicted_index=np.where(ranks == 1, y, rival),
    )
