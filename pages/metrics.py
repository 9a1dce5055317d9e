"""Metrics page: how well CLIP matches the indexed videos to their labels, for an editable prompt."""

from __future__ import annotations

import json
import os

import pandas as pd
import streamlit as st

from core.analysis.failures import confused_samples
from core.analysis.plots import confusion_counts_heatmap, similarity_histogram
from core.analysis.reports import metrics_csv, metrics_rows, per_class_csv, per_video_csv, results_html
from core.ground import UserError, plural
from core.model.prompts import DEFAULT_PROMPT, PROMPT_SETS
from core.requests import CLASS_SETS, LABEL_MODES, POOLINGS, EvalSettings
from core.resources import get_evaluation, get_failures, get_probe, thumbnail_uri
from pages.common import build_in_progress_note, current_index, explorer, index_model, md, require_navigation

require_navigation()

MAX_TABLE_ROWS = 500
POOLING_HELP = {
    "mean": "mean of the video's frame embeddings",
    "max": "best frame per class",
    "middle": "the frame nearest the centre only",
    "frame": "every frame scored alone",
}

st.header("How well does CLIP match the videos to their labels?")
listed = current_index()
if listed is None:
    st.stop()
index = listed.info
build_in_progress_note()
if index_model(listed) is None:  # weights missing: the message is already on the page
    st.stop()


CUSTOM = "custom"


def load_preset() -> None:
    if st.session_state.preset in PROMPT_SETS:
        st.session_state.templates = "\n".join(PROMPT_SETS[st.session_state.preset].templates)


def name_templates() -> None:
    """After an edit, the box names the set the templates are (or "custom"), not the one they came from."""
    typed = tuple(line for line in st.session_state.templates.splitlines() if line.strip())
    st.session_state.preset = next((k for k, v in PROMPT_SETS.items() if v.templates == typed), CUSTOM)


st.session_state.setdefault("preset", DEFAULT_PROMPT)
st.session_state.setdefault("templates", "\n".join(PROMPT_SETS[DEFAULT_PROMPT].templates))
# A deep link (?settings={...}, the JSON form runs are stored in) opens the page on those settings.
linked = st.query_params.get("settings")
if linked and st.session_state.get("applied_link") != linked:
    st.session_state.applied_link = linked
    try:
        wanted = explorer().link_settings(linked)
    except UserError as exc:
        st.warning(str(exc))
    else:
        lines = [
            t for name in wanted.prompts for t in (PROMPT_SETS[name].templates if name in PROMPT_SETS else (name,))
        ]
        st.session_state.templates = "\n".join(lines)
        name_templates()
        st.session_state.pooling = wanted.pooling
        st.session_state.label_mode = wanted.label_mode
        st.session_state.classes = wanted.classes
with st.container(border=True):
    left, right = st.columns([3, 2])
    with left:
        st.selectbox("Prompt set", [*PROMPT_SETS, CUSTOM], key="preset", on_change=load_preset)
        st.text_area(
            "Prompt templates, one per line, with {label} (several lines are averaged: a prompt ensemble)",
            key="templates",
            on_change=name_templates,
            height=110,
            help="Editing the prompt only re-encodes the class texts: the frames are not encoded again.",
        )
    with right:
        frames_note = (
            " (this index has one frame per video: mean, max and middle agree)" if index.frames == "middle" else ""
        )
        pooling = st.radio(
            f"Frames → video score{frames_note}",
            POOLINGS,
            format_func=lambda p: f"{p}: {POOLING_HELP[p]}",
            key="pooling",
        )
        c1, c2 = st.columns(2)
        label_mode = c1.radio(
            "Labels", LABEL_MODES, help="strip: 'opening bottle (not wine)' → 'opening bottle'", key="label_mode"
        )
        classes = c2.radio(
            "Candidate classes", CLASS_SETS, help="all: score against the 700 Kinetics-700 names", key="classes"
        )

templates = tuple(line for line in st.session_state.templates.splitlines() if line.strip())
try:
    settings = EvalSettings(prompts=templates, pooling=pooling, label_mode=label_mode, classes=classes)
    evaluation = get_evaluation(explorer(), listed.ref, index.version, settings)
    st.query_params["settings"] = st.session_state.applied_link = settings.dumps()  # this view, as a link
except UserError as exc:
    st.warning(str(exc))
    st.stop()
rep = evaluation.report
unit = "frames" if pooling == "frame" else "videos"

cols = st.columns(6)
for column, (label, value) in zip(
    cols,
    [
        ("precision@1", f"{rep.precision_at_1:.3f}"),
        ("precision@3", f"{rep.precision_at_3:.3f}"),
        ("precision@5", f"{rep.precision_at_5:.3f}"),
        ("MRR", f"{rep.mrr:.3f}"),
        ("cosine, correct", f"{rep.mean_similarity_correct:.3f}"),
        ("cosine, incorrect", f"{rep.mean_similarity_incorrect:.3f}"),
    ],
    strict=True,
):
    column.metric(label, value)
low, high = rep.interval(1)
st.caption(
    f"{plural(rep.n_videos, unit[:-1])} · {plural(rep.n_classes, 'class', 'classes')} · "
    f"precision@1 95% CI {low:.3f}–{high:.3f} · "
    f"chance precision@1 = {1 / max(1, rep.n_classes):.3f}"
)
if explorer().offers("save_run") and st.button(
    "Save as a run", help="Keep these settings and figures on the Runs page (saved once per index version)"
):
    added = explorer().record(listed.ref, evaluation)
    st.toast("Saved as a run: see the Runs page." if added else "This run was already saved.")

table_col, chart_col = st.columns([1, 1])
with table_col:
    st.subheader("Metrics")
    st.dataframe(
        pd.DataFrame(metrics_rows(rep), columns=["metric", "value", "95% CI"]),
        hide_index=True,
        width="stretch",
        height="content",
        column_config={"metric": st.column_config.TextColumn(width="large")},
    )
with chart_col:
    st.subheader("Cosine similarity: correct vs. incorrect prompts")
    st.plotly_chart(similarity_histogram(rep), width="stretch")

st.subheader("Per class")
per_class = pd.DataFrame(
    {
        "class": list(rep.per_class),
        "precision@1": list(rep.per_class.values()),
        unit: [rep.per_class_count[c] for c in rep.per_class],
    }
).sort_values(["precision@1", "class"], ascending=[False, True])
st.dataframe(
    per_class,
    hide_index=True,
    width="stretch",
    column_config={"precision@1": st.column_config.ProgressColumn("precision@1", min_value=0.0, max_value=1.0)},
)

st.subheader(f"Per {unit[:-1]}: the best text match")
only_misses = st.toggle("Only the misses", value=False)
rows = [r for r in evaluation.sample_rows(top=3) if not (only_misses and r["correct"])]
if len(rows) > MAX_TABLE_ROWS:
    st.caption(f"Showing the first {MAX_TABLE_ROWS:,} of {plural(len(rows), 'row')} (download the CSV for all).")
rendered = evaluation.prompts.templates[0]


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


table = pd.DataFrame(
    {
        "frame": [thumbnail_uri(r["frame_path"], _mtime(r["frame_path"])) for r in rows[:MAX_TABLE_ROWS]],
        unit[:-1]: [r["video_id"] for r in rows[:MAX_TABLE_ROWS]],
        "true label": [r["label"] for r in rows[:MAX_TABLE_ROWS]],
        "best-matching prompt": [rendered.replace("{label}", r["predicted"]) for r in rows[:MAX_TABLE_ROWS]],
        "correct": [r["correct"] for r in rows[:MAX_TABLE_ROWS]],
        "rank of truth": [r["rank"] for r in rows[:MAX_TABLE_ROWS]],
        "top scores": [", ".join(f"{lbl} {s:.3f}" for lbl, s in r["top"]) for r in rows[:MAX_TABLE_ROWS]],
    }
)
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    row_height=70,
    column_config={"frame": st.column_config.ImageColumn("frame", width="small")},
)

st.subheader("Most-confused classes")
failures = get_failures(explorer(), listed.ref, index.version, settings)
pairs = failures.pairs()
if rep.confusion:
    left, right = st.columns([2, 3])
    left.dataframe(
        pd.DataFrame(rep.confusion[:30], columns=["true label", "predicted as", unit]), hide_index=True, width="stretch"
    )
    heatmap = failures.heatmap
    with right:
        event = st.plotly_chart(
            confusion_counts_heatmap(heatmap.classes, heatmap.counts),
            width="stretch",
            on_select="rerun",
            selection_mode="points",
            key="confusion_chart",
        )
        st.caption("Click a cell to list its videos below.")
    # A click selects (true, predicted) in the box below; the box can also be used on its own.
    clicked = [(p.get("y"), p.get("x")) for p in (event.selection.points if event else []) if p.get("x") != p.get("y")]
    options = [(t, p) for t, p, _ in pairs]
    if clicked and clicked[0] in options and st.session_state.get("confusion_clicked") != clicked[0]:
        st.session_state.confusion_clicked = st.session_state.confused_pair = clicked[0]
    if options:
        counts = {(t, p): n for t, p, n in pairs}
        true, predicted = st.selectbox(
            "Confused pair: its videos",
            options,
            format_func=lambda pair: f"{pair[0]} → predicted as {pair[1]} ({counts[pair]})",
            key="confused_pair",
        )
        rows = confused_samples(evaluation, true, predicted)[:24]
        for start in range(0, len(rows), 6):
            for column, row in zip(st.columns(6), rows[start : start + 6], strict=False):
                with column:
                    if os.path.isfile(row["frame_path"]):
                        st.image(row["frame_path"], width="stretch")
                    st.caption(f"{md(row['video_id'])} · t={row['timestamp_s']:.1f}s")
else:
    st.caption("No confusion: every video's true label ranks first.")

st.subheader("Classes that may need motion")
st.caption(
    "A single frame cannot tell some actions apart (opening / closing, putting on / taking off): flagged when an "
    "opposite class, or one confused with it both ways, scores at least as high on a quarter of its videos, or when a "
    "uniform:K index of the same model gains 0.25 precision@1 or more over middle."
)
for note in failures.notes:
    st.caption(note)
if failures.motion:
    st.dataframe(
        pd.DataFrame(
            [{"class": f.label, "why": f.reason, "partner": f.partner, "evidence": f.value} for f in failures.motion]
        ),
        hide_index=True,
        width="stretch",
        column_config={"evidence": st.column_config.NumberColumn(format="%.2f")},
    )
else:
    st.caption("None flagged.")

st.subheader(f"The worst {unit}: true class minus the best wrong one")
if failures.worst:
    worst = failures.worst
    for start in range(0, len(worst), 6):
        for column, item in zip(st.columns(6), worst[start : start + 6], strict=False):
            with column:
                if os.path.isfile(item.frame_path):
                    st.image(item.frame_path, width="stretch")
                st.caption(f"**{md(item.label)}** vs {md(item.best_wrong)} · margin {item.margin:+.3f}")

st.subheader("Linear probe: prompts or embeddings?")
st.caption(
    "A logistic regression trained on the frozen embeddings (pooled as above), cross-validated over videos: what "
    "the embeddings can tell apart. Per class, probe minus zero-shot is the prompt gap: what better prompts could "
    "win back at most."
)
if st.button("Train the linear probe", help="Seconds on a few hundred videos; the frames are not re-encoded"):
    st.session_state.probe_for = (listed.ref, index.version, settings)
if st.session_state.get("probe_for") == (listed.ref, index.version, settings):
    try:
        probe = get_probe(explorer(), listed.ref, index.version, settings)
    except UserError as exc:
        st.warning(str(exc))
    else:
        figures = probe.to_json()
        two_places = st.column_config.NumberColumn(format="%.2f")
        c1, c2, c3, c4 = st.columns(4)
        c1.metric(
            "probe top-1", f"{probe.top1:.3f}", help=f"± {figures['top1_std']:.3f} over {plural(probe.k, 'fold')}"
        )
        c2.metric("probe top-5", f"{probe.top5:.3f}")
        c3.metric("balanced accuracy", f"{probe.balanced_accuracy:.3f}")
        c4.metric("zero-shot top-1, same folds", f"{probe.zero_shot_top1:.3f}")
        st.caption(
            f"{probe.k}-fold over {plural(probe.n_videos, 'video')}; "
            f"top-1 spread over folds ± {figures['top1_std']:.3f}. " + " ".join(probe.notes)
        )
        st.dataframe(
            pd.DataFrame(
                [
                    {"class": c.name, "videos": c.videos, "probe": c.probe_top1, "zero-shot": c.zero_shot_top1,
                     "prompt gap": c.prompt_gap}
                    for c in sorted(probe.per_class, key=lambda c: (-c.prompt_gap, c.name))
                ]
            ),
            hide_index=True,
            width="stretch",
            column_config={k: two_places for k in ("probe", "zero-shot", "prompt gap")},
        )  # fmt: skip

st.subheader("Downloads")
d1, d2, d3, d4, d5 = st.columns(5)
d1.download_button("Metrics (CSV)", metrics_csv(rep), file_name="metrics.csv", mime="text/csv")
d2.download_button(
    "Metrics (JSON)", json.dumps(evaluation.to_json(), indent=2), file_name="metrics.json", mime="application/json"
)
d3.download_button(f"Per {unit[:-1]} (CSV)", per_video_csv(evaluation), file_name=f"per_{unit}.csv", mime="text/csv")
d4.download_button("Per class (CSV)", per_class_csv(rep), file_name="per_class.csv", mime="text/csv")
d5.download_button(
    "Results page (HTML)",
    lambda: results_html(evaluation, title=f"CLIP results: {index.name}", failures=failures),
    file_name="results_kinetics.html",
    mime="text/html",
)
