"""Build page: pick a video source and a model, start a background build, follow its progress."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core.ground import DEFAULT_SUBSET, UserError, plural
from core.jobs import DownloadRequest, Job
from core.kinetics.download import plan_from
from core.kinetics.reference import demo_model, sample_videos
from core.media.frames import DEFAULT_SCENES, MAX_FPS, MAX_FPS_FRAMES, MAX_SCENES, MAX_UNIFORM_FRAMES
from core.media.sources import VIDEO_EXTENSIONS
from core.model.demo_model import DEMO_MODEL_NAME
from core.model.embed import check_weights_available
from core.requests import DEFAULT_MODEL, DEFAULT_PRETRAINED, BuildRequest
from core.resources import get_build_manager, get_download_manager
from pages.common import (
    bound,
    bound_text_input,
    build_job,
    check_path,
    explorer,
    list_indexes,
    require_navigation,
    set_bound,
    store_ref,
)

require_navigation()

st.header("Build an index")
manager = get_build_manager()
db = st.session_state.db
downloads = get_download_manager()


def download_panel() -> None:
    """Get the Kinetics-700 subset (or any classes of an official CSV) into a videos folder."""
    st.caption(
        "Downloads each clip's 10 seconds from YouTube with yt-dlp, re-encodes them to browser-playable H.264 MP4, "
        "replaces unavailable clips by the next candidates of the same class, and can be resumed: what is done "
        "is kept. Needs internet."
    )
    c1, c2, c3, c4 = st.columns([3, 1, 2, 1])
    subset_file = c1.text_input("Subset file", value=str(DEFAULT_SUBSET))
    per_class = c2.number_input("Clips per class", min_value=1, max_value=50, value=5)
    out = c3.text_input("Download into", value="videos/kinetics-subset")
    jobs = c4.number_input("Parallel", min_value=1, max_value=16, value=4)
    if st.button("Download the clips"):
        try:
            folder = check_path(out, "The download folder")
            candidates, _ = plan_from(check_path(subset_file, "The subset file"), per_class=int(per_class))
            downloads.start(
                DownloadRequest(out=str(folder), candidates=candidates, per_class=int(per_class), jobs=int(jobs))
            )
            st.session_state.videos = str(folder)
            st.session_state.pop("videos_input", None)
        except UserError as exc:
            st.error(str(exc))
    try:
        target = str(check_path(out, "The download folder"))
    except UserError:
        return
    current = downloads.job(target)
    if current is not None:
        live = st.fragment(run_every=2.0 if current.active else None)(download_progress)
        live(target)


def download_progress(folder: str) -> None:
    job = downloads.job(folder)
    if job is None:
        return
    p = job.progress
    if job.active and p is not None:
        st.progress(
            p.clips_done / max(1, p.clips_wanted),
            text=f"{p.clips_done} / {p.clips_wanted} clips · {p.failures} unavailable",
        )
        if st.button("Cancel the download"):
            job.cancel()
    if job.state == "failed":
        st.error(job.error)
    elif job.summary is not None:
        (st.warning if job.summary.cancelled or job.summary.short_classes else st.success)(job.summary.line())
        if job.summary.failures:
            st.dataframe(pd.DataFrame(job.summary.failures), hide_index=True, width="stretch")


def offline_demo() -> None:
    """Everything needed to try the app without internet: sample clips and a tiny model that knows them."""
    st.caption(
        "No videos yet, or no internet to download CLIP's weights? Make 50 small synthetic clips of 10 classes "
        "and train a tiny demo CLIP on their colours (under a minute), then build. Every page works with them, "
        "but **the demo model's scores mean nothing** beyond these clips: it matches colours to labels."
    )
    if st.button("Set up the offline demo", icon=":material/science:"):
        try:
            videos = check_path("videos/sample", "The sample videos folder")
            models = check_path(str(Path(st.session_state.output) / "demo-model"), "The demo model folder")
            with st.spinner("Writing the sample clips…"):
                paths, labels = sample_videos(videos)
            with st.spinner("Training the demo model (under a minute)…"):
                spec = demo_model(models, len(labels))
        except UserError as exc:
            st.error(str(exc))
            return
        set_bound("videos", str(videos))
        set_bound("form_model", spec.name)
        set_bound("form_pretrained", spec.pretrained)
        set_bound("form_config", spec.config_path)
        set_bound("form_strategy", "middle")
        st.session_state.demo_note = (
            f"{plural(len(paths), 'sample clip')} of {plural(len(labels), 'class', 'classes')} in {videos}, "
            f"and the demo model {spec.name} are ready and filled in below: press **Start the build**."
        )
    if st.session_state.get("demo_note"):
        st.success(st.session_state.demo_note)


STRATEGIES = ["middle", "uniform", "fps", "scenes"]
SHARD_CHOICES = [0, 1, 2, 4, 8, 16, 32, 64]  # 0: the index's own count (1 for a new index)


def seed_form_from_index() -> None:
    """The form starts from the selected index's source, model and frames (and follows a new selection),
    so resuming a build continues that index instead of starting another or adding other videos to it."""
    listed = next((ix for ix in list_indexes() if ix.info.name == st.session_state.collection), None)
    if listed is None or st.session_state.get("form_for") == listed.info.name:
        return
    st.session_state.form_for = listed.info.name
    spec, frames = listed.info.spec, listed.info.frames
    if listed.info.source_videos:  # recorded at build time (older collections did not)
        set_bound("videos", listed.info.source_videos)
        set_bound("annotations", listed.info.source_annotations)
    set_bound("form_model", spec.name)
    set_bound("form_pretrained", spec.pretrained)
    set_bound("form_config", spec.config_path)
    kind, _, count = frames.partition(":")
    set_bound("form_strategy", kind if kind in STRATEGIES else "middle")
    if kind == "uniform" and count.isdigit():
        set_bound("form_k", max(2, int(count)))
    elif kind == "scenes" and count.isdigit():
        set_bound("form_scenes", int(count))
    elif kind == "fps":
        set_bound("form_fps", float(count))


seed_form_from_index()
model_error = st.session_state.get("model_error", "")
if model_error:  # weights that cannot be had (offline): said at the top, beside the way to try it offline
    st.error(model_error)
with st.expander(
    "0 · Try it offline: sample clips and a tiny demo model", expanded=bool(model_error) or not list_indexes()
):
    offline_demo()

with st.expander("0 · Get the Kinetics-700 subset (optional)"):
    download_panel()

with st.container(border=True):
    st.subheader("1 · Videos")
    bound_text_input(
        "Videos folder on the server",
        "videos",
        help="One sub-folder per label (videos/playing_guitar/clip.mp4), or a folder holding annotations.json, "
        "or the clips of a Kinetics CSV given below.",
    )
    bound_text_input(
        "Annotations file (optional)",
        "annotations",
        placeholder="annotations.json or an official Kinetics CSV (label,youtube_id,time_start,time_end,split)",
    )
    if st.button("Check the source"):
        try:
            scan = explorer().check_source(st.session_state.videos, st.session_state.annotations or None)
        except UserError as exc:
            st.error(str(exc))
        else:
            found = (
                f"{plural(len(scan.videos), 'video')} of {plural(len(scan.labels), 'label')} "
                f"({scan.layout.replace('_', ' ')} layout); {plural(len(scan.skipped), 'item')} skipped."
            )
            if scan.videos:
                st.success(found)
            else:
                st.error(f"Nothing to index: {found} Add videos to the folder, or choose another one.")
            if scan.skipped:
                st.dataframe(
                    pd.DataFrame([(s.item, s.reason) for s in scan.skipped], columns=["item", "reason"]),
                    hide_index=True,
                )

    with st.expander("Add videos by upload"):
        uploads = st.file_uploader(
            "Video files", type=[e.lstrip(".") for e in VIDEO_EXTENSIONS], accept_multiple_files=True
        )
        label = st.text_input("Their label", placeholder="e.g. juggling fire")
        if st.button("Save into the videos folder", disabled=not uploads):
            try:
                for upload in uploads or []:
                    saved = explorer().save_upload(upload.name, upload.getvalue(), st.session_state.videos, label)
                    st.write(f"Saved {saved}")
            except UserError as exc:
                st.error(str(exc))

with st.container(border=True):
    st.subheader("2 · Model and frames")
    existing = sorted({ix.info.spec.describe() for ix in list_indexes()})
    if existing:
        st.caption(
            f"This index folder already holds: {', '.join(existing)}. The form starts from the selected index, so a "
            "build continues it; another model or frame strategy gets its own collection."
        )
    left, right = st.columns(2)
    model_name = bound(
        left.text_input, "open_clip model", "form_model", DEFAULT_MODEL, help="e.g. ViT-B-32-quickgelu, ViT-L-14, RN50"
    )
    pretrained = bound(
        right.text_input,
        "Pretrained tag or local checkpoint",
        "form_pretrained",
        DEFAULT_PRETRAINED,
        help="e.g. openai, laion2b_s34b_b79k, /models/clip.pt",
    )
    config = bound(
        st.text_input,
        "Custom model config (optional)",
        "form_config",
        "",
        placeholder="path/to/MyModel.json (open_clip format)",
    )
    if DEMO_MODEL_NAME in str(model_name):
        st.warning("The demo model's scores mean nothing beyond the sample clips: it only matches colours to labels.")
    c1, c2, c3 = st.columns(3)
    strategy = bound(
        c1.radio,
        "Frames per video",
        "form_strategy",
        "middle",
        options=STRATEGIES,
        horizontal=True,
        help="middle: the centre frame. uniform: K frames spread evenly. fps: R frames per second of video, by the "
        f"frames' own timestamps (at most {MAX_FPS_FRAMES} a video, then spread over it). scenes: the middle frame "
        "of each shot (cut detection), the K longest. Each choice gets its own collection.",
    )
    if strategy == "fps":
        rate = bound(
            c2.number_input,
            "R (frames per second)",
            "form_fps",
            1.0,
            min_value=0.001,
            max_value=MAX_FPS,
            step=0.5,
            format="%.3f",
        )
        frames = f"fps:{round(float(rate), 3):g}"
    elif strategy == "scenes":
        shots = bound(c2.slider, "K (most shots)", "form_scenes", DEFAULT_SCENES, min_value=1, max_value=MAX_SCENES)
        frames = f"scenes:{shots}"
    else:
        count = bound(
            c2.slider,
            "K (uniform)",
            "form_k",
            8,
            min_value=2,
            max_value=MAX_UNIFORM_FRAMES,
            disabled=strategy == "middle",
        )
        frames = "middle" if strategy == "middle" else f"uniform:{count}"
    batch = bound(c3.number_input, "Batch size", "form_batch", 32, min_value=1, max_value=512)
    e1, e2, e3 = st.columns([1, 2, 1])
    engine = bound(
        e1.radio,
        "Engine",
        "form_engine",
        "local",
        options=["local", "ray"],
        horizontal=True,
        help="local: worker processes on this machine. ray: a Ray cluster (pip install -r requirements-ray.txt); "
        "with a remote cluster the index must be a Chroma server (sidebar).",
    )
    ray_address = bound(
        e2.text_input,
        "Ray address (optional)",
        "form_ray_address",
        "",
        placeholder="empty: a local Ray instance for this build; auto or host:port: join a cluster",
        disabled=engine != "ray",
    )
    shards = bound(
        e3.selectbox,
        "Shards",
        "form_shards",
        0,
        options=SHARD_CHOICES,
        format_func=lambda n: "the index's own" if n == 0 else str(n),
        help="Write the index as this many collections, a writer each (in sub-folders of the index folder, or "
        "spread over the sidebar's Chroma servers, comma-separated): faster writes for large builds. An existing "
        "index keeps its own count (1 for a new one).",
    )

job = build_job()
running = job is not None and job.active
start_error = ""


def start_build(request: BuildRequest) -> str:
    """Start the build in the background and show it; a refusal is shown here and returned. A model whose
    weights cannot be had is refused at once and said at the top of the page (offline: a few seconds, not
    the minute the hub client would retry for)."""
    try:
        check_weights_available(request.spec)
    except UserError as exc:
        st.session_state.model_error = str(exc)
        st.rerun()
    st.session_state.pop("model_error", None)
    try:
        manager.start(explorer(), request)
    except UserError as exc:
        st.error(str(exc))
        return str(exc)
    st.rerun()


if st.button("Start the build", type="primary", disabled=running):
    st.session_state.pop("pending_build", None)
    try:
        # The source's own errors here, not in the worker; the build probes each file as it prepares it.
        explorer().check_source(st.session_state.videos, st.session_state.annotations or None, probe=False)
        notes_file = (
            check_path(st.session_state.annotations, "The annotations file") if st.session_state.annotations else None
        )
        output = check_path(st.session_state.output, "The output folder")
        spec = explorer().resolve_spec(model_name, pretrained, config, store_ref())
        request = BuildRequest(
            videos=str(check_path(st.session_state.videos, "The videos folder")),
            db=db,
            servers=st.session_state.servers,
            output=str(output),
            spec=spec,
            frames=frames,
            annotations=str(notes_file) if notes_file else None,
            batch_size=int(batch),
            device=st.session_state.device,
            engine=engine,
            ray_address=((ray_address or "").strip() or None) if engine == "ray" else None,
            shards=int(shards) or None,
        )
        conflict = explorer().source_conflict(request)
        if conflict:  # another source into an existing collection: said, and asked, first
            st.session_state.pending_build = (request, conflict)
        else:
            start_error = start_build(request)
    except UserError as exc:
        start_error = str(exc)
        st.error(start_error)

pending = st.session_state.get("pending_build")
if pending is not None and not running:
    request, conflict = pending
    st.warning(conflict)
    add, keep = st.columns(2)
    if add.button("Add them to this collection", type="primary"):
        st.session_state.pop("pending_build", None)
        start_error = start_build(request)
    if keep.button("Cancel: build nothing"):
        st.session_state.pop("pending_build", None)
        st.rerun()


def show(job: Job) -> None:
    p = job.progress
    st.subheader("Progress")
    if job.active:
        if p is None or job.state in ("scanning videos", "loading model"):
            # Before the first video: say what takes the time (a first model load may download weights).
            st.info(f"{(job.stage or job.state)[:1].upper()}{(job.stage or job.state)[1:]}…")
        else:
            share = p.videos_done / p.videos_total if p.videos_total else 1.0
            st.progress(share, text=f"{p.videos_done} / {p.videos_total} videos")
        if st.button("Cancel the build"):
            job.cancel()
    if p is not None:
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("Videos done", f"{p.videos_done} / {p.videos_total}")
        m2.metric("Frames/s", f"{p.frames_per_s:.1f}")
        m3.metric("Elapsed", p.elapsed())
        m4.metric("ETA", job.eta())
        if p.skipped:
            st.caption(f"Skipped files ({len(p.skipped)})")
            st.dataframe(
                pd.DataFrame([(s.item, s.reason) for s in p.skipped], columns=["file", "reason"]), hide_index=True
            )
    if job.state == "failed":
        st.error(job.error)
    elif job.summary is not None:
        (st.warning if job.summary.cancelled else st.success)(job.summary.line())
        if job.summary.notes:
            with st.expander(f"Notes ({len(job.summary.notes)})"):
                st.dataframe(
                    pd.DataFrame([(n.item, n.reason) for n in job.summary.notes], columns=["file", "note"]),
                    hide_index=True,
                )


@st.fragment(run_every=1.0 if running else None)
def progress_panel() -> None:
    job = build_job()
    if job is None:
        return
    show(job)
    # Once the build ends, refresh the whole app (the sidebar's counts, the other pages' caches).
    if not job.active and st.session_state.get("seen_finished") != job.started_at:
        st.session_state.seen_finished = job.started_at
        if job.summary is not None:
            st.session_state.select_collection = job.summary.index_name
        if running:
            st.rerun()


if not start_error:  # a refused start shows its error alone, not an older build's progress under it
    progress_panel()
