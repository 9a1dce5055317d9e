"""The run store: every evaluation kept once, readable side by side, comparable per class."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.evaluation import evaluate_index
from core.index import connect, open_index
from core.runs import REFERENCE_RUN, RunStore, compare_per_class, run_from_evaluation


def test_runs_are_saved_once_and_compared(tmp_path: Path, built_index: dict, tiny_model) -> None:
    index = open_index(connect(built_index["db"]))
    store = RunStore(tmp_path / "runs.jsonl")
    english = run_from_evaluation(evaluate_index(index, tiny_model, "english"), index, index.version())
    french = run_from_evaluation(
        evaluate_index(index, tiny_model, "reference-fr", pooling="max"), index, index.version()
    )
    assert store.add(english) and store.add(french)
    assert not store.add(run_from_evaluation(evaluate_index(index, tiny_model, "english"), index, index.version()))
    with store.path.open("a") as fh:
        fh.write("{not json\n")
    runs = store.load()
    assert [r.id for r in runs] == [english.id, french.id]
    row = runs[1].row()
    assert row["pooling"] == "max" and row["prompt_set"] == "reference-fr" and row["frames"] == "uniform:3"
    assert row["precision_at_1"] == 1.0 and len(row["ci95"]["precision_at_1"]) == 2
    assert runs[0].per_class["juggling fire"] == 1.0
    diff = compare_per_class(english, french)
    assert len(diff) == 6 and all(d == pytest.approx(0.0) for *_, d in diff)


def test_reference_baseline_row() -> None:
    assert REFERENCE_RUN["precision_at_1"] == 0.43 and REFERENCE_RUN["precision_at_3"] == 0.53
    assert REFERENCE_RUN["n_videos"] == 218 and REFERENCE_RUN["mean_similarity_correct"] == 0.25
    low, high = REFERENCE_RUN["ci95"]["precision_at_1"]
    assert 0.43 - 0.07 < low < 0.43 < high < 0.43 + 0.07  # about ±6.6 points, as the issue says
