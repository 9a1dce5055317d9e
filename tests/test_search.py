"""Text search over the built index."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from core.errors import QueryError
from core.index import connect, open_index
from core.search import MAX_K, SearchHit, check_k, normalise_query, search
from tests.stand_ins import MemoryIndex, TextModel, unit_vector


@pytest.fixture(scope="module")
def index(built_index: dict):
    return open_index(connect(built_index["db"]))


def test_search_finds_the_matching_label_first(index, tiny_model) -> None:
    hits = search(tiny_model, index, "a video of a person juggling fire.", k=5)
    assert len(hits) == 5
    assert [h.label for h in hits[:5]] == ["juggling fire"] * 5  # 2 clips × 3 frames of it exist
    assert hits == sorted(hits, key=lambda h: -h.similarity)
    assert all(-1.0 <= h.similarity <= 1.0 for h in hits)
    top = hits[0]
    assert top.frame_path.endswith(".jpg") and top.video_id.startswith("juggling_fire/")
    assert top.timestamp_s == pytest.approx(top.frame_index / 10, abs=1e-3)


def test_one_per_video_and_label_filter(index, tiny_model) -> None:
    hits = search(tiny_model, index, "wading through water", k=4, one_per_video=True)
    assert len({h.video_id for h in hits}) == len(hits) == 4
    only = search(tiny_model, index, "wading through water", k=50, label="carving ice")
    assert {h.label for h in only} == {"carving ice"} and len(only) == 6


def test_bad_queries(index, tiny_model) -> None:
    for empty in ("", "   \n\t"):
        with pytest.raises(QueryError, match="empty"):
            search(tiny_model, index, empty)
    for k in (0, -3):
        with pytest.raises(QueryError, match="at least 1"):
            search(tiny_model, index, "fire", k=k)
    assert len(search(tiny_model, index, "fire", k=10**9)) == 36 <= MAX_K
    long_query = "juggling fire 🔥 النار <script>alert(1)</script> " * 400
    assert search(tiny_model, index, long_query, k=3)


# ---- model-free checks against a brute-force reference (fast: these are what the mutation run uses) ---

QUERY = "someone juggling fire"


def _records(seed: int = 2, dim: int = 16) -> list[tuple[str, np.ndarray, dict]]:
    """12 videos of 3 labels with 1 to 6 frames each, plus one video ("hot") whose 30 frames all sit
    near the query, so that its frames fill the first results; and two records without metadata."""
    rng = np.random.default_rng(seed)
    q = unit_vector(QUERY, dim)
    records = []
    for v in range(12):
        for f in range(int(rng.integers(1, 7))):
            e = rng.standard_normal(dim)
            records.append(
                (f"v{v}:{f}", e / np.linalg.norm(e), _meta(f"v{v}", ("archery", "yoga", "surfing")[v % 3], f))
            )
    for f in range(30):
        e = q + 0.05 * rng.standard_normal(dim)
        records.append((f"hot:{f}", e / np.linalg.norm(e), _meta("hot", "juggling fire", f)))
    for i in range(2):
        e = rng.standard_normal(dim)
        records.append((f"bare{i}", e / np.linalg.norm(e), {}))
    return records


def _meta(video: str, label: str, frame: int) -> dict:
    return {"video_id": video, "label": label, "frame_path": f"/frames/{video}/{frame}.jpg", "timestamp_s": frame / 10,
            "frame_index": frame, "video_path": f"/videos/{video}.mp4", "frames_in_video": 3}  # fmt: skip


def _naive_search(records, k: int, one_per_video: bool, label: str | None) -> list[SearchHit]:
    q = unit_vector(QUERY, 16)
    scored = sorted(
        ((float(np.dot(e, q)), meta) for _, e, meta in records if not label or meta.get("label") == label),
        key=lambda sm: -sm[0],
    )
    hits, videos = [], set()
    for sim, meta in scored:
        video = meta.get("video_id", "")
        if one_per_video and video in videos:
            continue
        videos.add(video)
        hits.append(SearchHit(video_id=video, label=meta.get("label", ""), frame_path=meta.get("frame_path", ""),
                              timestamp_s=meta.get("timestamp_s", 0.0), similarity=sim,
                              frame_index=meta.get("frame_index", 0),
                              video_path=meta.get("video_path", "")))  # fmt: skip
    return hits[:k]


def _same(hits: list[SearchHit], expected: list[SearchHit]) -> None:
    assert [dataclasses.replace(h, similarity=0.0) for h in hits] == [
        dataclasses.replace(h, similarity=0.0) for h in expected
    ]
    assert [h.similarity for h in hits] == pytest.approx([h.similarity for h in expected], abs=1e-6)


@pytest.mark.parametrize("label", [None, "", "yoga", "juggling fire", "no such label"])
@pytest.mark.parametrize("one_per_video", [False, True])
@pytest.mark.parametrize("k", [1, 2, 3, 5, 8, 11, 40, 500])
def test_search_matches_brute_force(k: int, one_per_video: bool, label: str | None) -> None:
    records = _records()
    hits = search(TextModel(), MemoryIndex(records), QUERY, k=k, one_per_video=one_per_video, label=label)
    _same(hits, _naive_search(records, k, one_per_video, label))


def test_one_per_video_widens_until_enough_videos() -> None:
    """The 30 frames of one video come first: finding 4 videos means looking past all of them."""
    records = _records()
    hits = search(TextModel(), MemoryIndex(records), QUERY, k=4, one_per_video=True)
    assert hits[0].video_id == "hot" and len({h.video_id for h in hits}) == 4
    _same(hits, _naive_search(records, 4, True, None))
    assert len(search(TextModel(), MemoryIndex(records), QUERY)) == 5  # five hits unless asked otherwise
    every = search(TextModel(), MemoryIndex(records), QUERY, k=1000, one_per_video=True)
    assert len(every) == 14  # 12 videos, "hot", and the records without a video id (one "video")


def test_the_query_is_cleaned_before_it_is_encoded() -> None:
    model = TextModel()
    search(model, MemoryIndex(_records()), "  juggling \n\t fire  ")
    long_query = "fire " * 5000
    search(model, MemoryIndex(_records()), long_query)
    assert model.batches == [["juggling fire"], [" ".join(long_query.split())[:10_000]]]
    assert len(model.batches[1][0]) == 10_000


def test_query_and_k_are_checked() -> None:
    assert normalise_query("  a \n b\tc ") == "a b c"
    for empty in ("", "   \n\t", None):
        with pytest.raises(QueryError) as error:
            normalise_query(empty)
        assert str(error.value) == "The query is empty: type a few words describing an action, e.g. 'juggling fire'."
    assert [check_k(k) for k in (1, 2, "7", 7.9, 999, 1000, 1001, 10**9)] == [1, 2, 7, 7, 999, 1000, 1000, 1000]
    for bad in ("seven", None, [3]):
        with pytest.raises(
            QueryError, match=rf"^The number of results must be a whole number, not {re.escape(repr(bad))}\.$"
        ):
            check_k(bad)
    for small in (0, -3):
        with pytest.raises(QueryError, match=rf"^The number of results must be at least 1 \(got {small}\)\.$"):
            check_k(small)
    with pytest.raises(QueryError):
        search(TextModel(), MemoryIndex(_records()), "fire", k=0)


def test_a_hit_without_metadata_and_its_json() -> None:
    records = _records()
    bare = search(TextModel(), MemoryIndex([r for r in records if not r[2]]), QUERY, k=5)
    assert [(h.video_id, h.label, h.frame_path, h.timestamp_s, h.frame_index, h.video_path) for h in bare] == [
        ("", "", "", 0.0, 0, "")
    ] * 2
    hit = search(TextModel(), MemoryIndex(records), QUERY, k=1)[0]
    assert hit.to_json() == {"video_id": "hot", "label": "juggling fire", "frame_path": hit.frame_path,
                             "timestamp_s": hit.frame_index / 10, "similarity": hit.similarity,
                             "frame_index": hit.frame_index, "video_path": "/videos/hot.mp4"}  # fmt: skip
    assert isinstance(hit.timestamp_s, float) and isinstance(hit.frame_index, int)
