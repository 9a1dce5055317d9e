"""What every page shares: the settings in session state, the sidebar, and the index-or-message helpers."""

from __future__ import annotations

import argparse
import os
import runpy
import time
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import streamlit as st

from core.app import Explorer, ListedIndex
from core.ground import UserError, plural
from core.jobs import Job
from core.model.embed import ClipModel
from core.requests import ChromaServer, IndexRef, describe_servers, parse_hosts
from core.resources import get_build_manager, get_explorer, get_shared_explorer
from core.store.index import IndexInfo

BUILD_PAGE = Path(__file__).resolve().parent / "build.py"  # absolute: the entrypoint may live elsewhere
_MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_{}[]()#+-.!|<>~$"})


def md(text: object) -> str:
    """Text shown through st.markdown, with Markdown's special characters escaped."""
    return str(text).translate(_MARKDOWN_SPECIAL)


ENTRY_SCRIPT = Path(__file__).resolve().parent.parent / "streamlit_app.py"


# Set while streamlit_app.py runs a page, in that run's thread only: a page run any other way has
# neither the command line's settings nor the sidebar.
_THROUGH_ENTRY: ContextVar[bool] = ContextVar("through_entry", default=False)


def run_page(page: Any) -> None:
    """Run the page st.navigation chose, marked as coming through the entry script."""
    token = _THROUGH_ENTRY.set(True)
    try:
        page.run()
    finally:
        _THROUGH_ENTRY.reset(token)


def require_navigation() -> None:
    """Make every run of a page go through streamlit_app.py: its navigation, settings and sidebar.

    With a pages/ folder, Streamlit starts in its old multipage mode, and a run that starts before
    the entry script has called st.navigation (a deep link such as /metrics on a fresh server, or a
    click on a page link during a cold start, while another run of the session is still importing)
    runs the linked page file on its own: raw file list, no sidebar, none of the command line's
    settings. Then the entry script is run here, in this same run (a rerun would drop the click that
    brought us here): it leaves that mode, draws the navigation and sidebar, sets the settings and
    runs this page again, properly; the outer, bare run stops.

    Whether this run came through the entry script is asked of this thread's context, not of
    Streamlit's process-wide flag (PagesManager.uses_pages_directory, internal, checked against
    Streamlit 1.67.0), which another session's run may have changed meanwhile; this function is the
    only place that touches that flag.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if not _THROUGH_ENTRY.get():
        PagesManager.uses_pages_directory = False
        runpy.run_path(str(ENTRY_SCRIPT), run_name="__main__")
        st.stop()


def init_state(args: argparse.Namespace) -> None:
    """Defaults from the command line, once per browser session."""
    # The operator's own choices are allowed roots: the folders given with --allow-root (default:
    # the working directory) and the index and output folders from the command line.
    chosen = [*(args.allow_root or [os.getcwd()]), args.db, args.output]
    roots = list(dict.fromkeys(str(Path(r).expanduser().resolve()) for r in chosen))
    defaults = {
        "servers": ChromaServer.resolve(args.chroma_host, args.chroma_port),
        "db": args.db,
        "output": args.output,
        "device": args.device,
        "roots": roots,
        "videos": "videos",
        "annotations": "",
        "collection": None,
        "history": [],
        "bundle": args.bundle or "",
        "pretrained": args.pretrained or "",
    }
    for key, value in defaults.items():
        st.session_state.setdefault(key, value)


def allowed_roots() -> list[Path]:
    """The folders the operator lets this app read and write (--allow-root; default: where it started)."""
    return [Path(r) for r in st.session_state.roots]


def explorer() -> Explorer:
    """The application layer with this session's choices (output folder, device, allowed roots); over a
    shared bundle, the read-only one."""
    if st.session_state.get("bundle"):
        return get_shared_explorer(st.session_state.bundle, st.session_state.device, st.session_state.pretrained)
    return get_explorer(st.session_state.output, st.session_state.device, tuple(st.session_state.roots))


def open_share() -> None:
    """In share mode, open the bundle (a URL is downloaded once per process, with a progress bar) and point
    the session at its private folder; a bundle that cannot be opened is one message, and the run stops."""
    source = st.session_state.get("bundle")
    if not source:
        return
    try:
        shared = get_shared_explorer(source, st.session_state.device, st.session_state.pretrained)
    except UserError as exc:
        st.error(str(exc))
        st.stop()
    st.session_state.update(db=shared.ref.db, output=shared.output, roots=[str(shared.home)], servers=())


def check_path(text: str, what: str) -> Path:
    """A path typed in the UI, resolved, and refused unless it lies inside an allowed root."""
    return explorer().confine(text, what)


def store_ref() -> IndexRef:
    """The index store in use (the folder or the server), no collection chosen."""
    return IndexRef(db=st.session_state.db, servers=st.session_state.servers)


def store_label() -> str:
    return store_ref().describe()


def build_job() -> Job | None:
    return get_build_manager().job(store_ref().key())


def list_indexes() -> list[ListedIndex]:
    """The store's collections, read once per run (the sidebar lists them; pages reuse the list)."""
    run_key = st.session_state.get("_run_key")
    cached = st.session_state.get("_listed")
    if cached is not None and cached[0] == run_key:
        return cached[1]
    try:
        found = explorer().indexes(store_ref())
    except UserError as exc:  # e.g. the Chroma server is down: say so, keep the app up
        st.sidebar.error(str(exc))
        found = []
    except Exception as exc:  # an unreadable folder: say so in the sidebar, do not take the app down
        st.sidebar.error(f"Cannot open the index at {store_label()}: {exc.__class__.__name__}: {exc}")
        found = []
    st.session_state._listed = (run_key, found)
    return found


def new_run() -> None:
    """Called once at the top of every run of the app: cached listings from earlier runs expire."""
    st.session_state._run_key = st.session_state.get("_run_key", 0) + 1


def _describe(info: IndexInfo) -> str:
    return f"{info.spec.describe()} · {info.frames} · {plural(info.count, 'frame')}"


def _copy(widget_key: str, state_key: str) -> None:
    st.session_state[state_key] = st.session_state[widget_key]


def _copy_confined(widget_key: str, state_key: str, what: str) -> None:
    try:
        st.session_state[state_key] = str(check_path(st.session_state[widget_key], what))
        st.session_state.pop(f"{state_key}_error", None)
    except UserError as exc:
        st.session_state[f"{state_key}_error"] = str(exc)
        st.session_state[widget_key] = st.session_state[state_key]


def bound(widget: Callable[..., Any], label: str, state_key: str, default: Any, **kwargs: Any) -> Any:
    """Any input widget bound to a plain session-state key, so its value survives page changes
    (Streamlit drops a widget's own key when a run does not draw it)."""
    st.session_state.setdefault(state_key, default)
    widget_key = f"{state_key}_input"
    if widget_key not in st.session_state:
        st.session_state[widget_key] = st.session_state[state_key]
    return widget(label, key=widget_key, on_change=_copy, args=(widget_key, state_key), **kwargs)


def set_bound(state_key: str, value: Any) -> None:
    """Change a bound widget's value from code (before the widget is drawn in this run)."""
    st.session_state[state_key] = value
    st.session_state.pop(f"{state_key}_input", None)


def bound_text_input(
    label: str, state_key: str, help: str | None = None, placeholder: str | None = None, confine: str = ""
) -> None:
    """A text input bound to a plain session-state key (widget keys vanish when a run skips the widget).

    With `confine`, a path outside the allowed roots is refused (with that name in the message)."""
    widget_key = f"{state_key}_input"
    # Seed the widget only when Streamlit has dropped its state (a run without this widget):
    # writing a widget key on every run would also swallow the button clicks of that run.
    if widget_key not in st.session_state:
        st.session_state[widget_key] = st.session_state[state_key]
    callback, args = (_copy_confined, (widget_key, state_key, confine)) if confine else (_copy, (widget_key, state_key))
    st.text_input(label, key=widget_key, help=help, placeholder=placeholder, on_change=callback, args=args)
    error = st.session_state.get(f"{state_key}_error")
    if error:
        st.error(error)


def _apply_server() -> None:
    st.session_state.server_error = ""
    if not st.session_state.use_server or not st.session_state.server_host.strip():
        st.session_state.servers = ()
        return
    try:
        hosts = parse_hosts(st.session_state.server_host)
    except UserError as exc:
        st.session_state.server_error = str(exc)
        return
    st.session_state.servers = tuple(
        ChromaServer(
            host=host,
            port=port or int(st.session_state.server_port),
            ssl=bool(st.session_state.server_ssl),
            token=st.session_state.server_token,
        )
        for host, port in hosts
    )


def server_settings() -> None:
    """Use shared Chroma servers instead of the embedded folder (the token is never shown or logged); several,
    comma-separated, hold a sharded index."""
    current = st.session_state.servers
    with st.expander(f"Chroma server{': ' + describe_servers(current) if current else ' (off)'}"):
        st.session_state.setdefault("use_server", bool(current))
        st.session_state.setdefault("server_host", ", ".join(f"{s.host}:{s.port}" for s in current))
        st.session_state.setdefault("server_port", current[0].port if current else 8000)
        st.session_state.setdefault("server_ssl", current[0].ssl if current else False)
        st.session_state.setdefault("server_token", current[0].token if current else "")
        st.toggle("Use a Chroma server", key="use_server", on_change=_apply_server)
        st.text_input("Host", key="server_host", on_change=_apply_server,
                      help="host or host:port; several, comma-separated, for a sharded index")  # fmt: skip
        st.number_input("Port", 1, 65535, key="server_port", on_change=_apply_server, help="where a host gives none")
        st.checkbox("HTTPS", key="server_ssl", on_change=_apply_server)
        st.text_input("Token (optional)", key="server_token", type="password", on_change=_apply_server)
        if st.session_state.get("server_error"):
            st.error(st.session_state.server_error)


def sidebar() -> None:
    with st.sidebar:
        st.markdown("### :material/movie: CLIP video-frame explorer")
        app = explorer()
        if app.shared_bundle:
            st.info(f"Showing the shared bundle **{md(app.shared_bundle)}**, read-only.", icon=":material/share:")
        else:
            bound_text_input(
                "Index folder (ChromaDB)", "db", help="Start the app with -- --db DIR to change the default.",
                confine="The index folder",
            )  # fmt: skip
            bound_text_input("Output folder (thumbnails, reports)", "output", confine="The output folder")
            server_settings()
        found = list_indexes()
        if not found:
            st.caption("No index in this folder yet.")
            st.session_state.collection = None
        else:
            names = [ix.info.name for ix in found]
            wanted = st.session_state.pop("select_collection", None)  # set when a build finishes
            if wanted in names:
                st.session_state.collection = wanted
            if st.session_state.collection not in names:
                st.session_state.collection = names[0]
            infos = {ix.info.name: ix.info for ix in found}
            if st.session_state.get("collection_choice") != st.session_state.collection:
                st.session_state.collection_choice = st.session_state.collection  # only when changed here
            st.selectbox(
                "Collection",
                names,
                key="collection_choice",
                on_change=_copy,
                args=("collection_choice", "collection"),
                format_func=lambda n: _describe(infos[n]),
                help="One collection per model and frame strategy; the newest is chosen by default.",
            )
            info = infos[st.session_state.collection]
            st.caption(md(info.name))  # the full name, wrapped (the box above cuts long ones)
            problem = next(ix.problem for ix in found if ix.info.name == info.name)
            if problem:
                st.warning(problem)
            st.markdown(
                f"**Model** {info.spec.describe()}  \n"
                f"**Frames** {info.frames} · **{plural(info.count, 'frame')}** indexed  \n"
                f"**Built** {info.built_at or 'not finished yet'}"
            )
            if info.shards:
                with st.expander(f"{plural(len(info.shards), 'shard')}"):
                    st.markdown("  \n".join(f"`{md(s.name[-3:])}` {plural(s.count, 'frame')} · {md(s.where)}"
                                            for s in info.shards))  # fmt: skip
        job = build_job()
        if job is not None and job.active:
            # Its own fragment, refreshed as often as the Build page's progress, so the two agree.
            st.fragment(run_every=1.0)(sidebar_build_status)()


def sidebar_build_status() -> None:
    job = build_job()
    if job is None or not job.active:
        st.caption("The build has finished: reload the page to see it.")
        return
    p = job.progress
    done = f"{p.videos_done}/{p.videos_total} videos" if p else (job.stage or job.state)
    st.info(f"Build running: {done}")


def current_index() -> ListedIndex | None:
    """The selected collection, or a message pointing to the Build page."""
    found = {ix.info.name: ix for ix in list_indexes()}
    listed = found.get(st.session_state.collection) if found else None
    if listed is None:
        st.info(f"There is no index in **{md(store_label())}** yet. Build one from a folder of videos first.")
        if explorer().offers("build"):
            st.page_link(BUILD_PAGE, label="Go to Build index", icon=":material/construction:")
    elif listed.problem:
        st.warning(listed.problem)
        return None
    return listed


def index_model(listed: ListedIndex) -> ClipModel | None:
    """The model the index was built with, or the reason it cannot be loaded (said on the page)."""
    try:
        return explorer().model(listed.info.spec)
    except UserError as exc:
        st.error(str(exc))
        return None


def build_in_progress_note() -> None:
    job = build_job()
    if job is not None and job.active and job.progress is not None:
        p = job.progress
        st.caption(
            f"⏳ A build is running ({p.videos_done}/{p.videos_total} videos, started "
            f"{time.strftime('%H:%M', time.localtime(job.started_at))}): results cover what is indexed so far."
        )
