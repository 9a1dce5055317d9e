"""CLIP video-frame explorer: the dashboard.

    streamlit run streamlit_app.py -- [--db chroma_db] [--output output] [--device auto] [--allow-root DIR ...]

The index and output folders can also come from CLIP_EXPLORER_DB / CLIP_EXPLORER_OUTPUT, and be
changed in the sidebar. Pages are thin: they read widgets, call core/, and render.
"""

from __future__ import annotations

import argparse
import os
import sys

import streamlit as st

st.set_page_config(page_title="CLIP video-frame explorer", page_icon="🎞️", layout="wide")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="streamlit run streamlit_app.py --", add_help=False)
    parser.add_argument("--db", default=os.environ.get("CLIP_EXPLORER_DB", "chroma_db"))
    parser.add_argument("--output", default=os.environ.get("CLIP_EXPLORER_OUTPUT", "output"))
    parser.add_argument("--device", default=os.environ.get("CLIP_EXPLORER_DEVICE", "auto"))
    parser.add_argument(
        "--allow-root",
        action="append",
        default=[r for r in os.environ.get("CLIP_EXPLORER_ROOTS", "").split(os.pathsep) if r] or None,
        help="a folder the UI may read videos from and write to (repeatable; default: the working directory)",
    )
    parser.add_argument("--chroma-host", help="use this Chroma server instead of the --db folder")
    parser.add_argument("--chroma-port", type=int, default=None, help="its port (default: 8000)")
    args, _unknown = parser.parse_known_args(argv)
    return args


# Navigation first: until it runs, Streamlit would list the raw files of pages/, and the imports
# below (torch, open_clip, chromadb) take seconds on a cold start.
page = st.navigation(
    [
        st.Page("pages/search.py", title="Search", icon=":material/search:", default=True),
        st.Page("pages/metrics.py", title="Metrics", icon=":material/monitoring:"),
        st.Page("pages/runs.py", title="Runs", icon=":material/compare_arrows:"),
        st.Page("pages/build.py", title="Build index", icon=":material/construction:"),
    ]
)

from core.resources import library_loaded, load_library  # noqa: E402  (light: the library comes below)

if not library_loaded():
    # A cold start: say which page this is and what takes the time, then import once per process
    # (a page clicked meanwhile starts a new run, which shows this too and waits for the same import).
    loading = st.empty()
    with loading.container():
        st.header(page.title)
        st.caption("Loading the model library… (once per server start: torch, open_clip, chromadb)")
    load_library()
    loading.empty()

from core.app import configure_runtime  # noqa: E402
from pages.common import init_state, new_run, run_page, sidebar  # noqa: E402

configure_runtime()
init_state(parse_args(sys.argv[1:]))
new_run()
sidebar()
run_page(page)
