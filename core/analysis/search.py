"""Search over indexed frames: a query → its embedding → nearest frames in Chroma, or moments.

`check_query` is the one check of a `SearchQuery` (its terms, and its numbers against core/limits.py),
cheap enough to run before a model loads. `run_query` answers a query: its terms (texts, images and
frames added or subtracted: `core.analysis.query`) composed into one vector, an optional cut-off
(`core.analysis.cutoff`) and, when asked, the matches merged into time segments
(`core.analysis.moments`). The cut-off and the moments need the query's similarity to every frame: they
read the index's contents (cached by the caller) and score them exactly, instead of Chroma's approximate
nearest neighbours. `search` is the plain text search that the load test runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core.analysis.cutoff import Cutoff, combined_cutoff
from core.analysis.moments import Moment, find_moments
from core.analysis.query import (
    QueryPart,
    check_parts,
    compose_vector,
    describe,
    embed_parts,
    long_text_notice,
    query_parts,
    read_query_image,
)
from core.ground import QueryError, UserError
from core.limits import check_setting
from core.model.embed import ClipModel
from core.requests import SearchQuery
from core.store.index import FrameIndex, IndexContents


@dataclass(frozen=True)
class SearchHit:
    """One matching frame."""

    video_id: str
    label: str
    frame_path: str
    timestamp_s: float
    similarity: float
    frame_index: int
    video_path: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _hit(similarity: float, meta: dict[str, Any]) -> SearchHit:
    return SearchHit(
        video_id=str(meta.get("video_id", "")),
        label=str(meta.get("label", "")),
        frame_path=str(meta.get("frame_path", "")),
        timestamp_s=float(meta.get("timestamp_s", 0.0)),
        similarity=similarity,
        frame_index=int(meta.get("frame_index", 0)),
        video_path=str(meta.get("video_path", "")),
    )


def search(
    model: ClipModel,
    index: FrameIndex,
    text: str,
    k: int = 5,
    one_per_video: bool = False,
    label: str | None = None,
) -> list[SearchHit]:
    """The `k` frames most similar to `text` (cosine, highest first); optionally one per video or one label."""
    parts, k = check_query(SearchQuery(text, k=k))
    return nearest(index, model.encode_texts([parts[0].value])[0], k, one_per_video, label)


def nearest(
    index: FrameIndex, vector: np.ndarray, k: int, one_per_video: bool = False, label: str | None = None
) -> list[SearchHit]:
    """The `k` frames nearest to `vector` in Chroma, best first; optionally one per video or one label."""
    where = {"label": label} if label else None
    if not one_per_video:
        return [_hit(sim, meta) for _, sim, meta in index.query(vector, k, where=where)]
    # One hit per video: over-fetch, keep each video's best frame, widen until k videos or the end.
    total = index.count()
    fetch = k * 4
    while True:
        results = index.query(vector, min(fetch, total), where=where)
        best: dict[str, SearchHit] = {}
        for _, sim, meta in results:
            vid = str(meta.get("video_id", ""))
            if vid not in best:
                best[vid] = _hit(sim, meta)
        if len(best) >= k or len(results) < min(fetch, total) or fetch >= total:
            return list(best.values())[:k]
        fetch *= 4


@dataclass
class SearchResult:
    """The answer to a composed query: hits (or moments), the cut-off applied and, when computed, the
    query's similarity to every frame of the index (the app's histogram)."""

    query: str  # the composed query, e.g. '"a dog" − "grass"'
    hits: list[SearchHit]
    vector: np.ndarray  # the composed query vector (unit length)
    moments: list[Moment] | None = None
    cutoff: Cutoff | None = None
    scores: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)  # sentences to show once beside the results


def frame_vector(contents: IndexContents, video_id: str, frame_index: int) -> np.ndarray:
    """The stored embedding of one indexed frame ("more like this")."""
    rows = np.flatnonzero((contents.video_ids == video_id) & (contents.frame_index == int(frame_index)))
    if not len(rows):
        raise QueryError(f"Frame {frame_index} of {video_id} is not in this index (rebuilt since?): search again.")
    return contents.embeddings[rows[0]]


def check_query(query: SearchQuery, read_image: bool = True) -> tuple[list[QueryPart], int]:
    """The query's parts (texts normalised) and k, or the sentence saying why it cannot be answered
    (nothing to look for, k, the margin or the floor out of range, an unreadable image). Cheap: the front
    doors and `Explorer.search` run it before a model or index is loaded. `read_image` False leaves the
    image to the encoder, which reads it anyway and raises the same sentence."""
    k = int(_in_range("k", query.k, "The number of results"))
    _in_range("margin", query.margin, "The moment margin")
    if query.min_similarity is not None:
        _in_range("min_similarity", query.min_similarity, "The minimum similarity")
    parts = check_parts(query_parts(query))
    if query.image and read_image:
        read_query_image(query.image)
    return parts, k


def _in_range(setting: str, value: object, label: str) -> int | float | str:
    """`value` checked against the range of `setting` (core/limits.py); outside it, a query's error."""
    try:
        return check_setting(setting, value, label)
    except UserError as exc:
        raise QueryError(str(exc)) from None


def run_query(
    model: ClipModel,
    index: FrameIndex,
    query: SearchQuery,
    contents: Callable[[], IndexContents],
) -> SearchResult:
    """Answer a query; `contents` gives the index's records with embeddings (called once at most)."""
    parts, k = check_query(query, read_image=False)  # the callers checked the image; encoding reads it
    records: list[IndexContents] = []

    def stored() -> IndexContents:
        if not records:
            records.append(contents())
        return records[0]

    vectors = embed_parts(parts, model.encode_texts, model.encode_rgb, lambda vid, i: frame_vector(stored(), vid, i))
    texts = [p.value for p in parts if p.kind == "text"]
    cut = model.context_cut(texts) if texts else None
    notes = [long_text_notice(cut)] if cut else []
    vector = compose_vector(list(vectors), [p.sign for p in parts])
    scores = None
    if query.adaptive or query.moments or query.distribution:
        scores = stored().embeddings @ vector
    cutoff = combined_cutoff(scores, query.min_similarity, query.adaptive)
    floor = -np.inf if cutoff.value is None else cutoff.value
    if query.moments:
        assert scores is not None
        mask = stored().labels == query.label if query.label else None
        moments = [m for m in find_moments(stored(), scores, query.margin, mask) if m.score >= floor]
        if query.one_per_video:  # each video's best segment (they are ranked, so its first)
            best: dict[str, Moment] = {}
            for moment in moments:
                best.setdefault(moment.video_id, moment)
            moments = list(best.values())
        return SearchResult(describe(parts), [], vector, moments[:k], cutoff, scores, notes)
    hits = [h for h in nearest(index, vector, k, query.one_per_video, query.label) if h.similarity >= floor]
    return SearchResult(describe(parts), hits, vector, None, cutoff, scores, notes)
