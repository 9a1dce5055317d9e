"""CLIP video-frame explorer: the dashboard.

    streamlit run streamlit_app.py -- [--db chroma_db] [--output output] [--device auto] [--allow-root DIR ...]
    streamlit run streamlit_app.py -- --bundle PATH_OR_URL      (share mode: a bundle, read-only)

The index and output folders can also come from CLIP_EXPLORER_DB / CLIP_EXPLORER_OUTPUT, and be
changed in the sidebar. The bundle can also come from CLIP_EXPLORER_BUNDLE or the secret `bundle`
(Streamlit Community Cloud). Pages are thin: they read widgets, call core/, and render.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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
    parser.add_argument("--bundle", default=os.environ.get("CLIP_EXPLORER_BUNDLE") or secret("bundle"),
                        help="show this bundle read-only: a folder, a .zip or an http(s) URL of a .zip")  # fmt: skip
    parser.add_argument("--pretrained", help="the checkpoint a bundle records without holding it")
    args, _unknown = parser.parse_known_args(argv)
    return args


def secret(key: str) -> str:
    """A value of the app's secrets (.streamlit/secrets.toml, or Community Cloud's settings); '' without one."""
    try:
        return str(st.secrets.get(key) or "")
    except FileNotFoundError:  # no secrets file at all
        return ""


# Navigation first: until it runs, Streamlit would list the raw files of pages/, and the imports
# below (torch, open_clip, chromadb) take seconds on a cold start. A shared bundle is read-only: no Build page.
options = parse_args(sys.argv[1:])
# Pages by absolute path: deploy/streamlit_app.py runs this file, and Streamlit resolves relative page
# paths against the entrypoint's folder.
PAGES = Path(__file__).resolve().parent / "pages"
page = st.navigation(
    [
        st.Page(PAGES / "search.py", title="Search", icon=":material/search:", default=True),
        st.Page(PAGES / "metrics.py", title="Metrics", icon=":material/monitoring:"),
        st.Page(PAGES / "runs.py", title="Runs", icon=":material/compare_arrows:"),
        *([] if options.bundle else [st.Page(PAGES / "build.py", title="Build index", icon=":material/construction:")]),
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

from core.runtime import configure_runtime  # noqa: E402
from pages.common import init_state, new_run, open_share, run_page, sidebar  # noqa: E402

configure_runtime()
init_state(options)
open_share()
new_run()
sidebar()
run_page(page)
