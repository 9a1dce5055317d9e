"""Share mode: the dashboard over a bundle (folder, zip or URL), read-only, writing only into its private
temporary folder; and the deployment as Streamlit Community Cloud runs it, in a real browser."""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.app import Explorer
from core.ground import UserError
from core.requests import EvalSettings, IndexRef, SearchQuery
from core.share import open_shared
from tests.helpers import ROOT, free_port, wait_for_streamlit

APP = str(ROOT / "streamlit_app.py")
QUERY = "a video of a person juggling fire."


@pytest.fixture(scope="module")
def bundle_zip(built_index, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's index exported with its model: a self-contained bundle (read-only for tests)."""
    out = tmp_path_factory.mktemp("bundle") / "my-index.zip"
    Explorer().export(IndexRef(db=str(built_index["db"])), out, include_model=True)
    return out


@pytest.fixture()
def served(bundle_zip: Path) -> Iterator[str]:
    """The bundle's folder on a static HTTP server on 127.0.0.1 (started and stopped here)."""
    handler = functools.partial(_QuietHandler, directory=str(bundle_zip.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _shares() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("clip-explorer-share-*")}


def test_a_shared_bundle_searches_like_the_original_and_refuses_writes(built_index, served: str) -> None:
    downloaded: list[tuple[int, int]] = []
    shared = open_shared(f"{served}/my-index.zip", progress=lambda done, total: downloaded.append((done, total)))
    assert downloaded and downloaded[-1][0] == downloaded[-1][1] > 0  # progress, up to the whole file
    assert shared.shared_bundle == "my-index.zip" and not shared.offers("build") and not shared.offers("save_run")
    assert Explorer().offers("build")
    here = shared.search(shared.ref, SearchQuery(QUERY, k=8)).hits
    there = Explorer().search(IndexRef(db=str(built_index["db"])), SearchQuery(QUERY, k=8)).hits
    assert [(h.video_id, h.frame_index, h.similarity) for h in here] == [
        (h.video_id, h.frame_index, h.similarity) for h in there
    ]
    assert all(Path(h.frame_path).is_relative_to(shared.home) or Path(h.frame_path).is_file() for h in here)
    runs = shared.runs(shared.ref)  # what the bundle carried (the session's index may have saved some)
    for write in (
        lambda: shared.record(shared.ref, shared.evaluate(shared.ref, EvalSettings())),
        lambda: shared.save_upload("a.mp4", b"", "videos", "label"),
        lambda: shared.build(None),  # type: ignore[arg-type]
    ):
        with pytest.raises(UserError, match="read-only") as info:
            write()
        assert "\n" not in str(info.value)
    assert shared.runs(shared.ref) == runs  # nothing was recorded


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{served}/missing.zip", "could not be downloaded (HTTP 404)"),
        ("http://127.0.0.1:{port}/x.zip", "could not be downloaded (Connection refused)"),
        ("{tmp}/nothing-here", "There is no bundle at"),
    ],
    ids=["404", "unreachable URL", "no such path"],
)
def test_a_bundle_that_cannot_be_had_is_one_sentence_and_leaves_nothing(
    served: str, tmp_path: Path, source: str, expected: str
) -> None:
    before = _shares()
    with pytest.raises(UserError, match=re.escape(expected)) as info:
        open_shared(source.format(served=served, port=free_port(), tmp=tmp_path))
    assert "\n" not in str(info.value) and str(info.value).endswith(".")
    assert _shares() == before  # its temporary folder went with it


def _app(monkeypatch: pytest.MonkeyPatch, bundle: str) -> AppTest:
    monkeypatch.setenv("CLIP_EXPLORER_BUNDLE", bundle)
    return AppTest.from_file(APP, default_timeout=120)


def test_the_app_shows_a_bundle_read_only(monkeypatch: pytest.MonkeyPatch, bundle_zip: Path) -> None:
    at = _app(monkeypatch, str(bundle_zip)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("shared bundle **my\\-index\\.zip**" in i.value for i in at.sidebar.info)
    assert not at.sidebar.text_input  # no index or output folder to type
    at.text_input(key="query").input(QUERY)
    at.form_submit_button[0].click().run()
    assert not at.exception and len(at.image) == 12
    home = Path(at.session_state["db"]).parent
    assert home.name.startswith("clip-explorer-share-") and Path(at.session_state["output"]).parent == home
    at.switch_page("pages/metrics.py").run()
    assert not at.exception and not at.error
    assert not [b for b in at.button if b.label == "Save as a run"]
    assert any(m.label == "precision@1" for m in at.metric)
    at.switch_page("pages/runs.py").run()
    assert not at.exception and not [b for b in at.button if b.label == "Evaluate the grid"]


def test_an_unreachable_bundle_url_is_one_message_in_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(monkeypatch, f"http://127.0.0.1:{free_port()}/my-index.zip").run()
    assert not at.exception
    assert [e.value for e in at.error] and "could not be downloaded" in at.error[0].value


@pytest.mark.browser
def test_deployed_as_on_community_cloud_from_a_fresh_clone(served: str, tmp_path: Path) -> None:
    """Community Cloud clones the repository, installs deploy/requirements.txt and runs deploy/streamlit_app.py
    with the secret `bundle`. A fresh environment from that file cannot be made here (the CPU-only torch
    wheels cannot be downloaded offline), so the app runs on this virtual environment's packages, from a
    fresh clone of the committed branch; the bundle comes from a URL on 127.0.0.1, through
    .streamlit/secrets.toml outside the clone (as Community Cloud provides secrets). Python's bytecode
    cache is pointed outside the clone (PYTHONPYCACHEPREFIX), since compiling is not the app writing."""
    from playwright.sync_api import expect, sync_playwright

    from tests.test_browser import CHROMIUM, FLAGS

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'bundle = "{served}/my-index.zip"\n')
    port = free_port()
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(clone), "PYTHONPYCACHEPREFIX": str(tmp_path / "pyc"),
    }  # fmt: skip
    env.pop("CLIP_EXPLORER_BUNDLE", None)
    command = [
        sys.executable, "-m", "streamlit", "run", "deploy/streamlit_app.py", "--server.port", str(port),
        "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--secrets.files", str(secrets),
    ]  # fmt: skip
    log = (tmp_path / "streamlit.log").open("w")
    server = subprocess.Popen(command, cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_streamlit(url, tmp_path / "streamlit.log")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url)
            box = page.get_by_label("Describe an action")
            box.wait_for(timeout=120_000)
            expect(page.get_by_text("Showing the shared bundle")).to_be_visible()
            box.fill(QUERY)
            box.press("Enter")
            gallery = page.locator("[data-testid='stImage'] img")
            expect(gallery.first).to_be_visible(timeout=60_000)
            assert gallery.count() == 12
            expect(page.get_by_text("juggling fire", exact=True).first).to_be_visible()
            assert page.get_by_role("link", name="Build index").count() == 0
            page.get_by_role("link", name="Metrics").click()
            expect(page.get_by_text("precision@1").first).to_be_visible(timeout=60_000)
            expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)
            assert page.get_by_role("button", name="Save as a run").count() == 0
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    status = subprocess.run(
        ["git", "status", "--porcelain", "--ignored"], cwd=clone, capture_output=True, text=True, check=True
    )
    assert status.stdout == ""  # nothing written in the clone, not even ignored files
