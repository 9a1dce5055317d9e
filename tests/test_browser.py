"""End to end in a real browser: ``streamlit run`` on a free port, Debian's Chromium driven by Playwright.

Marked ``browser`` (skip locally with ``-m "not browser"``); CI installs Chromium and runs it. Set
CLIP_EXPLORER_SCREENSHOTS=DIR to also copy the screenshots there (the README's come from here).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, wait_for_streamlit

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def app_url(built_index: dict, tmp_path: Path):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
        "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--", "--db", str(built_index["db"]), "--output", str(built_index["output"]), "--allow-root", str(tmp_path),
    ]  # fmt: skip
    log = (tmp_path / "streamlit.log").open("w")
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_streamlit(url, tmp_path / "streamlit.log", seconds=90)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_search_in_a_real_browser(app_url: str, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: apt-get install -y chromium (or deselect with -m 'not browser').")
    from playwright.sync_api import expect, sync_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        # A deep link on a fresh server must still go through the app's navigation and sidebar.
        page.goto(f"{app_url}/metrics")
        expect(page.get_by_text("precision@1").first).to_be_visible(timeout=60_000)
        expect(page.get_by_role("link", name="Runs")).to_be_visible()
        assert page.get_by_role("link", name="common").count() == 0

        page.goto(app_url)
        box = page.get_by_label("Describe an action")
        box.wait_for(timeout=60_000)
        expect(page.get_by_text("Type a description and press Enter")).to_be_visible(timeout=60_000)
        box.fill("a video of a person juggling fire.")
        box.press("Enter")
        gallery = page.locator("[data-testid='stImage'] img")
        expect(gallery.first).to_be_visible(timeout=60_000)
        expect(page.get_by_text("juggling fire", exact=True).first).to_be_visible()
        assert gallery.count() == 12
        page.wait_for_timeout(1000)
        page.screenshot(path=str(shots / "search.png"))

        # Save the Metrics page's evaluation as a run (looking records nothing), for the Runs page's chart.
        page.goto(f"{app_url}/metrics")
        save = page.get_by_role("button", name="Save as a run")
        save.wait_for(timeout=60_000)
        save.click()
        expect(page.get_by_text("Saved as a run").or_(page.get_by_text("already saved")).first).to_be_visible(
            timeout=30_000
        )

        # Each page: what must be on it (text, and whether a Plotly chart is), and the screenshot height.
        for name, marker, chart, height in (
            ("metrics", "precision@1", True, 1700),
            ("runs", "Runs side by side", True, 1300),
            ("build", "Build an index", False, 1100),
        ):
            page.goto(f"{app_url}/{name}")
            expect(page.get_by_text(marker).first).to_be_visible(timeout=60_000)
            if chart:
                expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)
            page.wait_for_timeout(1500)
            page.set_viewport_size({"width": 1400, "height": height})
            page.screenshot(path=str(shots / f"{name}.png"))
        browser.close()
    for name in ("search.png", "metrics.png", "runs.png", "build.png"):
        assert (shots / name).stat().st_size > 10_000
    target = os.environ.get("CLIP_EXPLORER_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for shot in shots.iterdir():
            shutil.copy(shot, Path(target) / shot.name)


def test_clicking_pages_during_a_cold_start_keeps_the_command_line_settings(app_url: str) -> None:
    """Open the app on a fresh server and, while the first page still imports the model library, click
    Metrics, then Search: each page says what it is and that it is loading at once, and the index given
    with --db is the one shown (a page once ran without the entry script and lost it for the session)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: apt-get install -y chromium (or deselect with -m 'not browser').")
    from playwright.sync_api import expect, sync_playwright

    quickly = 8_000  # ms: a generous bound for "the page shows its title and the loading line"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        main = page.get_by_test_id("stMain")
        page.goto(app_url)
        expect(main.get_by_role("heading", name="Search", exact=True)).to_be_visible(timeout=30_000)
        expect(main.get_by_text("Loading the model library")).to_be_visible()  # the first page is still loading
        page.get_by_role("link", name="Metrics", exact=True).click()
        expect(main.get_by_role("heading", name="Metrics", exact=True)).to_be_visible(timeout=quickly)
        expect(main.get_by_text("Loading the model library")).to_be_visible(timeout=quickly)
        page.get_by_role("link", name="Search", exact=True).click()
        expect(main.get_by_role("heading", name="Search", exact=True)).to_be_visible(timeout=quickly)
        expect(main.get_by_label("Describe an action")).to_be_visible(timeout=120_000)
        expect(page.get_by_test_id("stSidebar").get_by_text("frames-TinyCLIP-test-uniform3").first).to_be_visible()
        assert main.get_by_text("no index").count() == 0
        assert main.get_by_text("Loading the model library").count() == 0
        # The settings hold on the next pages too, and the library is not loaded again.
        page.get_by_role("link", name="Metrics", exact=True).click()
        expect(main.get_by_text("precision@1").first).to_be_visible(timeout=60_000)
        assert main.get_by_text("Loading the model library").count() == 0
        browser.close()


def test_html_export_keeps_thumbnails_in_shape_and_ids_inside_their_card(built_index: dict, tmp_path: Path) -> None:
    """The exported search page, rendered: each thumbnail keeps its file's aspect ratio, a long id stays
    inside its card (cut with an ellipsis, the whole id in the tooltip)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: apt-get install -y chromium (or deselect with -m 'not browser').")
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from core.app import Explorer, IndexRef, SearchHit, SearchQuery

    explorer = Explorer(output=tmp_path)
    hits = explorer.search(IndexRef(db=str(built_index["db"])), SearchQuery("juggling fire", k=4)).hits
    wide = tmp_path / "wide.jpg"
    Image.new("RGB", (384, 96), (200, 40, 30)).save(wide)  # 4:1, far from any card's shape
    long_id = "a-very-long-video-identifier-" * 6
    first = hits[0]
    hits[0] = SearchHit(**{**first.to_json(), "video_id": long_id, "frame_path": str(wide)})
    report = explorer.write_search_report("juggling fire", hits, tmp_path)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(report.as_uri())
        shapes = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.naturalWidth, e.naturalHeight, e.clientWidth, e.clientHeight])"
        )
        assert len(shapes) == len(hits)
        for natural_w, natural_h, shown_w, shown_h in shapes:
            assert shown_w > 0 and shown_h > 0
            assert abs(shown_w / shown_h - natural_w / natural_h) < 0.03 * (natural_w / natural_h)
        card = page.locator(".card").first
        overflow = card.evaluate("c => [...c.querySelectorAll('*')].some(e => e.getBoundingClientRect().right > "
                                 "c.getBoundingClientRect().right + 1)")  # fmt: skip
        assert not overflow, "a long id spills out of its card"
        assert page.locator(f"[title='{long_id}']").count() >= 1, "the full id is in a tooltip"
        browser.close()


def test_moments_gallery_in_a_real_browser(app_url: str, tmp_path: Path) -> None:
    """Search with *Moments* on: each card shows its segment and *Play the moment* opens the video at its
    start (the test clips are MPEG-4 Part 2, which browsers cannot play: the dialog says so and offers the
    H.264 copy)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: apt-get install -y chromium (or deselect with -m 'not browser').")
    import re

    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.goto(app_url)
        box = page.get_by_label("Describe an action")
        box.wait_for(timeout=60_000)
        box.fill("a video of a person juggling fire.")
        page.get_by_text("Moments", exact=True).click()
        page.get_by_role("button", name="Search", exact=True).click()
        plays = page.get_by_role("button", name="▶ Play the moment")
        expect(plays).to_have_count(12, timeout=60_000)  # k=12, one moment per video (the defaults)
        segment = page.get_by_text(re.compile(r"^\d+\.\d\d–\d+\.\d\d s · best at")).first
        expect(segment).to_be_visible()
        start = segment.inner_text().split("–")[0]
        page.wait_for_timeout(800)
        page.screenshot(path=str(tmp_path / "moments.png"))
        plays.first.click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_text("Video at the matched moment")).to_be_visible(timeout=30_000)
        expect(dialog.get_by_text(f"from {start} s")).to_be_visible()
        expect(dialog.get_by_text("cannot play in a browser as it is")).to_be_visible()
        # The copy plays at the clip's own width (64 px, not the dialog's), and the warning goes.
        dialog.get_by_role("button", name="Make a playable copy (H.264 MP4)").click()
        video = dialog.locator("video")
        expect(video).to_be_visible(timeout=60_000)
        expect(dialog.get_by_text("cannot play in a browser as it is")).to_have_count(0)
        expect(dialog.get_by_role("button", name="Make a playable copy (H.264 MP4)")).to_have_count(0)
        box = video.bounding_box()
        assert box is not None and box["width"] <= 64 + 1, box
        assert box["y"] + box["height"] <= 1300, "the player and its controls stay in the viewport"
        browser.close()
    assert (tmp_path / "moments.png").stat().st_size > 10_000
    target = os.environ.get("CLIP_EXPLORER_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "moments.png", Path(target) / "moments.png")
