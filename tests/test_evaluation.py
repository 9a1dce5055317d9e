"""Evaluation of a built index: the trained tiny model must get every clip right, through the whole pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import UserError
from core.evaluation import POOLINGS, evaluate_index, score_samples
from core.index import IndexContents, connect, open_index


def test_pipeline_keeps_colours_and_scores_perfectly(built_index: dict, tiny_model) -> None:
    """Fails if frames reach the model as BGR: red clips would match the blue label and vice versa."""
    index = open_index(connect(built_index["db"]))
    result = evaluate_index(index, tiny_model)
    rep = result.report
    assert rep.n_videos == 12 and rep.n_classes == 6
    assert rep.precision_at_1 == 1.0 and rep.mrr == 1.0
    assert rep.mean_similarity_correct > rep.mean_similarity_incorrect + 0.3
    assert set(rep.per_class.values()) == {1.0}
    rows = result.sample_rows()
    assert len(rows) == 12 and all(r["correct"] and r["predicted"] == r["label"] for r in rows)
    assert all(len(r["top"]) == 3 for r in rows)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_every_pooling_runs_on_the_same_index(built_index: dict, tiny_model, pooling: str) -> None:
    index = open_index(connect(built_index["db"]))
    rep = evaluate_index(index, tiny_model, pooling=pooling).report
    assert rep.n_videos == (36 if pooling == "frame" else 12)
    assert rep.precision_at_1 >= 0.9


def test_prompt_changes_only_the_text_side(built_index: dict, tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:
    index = open_index(connect(built_index["db"]))
    english = evaluate_index(index, tiny_model, prompts="english").report
    monkeypatch.setattr(tiny_model, "encode_images", lambda *a, **k: pytest.fail("frames were re-encoded"))
    french = evaluate_index(index, tiny_model, prompts="reference-fr").report
    assert french.mean_similarity_correct != english.mean_similarity_correct
    with pytest.raises(UserError, match="placeholder"):
        evaluate_index(index, tiny_model, prompts="no placeholder here")


def _contents(embeddings: np.ndarray, videos: list[str], frames: list[int], labels: list[str]) -> IndexContents:
    n = len(videos)
    return IndexContents(
        ids=[f"{v}:{f}" for v, f in zip(videos, frames, strict=True)],
        embeddings=embeddings.astype(np.float32),
        video_ids=np.array(videos, dtype=object),
        labels=np.array(labels, dtype=object),
        frame_index=np.array(frames),
        timestamp_s=np.array(frames, dtype=float),
        frame_paths=np.array([""] * n, dtype=object),
        video_paths=np.array([""] * n, dtype=object),
        frames_in_video=np.array([3] * n),
        video_frames=np.array([30] * n),
    )


def test_pooling_arithmetic_on_known_vectors() -> None:
    """Two classes on the axes; video v has frames that disagree, so each pooling decides differently."""
    text = np.eye(2, dtype=np.float32)
    e = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])  # frames 5, 15, 25 of one video
    contents = _contents(e, ["v", "v", "v"], [5, 15, 25], ["a", "a", "a"])
    mean = score_samples(contents, text, "mean").similarity[0]
    expected = e.sum(0) / np.linalg.norm(e.sum(0))
    assert mean == pytest.approx(expected, abs=1e-6)
    assert score_samples(contents, text, "max").similarity[0] == pytest.approx([1.0, 1.0])
    middle = score_samples(contents, text, "middle")  # frame 15 is nearest the centre (15 of 30)
    assert middle.similarity[0] == pytest.approx([0.0, 1.0]) and middle.timestamps == [15.0]
    frames = score_samples(contents, text, "frame")
    assert frames.similarity.shape == (3, 2) and frames.ids == ["v:5", "v:15", "v:25"]
