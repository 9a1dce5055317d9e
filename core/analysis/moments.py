"""Moments: a video's matching frames merged into time segments (MaterialSearch / whichframe style)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.requests import DEFAULT_MARGIN
from core.store.index import IndexContents


@dataclass(frozen=True)
class Moment:
    """A time segment of one video that matches the query."""

    video_id: str
    label: str
    start_s: float
    end_s: float
    score: float  # the best similarity in the segment
    best_frame_index: int
    best_timestamp_s: float
    frames: int  # sampled frames in the segment
    frame_path: str  # the best frame's thumbnail
    video_path: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def video_moments(contents: IndexContents, scores: np.ndarray, rows: np.ndarray, margin: float) -> list[Moment]:
    """The segments of one video; `rows` are its records in `contents`, in frame order.

    Frames within `margin` of the video's best frame match; neighbouring matching frames join into one
    segment, from the first one's timestamp to the last one's, scored as its best frame."""
    video_scores = scores[rows]
    best = float(video_scores.max())
    matching = video_scores >= best - margin
    out: list[Moment] = []
    start = None
    for i in range(len(rows) + 1):
        if i < len(rows) and matching[i]:
            if start is None:
                start = i
            continue
        if start is None:
            continue
        run = rows[start:i]
        top = run[int(np.argmax(scores[run]))]
        out.append(
            Moment(
                video_id=str(contents.video_ids[top]),
                label=str(contents.labels[top]),
                start_s=float(contents.timestamp_s[run[0]]),
                end_s=float(contents.timestamp_s[run[-1]]),
                score=float(scores[top]),
                best_frame_index=int(contents.frame_index[top]),
                best_timestamp_s=float(contents.timestamp_s[top]),
                frames=len(run),
                frame_path=str(contents.frame_paths[top]),
                video_path=str(contents.video_paths[top]),
            )
        )
        start = None
    return out


def find_moments(
    contents: IndexContents,
    scores: np.ndarray,
    margin: float = DEFAULT_MARGIN,
    mask: np.ndarray | None = None,
) -> list[Moment]:
    """Every video's segments (only the records where `mask` is true), ranked by score, best first."""
    if margin < 0:
        raise ValueError("margin must be ≥ 0")
    keep = np.ones(len(contents), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    rows_all = np.flatnonzero(keep)
    if not len(rows_all):
        return []
    # Contents are sorted by (video id, frame index): each video's records are one run of rows.
    videos = contents.video_ids[rows_all]
    boundaries = np.flatnonzero(videos[1:] != videos[:-1]) + 1
    moments: list[Moment] = []
    for rows in np.split(rows_all, boundaries):
        moments.extend(video_moments(contents, scores, rows, margin))
    moments.sort(key=lambda m: (-m.score, m.video_id, m.start_s))
    return moments
