"""The linear probe: how much of zero-shot's error comes from the prompts rather than the embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

from core.ground import UserError, plural

# Inverse regularisation strengths tried by the inner cross-validation. CLIP embeddings are unit
# vectors, so useful values are large; the CLIP paper swept a similar logarithmic range.
PROBE_CS: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)
MAX_FOLDS = 5
INNER_FOLDS = 3
MIN_VIDEOS = 2  # a class needs a video to train on and one to test on


class ProbeError(UserError):
    """The probe cannot run on this index (too few classes with enough videos)."""


@dataclass(frozen=True)
class ProbeFold:
    """One outer fold: which videos trained and tested, the C chosen, and the test figures."""

    fold: int
    train_videos: tuple[str, ...]
    test_videos: tuple[str, ...]
    c: float
    top1: float
    top5: float
    balanced_accuracy: float
    zero_shot_top1: float

    def to_json(self) -> dict[str, Any]:
        return {
            "fold": self.fold,
            "train_videos": len(self.train_videos),
            "test_videos": len(self.test_videos),
            "C": self.c,
            "top1": self.top1,
            "top5": self.top5,
            "balanced_accuracy": self.balanced_accuracy,
            "zero_shot_top1": self.zero_shot_top1,
        }


@dataclass(frozen=True)
class ClassProbe:
    """One class over all folds (each of its samples is tested exactly once)."""

    name: str
    videos: int
    probe_top1: float
    zero_shot_top1: float

    @property
    def prompt_gap(self) -> float:
        """Probe minus zero-shot: what better prompts could at most win back on this class."""
        return self.probe_top1 - self.zero_shot_top1


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return (float(array.mean()), float(array.std())) if array.size else (float("nan"), float("nan"))


class _FoldMean:
    """A figure of the probe read as its mean over the folds (the fold attribute of the same name)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, result: None, owner: type | None = None) -> _FoldMean: ...
    @overload
    def __get__(self, result: ProbeResult, owner: type | None = None) -> float: ...
    def __get__(self, result: ProbeResult | None, owner: type | None = None) -> float | _FoldMean:
        # Read on the class (help(), inspect), the descriptor itself, as a property would be.
        return self if result is None else result._figure(self.name)[0]


@dataclass
class ProbeResult:
    """The probe's figures: means and spreads over folds, per fold, per class."""

    pooling: str
    folds: list[ProbeFold]
    per_class: list[ClassProbe]
    n_samples: int
    n_videos: int
    excluded: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Per sample in the probe: its video, true and predicted class, and the fold that tested it.
    videos: list[str] = field(default_factory=list, repr=False)
    truth: list[str] = field(default_factory=list, repr=False)
    predicted: list[str] = field(default_factory=list, repr=False)
    test_fold: list[int] = field(default_factory=list, repr=False)

    @property
    def k(self) -> int:
        return len(self.folds)

    def _figure(self, name: str) -> tuple[float, float]:
        return _mean_std([getattr(f, name) for f in self.folds])

    top1 = _FoldMean()
    top5 = _FoldMean()
    balanced_accuracy = _FoldMean()
    zero_shot_top1 = _FoldMean()

    def to_json(self) -> dict[str, Any]:
        """The ``linear_probe`` key of ``evaluate --probe --json`` (keys may be added, never renamed)."""
        out: dict[str, Any] = {}
        for name in ("top1", "top5", "balanced_accuracy"):
            mean, std = self._figure(name)
            out[name], out[f"{name}_std"] = mean, std
        out["zero_shot_top1_same_folds"] = self.zero_shot_top1
        out["folds"] = [f.to_json() for f in self.folds]
        out["per_class"] = {
            c.name: {"videos": c.videos, "probe_top1": c.probe_top1, "zero_shot_top1": c.zero_shot_top1,
                     "prompt_gap": c.prompt_gap}
            for c in self.per_class
        }  # fmt: skip
        out.update({"k": self.k, "pooling": self.pooling, "n_samples": self.n_samples, "n_videos": self.n_videos,
                    "n_classes": len(self.per_class), "excluded_classes": list(self.excluded),
                    "notes": list(self.notes)})  # fmt: skip
        return out


def _rank_of_truth(proba: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per row, how many classes score at least as high as the true one (ties count against it, as in
    core.analysis.metrics)."""
    true_scores = proba[np.arange(len(truth)), truth]
    return (proba >= true_scores[:, None]).sum(axis=1)


def _best_other(proba: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per row, the best-scoring class other than the true one."""
    masked = proba.copy()
    masked[np.arange(len(truth)), truth] = -np.inf
    return masked.argmax(axis=1)


def _fit(features: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int) -> tuple[Any, float, str]:
    """A logistic regression with C chosen by inner cross-validation over videos; a note when the
    training part is too small for one (C = 1 then)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold

    # lbfgs fits the multinomial (softmax) model, scikit-learn's default for more than two classes.
    model = LogisticRegression(max_iter=2000)
    videos_per_class = np.bincount(np.unique(np.stack([groups, y], axis=1), axis=0)[:, 1])
    inner = int(min(INNER_FOLDS, videos_per_class[videos_per_class > 0].min()))
    if inner < 2:
        model.set_params(C=1.0).fit(features, y)
        return model, 1.0, "Some classes have a single training video in a fold: C = 1 there, without inner search."
    search = GridSearchCV(
        model, {"C": list(PROBE_CS)}, cv=StratifiedGroupKFold(n_splits=inner, shuffle=True, random_state=seed)
    )
    search.fit(features, y, groups=groups)
    return search.best_estimator_, float(search.best_params_["C"]), ""


def linear_probe(
    features: np.ndarray,
    labels: Sequence[str],
    videos: Sequence[str],
    zero_shot_hits: Sequence[bool] | np.ndarray | None = None,
    pooling: str = "mean",
    seed: int = 0,
) -> ProbeResult:
    """Cross-validated linear probe of `features` (samples × D) with their `labels` and `videos`.

    As in the CLIP paper: a multinomial logistic regression on the frozen embeddings, scored by stratified
    k-fold cross-validation, k = min(5, the smallest class's count of videos), folds drawn over videos (with
    ``frame`` pooling a frame's video decides its fold), C chosen by an inner cross-validation on each
    training part. Zero-shot is scored on the same folds, so probe minus zero-shot is the *prompt gap*.

    `zero_shot_hits[i]`: whether zero-shot ranked sample i's class first (scored on the same folds).
    """
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold

    X = np.asarray(features, dtype=np.float64)
    sample_labels = np.asarray([str(x) for x in labels])
    sample_videos = np.asarray([str(v) for v in videos])
    hits = np.zeros(len(X), bool) if zero_shot_hits is None else np.asarray(zero_shot_hits, bool)
    if not (len(X) == len(sample_labels) == len(sample_videos) == len(hits)):
        raise ValueError("features, labels, videos and zero_shot_hits need one entry per sample")

    # Videos and their class (a video's frames share its label).
    video_ids, first = np.unique(sample_videos, return_index=True)
    video_labels = sample_labels[first]
    names, counts = np.unique(video_labels, return_counts=True)
    excluded = [str(n) for n, c in zip(names, counts, strict=True) if c < MIN_VIDEOS]
    notes = []
    if excluded:
        shown = ", ".join(excluded[:5]) + (f" and {len(excluded) - 5} more" if len(excluded) > 5 else "")
        notes.append(
            f"{plural(len(excluded), 'class', 'classes')} with fewer than {MIN_VIDEOS} videos left out of the "
            f"probe: {shown}."
        )
    kept = [str(n) for n, c in zip(names, counts, strict=True) if c >= MIN_VIDEOS]
    if len(kept) < 2:
        raise ProbeError(
            f"The linear probe needs at least two classes with {MIN_VIDEOS} or more videos each; this index has "
            f"{len(kept)}: add videos, or evaluate zero-shot only."
        )
    position = {name: i for i, name in enumerate(kept)}
    keep_videos = np.isin(video_labels, kept)
    video_ids, video_labels = video_ids[keep_videos], video_labels[keep_videos]
    in_probe = np.isin(sample_videos, video_ids)
    X, sample_labels, hits = X[in_probe], sample_labels[in_probe], hits[in_probe]
    sample_videos = sample_videos[in_probe]
    y = np.array([position[label] for label in sample_labels], np.int64)
    video_y = np.array([position[label] for label in video_labels], np.int64)
    group_of = {v: i for i, v in enumerate(video_ids)}
    groups = np.array([group_of[v] for v in sample_videos], np.int64)

    k = int(min(MAX_FOLDS, np.bincount(video_y).min()))
    outer = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    predicted_hit = np.zeros(len(X), bool)
    predicted = np.zeros(len(X), np.int64)
    test_fold = np.zeros(len(X), np.int64)
    folds = []
    for number, (train_v, test_v) in enumerate(outer.split(video_ids, video_y)):
        train, test = np.isin(groups, train_v), np.isin(groups, test_v)
        model, c, note = _fit(X[train], y[train], groups[train], seed)
        if note and note not in notes:
            notes.append(note)
        proba = np.zeros((int(test.sum()), len(kept)))
        proba[:, model.classes_] = model.predict_proba(X[test])
        ranks = _rank_of_truth(proba, y[test])
        predicted_hit[test] = ranks == 1
        # The argmax, except that a tie with the truth counts against it (as in ranks).
        predicted[test] = np.where(ranks == 1, y[test], _best_other(proba, y[test]))
        test_fold[test] = number
        folds.append(
            ProbeFold(
                fold=number,
                train_videos=tuple(str(v) for v in video_ids[train_v]),
                test_videos=tuple(str(v) for v in video_ids[test_v]),
                c=c,
                top1=float(np.mean(ranks == 1)),
                top5=float(np.mean(ranks <= min(5, len(kept)))),
                balanced_accuracy=float(balanced_accuracy_score(y[test], predicted[test])),
                zero_shot_top1=float(np.mean(hits[test])),
            )
        )
    per_class = [
        ClassProbe(
            name=name,
            videos=int((video_y == i).sum()),
            probe_top1=float(predicted_hit[y == i].mean()),
            zero_shot_top1=float(hits[y == i].mean()),
        )
        for i, name in enumerate(kept)
    ]
    return ProbeResult(
        pooling, folds, per_class, len(X), len(video_ids), excluded, notes,
        videos=[str(v) for v in sample_videos], truth=[str(t) for t in sample_labels],
        predicted=[kept[i] for i in predicted], test_fold=[int(f) for f in test_fold],
    )  # fmt: skip
