"""Free-text search over indexed frames: a query → its text embedding → nearest frames in Chroma."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from core.embed import ClipModel
from core.errors import QueryError
from core.index import FrameIndex

MAX_K = 1000
MAX_QUERY_CHARS = 10_000  # the tokenizer truncates to the model's context anyway; this bounds the work


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


def normalise_query(text: str | None) -> str:
    query = " ".join((text or "").split())
    if not query:
        raise QueryError("The query is empty: type a few words describing an action, e.g. 'juggling fire'.")
    return query[:MAX_QUERY_CHARS]


def check_k(k: int) -> int:
    try:
        k = int(k)
    except (TypeError, ValueError):
        raise QueryError(f"The number of results must be a whole number, not {k!r}.") from None
    if k < 1:
        raise QueryError(f"The number of results must be at least 1 (got {k}).")
    return min(k, MAX_K)


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
    query = normalise_query(text)
    k = check_k(k)
    vector = model.encode_texts([query])[0]
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
