"""Search beyond one text (issue 16): image queries, query arithmetic, "more like this", cut-offs,
moments, and the interactive prompt — on real indexes built with the tiny colour model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from core.analysis.moments import find_moments
from core.analysis.query import QueryPart, compose_vector, describe
from core.analysis.reports import safe_report_name
from core.app import Explorer
from core.ground import UserError
from core.requests import IndexRef, SearchQuery
from tests.helpers import ROOT, build_into, run_cli
from tests.tiny_model import COLOURS

QUERY_TEXT = "a video of a person juggling fire."


@pytest.fixture(scope="module")
def explorer(built_index: dict, tmp_path_factory: pytest.TempPathFactory) -> Explorer:
    return Explorer(output=str(tmp_path_factory.mktemp("search-out")), device="cpu")


@pytest.fixture(scope="module")
def ref(built_index: dict) -> IndexRef:
    return IndexRef(db=str(built_index["db"]))


def _solid_image(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (80, 60)) -> Path:
    rng = np.random.default_rng(5)
    pixels = np.clip(np.array(rgb)[None, None, :] + rng.normal(0, 4, (size[1], size[0], 3)), 0, 255)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def test_an_image_of_a_class_ranks_that_class_first(explorer, ref, tmp_path: Path) -> None:
    for label in ("wading through water", "wood burning (art)"):  # blue, and yellow (a BGR swap makes it cyan)
        image = _solid_image(tmp_path / f"{label[:4]}.png", COLOURS[label])
        result = explorer.search(ref, SearchQuery(text="", image=str(image), k=6))
        assert [h.label for h in result.hits] == [label] * 6, label
        assert result.query == f"[image {image.name}]"


def test_an_indexed_frame_as_the_image_finds_itself_first(explorer, ref) -> None:
    contents = explorer.contents(ref)
    i = 7
    thumbnail = contents.frame_paths[i]
    by_image = explorer.search(ref, SearchQuery(text="", image=thumbnail, k=3))
    assert by_image.hits[0].label == contents.labels[i]
    like = explorer.search(ref, SearchQuery(text="", like=(contents.video_ids[i], int(contents.frame_index[i])), k=3))
    top = like.hits[0]
    assert (top.video_id, top.frame_index) == (contents.video_ids[i], contents.frame_index[i])
    assert top.similarity == pytest.approx(1.0, abs=1e-4)  # its own stored vector, nothing re-encoded


def test_arithmetic_is_the_normalised_sum_of_normalised_parts(explorer, ref, tiny_model) -> None:
    query = SearchQuery(text="juggling fire", add=("carving ice",), subtract=("golf chipping", "bathing dog"), k=36)
    result = explorer.search(ref, query)
    a, b, c, d = tiny_model.encode_texts(["juggling fire", "carving ice", "golf chipping", "bathing dog"])
    unit = [v / np.linalg.norm(v) for v in (a, b, c, d)]
    reference = unit[0] + unit[1] - unit[2] - unit[3]
    reference /= np.linalg.norm(reference)
    assert np.abs(result.vector - reference).max() <= 1e-6
    assert result.query == '"juggling fire" + "carving ice" − "golf chipping" − "bathing dog"'
    # Hits are ranked by the composed vector: the naive reference over every stored frame agrees.
    contents = explorer.contents(ref)
    naive = contents.embeddings @ reference
    by_id = {(v, int(f)): s for v, f, s in zip(contents.video_ids, contents.frame_index, naive, strict=True)}
    for hit in result.hits:
        assert hit.similarity == pytest.approx(by_id[(hit.video_id, hit.frame_index)], abs=1e-4)
    assert [h.similarity for h in result.hits] == sorted((h.similarity for h in result.hits), reverse=True)
    assert sorted(naive, reverse=True)[:5] == pytest.approx([h.similarity for h in result.hits[:5]], abs=1e-4)


def test_subtracting_a_class_moves_it_to_the_bottom(explorer, ref) -> None:
    plain = explorer.search(ref, SearchQuery(text="juggling fire", k=36)).hits
    minus = explorer.search(ref, SearchQuery(text="juggling fire", subtract=("wood burning (art)",), k=36)).hits

    def mean_rank(hits: list, label: str) -> float:
        return float(np.mean([i for i, h in enumerate(hits) if h.label == label]))

    assert plain[0].label == "juggling fire"
    assert mean_rank(minus, "wood burning (art)") >= mean_rank(plain, "wood burning (art)") + 6  # a class lower


def test_compose_vector_refuses_cancelled_and_empty_queries() -> None:
    v = np.array([0.6, 0.8, 0.0], np.float32)
    with pytest.raises(UserError, match="cancel out"):
        compose_vector([v, 2 * v], [1, -1])
    assert describe([QueryPart("text", "a dog"), QueryPart("text", "grass", -1)]) == '"a dog" − "grass"'
    with pytest.raises(UserError, match="Nothing to search for"):
        Explorer(output="unused").search(IndexRef(db="unused"), SearchQuery(text="", subtract=("grass",)))
    with pytest.raises(UserError, match="query is empty"):
        Explorer(output="unused").search(IndexRef(db="unused"), SearchQuery(text="  "))


def test_a_bad_image_is_one_sentence(explorer, ref, tmp_path: Path) -> None:
    fake = tmp_path / "notes.png"
    fake.write_text("not an image")
    with pytest.raises(UserError, match=r"notes\.png is not an image file that can be read"):
        explorer.search(ref, SearchQuery(text="", image=str(fake)))
    with pytest.raises(UserError, match="Cannot read the query image"):
        explorer.search(ref, SearchQuery(text="", image=str(tmp_path / "missing.jpg")))
    result = run_cli("search", "--image", str(fake), "--db", str(ref.db))
    assert result.returncode == 2 and result.stderr.startswith("error: The query image notes.png")
    assert result.stderr.count("\n") == 1


# ---- cut-offs (the rule itself: tests/test_cutoff.py) -----------------------------------------------


def test_min_similarity_and_adaptive_on_the_index(explorer, ref) -> None:
    every = explorer.search(ref, SearchQuery(text=QUERY_TEXT, k=36, distribution=True))
    assert every.scores is not None and every.scores.size == 36
    floor = float(np.median(every.scores))
    floored = explorer.search(ref, SearchQuery(text=QUERY_TEXT, k=36, min_similarity=floor)).hits
    assert floored and all(h.similarity >= floor for h in floored)
    assert len(floored) == int((every.scores >= floor).sum())
    assert explorer.search(ref, SearchQuery(text=QUERY_TEXT, k=36, min_similarity=1.0)).hits == []
    # The app layer checks the floor with the command line's range: beyond a cosine's reach is one sentence.
    with pytest.raises(UserError, match=r"^The minimum similarity must be a number from -1 to 1, not 1\.01\.$"):
        explorer.search(ref, SearchQuery(text=QUERY_TEXT, k=36, min_similarity=1.01))
    # Six classes of equal size are not "a few matches in a bulk": nothing stands out, nothing is kept.
    adaptive = explorer.search(ref, SearchQuery(text=QUERY_TEXT, k=36, adaptive=True))
    assert adaptive.cutoff is not None and adaptive.cutoff.value is not None and adaptive.hits == []


# ---- moments -----------------------------------------------------------------------------------------


def _thirds_clip(path: Path, outer: tuple[int, int, int], middle: tuple[int, int, int], seconds: int = 9) -> Path:
    """`seconds` s at 10 fps: the first and last thirds in `outer`'s colour, the middle third in `middle`'s."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    rng = np.random.default_rng(1)
    n = seconds * 10
    for i in range(n):
        rgb = middle if n // 3 <= i < 2 * n // 3 else outer
        frame = np.clip(np.array(rgb[::-1])[None, None, :] + rng.normal(0, 4, (48, 64, 3)), 0, 255)
        writer.write(frame.astype(np.uint8))
    writer.release()
    return path


@pytest.mark.parametrize(
    ("frames", "times"),
    [("uniform:9", (0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5)), ("fps:1", (0, 1, 2, 3, 4, 5, 6, 7, 8))],
)
def test_moments_cover_the_middle_third(tmp_path: Path, tiny_model, frames: str, times: tuple) -> None:
    videos = tmp_path / "videos"
    _thirds_clip(videos / "juggling_fire" / "thirds.mp4", COLOURS["golf chipping"], COLOURS["juggling fire"])
    _thirds_clip(videos / "golf_chipping" / "plain.mp4", COLOURS["golf chipping"], COLOURS["golf chipping"])
    build_into(videos, tmp_path / "db", tmp_path / "out", model=tiny_model, frames=frames, batch_size=8)
    inside = [t for t in times if 3.0 <= t < 6.0]  # the sampled frames of the middle third
    explorer = Explorer(output=str(tmp_path / "out"), device="cpu")
    result = explorer.search(IndexRef(db=str(tmp_path / "db")), SearchQuery(text=QUERY_TEXT, k=5, moments=True))
    assert result.moments is not None and result.hits == []
    best = result.moments[0]
    # One frame a second (one step = 1 s); the middle third is [3 s, 6 s).
    assert best.video_id == "juggling_fire/thirds" and best.label == "juggling fire"
    assert abs(best.start_s - 3.0) <= 1.0 and abs(best.end_s - 6.0) <= 1.0
    assert (best.start_s, best.end_s, best.frames) == (inside[0], inside[-1], 3)
    assert best.start_s <= best.best_timestamp_s <= best.end_s
    assert [m.video_id for m in result.moments].count("juggling_fire/thirds") == 1  # one segment
    assert set(best.to_json()) >= {"video_id", "label", "start_s", "end_s", "score", "best_frame_index",
                                   "best_timestamp_s", "frames"}  # fmt: skip
    assert result.moments == sorted(result.moments, key=lambda m: -m.score)
    # Three matching frames in a bulk of fifteen others: the adaptive cut-off keeps exactly those.
    ref = IndexRef(db=str(tmp_path / "db"))
    adaptive = explorer.search(ref, SearchQuery(text=QUERY_TEXT, k=10, adaptive=True))
    kept = sorted(adaptive.hits, key=lambda h: h.timestamp_s)
    assert [(h.video_id, h.timestamp_s) for h in kept] == [("juggling_fire/thirds", t) for t in inside]
    only_moment = explorer.search(ref, SearchQuery(text=QUERY_TEXT, k=10, adaptive=True, moments=True)).moments
    assert only_moment is not None and [(m.start_s, m.end_s) for m in only_moment] == [(inside[0], inside[-1])]


def test_find_moments_against_a_naive_segmentation(built_index: dict, explorer, ref) -> None:
    contents = explorer.contents(ref)
    rng = np.random.default_rng(3)
    scores = rng.uniform(0, 1, len(contents))
    moments = find_moments(contents, scores, margin=0.3)
    naive = []
    for vid in sorted(set(contents.video_ids)):
        rows = [i for i in range(len(contents)) if contents.video_ids[i] == vid]
        best = max(scores[i] for i in rows)
        run: list[int] = []
        for i in [*rows, None]:
            if i is not None and scores[i] >= best - 0.3:
                run.append(i)
            elif run:
                naive.append((vid, contents.timestamp_s[run[0]], contents.timestamp_s[run[-1]],
                               max(scores[j] for j in run), len(run)))  # fmt: skip
                run = []
    assert sorted((m.video_id, m.start_s, m.end_s, m.score, m.frames) for m in moments) == sorted(naive)
    assert [m.score for m in moments] == sorted((m.score for m in moments), reverse=True)
    assert len(find_moments(contents, scores, margin=0.0)) == len(set(contents.video_ids))  # the best frames


# ---- the command line ----------------------------------------------------------------------------------


def test_cli_header_states_the_composed_query_and_json_is_unchanged(built_index: dict) -> None:
    result = run_cli("search", "juggling fire", "--subtract", "golf chipping", "--db", str(built_index["db"]),
                     "--k", "3", "--json", "-")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert 'Query:   "juggling fire" − "golf chipping"' in result.stderr
    hits = json.loads(result.stdout)
    assert len(hits) == 3 and all(set(h) == {"video_id", "label", "frame_path", "timestamp_s", "similarity",
                                             "frame_index", "video_path"} for h in hits)  # fmt: skip
    moments = run_cli("search", "juggling fire", "--moments", "--db", str(built_index["db"]), "--k", "2",
                      "--adaptive", "--json", "-")  # fmt: skip
    assert moments.returncode == 0, moments.stderr
    assert "Cut-off: adaptive" in moments.stderr
    assert all(m["label"] == "juggling fire" and m["start_s"] <= m["end_s"] for m in json.loads(moments.stdout))


def test_interactive_prompt_through_piped_stdin(built_index: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    lines = ["juggling fire", ":k 2", "carving ice", "", ":html off", "golf chipping", ":k zero", "quitter",
             "never read"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "core", "search", "--interactive", "--db", str(built_index["db"]), "--output", str(out)],
        input="\n".join(lines) + "\n", capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answers = result.stdout.split("Query:   ")[1:]
    assert len(answers) == 3
    assert sum(line[:4].strip().endswith(".") for line in answers[0].splitlines()[1:]) == 5  # default k 5
    assert sum(line[:4].strip().endswith(".") for line in answers[1].splitlines()[1:]) == 2  # after :k 2
    assert "juggling fire" in answers[0].splitlines()[1] and "carving ice" in answers[1].splitlines()[1]
    written = sorted(p.name for p in out.glob("search_results_*.html"))
    assert written == sorted(safe_report_name("search_results", q) for q in ("juggling fire", "carving ice"))
    assert "error: ':k' takes a whole number" in result.stdout
    assert "never read" not in result.stdout


def test_interactive_prompt_leaves_at_end_of_input(built_index: dict) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "core", "search", "--interactive", "--db", str(built_index["db"])],
        input="", capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0 and "Query:" not in result.stdout


def test_text_queries_and_metrics_need_no_image_tower(built_index: dict, ref: IndexRef, tmp_path: Path) -> None:
    """An Explorer loads what is asked of it: text search, "more like this" (stored vectors) and an evaluation
    leave the image tower unloaded; the first image query loads it."""
    from core.requests import EvalSettings

    explorer = Explorer(output=str(tmp_path), device="cpu")  # a process of its own: nothing loaded yet
    assert explorer.search(ref, SearchQuery(text=QUERY_TEXT, k=3)).hits[0].label == "juggling fire"
    contents = explorer.contents(ref)
    explorer.search(ref, SearchQuery(text="", like=(contents.video_ids[0], int(contents.frame_index[0])), k=3))
    explorer.evaluate(ref, EvalSettings())
    model = explorer.model(explorer.open(ref).spec)
    assert not model.has_image_tower
    image = _solid_image(tmp_path / "red.png", COLOURS["juggling fire"])
    assert explorer.search(ref, SearchQuery(text="", image=str(image), k=3)).hits[0].label == "juggling fire"
    assert model.has_image_tower


def test_a_build_loads_the_image_tower_before_it_indexes(video_root: Path, tiny_spec, tmp_path: Path) -> None:
    import threading

    from core.requests import BuildRequest

    explorer = Explorer(output=str(tmp_path / "out"), device="cpu")
    request = BuildRequest(videos=str(video_root), db=str(tmp_path / "db"), output=str(tmp_path / "out"),
                           spec=tiny_spec, device="cpu", workers=1)  # fmt: skip
    seen: list[bool] = []

    def on_stage(stage: str) -> None:
        if stage == "indexing":
            seen.append(explorer.model(tiny_spec, "cpu").has_image_tower)

    cancelled = threading.Event()
    cancelled.set()  # the model is what this test is about, not the frames
    explorer.build(request, cancel=cancelled, on_stage=on_stage)
    assert seen == [True]
