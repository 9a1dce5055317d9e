"""Every page of the dashboard, through Streamlit's AppTest: empty index, built index, and the interactions."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.model.prompts import PROMPT_SETS
from core.store.catalog import list_indexes
from core.store.index import connect
from tests.helpers import ROOT
from tests.tiny_model import CONFIG

APP = str(ROOT / "streamlit_app.py")
PAGES = ["pages/search.py", "pages/metrics.py", "pages/build.py"]


def make_app(db: Path, output: Path, roots: list[Path] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["db"] = str(db)
    at.session_state["output"] = str(output)
    at.session_state["roots"] = [str(r.resolve()) for r in (roots or [db.parent, ROOT])]
    return at


def run_page(at: AppTest, page: str) -> AppTest:
    """Run the entry script (it registers the pages), then the page.

    AppTest's switch_page runs only the page script, so the sidebar is checked after the first run.
    """
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("page", PAGES)
def test_pages_render_on_an_empty_index(tmp_path: Path, page: str) -> None:
    at = run_page(make_app(tmp_path / "db", tmp_path / "out"), page)
    if page != "pages/build.py":
        assert any("no index" in info.value for info in at.info)
        assert at.get("page_link")  # points to the Build page


def test_sidebar_shows_the_index_and_its_model(built_index: dict) -> None:
    at = make_app(built_index["db"], built_index["output"]).run()
    assert not at.exception
    info = " ".join(m.value for m in at.sidebar.markdown)
    assert "TinyCLIP-test (tiny_clip.pt)" in info and "**36 frames** indexed" in info and "uniform:3" in info
    assert at.sidebar.selectbox[0].value.startswith("frames-TinyCLIP-test-uniform3")


@pytest.mark.parametrize("page", PAGES)
def test_pages_render_on_a_built_index(built_index: dict, page: str) -> None:
    at = run_page(make_app(built_index["db"], built_index["output"]), page)
    assert not at.error, [e.value for e in at.error]


def test_search_shows_a_gallery(built_index: dict) -> None:
    at = run_page(make_app(built_index["db"], built_index["output"]), "pages/search.py")
    at.text_input(key="query").input("a video of a person juggling fire.")
    at.form_submit_button[0].click().run()
    assert not at.exception
    assert len(at.image) == 12  # k=12 and one frame per video (the defaults): every clip once
    labels = [m.value for m in at.main.markdown if m.value.startswith("**")]
    assert labels[0].startswith("**juggling fire**") and labels[1].startswith("**juggling fire**")
    assert at.session_state["history"][0] == "a video of a person juggling fire."
    assert any(b.label == "Download as HTML" for b in at.download_button)


def test_search_empty_query_and_label_filter(built_index: dict) -> None:
    at = run_page(make_app(built_index["db"], built_index["output"]), "pages/search.py")
    assert len(at.image) == 0 and any("Type a description" in c.value for c in at.caption)
    at.text_input(key="query").input("fire")
    at.selectbox[0].select("carving ice")
    at.form_submit_button[0].click().run()
    labels = {m.value.split("**")[1] for m in at.main.markdown if m.value.startswith("**")}
    assert labels == {"carving ice"}


def test_metrics_table_histogram_and_prompt_editing(built_index: dict) -> None:
    at = run_page(make_app(built_index["db"], built_index["output"]), "pages/metrics.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["precision@1"] == "1.000"
    assert len(at.get("plotly_chart")) >= 1 and len(at.dataframe) >= 3
    before = metrics["cosine, correct"]
    at.text_area(key="templates").input("Une personne effectuant l'action de {label} dans un cadre typique").run()
    assert not at.exception
    after = {m.label: m.value for m in at.metric}["cosine, correct"]
    assert after != before
    at.text_area(key="templates").input("no placeholder").run()
    assert any("placeholder" in w.value for w in at.warning)


def _start_tiny_build(at: AppTest, tiny_checkpoint: Path) -> None:
    """Fill the Build page's model fields with the tiny test model and press *Start the build*."""
    inputs = {t.label: t for t in at.text_input}
    inputs["open_clip model"].input("TinyCLIP-test")
    inputs["Pretrained tag or local checkpoint"].input(str(tiny_checkpoint))
    inputs["Custom model config (optional)"].input(str(CONFIG))
    next(b for b in at.button if b.label == "Start the build").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]


def _wait_for_frames(db: Path, frames: int, seconds: float = 60) -> None:
    """Poll the index the background build writes (another thread: AppTest offers no event to wait on)."""
    deadline = time.time() + seconds
    while time.time() < deadline and not list_indexes(connect(db)):
        time.sleep(0.2)
    while time.time() < deadline and list_indexes(connect(db))[0].count() < frames:
        time.sleep(0.2)


def test_build_page_builds_in_the_background(tmp_path: Path, video_root: Path, tiny_checkpoint: Path) -> None:
    db, out = tmp_path / "db", tmp_path / "out"
    at = run_page(make_app(db, out, roots=[tmp_path, video_root, ROOT, tiny_checkpoint.parent]), "pages/build.py")
    at.text_input(key="videos_input").input(str(video_root))
    next(b for b in at.button if b.label == "Check the source").click().run()
    assert any("12 videos of 6 labels" in s.value for s in at.success)
    _start_tiny_build(at, tiny_checkpoint)
    _wait_for_frames(db, 12)
    assert list_indexes(connect(db))[0].count() == 12
    at.run()
    assert not at.exception


def test_build_page_offers_fps_and_scenes(tmp_path: Path, video_root: Path, tiny_checkpoint: Path) -> None:
    db, out = tmp_path / "db", tmp_path / "out"
    at = run_page(make_app(db, out, roots=[tmp_path, video_root, ROOT, tiny_checkpoint.parent]), "pages/build.py")
    assert at.radio(key="form_strategy_input").options == ["middle", "uniform", "fps", "scenes"]
    at.radio(key="form_strategy_input").set_value("scenes").run()
    assert at.slider(key="form_scenes_input").value == 16
    at.radio(key="form_strategy_input").set_value("fps").run()
    at.number_input(key="form_fps_input").set_value(0.5).run()
    at.text_input(key="videos_input").input(str(video_root))
    _start_tiny_build(at, tiny_checkpoint)
    _wait_for_frames(db, 12)  # 1.2-s clips at fps:0.5: one frame each
    index = list_indexes(connect(db))[0]
    assert index.frames == "fps:0.5" and index.count() == 12
    at.run()
    assert not at.exception


def test_build_page_refuses_paths_outside_the_allowed_roots(tmp_path: Path) -> None:
    at = run_page(make_app(tmp_path / "db", tmp_path / "out", roots=[tmp_path]), "pages/build.py")
    at.text_input(key="videos_input").input("/etc")
    next(b for b in at.button if b.label == "Check the source").click().run()
    assert any("outside the folders this app may use" in e.value for e in at.error)


def _index_with_model(db: Path, spec) -> None:
    """A one-frame collection recorded as built with `spec` (whose weights the test makes unavailable)."""
    import numpy as np

    from core.store.index import open_for_build

    index = open_for_build(connect(db), spec, 32, "middle")
    meta = {"video_id": "v", "label": "tackling", "frame_index": 0, "timestamp_s": 0.0, "video_path": "/v.mp4",
            "frame_path": "/v.jpg", "frames_in_video": 1, "video_frames": 1}  # fmt: skip
    index.upsert(["v:0"], np.ones((1, 32), np.float32) / np.sqrt(32), [meta])


@pytest.mark.parametrize("weights", ["openai", "missing-checkpoint"])
@pytest.mark.parametrize("page", ["pages/search.py", "pages/metrics.py"])
def test_missing_weights_are_one_sentence_on_the_page(tmp_path: Path, tiny_spec, weights: str, page: str) -> None:
    from dataclasses import replace

    from core.model.embed import ModelSpec

    if weights == "openai":  # the default model; offline and with an empty cache, its weights are missing
        spec = ModelSpec.resolve()
    else:
        spec = replace(tiny_spec, pretrained=str(tmp_path / "gone.pt"))
    _index_with_model(tmp_path / "db", spec)
    at = run_page(make_app(tmp_path / "db", tmp_path / "out"), page)
    if page == "pages/search.py":
        at.text_input(key="query").input("tackling")
        at.form_submit_button[0].click().run()
    errors = [e.value for e in at.error]
    assert not at.exception and len(errors) == 1
    expected = "could not be downloaded" if weights == "openai" else "is no longer there"
    assert expected in errors[0] and "Traceback" not in errors[0]
    if weights == "openai":  # what to do, said in the app's own terms too
        assert "Build page" in errors[0] and "offline demo" in errors[0]


def _private_copy(built_index: dict, tmp_path: Path) -> Path:
    """The built index copied, without the runs other tests saved next to it."""
    import shutil

    db = tmp_path / "db"
    shutil.copytree(built_index["db"], db)
    (db / "runs.jsonl").unlink(missing_ok=True)
    return db


def test_runs_page_grid_and_comparison(tmp_path: Path, built_index: dict) -> None:
    db = _private_copy(built_index, tmp_path)
    at = run_page(make_app(db, built_index["output"]), "pages/runs.py")
    assert any("No run yet" in i.value for i in at.info)
    next(b for b in at.button if b.label == "Evaluate the grid").click().run()
    assert not at.exception
    assert any("12 evaluations, 12 new runs saved" in s.value for s in at.success)
    table = at.dataframe[0].value
    assert len(table) == 13 and table.iloc[0]["run"] == "reference study"
    assert len(at.get("plotly_chart")) == 1
    assert any(re.search(r"\b\d+ class(es)? gain", c.value) for c in at.caption)


def test_metrics_page_saves_runs_and_offers_700_classes(tmp_path: Path, built_index: dict) -> None:
    db = _private_copy(built_index, tmp_path)
    at = run_page(make_app(db, built_index["output"]), "pages/metrics.py")
    next(b for b in at.button if b.label == "Save as a run").click().run()
    at.radio(key="classes").set_value("all").run()  # candidate classes
    assert not at.exception
    assert any("700 classes" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Save as a run").click().run()
    runs = [json.loads(line) for line in (db / "runs.jsonl").read_text().splitlines()]
    assert [r["classes"] for r in runs] == ["present", "all (700)"]


def test_looking_at_metrics_records_nothing_until_saved(built_index: dict, tmp_path: Path) -> None:
    db = _private_copy(built_index, tmp_path)
    runs = db / "runs.jsonl"
    runs.unlink(missing_ok=True)
    at = run_page(make_app(db, built_index["output"]), "pages/metrics.py")
    at.run()
    assert not runs.exists(), "rendering the Metrics page must not record a run"
    save = next(b for b in at.button if b.label == "Save as a run")
    save.click().run()
    assert len(runs.read_text().splitlines()) == 1
    next(b for b in at.button if b.label == "Save as a run").click().run()
    assert len(runs.read_text().splitlines()) == 1, "identical settings on an unchanged index are stored once"
    saved = json.loads(runs.read_text())
    # The run keeps its settings in the form deep links use: the page's templates, pooling, labels, classes.
    english = list(PROMPT_SETS["english"].templates)
    assert saved["settings"] == {"prompts": english, "pooling": "mean", "label_mode": "keep", "classes": "present"}


def test_metrics_deep_link_opens_the_page_on_its_settings(built_index: dict) -> None:
    at = make_app(built_index["db"], built_index["output"])
    link = '{"classes":"present","label_mode":"strip","pooling":"max","prompts":["a photo of {label}."]}'
    at.query_params["settings"] = link
    at = run_page(at, "pages/metrics.py")
    assert at.radio(key="pooling").value == "max" and at.radio(key="label_mode").value == "strip"
    assert at.text_area(key="templates").value == "a photo of {label}."
    value = at.query_params["settings"]
    assert json.loads(value if isinstance(value, str) else value[0]) == json.loads(link)


def test_a_checkpoint_outside_the_allowed_roots_is_refused(
    tmp_path: Path, video_root: Path, tiny_checkpoint: Path
) -> None:
    """The security section promises every typed path is confined: the checkpoint and the config too."""
    at = run_page(make_app(tmp_path / "db", tmp_path / "out", roots=[tmp_path, video_root]), "pages/build.py")
    at.text_input(key="videos_input").input(str(video_root))
    inputs = {t.label: t for t in at.text_input}
    inputs["open_clip model"].input("TinyCLIP-test")
    inputs["Pretrained tag or local checkpoint"].input(str(tiny_checkpoint))
    inputs["Custom model config (optional)"].input(str(CONFIG))
    next(b for b in at.button if b.label == "Start the build").click().run()
    errors = " ".join(e.value for e in at.error)
    assert "outside the folders this app may use" in errors and ("model config" in errors or "checkpoint" in errors)
    assert not (tmp_path / "db").exists(), "nothing is written when the request is refused"
