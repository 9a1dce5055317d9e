"""Where and why zero-shot fails: the confusion matrix, classes that need motion, the worst videos."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from core.analysis.evaluation import Evaluation
from core.analysis.metrics import MetricsReport

# A partner that scores at least as high as the class itself on this share of its samples makes a
# single frame ambiguous between the two.
PARTNER_SHARE = 0.25
# A uniform:K index that gains this much precision@1 over middle on a class says frames over time help.
MOTION_GAIN = 0.25
HEATMAP_CLASSES = 12
WORST_VIDEOS = 12

# Actions that differ by direction in time: a frame from the middle of either can look the same.
OPPOSITES: tuple[tuple[str, str], ...] = (
    ("opening", "closing"),
    ("putting on", "taking off"),
    ("pushing", "pulling"),
    ("picking up", "putting down"),
    ("standing up", "sitting down"),
    ("getting in", "getting out"),
    ("entering", "exiting"),
    ("tying", "untying"),
    ("folding", "unfolding"),
    ("wrapping", "unwrapping"),
    ("buttoning", "unbuttoning"),
    ("zipping", "unzipping"),
    ("loading", "unloading"),
    ("raising", "lowering"),
    ("climbing up", "climbing down"),
    ("inflating", "deflating"),
    ("plugging", "unplugging"),
    ("locking", "unlocking"),
    ("filling", "emptying"),
    ("mounting", "dismounting"),
    ("throwing", "catching"),
)


@dataclass(frozen=True)
class ConfusionCounts:
    """Samples counted at (true class, predicted class); rows and columns in `classes` order."""

    classes: list[str]
    counts: np.ndarray

    def subset(self, names: list[str]) -> ConfusionCounts:
        position = {n: i for i, n in enumerate(self.classes)}
        rows = [position[n] for n in names]
        return ConfusionCounts(list(names), self.counts[np.ix_(rows, rows)])


def confusion_counts(report: MetricsReport) -> ConfusionCounts:
    """The full confusion matrix of an evaluation: every sample counted once, at (true class, top-1
    prediction), so it sums to the number of samples and each row to its class's count."""
    c = len(report.class_names)
    counts = np.zeros((c, c), np.int64)
    np.add.at(counts, (report.true_index, report.predicted_index), 1)
    return ConfusionCounts(list(report.class_names), counts)


def most_confused(matrix: ConfusionCounts, top: int = HEATMAP_CLASSES) -> ConfusionCounts:
    """The classes most involved in confusions (as true or predicted class), with their counts."""
    off = matrix.counts.copy()
    np.fill_diagonal(off, 0)
    involvement = off.sum(axis=0) + off.sum(axis=1)
    order = sorted(np.flatnonzero(involvement), key=lambda i: (-int(involvement[i]), matrix.classes[i]))
    return matrix.subset([matrix.classes[i] for i in order[:top]])


def opposite_pairs(names: list[str]) -> list[tuple[str, str]]:
    """Pairs of class names that differ by an opposite action word (each pair once, in name order)."""
    present = set(names)
    pairs = set()
    for name in names:
        for a, b in OPPOSITES:
            for x, y in ((a, b), (b, a)):
                other = re.sub(rf"\b{re.escape(x)}\b", y, name)
                if other != name and other in present:
                    pairs.add(tuple(sorted((name, other))))
    return sorted(pairs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class MotionFlag:
    """A class a single frame may not tell apart: why, and the evidence."""

    label: str
    reason: str  # "opposite", "confused both ways" or "uniform gain"
    partner: str = ""
    value: float = 0.0  # share of samples where the partner scores ≥ the class, or the precision@1 gain

    def describe(self) -> str:
        if self.reason == "uniform gain":
            return f"{self.label}: more frames help (precision@1 {self.value:+.2f} with uniform frames over middle)"
        return f"{self.label}: {self.partner} ({self.reason}) scores at least as high on {self.value:.0%} of its videos"


def motion_flags(evaluation: Evaluation, uniform_gain: Mapping[str, float] | None = None) -> list[MotionFlag]:
    """Classes flagged as needing motion, by class name: a single frame cannot tell them from a partner,
    an opposite class by name (opening / closing, putting on / taking off...) or a class confused with
    them both ways that scores at least as high as the class itself on a good share of its videos; or an
    index of the same model with ``uniform:K`` frames gains much over ``middle`` on them (`uniform_gain`)."""
    rep = evaluation.report
    names = rep.class_names
    position = {n: i for i, n in enumerate(names)}
    present = [n for n in names if rep.per_class_count.get(n)]
    partners: dict[tuple[str, str], str] = {}
    for a, b in opposite_pairs(present):
        partners[(a, b)] = partners[(b, a)] = "opposite"
    confused = {(t, p) for t, p, _ in rep.confusion}
    for t, p in confused:
        if (p, t) in confused and (t, p) not in partners:
            partners[(t, p)] = "confused both ways"
    S, y = evaluation.samples.similarity, rep.true_index
    flags = []
    for (label, partner), reason in sorted(partners.items()):
        rows = y == position[label]
        if not rows.any():
            continue
        share = float(np.mean(S[rows, position[partner]] >= S[rows, position[label]]))
        if share >= PARTNER_SHARE:
            flags.append(MotionFlag(label, reason, partner, share))
    for label, gain in sorted((uniform_gain or {}).items()):
        if gain >= MOTION_GAIN:
            flags.append(MotionFlag(label, "uniform gain", value=float(gain)))
    return flags


@dataclass(frozen=True)
class VideoMargin:
    """One sample's margin: the true class's similarity minus the best wrong class's."""

    video_id: str
    label: str
    best_wrong: str
    margin: float
    frame_path: str
    timestamp_s: float
    video_path: str


def video_margins(evaluation: Evaluation) -> list[VideoMargin]:
    """Every sample's margin (the true class's similarity minus the best wrong class's), worst (most
    negative: a failure, or a mislabelled video) first."""
    rep, samples = evaluation.report, evaluation.samples
    if rep.best_incorrect.size == 0:  # a single class: nothing to be wrong about
        return []
    masked = np.array(samples.similarity, dtype=np.float64)
    masked[np.arange(len(masked)), rep.true_index] = -np.inf
    rival = masked.argmax(axis=1)
    margins = rep.similarities_correct - rep.best_incorrect
    order = np.lexsort((np.array(samples.ids), margins))
    return [
        VideoMargin(samples.ids[i], samples.labels[i], rep.class_names[int(rival[i])], float(margins[i]),
                    samples.frame_paths[i], samples.timestamps[i], samples.video_paths[i])
        for i in order
    ]  # fmt: skip


@dataclass
class FailureAnalysis:
    """The three views of one evaluation's failures."""

    confusion: ConfusionCounts
    heatmap: ConfusionCounts
    motion: list[MotionFlag]
    worst: list[VideoMargin]
    notes: list[str] = field(default_factory=list)

    def pairs(self) -> list[tuple[str, str, int]]:
        """(true, predicted, count) of the off-diagonal cells of the heatmap, most frequent first."""
        m = self.heatmap
        cells = [
            (m.classes[i], m.classes[j], int(m.counts[i, j]))
            for i in range(len(m.classes))
            for j in range(len(m.classes))
            if i != j and m.counts[i, j] > 0
        ]
        return sorted(cells, key=lambda c: (-c[2], c[0], c[1]))


def confused_samples(evaluation: Evaluation, true: str, predicted: str) -> list[dict]:
    """The per-sample rows (Evaluation.sample_rows) of class `true` predicted as `predicted`."""
    return [r for r in evaluation.sample_rows(top=3) if r["label"] == true and r["predicted"] == predicted]


def analyse_failures(
    evaluation: Evaluation,
    uniform_gain: Mapping[str, float] | None = None,
    top: int = HEATMAP_CLASSES,
    worst: int = WORST_VIDEOS,
    notes: list[str] | None = None,
) -> FailureAnalysis:
    matrix = confusion_counts(evaluation.report)
    return FailureAnalysis(
        confusion=matrix,
        heatmap=most_confused(matrix, top),
        motion=motion_flags(evaluation, uniform_gain),
        worst=video_margins(evaluation)[:worst],
        notes=list(notes or []),
    )
