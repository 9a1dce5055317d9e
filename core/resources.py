"""Streamlit resources: the one module of core/ that imports Streamlit.

It caches the application layer and what it returns, nothing more: one `ProcessCache` (models,
Chroma clients) and one build and download manager per server process, an `Explorer` per set of
session choices, and the derived tables (an evaluation, an index's labels) keyed by the index's
version, so they refresh as a build adds videos.

Importing it is light: the application layer (torch, open_clip, chromadb) is imported by
`load_library`, once per process, so that a page can say it is loading before that.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING

import streamlit as st

if TYPE_CHECKING:
    from core.analysis.evaluation import Evaluation
    from core.analysis.failures import FailureAnalysis
    from core.analysis.probe import ProbeResult
    from core.app import Explorer
    from core.jobs import BuildManager, DownloadManager
    from core.reader import ProcessCache
    from core.requests import EvalSettings, IndexRef
    from core.share import SharedExplorer

_LIBRARY_LOADED = threading.Event()


def library_loaded() -> bool:
    """Whether `load_library` has finished in this process (no page needs to wait for it)."""
    return _LIBRARY_LOADED.is_set()


def load_library() -> None:
    """Import the application layer and the libraries under it, once per process: a session that
    comes while another imports them waits for that import (Python's import lock), not a second one.
    The application layer imports its libraries where they are first used (a CLI build imports Chroma beside
    its model load); the dashboard imports them here, once, while its first page says so."""
    for module in ("core.app", "core.jobs", "chromadb", "open_clip"):
        importlib.import_module(module)
    _LIBRARY_LOADED.set()


@st.cache_resource
def get_process_cache() -> ProcessCache:
    from core.reader import ProcessCache

    return ProcessCache()


@st.cache_resource(max_entries=32)
def get_explorer(output: str, device: str, roots: tuple[str, ...]) -> Explorer:
    """The application layer for these choices; every Explorer shares the process's models and clients."""
    from core.app import Explorer

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

    from core.share import open_shared

    shared = open_shared(source, device, get_process_cache(), progress, pretrained or None)
    bar.empty()
    return shared


@st.cache_resource
def get_build_manager() -> BuildManager:
    from core.jobs import BuildManager

    return BuildManager()


@st.cache_resource
def get_download_manager() -> DownloadManager:
    from core.jobs import DownloadManager

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
    from core.analysis.reports import image_data_uri

    return image_data_uri(path, max_side)
