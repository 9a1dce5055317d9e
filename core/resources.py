"""Streamlit resources: the one module of core/ that imports Streamlit.

It caches the application layer and what it returns, nothing more: one `ProcessCache` (models,
Chroma clients) and one build and download manager per server process, an `Explorer` per set of
session choices, and the derived tables (an evaluation, an index's labels) keyed by the index's
version, so they refresh as a build adds videos.
"""

from __future__ import annotations

import streamlit as st

from core.app import (
    EvalSettings,
    Evaluation,
    Explorer,
    FailureAnalysis,
    IndexRef,
    ProbeResult,
    ProcessCache,
    SharedExplorer,
    image_data_uri,
    open_shared,
)
from core.jobs import BuildManager, DownloadManager


@st.cache_resource
def get_process_cache() -> ProcessCache:
    return ProcessCache()


@st.cache_resource(max_entries=32)
def get_explorer(output: str, device: str, roots: tuple[str, ...]) -> Explorer:
    """The application layer for these choices; every Explorer shares the process's models and clients."""
    return Explorer(output=output, device=device, roots=roots, cache=get_process_cache())


@st.cache_resource(show_spinner="Opening the shared bundle…")
def get_shared_explorer(source: str, device: str, pretrained: str) -> SharedExplorer:
    """The read-only application layer over a bundle: opened (a URL downloaded, with a progress bar) once per
    server process."""
    # Made here, not passed in: Streamlit replays what a cached function drew, which it can only do for
    # elements the function made itself.
    bar = st.empty()

    def progress(done: int, total: int) -> None:
        size = f"{done / 1e6:.1f} of {total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
        bar.progress(min(1.0, done / total) if total else 0.0, text=f"Downloading the bundle: {size}")

    shared = open_shared(source, device, get_process_cache(), progress, pretrained or None)
    bar.empty()
    return shared


@st.cache_resource
def get_build_manager() -> BuildManager:
    return BuildManager()


@st.cache_resource
def get_download_manager() -> DownloadManager:
    return DownloadManager()


@st.cache_data(max_entries=32, ttl=3600, show_spinner="Scoring the videos against the prompts…")
def get_evaluation(_explorer: Explorer, ref: IndexRef, version: str, settings: EvalSettings) -> Evaluation:
    """One evaluation per index version and settings (nothing is recorded: saving is the user's call)."""
    return _explorer.evaluate(ref, settings, save=False)


@st.cache_data(max_entries=16, ttl=3600, show_spinner="Looking for where it fails…")
def get_failures(_explorer: Explorer, ref: IndexRef, version: str, settings: EvalSettings) -> FailureAnalysis:
    """The failure analysis of one evaluation (it may score a middle and a uniform:K sibling too)."""
    return _explorer.failures(ref, get_evaluation(_explorer, ref, version, settings))


@st.cache_data(max_entries=16, ttl=3600, show_spinner="Training the linear probe on the embeddings…")
def get_probe(_explorer: Explorer, ref: IndexRef, version: str, settings: EvalSettings) -> ProbeResult:
    """The linear probe for one index version and settings (seconds to a minute: trained on demand)."""
    return _explorer.probe(ref, settings)


@st.cache_data(max_entries=16, ttl=3600, show_spinner=False)
def get_labels(_explorer: Explorer, ref: IndexRef, version: str) -> list[str]:
    """The labels of a collection (read once per index version, not on every rerun)."""
    return _explorer.labels(ref)


@st.cache_data(max_entries=20_000, show_spinner=False)
def thumbnail_uri(path: str, mtime: float, max_side: int = 160) -> str:
    """A thumbnail as a data URI for tables (cached per file and modification time)."""
    return image_data_uri(path, max_side)
