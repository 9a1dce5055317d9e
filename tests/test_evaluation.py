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


def _naive_video_scores(E, videos, frames, text, pooling):
    """Pooling the slow, obvious way."""
    order = sorted(dict.fromkeys(videos))
    out = []
    if pooling == "frame":
        return [[float(np.dot(e, t)) for t in text] for e in E]
    for v in order:
        rows = [i for i, x in enumerate(videos) if x == v]
        if pooling == "mean":
            m = sum(E[i] for i in rows)
            m = m / np.linalg.norm(m)
            out.append([float(np.dot(m, t)) for t in text])
        elif pooling == "max":
            out.append([max(float(np.dot(E[i], t)) for i in rows) for t in text])
        else:  # middle: nearest to the clip's centre (frame 15 of 30 here)
            best = min(rows, key=lambda i: abs(frames[i] - 15))
            out.append([float(np.dot(E[best], t)) for t in text])
    return out


def _naive_precision(S, truth, k):
    hits = 0
    for row, y in zip(S, truth, strict=True):
        better_or_equal = sum(1 for j, s in enumerate(row) if s >= row[y])
        hits += better_or_equal <= k
    return hits / len(S)


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("templates", [1, 3])
def test_pooling_and_ensembles_match_a_naive_reference(pooling: str, templates: int) -> None:
    from core.metrics import compute_metrics
    from core.prompts import combine_templates

    rng = np.random.default_rng(7 + templates)
    n_classes, dim = 5, 16
    videos, frames, labels = [], [], []
    for v in range(20):
        for f in sorted(rng.choice(np.arange(30), size=int(rng.integers(1, 5)), replace=False)):
            videos.append(f"v{v:02d}")
            frames.append(int(f))
            labels.append(f"c{v % n_classes}")
    E = rng.standard_normal((len(videos), dim))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    per_template = rng.standard_normal((n_classes, templates, dim))
    per_template /= np.linalg.norm(per_template, axis=2, keepdims=True)
    text = combine_templates(per_template)
    naive_text = [sum(per_template[c]) / np.linalg.norm(sum(per_template[c])) for c in range(n_classes)]
    assert np.allclose(text, naive_text, atol=1e-6)

    contents = _contents(E, videos, frames, labels)
    samples = score_samples(contents, text, pooling)
    names = [f"c{i}" for i in range(n_classes)]
    truth = [names.index(label) for label in samples.labels]
    report = compute_metrics(samples.similarity, np.array(truth), names)
    S_naive = _naive_video_scores(E, videos, frames, naive_text, pooling)
    assert np.allclose(samples.similarity, S_naive, atol=1e-5)
    for k in (1, 3, 5):
        assert getattr(report, f"precision_at_{k}") == pytest.approx(_naive_precision(S_naive, truth, k))


def test_grid_reuses_embeddings(built_index: dict, tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.evaluation import evaluate_grid
    from core.prompts import PROMPT_SETS

    contents = open_index(connect(built_index["db"])).contents()
    calls = []
    real = tiny_model.encode_texts
    monkeypatch.setattr(tiny_model, "encode_images", lambda *a, **k: pytest.fail("frames were re-encoded"))
    monkeypatch.setattr(tiny_model, "encode_texts", lambda texts: calls.append(len(texts)) or real(texts))
    results = evaluate_grid(contents, tiny_model, list(PROMPT_SETS.values()), POOLINGS)
    assert len(results) == 12 and len(calls) == 3  # one text encoding per prompt set, none per pooling
    assert calls == [6, 6, 6 * 28]
    assert {(r.prompts.name, r.pooling) for r in results} == {(p, q) for p in PROMPT_SETS for q in POOLINGS}


def test_700_way_and_label_clean_up(built_index: dict, tiny_model) -> None:
    index = open_index(connect(built_index["db"]))
    wide = evaluate_index(index, tiny_model, classes="all")
    assert wide.report.n_classes == 700 and wide.settings["classes"] == "all (700)"
    assert wide.report.n_videos == 12 and "juggling fire" in wide.report.per_class
    stripped = evaluate_index(index, tiny_model, label_mode="strip")
    assert stripped.settings["label_mode"] == "strip"
    # "wood burning (art)" is scored as "wood burning", everything else as it is.
    keep = evaluate_index(index, tiny_model, label_mode="keep")
    assert stripped.report.per_class.keys() == keep.report.per_class.keys()
    assert stripped.report.mean_similarity_correct != keep.report.mean_similarity_correct
    with pytest.raises(UserError, match="class set"):
        evaluate_index(index, tiny_model, classes="some")
