"""Evaluation of a built index: the trained tiny model must get every clip right, through the whole pipeline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from core.analysis.evaluation import (
    POOLINGS,
    class_names_for,
    evaluate_contents,
    evaluate_grid,
    evaluate_index,
    score_samples,
)
from core.analysis.metrics import compute_metrics
from core.ground import UserError, kinetics_classes
from core.model.prompts import PROMPT_SETS
from core.store.catalog import open_index
from core.store.index import connect
from tests.stand_ins import MemoryIndex, TextModel, make_contents, unit_vector


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


def test_pooling_arithmetic_on_known_vectors() -> None:
    """Two classes on the axes; video v has frames that disagree, so each pooling decides differently."""
    text = np.eye(2, dtype=np.float32)
    e = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])  # frames 5, 15, 25 of one video
    contents = make_contents(e, ["v", "v", "v"], [5, 15, 25], ["a", "a", "a"])
    mean = score_samples(contents, text, "mean").similarity[0]
    expected = e.sum(0) / np.linalg.norm(e.sum(0))
    assert mean == pytest.approx(expected, abs=1e-6)
    assert score_samples(contents, text, "max").similarity[0] == pytest.approx([1.0, 1.0])
    middle = score_samples(contents, text, "middle")  # frame 15 is nearest the centre (15 of 30)
    assert middle.similarity[0] == pytest.approx([0.0, 1.0]) and middle.timestamps == [1.5]
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
    from core.analysis.metrics import compute_metrics
    from core.model.prompts import combine_templates

    n_classes, dim = 5, 16
    contents, E, videos, frames, _ = _random_contents(7 + templates, n_videos=20, n_classes=n_classes, dim=dim)
    rng = np.random.default_rng(70 + templates)
    per_template = rng.standard_normal((n_classes, templates, dim))
    per_template /= np.linalg.norm(per_template, axis=2, keepdims=True)
    text = combine_templates(per_template)
    naive_text = [sum(per_template[c]) / np.linalg.norm(sum(per_template[c])) for c in range(n_classes)]
    assert np.allclose(text, naive_text, atol=1e-6)

    samples = score_samples(contents, text, pooling)
    names = [f"c{i}" for i in range(n_classes)]
    truth = [names.index(label) for label in samples.labels]
    report = compute_metrics(samples.similarity, np.array(truth), names)
    S_naive = _naive_video_scores(E, videos, frames, naive_text, pooling)
    assert np.allclose(samples.similarity, S_naive, atol=1e-5)
    for k in (1, 3, 5):
        assert getattr(report, f"precision_at_{k}") == pytest.approx(_naive_precision(S_naive, truth, k))


def test_grid_reuses_embeddings(built_index: dict, tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.analysis.evaluation import evaluate_grid
    from core.model.prompts import PROMPT_SETS

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


# ---- model-free checks against naive references (fast: these are what the mutation run uses) ---------


def _random_contents(seed: int, n_videos: int = 12, n_classes: int = 4, dim: int = 8):
    rng = np.random.default_rng(seed)
    videos, frames, labels = [], [], []
    for v in range(n_videos):
        for f in sorted(rng.choice(np.arange(30), size=int(rng.integers(1, 5)), replace=False)):
            videos.append(f"v{v:02d}")
            frames.append(int(f))
            labels.append(f"c{v % n_classes}")
    E = rng.standard_normal((len(videos), dim))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    return make_contents(E, videos, frames, labels), E, videos, frames, labels


def _naive_samples(contents, E, videos, frames, labels, text, pooling):
    """Which row stands for each sample (its middle frame, or every frame), and the scores."""
    S = _naive_video_scores(E, videos, frames, text, pooling)
    if pooling == "frame":
        rows = list(range(len(videos)))
        ids = list(contents.ids)
    else:
        order = sorted(dict.fromkeys(videos))
        rows = [min((i for i, x in enumerate(videos) if x == v), key=lambda i: abs(frames[i] - 15)) for v in order]
        ids = order
    return rows, ids, S


@pytest.mark.parametrize("pooling", POOLINGS)
def test_samples_carry_the_right_frame_of_each_video(pooling: str) -> None:
    contents, E, videos, frames, labels = _random_contents(3)
    text = np.eye(4, 8, dtype=np.float32)
    samples = score_samples(contents, text, pooling)
    rows, ids, S = _naive_samples(contents, E, videos, frames, labels, text, pooling)
    assert samples.ids == ids
    assert samples.labels == [labels[r] for r in rows]
    assert samples.frame_paths == [f"/frames/{videos[r]}/{frames[r]}.jpg" for r in rows]
    assert samples.timestamps == pytest.approx([frames[r] / 10 for r in rows])
    assert samples.video_paths == [f"/videos/{videos[r]}.mp4" for r in rows]
    assert samples.similarity.dtype == np.float32 and np.allclose(samples.similarity, S, atol=1e-5)
    # float32 like the index, whatever the precision of the text embeddings
    assert score_samples(contents, text.astype(np.float64), pooling).similarity.dtype == np.float32


@pytest.mark.parametrize("pooling", POOLINGS)
def test_an_empty_index_and_a_one_frame_index(pooling: str) -> None:
    text = np.eye(3, 4, dtype=np.float32)
    empty = score_samples(make_contents(np.zeros((0, 4)), [], [], []), text, pooling)
    assert empty.similarity.shape == (0, 3)
    assert empty.ids == empty.labels == empty.frame_paths == empty.timestamps == empty.video_paths == []
    one = score_samples(make_contents(np.array([[0.0, 1.0, 0.0, 0.0]]), ["v"], [7], ["a"]), text, pooling)
    assert one.similarity.shape == (1, 3) and one.similarity[0].tolist() == pytest.approx([0.0, 1.0, 0.0])
    assert one.ids == (["v:7"] if pooling == "frame" else ["v"]) and one.labels == ["a"]
    assert one.frame_paths == ["/frames/v/7.jpg"] and one.timestamps == [0.7] and one.video_paths == ["/videos/v.mp4"]


def test_mean_pooling_renormalises_frames_that_nearly_cancel() -> None:
    """Two frames pointing almost opposite ways: their sum is short, their pooled vector is still a unit one."""
    e = np.array([[1.0, 0.0], [-0.6, 0.8]])
    pooled = score_samples(make_contents(e, ["v", "v"], [1, 2], ["a", "a"]), np.eye(2, dtype=np.float32), "mean")
    assert pooled.similarity[0] == pytest.approx([0.4 / np.hypot(0.4, 0.8), 0.8 / np.hypot(0.4, 0.8)], abs=1e-6)
    assert score_samples(make_contents(e, ["v", "v"], [1, 2], ["a", "a"]), np.eye(2, dtype=np.float32)).similarity[
        0
    ] == pytest.approx(pooled.similarity[0])  # mean is the default


def test_an_unknown_pooling_is_refused() -> None:
    contents = make_contents(np.eye(2), ["v", "w"], [1, 1], ["a", "b"])
    with pytest.raises(UserError, match=r"^Unknown pooling 'avg': use one of mean, max, middle, frame\.$"):
        score_samples(contents, np.eye(2, dtype=np.float32), "avg")


def _labelled_contents(seed: int = 5) -> tuple:
    """Videos of 4 labels (one with a parenthesised aside), 2 frames each, random unit embeddings."""
    rng = np.random.default_rng(seed)
    names = ["archery", "juggling fire", "wood burning (art)", "yoga"]
    videos, frames, labels = [], [], []
    for v in range(12):
        for f in (10, 20):
            videos.append(f"v{v:02d}")
            frames.append(f)
            labels.append(names[v % 4])
    E = rng.standard_normal((len(videos), 16))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    return make_contents(E, videos, frames, labels), names


def _naive_class_texts(names: list[str], templates: list[str], dim: int = 16) -> np.ndarray:
    rows = []
    for name in names:
        mean = sum(unit_vector(t.replace("{label}", name), dim) for t in templates) / len(templates)
        rows.append(mean / np.linalg.norm(mean))
    return np.array(rows)


def test_evaluate_contents_scores_each_class_text_and_says_how() -> None:
    contents, names = _labelled_contents()
    model = TextModel()
    templates = ["a video of a person {label}.", "someone {label}"]
    result = evaluate_contents(contents, model, templates, pooling="middle", label_mode="strip")
    cleaned = ["archery", "juggling fire", "wood burning", "yoga"]
    assert model.batches == [[t.replace("{label}", n) for n in cleaned for t in templates]]
    text = _naive_class_texts(cleaned, templates)
    rows, ids, S = _naive_samples(contents, contents.embeddings, list(contents.video_ids),
                                  list(contents.frame_index), list(contents.labels), text, "middle")  # fmt: skip
    assert np.allclose(result.samples.similarity, S, atol=1e-5) and result.samples.ids == ids
    truth = [names.index(str(contents.labels[r])) for r in rows]
    expected = compute_metrics(np.array(S), np.array(truth), names)
    assert result.report.ranks.tolist() == expected.ranks.tolist()
    assert result.report.per_class == pytest.approx(expected.per_class)
    assert result.class_names == result.report.class_names == names
    assert result.pooling == "middle" and result.label_mode == "strip"
    assert result.prompts.templates == tuple(templates)
    assert result.settings == {
        "model": "ViT-B-32 (none)",
        "prompt_set": "custom",
        "templates": templates,
        "pooling": "middle",
        "label_mode": "strip",
        "classes": "present",
    }
    assert result.to_json() == {**result.report.to_json(), "settings": result.settings}


def test_evaluate_contents_defaults_and_given_text_embeddings() -> None:
    contents, names = _labelled_contents()
    model = TextModel()
    default = evaluate_contents(contents, model)  # english prompt, mean pooling, labels kept, present classes
    assert model.batches == [[f"a video of a person {n}." for n in names]]
    assert default.settings == {
        "model": "ViT-B-32 (none)",
        "prompt_set": "english",
        "templates": ["a video of a person {label}."],
        "pooling": "mean",
        "label_mode": "keep",
        "classes": "present",
    }
    text = _naive_class_texts(names, ["a video of a person {label}."])
    _, _, S = _naive_samples(contents, contents.embeddings, list(contents.video_ids),
                              list(contents.frame_index), list(contents.labels), text, "mean")  # fmt: skip
    assert np.allclose(default.samples.similarity, S, atol=1e-5)
    given = evaluate_contents(contents, model, "english", "max", text_embeddings=np.eye(4, 16, dtype=np.float32))
    assert len(model.batches) == 1  # the given embeddings are used, nothing is encoded
    assert np.allclose(given.samples.similarity, _naive_samples(
        contents, contents.embeddings, list(contents.video_ids), list(contents.frame_index), list(contents.labels),
        np.eye(4, 16), "max")[2], atol=1e-5)  # fmt: skip


def test_class_sets() -> None:
    present = ["yoga", "archery"]
    assert class_names_for("present", present) == (["archery", "yoga"], "present")
    every, described = class_names_for("all", ["yoga", "not a kinetics class"])
    assert every[:700] == kinetics_classes() and every[700:] == ["not a kinetics class"]
    assert described == "all (701)" and len(every) == 701
    assert class_names_for("all", ["yoga"]) == (kinetics_classes(), "all (700)")
    given = class_names_for(["surfing", "yoga", "surfing"], present)
    assert given == (["surfing", "yoga", "archery"], "3 given")
    with pytest.raises(UserError, match=r"^Unknown class set 'some': use present or all\.$"):
        class_names_for("some", present)


def test_evaluating_against_more_classes_than_present() -> None:
    contents, names = _labelled_contents()
    extra = ["abseiling", *names]
    result = evaluate_contents(contents, TextModel(), classes=["abseiling"])
    assert result.class_names == extra and result.settings["classes"] == "5 given"
    assert result.report.n_classes == 5 and set(result.report.per_class) == set(names)  # only classes with videos
    assert [extra[t] for t in result.report.true_index] == result.samples.labels


def test_an_index_without_complete_videos_is_refused() -> None:
    empty = make_contents(np.zeros((0, 16)), [], [], [])
    with pytest.raises(UserError, match=r"^The index holds no complete video yet: build it first, or wait"):
        evaluate_contents(empty, TextModel())


def test_sample_rows_match_the_report() -> None:
    contents, names = _labelled_contents(9)
    result = evaluate_contents(contents, TextModel(), pooling="frame")
    rep, samples = result.report, result.samples
    for top in (1, 3):
        rows = result.sample_rows(top=top)
        assert len(rows) == len(samples.ids) == 24
        for i, row in enumerate(rows):
            scores = samples.similarity[i]
            truth = names.index(samples.labels[i])
            rank = sum(1 for s in scores if s >= scores[truth])
            best = sorted(range(len(names)), key=lambda j: -scores[j])[:top]
            assert row["video_id"] == samples.ids[i] and row["label"] == samples.labels[i]
            assert row["rank"] == rank and row["correct"] == (rank == 1)
            assert row["predicted"] == (samples.labels[i] if rank == 1 else names[best[0]])
            assert row["similarity_true"] == pytest.approx(float(scores[truth]))
            assert row["top"] == [(names[j], pytest.approx(float(scores[j]))) for j in best]
            assert row["frame_path"] == samples.frame_paths[i] and row["video_path"] == samples.video_paths[i]
            assert row["timestamp_s"] == samples.timestamps[i]
    assert any(not row["correct"] for row in result.sample_rows()) and any(r["correct"] for r in result.sample_rows())
    assert result.sample_rows() == result.sample_rows(top=3)
    assert rep.n_videos == 24


def test_grid_is_every_prompt_set_by_every_pooling() -> None:
    contents, names = _labelled_contents()
    model = TextModel()
    sets = [PROMPT_SETS["english"], PROMPT_SETS["reference-fr"]]
    results = evaluate_grid(contents, model, sets, ("max", "mean"), label_mode="strip")
    assert [(r.prompts.name, r.pooling) for r in results] == [
        ("english", "max"), ("english", "mean"), ("reference-fr", "max"), ("reference-fr", "mean"),
    ]  # fmt: skip
    assert len(model.batches) == 2  # one text encoding per prompt set
    for r in results:
        alone = evaluate_contents(contents, TextModel(), r.prompts, r.pooling, label_mode="strip")
        assert np.allclose(r.samples.similarity, alone.samples.similarity)
        assert r.settings == alone.settings and r.label_mode == "strip"
    wide = evaluate_grid(contents, TextModel(), sets[:1], ("mean",), classes=["abseiling"])
    assert wide[0].class_names == ["abseiling", *names] and wide[0].settings["classes"] == "5 given"
    assert [r.pooling for r in evaluate_grid(contents, TextModel(), sets[:1])] == list(POOLINGS)


def test_evaluate_index_names_the_index_and_its_frames() -> None:
    contents, _ = _labelled_contents()
    index = MemoryIndex([], name="frames-ViT-uniform3", frames="uniform:3", contents=contents)
    result = evaluate_index(index, TextModel(), "reference-fr", pooling="max", classes="present", label_mode="strip")
    alone = evaluate_contents(contents, TextModel(), "reference-fr", "max", "present", "strip")
    assert result.settings == {**alone.settings, "index": "frames-ViT-uniform3", "frames": "uniform:3"}
    assert np.allclose(result.samples.similarity, alone.samples.similarity)
    default = evaluate_index(index, TextModel())
    assert default.settings["prompt_set"] == "english" and default.pooling == "mean" and default.label_mode == "keep"
    assert default.settings["classes"] == "present"


def _naive_pooled(contents, pooling: str) -> np.ndarray:
    """Per video in order of first appearance, by a plain loop: mean or max of its frames re-normalised,
    or the frame whose index is nearest half the clip (the first such on a tie); every frame for "frame"."""
    E = contents.embeddings.astype(np.float64)
    if pooling == "frame":
        return E
    order: list[str] = []
    for v in contents.video_ids:
        if v not in order:
            order.append(v)
    rows = []
    for v in order:
        idx = [i for i, w in enumerate(contents.video_ids) if w == v]
        if pooling == "middle":
            centre = contents.video_frames[idx[0]] / 2.0
            best = idx[0]
            for i in idx:
                if abs(contents.frame_index[i] - centre) < abs(contents.frame_index[best] - centre):
                    best = i
            rows.append(E[best])
            continue
        pooled = E[idx[0]].copy()
        for i in idx[1:]:
            pooled = pooled + E[i] if pooling == "mean" else np.maximum(pooled, E[i])
        rows.append(pooled / np.linalg.norm(pooled))
    return np.array(rows)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_pooled_embeddings_match_a_per_video_loop(pooling: str) -> None:
    """What the linear probe learns from: each pooling against a plain loop over videos of 1–4 frames."""
    from core.analysis.evaluation import pooled_embeddings

    rng = np.random.default_rng(7)
    videos, frames = [], []
    for v, n in enumerate([3, 1, 4, 2, 3]):
        videos += [f"v{v}"] * n
        frames += sorted(rng.choice(30, n, replace=False).tolist())
    videos += ["tie", "tie", "tie"]  # frames 10 and 20 are equally near the centre (15): the first is taken
    frames += [2, 10, 20]
    e = rng.standard_normal((len(videos), 6))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    contents = make_contents(e, videos, frames, [f"c{len(v) % 2}" for v in videos])
    got = pooled_embeddings(contents, pooling)
    expected = _naive_pooled(contents, pooling)
    assert got.dtype == np.float32 and got.shape == expected.shape == (len(videos) if pooling == "frame" else 6, 6)
    if pooling == "middle":
        assert np.array_equal(got[5], contents.embeddings[len(videos) - 2])
    assert np.allclose(got, expected, atol=1e-6)
    # The rows are the samples score_samples scores, in the same order.
    text = np.eye(6, dtype=np.float32)
    if pooling in ("mean", "middle", "frame"):
        assert np.allclose(score_samples(contents, text, pooling).similarity, got @ text.T, atol=1e-6)
    if pooling == "mean":  # the default
        assert np.array_equal(pooled_embeddings(contents), got)
    empty = make_contents(np.zeros((0, 6)), [], [], [])
    flat = dataclasses.replace(empty, embeddings=np.zeros(0, np.float32))  # no records, and no width either
    for pooled in (pooled_embeddings(empty, pooling), pooled_embeddings(flat, pooling)):
        assert pooled.shape[0] == 0 and pooled.dtype == np.float32
    assert pooled_embeddings(empty, pooling).shape == (0, 6) and pooled_embeddings(flat, pooling).shape[-1] == 0
    with pytest.raises(UserError, match=r"^Unknown pooling 'median': use one of mean, max, middle, frame\.$"):
        pooled_embeddings(contents, "median")
