"""Search page: free text → a gallery of the best-matching frames; play the video at the matched moment."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.app import MAX_K, SearchHit, SearchQuery, UserError, browser_playability, safe_report_name, search_html
from core.resources import get_labels
from pages.common import build_in_progress_note, current_index, explorer, index_model, md, require_navigation

require_navigation()

COLUMNS = 4
HISTORY = 15

st.header("Search frames by text")
listed = current_index()
if listed is None:
    st.stop()
build_in_progress_note()


def remember(query: str) -> None:
    history = [q for q in st.session_state.history if q != query]
    st.session_state.history = [query, *history][:HISTORY]


def rerun_query(query: str) -> None:
    st.session_state.query = query


with st.form("search", border=False):
    query = st.text_input(
        "Describe an action",
        key="query",
        placeholder="e.g. someone juggling fire at night",
        max_chars=10_000,
    )
    left, middle, right, go = st.columns([2, 2, 3, 1], vertical_alignment="bottom")
    k = left.number_input("Results", min_value=1, max_value=MAX_K, value=12, step=1)
    one_per_video = middle.toggle("One frame per video", value=True)
    labels = ["(all labels)", *get_labels(explorer(), listed.ref, listed.info.version)]
    label = right.selectbox("Label", labels, help="Only frames of this label")
    go.form_submit_button("Search", type="primary", width="stretch")

if st.session_state.history:
    with st.expander(f"Recent queries ({len(st.session_state.history)})"):
        for i, past in enumerate(st.session_state.history):
            st.button(past[:120], key=f"history-{i}", on_click=rerun_query, args=(past,), type="tertiary")

if not query.strip():
    st.caption("Type a description and press Enter. Queries can be in any language CLIP understands (mostly English).")
    st.stop()

if index_model(listed) is None:
    st.stop()
try:
    wanted = SearchQuery(query, k=int(k), one_per_video=one_per_video, label=None if label == labels[0] else label)
    hits = explorer().search(listed.ref, wanted)
except UserError as exc:
    st.warning(str(exc))
    st.stop()
remember(" ".join(query.split()))

if not hits:
    st.info("No frame matched: the index is empty or no frame has this label.")
    st.stop()

top, download = st.columns([4, 1], vertical_alignment="bottom")
top.caption(f"{len(hits)} result(s), most similar first (cosine similarity between the frame and the text).")
download.download_button(
    "Download as HTML",
    data=lambda: search_html(query, hits, title="Search results"),
    file_name=safe_report_name("search_results", query),
    mime="text/html",
)


@st.dialog("Video at the matched moment", width="large")
def play(hit: SearchHit) -> None:
    st.markdown(f"**{md(hit.label)}** · {md(hit.video_id)} · from {hit.timestamp_s:.2f} s")
    check = browser_playability(hit.video_path)
    if check.playable:
        st.video(hit.video_path, start_time=float(hit.timestamp_s), autoplay=True, muted=True)
        return
    copy = explorer().existing_playable_copy(hit.video_path)
    if copy is not None:  # converted before (same file, size and date): play that copy
        st.caption(f"Playing the browser-friendly copy made earlier ({check.reason} in the original).")
        st.video(str(copy), start_time=float(hit.timestamp_s), autoplay=True, muted=True)
        return
    st.warning(f"This video cannot play in a browser as it is: {check.reason}.")
    if check.codec and st.button("Make a playable copy (H.264 MP4)"):
        with st.spinner("Converting…"):
            try:
                copy = explorer().playable_copy(hit.video_path)
            except Exception as exc:  # ffmpeg failed on this file: say so, keep the page alive
                st.error(f"The conversion failed ({exc.__class__.__name__}).")
                return
        st.video(str(copy), start_time=float(hit.timestamp_s), autoplay=True, muted=True)


for row_start in range(0, len(hits), COLUMNS):
    for offset, (column, hit) in enumerate(
        zip(st.columns(COLUMNS), hits[row_start : row_start + COLUMNS], strict=False)
    ):
        with column.container(border=True):
            if Path(hit.frame_path).is_file():
                st.image(hit.frame_path, width="stretch")
            else:
                st.caption("(thumbnail missing)")
            st.markdown(f"**{md(hit.label)}**  \n{md(hit.video_id)}")
            st.caption(f"t = {hit.timestamp_s:.2f} s · cosine {hit.similarity:.4f}")
            if st.button("▶ Play from here", key=f"play-{row_start + offset}"):
                play(hit)
