"""Evaluate an index: score each video against one text embedding per class, then compute metrics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack

import numpy as np

from core.analysis.metrics import MetricsReport, compute_metrics
from core.ground import UserError, kinetics_classes
from core.model.embed import ClipModel
from core.model.prompts import PromptSet, class_text_embeddings, resolve_prompts
from core.requests import CLASS_SETS, POOLINGS  # noqa: F401  (importable from here)
from core.store.index import FrameIndex, IndexContents


@dataclass
class Samples:
    """What is scored: videos (or frames, for ``frame`` pooling) and their similarity to each class."""

    ids: list[str]
    labels: list[str]
    similarity: np.ndarray
    frame_paths: list[str]
    timestamps: list[float]
    video_paths: list[str]


def _video_starts(contents: IndexContents) -> np.ndarray:
    ids = contents.video_ids
    if len(ids) == 0:
        return np.zeros(0, np.int64)
    change = np.ones(len(ids), dtype=bool)
    change[1:] = ids[1:] != ids[:-1]
    return np.flatnonzero(change)


def _middle_frames(contents: IndexContents, starts: np.ndarray) -> np.ndarray:
    """Per video, the row of the frame nearest the centre of the clip (the first such on a tie)."""
    distance = np.abs(contents.frame_index - contents.video_frames / 2.0)
    lengths = np.diff(np.append(starts, len(contents)))
    video = np.repeat(np.arange(len(starts)), lengths)
    nearest = np.flatnonzero(distance == np.minimum.reduceat(distance, starts)[video])
    # `nearest` is in row order, so each video's first entry is its first nearest frame.
    return nearest[np.unique(video[nearest], return_index=True)[1]].astype(np.int64)


def _reduce_videos(ufunc: np.ufunc, rows: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """`ufunc` (add, maximum) over each video's rows, videos being the runs of rows that begin at `starts`.

    Videos with the same number of frames are reduced together, as one (videos × frames × D) block:
    numpy's `reduceat` along the rows of a wide matrix goes one row at a time (benchmarks/README.md).
    """
    lengths = np.diff(np.append(starts, len(rows)))
    out = np.empty((len(starts), rows.shape[1]), rows.dtype)
    for length in np.unique(lengths):
        which = np.flatnonzero(lengths == length)
        if length == 1:
            out[which] = rows[starts[which]]
        else:
            out[which] = ufunc.reduce(rows[starts[which, None] + np.arange(length)], axis=1)
    return out


def _normalised(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def pooled_embeddings(contents: IndexContents, pooling: str = "mean") -> np.ndarray:
    """One embedding per sample, in the order `score_samples` scores them (what a linear probe learns from).

    ``mean``: the re-normalised mean of a video's frames; ``middle``: its middle frame; ``max``: the
    element-wise maximum of its frames, re-normalised (the feature-space counterpart of "the best frame",
    which is a per-class choice and has no single embedding); ``frame``: every frame."""
    if pooling not in POOLINGS:
        raise UserError(f"Unknown pooling {pooling!r}: use one of {', '.join(POOLINGS)}.")
    E = contents.embeddings
    if pooling == "frame":
        return E
    starts = _video_starts(contents)
    if not len(starts):
        return np.zeros((0, E.shape[1] if E.ndim == 2 else 0), np.float32)
    if pooling == "middle":
        return E[_middle_frames(contents, starts)]
    return _normalised(_reduce_videos(np.add if pooling == "mean" else np.maximum, E, starts)).astype(np.float32)


def score_samples(contents: IndexContents, text: np.ndarray, pooling: str = "mean") -> Samples:
    """Similarities (samples × classes) of the index's videos to `text` (classes × D) for a pooling.

    - ``mean``: a video is the re-normalised mean of its frames' embeddings;
    - ``max``: a video scores against a class as its best frame does;
    - ``middle``: the frame nearest the clip's centre alone (what the reference did);
    - ``frame``: every frame is a sample of its own (how much does pooling add?).

    The frames are never re-encoded: a new prompt re-encodes the class texts only, a new pooling is arithmetic.
    """
    if pooling not in POOLINGS:
        raise UserError(f"Unknown pooling {pooling!r}: use one of {', '.join(POOLINGS)}.")
    E = contents.embeddings
    if pooling == "frame":
        rows = np.arange(len(contents))
        S = E @ text.T
    else:
        starts = _video_starts(contents)
        rows = _middle_frames(contents, starts)
        if pooling == "mean":
            S = pooled_embeddings(contents, "mean") @ text.T
        elif pooling == "max":
            S = _reduce_videos(np.maximum, E @ text.T, starts)
        else:
            S = E[rows] @ text.T
    return Samples(
        ids=[str(contents.video_ids[r]) if pooling != "frame" else contents.ids[r] for r in rows],
        labels=[str(contents.labels[r]) for r in rows],
        similarity=np.asarray(S, dtype=np.float32),
        frame_paths=[str(contents.frame_paths[r]) for r in rows],
        timestamps=[float(contents.timestamp_s[r]) for r in rows],
        video_paths=[str(contents.video_paths[r]) for r in rows],
    )


@dataclass
class Evaluation:
    """One evaluation: settings, metrics, and the per-sample scores behind them."""

    report: MetricsReport
    samples: Samples
    prompts: PromptSet
    pooling: str
    label_mode: str
    class_names: list[str]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**self.report.to_json(), "settings": dict(self.settings)}

    def sample_rows(self, top: int = 3) -> list[dict[str, Any]]:
        """The per-video table: true label, best-matching prompts with scores, rank of the truth."""
        rep = self.report
        rows = []
        for i, sample_id in enumerate(self.samples.ids):
            best = [
                (rep.class_names[j], float(s))
                for j, s in zip(rep.top_indices[i, :top], rep.top_scores[i, :top], strict=True)
            ]
            rows.append(
                {
                    "video_id": sample_id,
                    "label": self.samples.labels[i],
                    "predicted": rep.class_names[int(rep.predicted_index[i])],
                    "correct": bool(rep.ranks[i] == 1),
                    "rank": int(rep.ranks[i]),
                    "similarity_true": float(rep.similarities_correct[i]),
                    "top": best,
                    "frame_path": self.samples.frame_paths[i],
                    "timestamp_s": self.samples.timestamps[i],
                    "video_path": self.samples.video_paths[i],
                }
            )
        return rows


# What one evaluation may encode: templates × candidate classes. It admits the CLIP authors' 28 Kinetics
# templates on all 700 classes (plus some labels of the index's own); more would keep a shared server busy
# for minutes.
MAX_PROMPT_TEXTS = 28 * 750


def check_prompt_cost(templates: int, classes: int) -> None:
    """Refuse, before any text is encoded, an evaluation of more than `MAX_PROMPT_TEXTS` prompt texts."""
    if templates * classes > MAX_PROMPT_TEXTS:
        raise UserError(
            f"{templates} templates × {classes} classes make {templates * classes:,} prompts to encode, more than "
            f"the {MAX_PROMPT_TEXTS:,} one evaluation may: use fewer templates, or the classes present."
        )


def class_names_for(classes: str | Sequence[str], present: Sequence[str]) -> tuple[list[str], str]:
    """The candidate classes and how to describe them: the labels present, all 700 Kinetics-700 names
    (plus any present label not among them), or an explicit list (plus the present labels)."""
    if isinstance(classes, str):
        if classes == "present":
            return sorted(present), "present"
        if classes == "all":
            names = list(dict.fromkeys([*kinetics_classes(), *sorted(present)]))
            return names, f"all ({len(names)})"
        raise UserError(f"Unknown class set {classes!r}: use present or all.")
    names = list(dict.fromkeys([*classes, *sorted(present)]))
    return names, f"{len(names)} given"


def evaluate_contents(
    contents: IndexContents,
    model: ClipModel,
    prompts: PromptSet | str | Sequence[str] | None = None,
    pooling: str = "mean",
    classes: str | Sequence[str] = "present",
    label_mode: str = "keep",
    text_embeddings: np.ndarray | None = None,
) -> Evaluation:
    """Metrics of `contents` for one prompt set, pooling, label clean-up and class set."""
    prompt_set = prompts if isinstance(prompts, PromptSet) else resolve_prompts(prompts)
    present = sorted({str(x) for x in contents.labels})
    if not present:
        raise UserError("The index holds no complete video yet: build it first, or wait for the build to progress.")
    names, described = class_names_for(classes, present)
    if text_embeddings is None:
        text_embeddings = class_text_embeddings(model, names, prompt_set, label_mode)
    samples = score_samples(contents, text_embeddings, pooling)
    position = {name: i for i, name in enumerate(names)}
    truth = np.array([position[label] for label in samples.labels], dtype=np.int64)
    report = compute_metrics(samples.similarity, truth, names)
    settings = {
        "model": model.spec.describe(),
        "prompt_set": prompt_set.name,
        "templates": list(prompt_set.templates),
        "pooling": pooling,
        "label_mode": label_mode,
        "classes": described,
    }
    return Evaluation(report, samples, prompt_set, pooling, label_mode, names, settings)


def evaluate_grid(
    contents: IndexContents,
    model: ClipModel,
    prompt_sets: Sequence[PromptSet],
    poolings: Sequence[str] = POOLINGS,
    classes: str | Sequence[str] = "present",
    label_mode: str = "keep",
) -> list[Evaluation]:
    """Every prompt set × pooling on the same frames: each set's texts encoded once, no frame re-encoded."""
    present = sorted({str(x) for x in contents.labels})
    names, _ = class_names_for(classes, present)
    results = []
    for prompt_set in prompt_sets:
        text = class_text_embeddings(model, names, prompt_set, label_mode)
        for pooling in poolings:
            results.append(evaluate_contents(contents, model, prompt_set, pooling, classes, label_mode, text))
    return results


class EvalOptions(TypedDict, total=False):
    """The settings `evaluate_index` passes on to `evaluate_contents` (see it for their defaults)."""

    pooling: str
    classes: str | Sequence[str]
    label_mode: str


def evaluate_index(
    index: FrameIndex, model: ClipModel, prompts: PromptSet | str | Sequence[str] | None = None,
    **options: Unpack[EvalOptions],
) -> Evaluation:  # fmt: skip
    """Read the index's complete videos and evaluate them (see `evaluate_contents`)."""
    evaluation = evaluate_contents(index.contents(), model, prompts, **options)
    evaluation.settings.update({"index": index.name, "frames": index.frames})
    return evaluation
