"""Text search over the built index."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import replace

import numpy as np
import pytest

from core.analysis.query import normalise_query
from core.analysis.search import SearchHit, check_query, search
from core.ground import QueryError
from core.limits import MAX_K
from core.requests import SearchQuery
from core.store.catalog import open_index
from core.store.index import IndexContents, connect
from tests.stand_ins import MemoryIndex, TextModel, make_contents, unit_vector


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
    for k in (0, -3, MAX_K + 1, 10**9):
        with pytest.raises(QueryError, match=f"^The number of results must be a whole number from 1 to {MAX_K}"):
            search(tiny_model, index, "fire", k=k)
    assert len(search(tiny_model, index, "fire", k=MAX_K)) == 36
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
    # One check, one range (core/limits.py): k is refused outside 1..MAX_K, never silently capped.
    assert [check_query(SearchQuery("fire", k=k))[1] for k in (1, 2, "7", 999, MAX_K)] == [1, 2, 7, 999, MAX_K]  # type: ignore[arg-type]
    for bad, shown in (("seven", "seven"), (None, "None"), ([3], "[3]"), (7.9, "7.9"), (0, "0"), (-3, "-3"),
                       (MAX_K + 1, str(MAX_K + 1)), (10**9, str(10**9))):  # fmt: skip
        message = rf"^The number of results must be a whole number from 1 to {MAX_K}, not {re.escape(shown)}\.$"
        with pytest.raises(QueryError, match=message):
            check_query(SearchQuery("fire", k=bad))  # type: ignore[arg-type]
    for margin, floor in ((-0.01, None), (2.5, None), (0.02, 1.5), (0.02, float("nan"))):
        with pytest.raises(QueryError, match=r"^The (moment margin|minimum similarity) must be a number from"):
            check_query(SearchQuery("fire", margin=margin, min_similarity=floor))
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


# ---- composed queries (run_query) against naive references, model-free --------------------------------


def _lab(dim: int = 8, seed: int = 11) -> tuple[MemoryIndex, IndexContents]:
    """6 videos × 5 frames (0, 10, ..., 40), two labels; records sorted by video then frame, as an index's
    contents are; the first two frames of v2 and the middle three of v4 sit near "a dog" − "grass"."""
    rng = np.random.default_rng(seed)
    target = unit_vector("a dog", dim) - unit_vector("grass", dim)
    target /= np.linalg.norm(target)
    videos, frames, labels, rows = [], [], [], []
    for v in range(6):
        for f in range(5):
            if (v, f) in {(2, 0), (2, 1), (4, 1), (4, 2), (4, 3)}:
                e = target + 0.02 * rng.standard_normal(dim)
            else:  # the bulk: near-orthogonal to the target, so that the planted frames stand out from it
                e = rng.standard_normal(dim)
                e -= (e @ target) * target
                e = e / np.linalg.norm(e) + rng.normal(0, 0.05) * target
            rows.append(e / np.linalg.norm(e))
            videos.append(f"v{v}")
            frames.append(10 * f)
            labels.append("dogs" if v % 2 == 0 else "cats")
    contents = make_contents(np.array(rows), videos, frames, labels, video_frames=50)
    records = [
        (
            contents.ids[i],
            contents.embeddings[i],
            _meta(videos[i], labels[i], frames[i]) | {"timestamp_s": frames[i] / 10},
        )
        for i in range(len(videos))
    ]
    return MemoryIndex(records, contents=contents), contents


class _Contents:
    """`run_query`'s `contents` argument, counting its calls."""

    def __init__(self, contents: IndexContents) -> None:
        self.contents, self.calls = contents, 0

    def __call__(self) -> IndexContents:
        self.calls += 1
        return self.contents


def _naive_vector(terms: list[tuple[np.ndarray, int]]) -> np.ndarray:
    total = sum(sign * v / np.linalg.norm(v) for v, sign in terms)
    return total / np.linalg.norm(total)


def _naive_segments(contents: IndexContents, scores: np.ndarray, margin: float, label: str | None) -> list[tuple]:
    """(video, start_s, end_s, best score, frames) per run of frames within `margin` of the video's best,
    best first (ties by video, then start)."""
    out = []
    for video in dict.fromkeys(contents.video_ids):
        rows = [i for i in range(len(contents)) if contents.video_ids[i] == video
                and (not label or contents.labels[i] == label)]  # fmt: skip
        if not rows:
            continue
        best = max(scores[i] for i in rows)
        run: list[int] = []
        for i in [*rows, None]:
            if i is not None and scores[i] >= best - margin:
                run.append(i)
                continue
            if run:
                out.append((video, contents.timestamp_s[run[0]], contents.timestamp_s[run[-1]],
                            max(scores[j] for j in run), len(run)))  # fmt: skip
            run = []
    return sorted(out, key=lambda m: (-m[3], m[0], m[1]))


def test_run_query_composes_its_parts_and_ranks_like_brute_force() -> None:
    from core.analysis.search import run_query

    index, contents = _lab()
    query = SearchQuery("  a   dog ", subtract=("grass",), like=("v4", 20), k=4)
    stored = _Contents(contents)
    result = run_query(TextModel(8), index, query, stored)
    expected = _naive_vector(
        [(unit_vector("a dog", 8), 1), (unit_vector("grass", 8), -1), (contents.embeddings[22], 1)]
    )
    assert result.vector.dtype == np.float32 and np.allclose(result.vector, expected, atol=1e-6)
    assert result.query == '"a dog" + [frame v4 #20] − "grass"'
    assert stored.calls == 1 and result.scores is None and result.moments is None  # the frame part's lookup only
    ranked = sorted(range(len(contents)), key=lambda i: -float(contents.embeddings[i] @ expected))[:4]
    naive = [(contents.video_ids[i], contents.frame_index[i], float(contents.embeddings[i] @ expected)) for i in ranked]
    assert [(h.video_id, h.frame_index) for h in result.hits] == [(video, frame) for video, frame, _ in naive]
    assert [h.similarity for h in result.hits] == pytest.approx([sim for *_, sim in naive], abs=1e-6)
    assert result.cutoff is not None and result.cutoff.value is None
    # A text-only query never reads the index's contents; one per video and a label reach the index.
    text_only = _Contents(contents)
    hits = run_query(TextModel(8), index, SearchQuery(" a dog", k=3, one_per_video=True, label="cats"), text_only).hits
    assert text_only.calls == 0 and len({h.video_id for h in hits}) == 3 and {h.label for h in hits} == {"cats"}


def test_run_query_cutoffs_and_the_score_distribution() -> None:
    from core.analysis.search import run_query

    index, contents = _lab()
    query = SearchQuery("a dog", subtract=("grass",))
    vector = _naive_vector([(unit_vector("a dog", 8), 1), (unit_vector("grass", 8), -1)])
    scores = contents.embeddings @ vector
    ordered = np.sort(scores)[::-1]
    model = TextModel(8)
    # An absolute floor between the 3rd and 4th best keeps exactly three hits, whatever k is.
    floor = float((ordered[2] + ordered[3]) / 2)
    stored = _Contents(contents)
    result = run_query(model, index, replace(query, k=10, min_similarity=floor, distribution=True), stored)
    assert len(result.hits) == 3 and all(h.similarity >= floor for h in result.hits)
    assert result.cutoff is not None and result.cutoff.value == floor
    assert result.scores is not None and np.allclose(result.scores, scores, atol=1e-6) and stored.calls == 1
    # Adaptive: median + max(3.5, z for 0.05 over N frames) × 1.4826 × MAD, by hand; the five planted frames.
    from statistics import NormalDist

    median = float(np.median(scores))
    cut = median + max(3.5, NormalDist().inv_cdf(1 - 0.05 / len(scores))) * 1.4826 * float(
        np.median(np.abs(scores - median))
    )
    adaptive = run_query(model, index, replace(query, k=30, adaptive=True), _Contents(contents))
    assert adaptive.cutoff is not None and adaptive.cutoff.value == pytest.approx(cut, abs=1e-6)
    assert len(adaptive.hits) == int((scores >= cut).sum()) == 5
    assert {(h.video_id, h.frame_index) for h in adaptive.hits} == {
        ("v2", 0),
        ("v2", 10),
        ("v4", 10),
        ("v4", 20),
        ("v4", 30),
    }
    # Both: the stricter one applies.
    strict = float(ordered[1] - 1e-6)
    both = run_query(model, index, replace(query, k=30, adaptive=True, min_similarity=strict), _Contents(contents))
    assert both.cutoff is not None and both.cutoff.value == strict and len(both.hits) == 2


@pytest.mark.parametrize("label", [None, "dogs", "cats"])
@pytest.mark.parametrize("one_per_video", [False, True])
@pytest.mark.parametrize("margin", [0.0, 0.05, 0.3])
def test_run_query_moments_against_a_naive_segmentation(margin: float, one_per_video: bool, label: str | None) -> None:
    from core.analysis.search import run_query

    index, contents = _lab()
    query = SearchQuery("a dog", subtract=("grass",))
    scores = contents.embeddings @ _naive_vector([(unit_vector("a dog", 8), 1), (unit_vector("grass", 8), -1)])
    options = replace(query, k=4, moments=True, margin=margin, one_per_video=one_per_video, label=label)
    result = run_query(TextModel(8), index, options, _Contents(contents))
    expected = _naive_segments(contents, scores, margin, label)
    if one_per_video:
        expected = [m for i, m in enumerate(expected) if m[0] not in {e[0] for e in expected[:i]}]
    assert result.hits == [] and result.moments is not None and result.query == '"a dog" − "grass"'
    assert np.allclose(result.vector, _naive_vector([(unit_vector("a dog", 8), 1), (unit_vector("grass", 8), -1)]))
    assert result.scores is not None and np.allclose(result.scores, scores, atol=1e-6)
    assert result.cutoff is not None and result.cutoff.value is None  # no floor asked for
    got = [(m.video_id, m.start_s, m.end_s, m.frames) for m in result.moments]
    assert got == [(video, start, end, n) for video, start, end, _, n in expected[:4]]
    assert [m.score for m in result.moments] == pytest.approx([m[3] for m in expected[:4]], abs=1e-6)
    if margin >= 0.05 and label != "cats":  # the two planted runs, whole, are the best two moments
        assert set(got[:2]) == {("v2", 0.0, 1.0, 2), ("v4", 1.0, 3.0, 3)}


def test_run_query_checks_before_any_work() -> None:
    from core.analysis.query import QueryPart
    from core.analysis.search import frame_vector, run_query

    index, contents = _lab()
    never = _Contents(contents)
    model = TextModel(8)
    with pytest.raises(QueryError, match=r"^The moment margin must be a number from 0 to 2, not -0\.01\.$"):
        run_query(model, index, SearchQuery("a dog", margin=-0.01, moments=True), never)
    with pytest.raises(QueryError, match=r"^The number of results must be a whole number from 1 to"):
        run_query(model, index, SearchQuery("a dog", k=0), never)
    with pytest.raises(QueryError, match="Nothing to search for"):
        run_query(model, index, SearchQuery("", subtract=("grass",)), never)
    assert never.calls == 0 and model.batches == []
    parts, k = check_query(SearchQuery(" a  dog ", k=7, margin=0.0))
    assert k == 7 and parts == [QueryPart("text", "a dog")]
    assert np.array_equal(frame_vector(contents, "v3", 30), contents.embeddings[18])
    for video, frame in (("v3", 35), ("v9", 30)):
        with pytest.raises(QueryError, match=f"Frame {frame} of {video} is not in this index"):
            frame_vector(contents, video, frame)


class _ImageTextModel(TextModel):
    """A text model that also embeds images: by their mean colour, so that an image part is traceable."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__(dim)
        self.images: list[tuple[int, ...]] = []

    def encode_rgb(self, images: list[np.ndarray]) -> np.ndarray:  # type: ignore[override]
        colours = [tuple(int(c) for c in rgb.reshape(-1, 3).mean(0).round()) for rgb in images]
        self.images += colours
        return np.stack([unit_vector(f"colour {c}", self.embed_dim) for c in colours])


def test_run_query_with_an_image_part_and_at_the_floor_itself(tmp_path) -> None:
    from PIL import Image

    from core.analysis.search import run_query

    index, contents = _lab()
    image = tmp_path / "red.png"
    Image.new("RGB", (12, 9), (200, 10, 10)).save(image)
    model = _ImageTextModel(8)
    query = SearchQuery("a dog", image=str(image), k=30)
    result = run_query(model, index, query, _Contents(contents))
    assert model.images == [(200, 10, 10)]  # RGB order, as the file holds it
    expected = _naive_vector([(unit_vector("a dog", 8), 1), (unit_vector("colour (200, 10, 10)", 8), 1)])
    assert np.allclose(result.vector, expected, atol=1e-6) and result.query == '"a dog" + [image red.png]'
    # A floor equal to a hit's own similarity keeps that hit, for frames and for moments alike.
    third = result.hits[2].similarity
    at_floor = run_query(model, index, replace(query, min_similarity=third), _Contents(contents))
    assert [h.similarity for h in at_floor.hits] == [h.similarity for h in result.hits[:3]]
    moments = run_query(model, index, replace(query, moments=True), _Contents(contents)).moments
    assert moments is not None
    floor = moments[1].score
    kept = run_query(model, index, replace(query, moments=True, min_similarity=floor), _Contents(contents))
    assert kept.moments == moments[:2]


def test_run_query_on_an_empty_index() -> None:
    from core.analysis.search import run_query

    empty = make_contents(np.zeros((0, 8)), [], [], [])
    index = MemoryIndex([], contents=empty)
    base = SearchQuery("a dog")
    for options in (replace(base, distribution=True), replace(base, moments=True), replace(base, adaptive=True)):
        result = run_query(TextModel(8), index, options, _Contents(empty))
        assert result.hits == [] and result.scores is not None
        assert result.scores.shape == (0,) and result.scores.dtype == np.float32
        assert result.moments == ([] if options.moments else None)
        assert result.cutoff is not None and result.cutoff.value is None
        assert ("not applied: the index holds only 0 frames" in result.cutoff.rule) == options.adaptive
