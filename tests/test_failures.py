"""Failure analysis and model comparison against naive references (no model, no Chroma: fast)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from core.analysis.evaluation import evaluate_contents
from core.analysis.failures import (
    analyse_failures,
    confusion_counts,
    most_confused,
    motion_flags,
    opposite_pairs,
    video_margins,
)
from core.cli import main
from core.model.prompts import resolve_prompts
from core.store.runs import Run, RunStore, compare_per_class, compare_runs_side_by_side
from tests.stand_ins import TextModel, make_contents, unit_vector

CLASSES = ["archery", "yoga", "opening door", "closing door", "juggling fire"]


def _random_evaluation(seed: int = 0, videos: int = 40):
    rng = np.random.default_rng(seed)
    labels = [CLASSES[int(rng.integers(len(CLASSES)))] for _ in range(videos)]
    E = rng.standard_normal((videos, 16))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    contents = make_contents(E, [f"v{i:02d}" for i in range(videos)], [5] * videos, labels)
    return evaluate_contents(contents, TextModel(), "english")


@pytest.mark.parametrize("seed", range(4))
def test_confusion_matrix_counts_every_video_once(seed: int) -> None:
    evaluation = _random_evaluation(seed)
    rep = evaluation.report
    matrix = confusion_counts(rep)
    naive: dict[tuple[str, str], int] = {}
    for row in evaluation.sample_rows():
        naive[(row["label"], row["predicted"])] = naive.get((row["label"], row["predicted"]), 0) + 1
    position = {c: i for i, c in enumerate(matrix.classes)}
    assert matrix.counts.sum() == rep.n_videos
    for label, count in rep.per_class_count.items():
        assert matrix.counts[position[label]].sum() == count
    cells = zip(*matrix.counts.nonzero(), strict=True)
    assert {(matrix.classes[i], matrix.classes[j]): int(matrix.counts[i, j]) for i, j in cells} == naive
    top = most_confused(matrix, top=3)
    assert len(top.classes) <= 3
    for i, a in enumerate(top.classes):
        for j, b in enumerate(top.classes):
            assert top.counts[i, j] == naive.get((a, b), 0)
    # The pairs offered for a click are the heatmap's off-diagonal cells, most frequent first.
    pairs = analyse_failures(evaluation, top=3).pairs()
    assert [c for *_, c in pairs] == sorted((c for *_, c in pairs), reverse=True)
    assert all(t != p and naive[(t, p)] == c for t, p, c in pairs)


def test_margins_match_a_naive_reference() -> None:
    evaluation = _random_evaluation(7)
    S, names = evaluation.samples.similarity, evaluation.report.class_names
    margins = video_margins(evaluation)
    assert [m.margin for m in margins] == sorted(m.margin for m in margins)
    for m in margins:
        i = evaluation.samples.ids.index(m.video_id)
        truth = names.index(m.label)
        others = [(float(S[i, j]), names[j]) for j in range(len(names)) if j != truth]
        best = max(others, key=lambda o: o[0])
        assert m.margin == pytest.approx(float(S[i, truth]) - best[0], abs=1e-6)
        assert S[i, names.index(m.best_wrong)] == pytest.approx(best[0])


def test_opposite_pairs_by_name() -> None:
    names = ["opening door", "closing door", "putting on shoes", "taking off shoes", "opening bottle", "yoga"]
    assert opposite_pairs(names) == [("closing door", "opening door"), ("putting on shoes", "taking off shoes")]
    assert opposite_pairs(["reopening door", "closing door"]) == []  # whole words only


def test_a_class_whose_partner_scores_as_high_is_flagged_as_needing_motion() -> None:
    """Frames of 'closing door' look like 'opening door' (their embedding is its prompt's): flagged."""
    model = TextModel()
    template = resolve_prompts("english").templates[0]
    opening = unit_vector(template.replace("{label}", "opening door"), 16)
    archery = unit_vector(template.replace("{label}", "archery"), 16)
    labels = ["opening door"] * 3 + ["closing door"] * 3 + ["archery"] * 3
    E = np.stack([opening] * 6 + [archery] * 3)
    contents = make_contents(E, [f"v{i}" for i in range(9)], [5] * 9, labels)
    evaluation = evaluate_contents(contents, model, "english")
    flags = motion_flags(evaluation)
    assert [(f.label, f.partner, f.reason, f.value) for f in flags] == [
        ("closing door", "opening door", "opposite", 1.0)
    ]
    gains = motion_flags(evaluation, {"archery": 0.5, "opening door": 0.1})
    assert [f.label for f in gains if f.reason == "uniform gain"] == ["archery"]
    assert "more frames help" in gains[-1].describe()


# ---- model comparison ----------------------------------------------------------------------------------


def _run(run_id: str, model: str, per_class: dict[str, float], n: int = 12) -> Run:
    return Run(id=run_id, timestamp=f"2024-01-0{len(run_id)}T00:00:00", index=f"frames-{model}", index_version="1",
               model=model, frames="middle", pooling="mean", prompt_set="english", templates=["{label}"],
               label_mode="keep", classes="present",
               metrics={"precision_at_1": float(np.mean(list(per_class.values()))), "n_videos": n,
                        "ci95": {"precision_at_1": [0.1, 0.9]}},
               per_class=per_class)  # fmt: skip


def test_side_by_side_matches_the_pairwise_comparison_and_a_naive_reference() -> None:
    rng = np.random.default_rng(2)
    names = [f"class {i}" for i in range(12)]
    runs = [_run("r" * (i + 1), f"model-{i}", {n: float(rng.integers(0, 5)) / 4 for n in names if rng.random() < 0.9})
            for i in range(3)]  # fmt: skip
    both = compare_runs_side_by_side(runs[:2])
    assert [(n, v[0], v[1], g[1]) for n, v, g in both.per_class] == compare_per_class(runs[0], runs[1])
    three = compare_runs_side_by_side(runs)
    for name, values, gains in three.per_class:
        for run, value, gain in zip(runs, values, gains, strict=True):
            assert value == run.per_class.get(name)
            base = runs[0].per_class.get(name)
            assert gain == (None if value is None or base is None else value - base)
    rows = three.to_json()
    assert set(rows[0]) >= {"class", "a", "b", "delta", "runs", "gains"} and not three.notes
    other = compare_runs_side_by_side([runs[0], dataclasses.replace(runs[1], pooling="max")])
    assert any("pooling" in note for note in other.notes)


def test_runs_compare_command_with_three_models(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = RunStore(tmp_path / "runs.jsonl")
    for run in (
        _run("a", "ViT-B-32", {"yoga": 0.5, "archery": 1.0}),
        _run("bb", "ViT-L-14", {"yoga": 1.0, "archery": 1.0}),
        _run("ccc", "tiny", {"yoga": 0.0, "archery": 0.5}),
    ):
        store.add(run)
    assert main(["runs", "--db", str(tmp_path), "--compare", "a", "bb", "ccc", "--json", "-"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert rows[0]["class"] == "archery" and rows[0]["gains"] == {"a": 0.0, "bb": 0.0, "ccc": -0.5}
    assert {r["class"]: r["delta"] for r in rows} == {"yoga": 0.5, "archery": 0.0}
    assert "ViT-L-14" in captured.err and "C - A" in captured.err
    assert main(["runs", "--db", str(tmp_path), "--compare", "a"]) == 2
    assert "at least two run ids" in capsys.readouterr().err
