"""Runs page: evaluations side by side, against the reference study; run the whole grid; compare two runs.

Each section is a function of what it shows; the page's body at the bottom calls them in order.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core.analysis.plots import runs_chart, sweep_chart
from core.app import Explorer, ListedIndex
from core.ground import UserError, plural
from core.model.prompts import PROMPT_SETS
from core.requests import CLASS_SETS, LABEL_MODES, POOLINGS, EvalSettings
from core.store.runs import REFERENCE_RUN, Run
from pages.common import current_index, explorer, index_model, require_navigation, store_ref

CHART_RUNS = 24  # runs drawn on the chart; the table has them all
NUMBER = st.column_config.NumberColumn(format="%.3f")
NUMERIC = ("precision@1", "precision@3", "precision@5", "MRR", "Kinetics acc.", "cos correct", "cos incorrect",
           "margin", "ROC-AUC")  # fmt: skip


def grid_form(app: Explorer, listed: ListedIndex) -> None:
    """Evaluate every prompt set × pooling on the selected collection, saving the runs."""
    index = listed.info
    with st.container(border=True):
        st.markdown(
            f"**Run the grid** on the selected collection (`{index.frames}` frames): every prompt set × pooling."
        )
        left, middle, right = st.columns([2, 1, 1], vertical_alignment="bottom")
        sets = left.multiselect("Prompt sets", list(PROMPT_SETS), default=list(PROMPT_SETS))
        labels = middle.selectbox("Labels", LABEL_MODES, help="strip: drop parenthesised asides")
        classes = right.selectbox("Classes", CLASS_SETS, help="all: the 700 Kinetics-700 names")
        if st.button("Evaluate the grid", type="primary", disabled=not sets) and index_model(listed) is not None:
            grid = [EvalSettings((name,), pooling, labels, classes) for name in sets for pooling in POOLINGS]
            before = len(app.runs(listed.ref))
            try:
                with st.spinner("Scoring every combination (frames are not re-encoded)…"):
                    results = app.grid(listed.ref, grid, save=True)
            except UserError as exc:
                st.warning(str(exc))
            else:
                added = len(app.runs(listed.ref)) - before
                st.success(f"{plural(len(results), 'evaluation')}, {plural(added, 'new run')} saved.")


def run_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """The reference study, then each saved run, as the table and the chart show them."""
    rows = [{**REFERENCE_RUN, "name": "reference study"}]
    for run in runs:
        rows.append({**run.row(), "name": f"{run.prompt_set} · {run.pooling} · {run.frames} · {run.classes}"})
    return rows


def runs_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "run": row["name"],
                "model": row["model"],
                "frames": row["frames"],
                "pooling": row["pooling"],
                "prompt set": row["prompt_set"],
                "labels": row["label_mode"],
                "classes": row["classes"],
                "videos": row["n_videos"],
                "precision@1": row["precision_at_1"],
                "p@1 95% CI": "–".join(f"{v:.3f}" for v in row["ci95"].get("precision_at_1", [])),
                "precision@3": row["precision_at_3"],
                "p@3 95% CI": "–".join(f"{v:.3f}" for v in row["ci95"].get("precision_at_3", [])),
                "precision@5": row["precision_at_5"],
                "MRR": row["mrr"],
                "Kinetics acc.": row["kinetics_accuracy"],
                "cos correct": row["mean_similarity_correct"],
                "cos incorrect": row["mean_similarity_incorrect"],
                "margin": row["mean_margin"],
                "ROC-AUC": row["roc_auc"],
                "when": row["timestamp"],
            }
            for row in rows
        ]
    )


def sweep_section(app: Explorer) -> None:
    """The sampling sweep's points (precision@1 against build time) and rows, or how to make one."""
    st.subheader("Sampling sweep: precision@1 against build time")
    sweeps = app.sweeps(store_ref())
    if sweeps:
        points = [row.to_json() for row in sweeps]
        st.plotly_chart(sweep_chart(points), width="stretch")
        rows = pd.DataFrame(points).drop(columns=["precision_at_1_ci95", "timestamp"])
        st.dataframe(rows, hide_index=True, width="stretch")
        if any(row.build_seconds is None for row in sweeps):
            st.caption("Collections built outside a sweep have no known build time: their rows are not on the chart.")
    else:
        st.caption(
            "No sweep yet: `python -m core sweep --videos DIR --frames middle,uniform:4,uniform:8` builds one "
            "collection per strategy, scores each with every pooling, and its points appear here."
        )


def gains_section(app: Explorer, runs: list[Run], labels_by_id: dict[str, str]) -> None:
    """Per class, precision@1 of two chosen runs and the difference."""
    st.subheader("Which classes gain or lose between two runs")
    left, right = st.columns(2)
    run_ids: list[str] = list(labels_by_id)
    first = left.selectbox("Run A", run_ids, format_func=lambda i: labels_by_id[i], index=0)
    second = right.selectbox("Run B", run_ids, format_func=lambda i: labels_by_id[i], index=len(runs) - 1)
    if first and second:
        diff = pd.DataFrame(
            app.compare_runs(store_ref(), first, second), columns=["class", "precision@1 A", "precision@1 B", "B − A"]
        )
        gains, losses = int((diff["B − A"] > 0).sum()), int((diff["B − A"] < 0).sum())
        st.caption(
            f"{plural(gains, 'class', 'classes')} gain, {losses:,} lose, {len(diff) - gains - losses:,} unchanged or "
            "not comparable."
        )
        st.dataframe(diff, hide_index=True, width="stretch", column_config={"B − A": NUMBER})


def default_comparison(runs: list[Run]) -> list[str]:
    """The newest run of each model with the newest run's prompt set, pooling and classes (else the first and
    the newest run)."""
    newest = runs[-1]
    latest_per_model: dict[str, str] = {}
    for run in runs:
        if (run.prompt_set, run.pooling, run.classes) == (newest.prompt_set, newest.pooling, newest.classes):
            latest_per_model[run.model] = run.id
    chosen = list(latest_per_model.values()) if len(latest_per_model) > 1 else [runs[0].id, newest.id]
    return list(dict.fromkeys(chosen))


def models_section(app: Explorer, runs: list[Run], labels_by_id: dict[str, str]) -> None:
    """Two or more runs side by side, and per class the gain of each over the first."""
    st.subheader("Models side by side")
    st.caption(
        "Runs of the same videos with different models (or any runs): their figures, and per class the gain of each "
        "over the first. python -m core runs --compare RUN_A RUN_B ... prints the same."
    )
    chosen = st.multiselect(
        "Runs to compare (the first is the baseline)",
        list(labels_by_id),
        default=default_comparison(runs),
        format_func=lambda i: f"{next(r.model for r in runs if r.id == i)} · {labels_by_id[i]}",
    )
    if len(chosen) < 2:
        st.caption("Pick at least two runs.")
        return
    comparison = app.compare_models(store_ref(), chosen)
    for note in comparison.notes:
        st.caption(note)
    st.dataframe(
        pd.DataFrame(
            [
                {"run": row["id"], "model": row["model"], "frames": row["frames"], "pooling": row["pooling"],
                 "prompt set": row["prompt_set"], "videos": row["n_videos"], "precision@1": row["precision_at_1"],
                 "p@1 95% CI": "–".join(f"{v:.3f}" for v in (row["ci95"] or {}).get("precision_at_1", [])),
                 "precision@5": row["precision_at_5"], "MRR": row["mrr"]}
                for row in comparison.summary()
            ]
        ),
        hide_index=True,
        width="stretch",
        column_config={c: NUMBER for c in ("precision@1", "precision@5", "MRR")},
    )  # fmt: skip
    names = [f"{chr(ord('A') + i)}: {run.model}" for i, run in enumerate(comparison.runs)]
    per_class_rows = []
    for name, values, run_gains in comparison.per_class:
        row: dict[str, object] = {"class": name}
        row.update(dict(zip(names, values, strict=True)))
        row.update({f"{n.split(':')[0]} − A": g for n, g in zip(names[1:], run_gains[1:], strict=True)})
        per_class_rows.append(row)
    st.dataframe(
        pd.DataFrame(per_class_rows),
        hide_index=True,
        width="stretch",
        column_config={c: NUMBER for c in per_class_rows[0] if c != "class"} if per_class_rows else None,
    )


require_navigation()

st.header("Runs side by side")
st.caption(
    "Every evaluation you save (Metrics page, the grid below, or python -m core evaluate) is kept in runs.jsonl next "
    "to the index. Precision figures carry "
    "95% intervals: two runs whose intervals overlap widely are not shown to differ."
)
app = explorer()
listed = current_index()
if listed is not None and app.offers("save_run"):
    grid_form(app, listed)
runs = app.runs(store_ref())
rows = run_rows(runs)
st.dataframe(runs_table(rows), hide_index=True, width="stretch", column_config={c: NUMBER for c in NUMERIC})
sweep_section(app)
if not runs:
    st.info("No run yet: evaluate on the Metrics page, run the grid above, or `python -m core evaluate`.")
else:
    shown = rows[: 1 + CHART_RUNS]
    st.plotly_chart(runs_chart(shown[1:], reference=REFERENCE_RUN), width="stretch")
    if len(rows) > CHART_RUNS + 1:
        st.caption(f"The chart shows the first {CHART_RUNS} runs; the table has them all.")
    labels_by_id = {run.id: f"{run.prompt_set} · {run.pooling} · {run.frames} · {run.timestamp}" for run in runs}
    gains_section(app, runs, labels_by_id)
    models_section(app, runs, labels_by_id)
