"""Text search over the built index."""

from __future__ import annotations

import pytest

from core.errors import QueryError
from core.index import connect, open_index
from core.search import MAX_K, search


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
