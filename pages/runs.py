"""Runs page: evaluations side by side, against the reference study; run the whole grid; compare two runs."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.evaluation import CLASS_SETS, POOLINGS, evaluate_grid
from core.plots import runs_chart
from core.prompts import LABEL_MODES, PROMPT_SETS
from core.resources import get_contents
from core.runs import REFERENCE_RUN, RunStore, compare_per_class, run_from_evaluation
from pages.common import current_index, index_model, require_navigation

require_navigation()

st.header("Runs side by side")
st.caption(
    "Every evaluation of this index folder is kept (in runs.jsonl next to the index). Precision figures carry "
    "95% intervals: two runs whose intervals overlap widely are not shown to differ."
)
store = RunStore.for_db(st.session_state.db, st.session_state.output, st.session_state.server)
index = current_index()

if index is not None:
    with st.container(border=True):
        st.markdown(
            f"**Run the grid** on the selected collection (`{index.frames}` frames): every prompt set × pooling."
        )
        left, middle, right = st.columns([2, 1, 1], vertical_alignment="bottom")
        sets = left.multiselect("Prompt sets", list(PROMPT_SETS), default=list(PROMPT_SETS))
        labels = middle.selectbox("Labels", LABEL_MODES, help="strip: drop parenthesised asides")
        classes = right.selectbox("Classes", CLASS_SETS, help="all: the 700 Kinetics-700 names")
        if st.button("Evaluate the grid", type="primary", disabled=not sets):
            model = index_model(index)
            if model is not None:
                version = index.version()
                with st.spinner("Scoring every combination (frames are not re-encoded)…"):
                    contents = get_contents(st.session_state.db, index.name, version, st.session_state.server)
                    results = evaluate_grid(contents, model, [PROMPT_SETS[s] for s in sets], POOLINGS, classes, labels)
                added = 0
                for result in results:
                    result.settings.update({"index": index.name, "frames": index.frames})
                    added += store.add(run_from_evaluation(result, index, version))
                st.success(f"{len(results)} evaluations, {added} new run(s) saved.")

runs = store.load()
rows = [{**REFERENCE_RUN, "name": "reference study"}]
for run in runs:
    rows.append({**run.row(), "name": f"{run.prompt_set} · {run.pooling} · {run.frames} · {run.classes}"})

table = pd.DataFrame(
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
number = st.column_config.NumberColumn(format="%.3f")
numeric = ["precision@1", "precision@3", "precision@5", "MRR", "Kinetics acc.", "cos correct", "cos incorrect"]
st.dataframe(
    table, hide_index=True, width="stretch", column_config={c: number for c in [*numeric, "margin", "ROC-AUC"]}
)
if not runs:
    st.info("No run yet: evaluate on the Metrics page, run the grid above, or `python -m core evaluate`.")
    st.stop()

shown = rows[: 1 + 24] if len(rows) > 25 else rows
st.plotly_chart(runs_chart(shown[1:], reference=REFERENCE_RUN), width="stretch")
if len(rows) > 25:
    st.caption("The chart shows the first 24 runs; the table has them all.")

st.subheader("Which classes gain or lose between two runs")
labels_by_id = {run.id: f"{run.prompt_set} · {run.pooling} · {run.frames} · {run.timestamp}" for run in runs}
left, right = st.columns(2)
first = left.selectbox("Run A", list(labels_by_id), format_func=labels_by_id.get, index=0)
second = right.selectbox("Run B", list(labels_by_id), format_func=labels_by_id.get, index=len(runs) - 1)
a, b = store.get(first), store.get(second)
if a is not None and b is not None:
    diff = pd.DataFrame(compare_per_class(a, b), columns=["class", "precision@1 A", "precision@1 B", "B − A"])
    gains, losses = int((diff["B − A"] > 0).sum()), int((diff["B − A"] < 0).sum())
    st.caption(f"{gains} class(es) gain, {losses} lose, {len(diff) - gains - losses} unchanged or not comparable.")
    st.dataframe(diff, hide_index=True, width="stretch", column_config={"B − A": number})
