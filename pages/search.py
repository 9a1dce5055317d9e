"""Search page: a text, an image or a frame (plus or minus other texts) → a gallery of the best-matching
frames or moments, the query's score distribution with its cut-off; play the video at the matched moment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import streamlit as st

from core.analysis.moments import Moment
from core.analysis.plots import score_histogram
from core.analysis.query import IMAGE_FORMATS, IMAGE_SUFFIXES
from core.analysis.reports import safe_report_name, search_html
from core.analysis.search import SearchHit, SearchResult, check_query
from core.ground import UserError, plural
from core.limits import MAX_K
from core.media.transcode import browser_playability
from core.requests import SearchQuery
from core.resources import get_labels
from pages.common import build_in_progress_note, current_index, explorer, index_model, md, require_navigation

require_navigation()

COLUMNS = 4
HISTORY = 15
SIGNS = {"+": 1, "−": -1}

st.header("Search frames by text or image")
listed = current_index()
if listed is None:
    st.stop()
build_in_progress_note()
for key, default in (("terms", []), ("like", None), ("query_image_path", None), ("upload_round", 0)):
    st.session_state.setdefault(key, default)


def remember(query: str) -> None:
    history = [q for q in st.session_state.history if q != query]
    st.session_state.history = [query, *history][:HISTORY]


def rerun_query(query: str) -> None:
    st.session_state.query = query


def add_term() -> None:
    text = " ".join(st.session_state.term_text.split())
    if text:
        st.session_state.terms = [*st.session_state.terms, (SIGNS[st.session_state.term_sign], text)]
    st.session_state.term_text = ""


def remove_term(i: int) -> None:
    st.session_state.terms = [t for j, t in enumerate(st.session_state.terms) if j != i]


def more_like(video_id: str, frame_index: int) -> None:
    """Search that frame alone: the last search's text, image and + / − terms are dropped."""
    st.session_state.like = (video_id, int(frame_index))
    st.session_state.terms = []
    st.session_state.query = ""
    st.session_state.query_image_path = None
    st.session_state.image_from_upload = False
    st.session_state.upload_round += 1  # a new uploader: the old one's file goes with it


def clear(key: str) -> None:
    st.session_state[key] = None


with st.form("search", border=False):
    query = st.text_input(
        "Describe an action",
        key="query",
        placeholder="e.g. someone juggling fire at night",
        max_chars=10_000,
    )
    left, middle, right, go = st.columns([2, 2, 3, 1], vertical_alignment="bottom")
    k = left.number_input("Results", min_value=1, max_value=MAX_K, value=12, step=1)
    one_per_video = middle.toggle("One per video", value=True)
    labels = ["(all labels)", *get_labels(explorer(), listed.ref, listed.info.version)]
    label = right.selectbox("Label", labels, help="Only frames of this label")
    submitted = go.form_submit_button("Search", type="primary", width="stretch")
    a, b, c = st.columns([2, 2, 2], vertical_alignment="bottom")
    moments = a.toggle(
        "Moments",
        key="moments",
        help="Merge each video's matching frames into time segments; the results count segments.",
    )
    adaptive = b.toggle(
        "Adaptive cut-off",
        key="adaptive",
        help="Keep only what stands out from this query's scores over the whole index (may show nothing).",
    )
    floor = c.number_input(
        "Min. similarity", min_value=-1.0, max_value=1.0, value=None, step=0.01, key="min_similarity",
        placeholder="none", help="Drop results whose cosine similarity is below this",
    )  # fmt: skip

# Outside the form: an uploaded image searches at once.
upload = st.file_uploader(
    "Search with an image",
    type=[s.lstrip(".") for s in IMAGE_SUFFIXES],
    key=f"query_image_{st.session_state.upload_round}",
    help=f"{', '.join(IMAGE_FORMATS)}; encoded with the index's model, added to the text when both are given.",
)

with st.expander(f"Add or subtract terms ({len(st.session_state.terms)})", expanded=bool(st.session_state.terms)):
    sign_col, text_col, add_col = st.columns([1, 5, 2], vertical_alignment="bottom")
    sign_col.selectbox("Sign", list(SIGNS), key="term_sign")
    text_col.text_input("Term", key="term_text", placeholder="e.g. grass (with −: not on grass)")
    add_col.button("Add term", on_click=add_term, width="stretch")
    for i, (sign, text) in enumerate(st.session_state.terms):
        shown, remove = st.columns([7, 1], vertical_alignment="center")
        shown.markdown(f"{'＋' if sign > 0 else '−'} {md(text)}")
        remove.button("✕", key=f"remove-term-{i}", on_click=remove_term, args=(i,), help="Remove this term")

if upload is not None:
    st.session_state.image_from_upload = True
    try:
        st.session_state.query_image_path = str(explorer().save_query_image(upload.getvalue(), upload.name))
    except UserError as exc:
        st.warning(str(exc))
        st.session_state.query_image_path = None
elif st.session_state.get("image_from_upload"):  # the upload was removed: so is its query
    st.session_state.image_from_upload = False
    st.session_state.query_image_path = None
image_path = st.session_state.query_image_path
like = st.session_state.like

if image_path:
    shown, drop = st.columns([7, 1], vertical_alignment="center")
    shown.caption(f"Image query: {md(Path(image_path).name)}")
    if upload is None:
        drop.button("Clear", key="clear-image", on_click=clear, args=("query_image_path",))
if like is not None:
    shown, drop = st.columns([7, 1], vertical_alignment="center")
    shown.caption(f"More like frame {like[1]} of {md(like[0])}")
    drop.button("Clear", key="clear-like", on_click=clear, args=("like",))

if st.session_state.history:
    with st.expander(f"Recent queries ({len(st.session_state.history)})"):
        for i, past in enumerate(st.session_state.history):
            st.button(past[:120], key=f"history-{i}", on_click=rerun_query, args=(past,), type="tertiary")

plus = tuple(text for sign, text in st.session_state.terms if sign > 0)
minus = tuple(text for sign, text in st.session_state.terms if sign < 0)
if not (query.strip() or image_path or like or plus):
    if submitted:  # the same sentence as python -m core search says
        try:
            check_query(SearchQuery(query, subtract=minus))
        except UserError as exc:
            st.warning(str(exc))
    st.caption(
        "Type a description and press Enter, upload an image, or press *More like this* on a result. Queries "
        "can be in any language CLIP understands (mostly English)."
    )
    st.stop()

if index_model(listed) is None:
    st.stop()
wanted = SearchQuery(
    query, k=int(k), one_per_video=one_per_video, label=None if label == labels[0] else label, image=image_path,
    add=plus, subtract=minus, like=like, min_similarity=floor, adaptive=adaptive, moments=moments, distribution=True,
)  # fmt: skip
try:
    result: SearchResult = explorer().search(listed.ref, wanted)
except UserError as exc:
    st.warning(str(exc))
    st.stop()
if query.strip():
    remember(" ".join(query.split()))

items: list[Moment] | list[SearchHit] = result.moments if result.moments is not None else result.hits
kind = "moment" if result.moments is not None else "result"
st.markdown(f"Query: **{md(result.query)}**")  # a long text is shown by its start (core.analysis.query.shorten_query)
for note in result.notes:  # e.g. that CLIP read only the first tokens of a long text
    st.caption(note)
cut = result.cutoff.value if result.cutoff is not None else None
if result.scores is not None:
    with st.expander("Score distribution over the index", expanded=adaptive):
        if result.cutoff is not None and cut is not None:
            st.caption(result.cutoff.rule)
        st.plotly_chart(score_histogram(result.scores, cut, len(items)), key="scores")

if not items:
    st.info(
        f"No {kind} passed the cut-off: nothing in the index stands out for this query."
        if cut is not None
        else "No frame matched: the index is empty or no frame has this label."
    )
    st.stop()

top, download = st.columns([4, 1], vertical_alignment="bottom")
top.caption(
    f"{plural(len(items), kind)}, most similar first (cosine similarity between the frame and the query)."
    + (" A moment runs from its first to its last matching frame." if result.moments is not None else "")
)
download.download_button(
    "Download as HTML",
    data=lambda: search_html(result.query, result.hits, title="Search results", moments=result.moments),
    file_name=safe_report_name("search_results", result.query),
    mime="text/html",
)


# The dialog's player: at most the viewport's height, so a portrait clip keeps its controls in view.
PLAYER_CSS = "<style>div[role='dialog'] video { max-height: 70vh; object-fit: contain; }</style>"


@st.dialog("Video at the matched moment", width="large")
def play(video_path: str, label: str, video_id: str, start_s: float) -> None:
    st.markdown(f"**{md(label)}** · {md(video_id)} · from {start_s:.2f} s")
    st.html(PLAYER_CSS)
    check = browser_playability(video_path)
    # Its natural width (Streamlit keeps it within the dialog's), not stretched to the dialog's.
    width: int | Literal["stretch"] = check.width or "stretch"
    if check.playable:
        st.video(video_path, start_time=float(start_s), autoplay=True, muted=True, width=width)
        return
    copy = explorer().existing_playable_copy(video_path)
    if copy is not None:  # converted before (same file, size and date): play that copy
        st.caption(f"Playing the browser-friendly copy made earlier ({check.reason} in the original).")
        st.video(str(copy), start_time=float(start_s), autoplay=True, muted=True, width=width)
        return
    notice = st.empty()  # the warning and its button, gone once the copy plays
    with notice.container():
        st.warning(f"This video cannot play in a browser as it is: {check.reason}.")
        convert = bool(check.codec) and st.button("Make a playable copy (H.264 MP4)")
    if convert:
        with st.spinner("Converting…"):
            try:
                copy = explorer().playable_copy(video_path)
            except Exception as exc:  # ffmpeg failed on this file: say so, keep the page alive
                st.error(f"The conversion failed ({exc.__class__.__name__}).")
                return
        notice.empty()
        st.video(str(copy), start_time=float(start_s), autoplay=True, muted=True, width=width)


for row_start in range(0, len(items), COLUMNS):
    row: list[Moment | SearchHit] = list(items[row_start : row_start + COLUMNS])
    for offset, (column, item) in enumerate(zip(st.columns(COLUMNS), row, strict=False)):
        n = row_start + offset
        with column.container(border=True):
            if Path(item.frame_path).is_file():
                st.image(item.frame_path, width="stretch")
            else:
                st.caption("(thumbnail missing)")
            st.markdown(f"**{md(item.label)}**  \n{md(item.video_id)}")
            if result.moments is not None:
                m = result.moments[n]
                st.caption(
                    f"{m.start_s:.2f}–{m.end_s:.2f} s · best at {m.best_timestamp_s:.2f} s · cosine {m.score:.4f} "
                    f"· {plural(m.frames, 'frame')}"
                )
                start, frame_index = m.start_s, m.best_frame_index
                play_label = "▶ Play the moment"
            else:
                h = result.hits[n]
                st.caption(f"t = {h.timestamp_s:.2f} s · cosine {h.similarity:.4f}")
                start, frame_index = h.timestamp_s, h.frame_index
                play_label = "▶ Play from here"
            if st.button(play_label, key=f"play-{n}"):
                play(item.video_path, item.label, item.video_id, start)
            st.button(
                "More like this", key=f"like-{n}", on_click=more_like, args=(item.video_id, frame_index),
                type="tertiary",
            )  # fmt: skip
