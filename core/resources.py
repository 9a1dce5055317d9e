"""Streamlit resources: the one module of core/ that imports Streamlit.

The CLIP model, the ChromaDB clients and the build manager are created once per process (and per
model choice) with ``st.cache_resource``; derived tables, such as an index's evaluation with a given
prompt, are cached with ``st.cache_data`` and keyed by the index's version, so they refresh as a
build adds videos.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.embed import ClipModel, ModelSpec, load_model
from core.evaluation import Evaluation, evaluate_contents
from core.index import ChromaServer, FrameIndex, IndexContents, connect, list_indexes
from core.jobs import BuildManager, DownloadManager
from core.prompts import resolve_prompts
from core.reports import image_data_uri


@st.cache_resource(show_spinner="Loading the CLIP model…", max_entries=3)
def get_model(spec: ModelSpec, device: str = "auto") -> ClipModel:
    return load_model(spec, device)


@st.cache_resource(max_entries=8)
def _client(db: str, server: ChromaServer | None):
    return connect(db, server)


def get_client(db: str, server: ChromaServer | None = None):
    """The cached client; the embedded one is reopened if its folder was deleted meanwhile."""
    if server is None and not (Path(db).expanduser() / "chroma.sqlite3").exists():
        _client.clear()
    return _client(db, server)


@st.cache_resource
def get_build_manager() -> BuildManager:
    return BuildManager(model_loader=lambda spec, device: get_model(spec, device))


@st.cache_resource
def get_download_manager() -> DownloadManager:
    return DownloadManager()


def find_index(db: str, name: str, server: ChromaServer | None = None) -> FrameIndex | None:
    return next((ix for ix in list_indexes(get_client(db, server)) if ix.name == name), None)


@st.cache_resource(max_entries=2, show_spinner="Reading the index…")
def get_contents(db: str, name: str, version: str, server: ChromaServer | None = None) -> IndexContents:
    index = find_index(db, name, server)
    if index is None:
        raise KeyError(name)
    return index.contents()


@st.cache_data(max_entries=32, ttl=3600, show_spinner="Scoring the videos against the prompts…")
def get_evaluation(
    db: str,
    name: str,
    version: str,
    prompts: tuple[str, ...],
    pooling: str,
    label_mode: str = "keep",
    classes: str = "present",
    device: str = "auto",
    server: ChromaServer | None = None,
) -> Evaluation:
    index = find_index(db, name, server)
    if index is None:
        raise KeyError(name)
    model = get_model(index.spec, device)
    evaluation = evaluate_contents(
        get_contents(db, name, version, server),
        model,
        resolve_prompts(list(prompts)),
        pooling=pooling,
        classes=classes,
        label_mode=label_mode,
    )
    evaluation.settings.update({"index": name, "frames": index.frames})
    return evaluation


@st.cache_data(max_entries=16, ttl=3600, show_spinner=False)
def get_labels(db: str, name: str, version: str, server: ChromaServer | None = None) -> list[str]:
    """The labels of a collection (read once per index version, not on every rerun)."""
    index = find_index(db, name, server)
    return index.labels() if index is not None else []


@st.cache_data(max_entries=20_000, show_spinner=False)
def thumbnail_uri(path: str, mtime: float, max_side: int = 160) -> str:
    """A thumbnail as a data URI for tables (cached per file and modification time)."""
    return image_data_uri(path, max_side)
