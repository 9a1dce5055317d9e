"""A new user's first hour (issue 15): honest outcomes, nothing written by looking, no dead end offline."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from core.analysis.metrics import compute_metrics
from core.analysis.plots import runs_chart, similarity_histogram
from core.app import Explorer, NoUsableVideoError
from core.cli import main
from core.ground import UserError
from core.requests import BuildRequest, EvalSettings, IndexRef, SearchQuery
from core.store.catalog import list_indexes
from core.store.index import connect
from core.store.runs import REFERENCE_RUN
from tests.helpers import SHARED_CLIPS, build_into, make_broken_files
from tests.test_app import make_app, run_page
from tests.tiny_model import CONFIG


def _button(at, label: str):
    return next(b for b in at.button if b.label == label)


def test_typing_an_index_folder_writes_nothing(tmp_path: Path) -> None:
    at = run_page(make_app(tmp_path / "db", tmp_path / "out"), "pages/search.py")
    typed = tmp_path / "somewhere" / "new-index"
    at.sidebar.text_input(key="db_input").input(str(typed)).run()
    assert not at.exception
    assert at.session_state["db"] == str(typed.resolve())
    assert not typed.exists() and not (tmp_path / "somewhere").exists(), "looking at a folder must not create it"
    assert any("no index" in info.value for info in at.info)


def test_a_folder_of_broken_videos_is_an_error_and_leaves_no_collection(tmp_path: Path, tiny_spec) -> None:
    make_broken_files(tmp_path / "videos" / "tackling")
    explorer = Explorer(output=tmp_path / "out")
    request = BuildRequest(videos=str(tmp_path / "videos"), db=str(tmp_path / "db"), output=str(tmp_path / "out"),
                           spec=tiny_spec, workers=1)  # fmt: skip
    with pytest.raises(NoUsableVideoError) as caught:
        explorer.build(request)
    assert "no usable video" in str(caught.value) and "empty file" in str(caught.value)
    assert caught.value.summary is not None and len(caught.value.summary.skipped) == 3
    assert list_indexes(connect(tmp_path / "db")) == [], "an empty collection would be selected by the sidebar"


def test_a_folder_without_videos_is_refused_before_anything_is_made(tmp_path: Path, tiny_spec) -> None:
    (tmp_path / "videos" / "tackling").mkdir(parents=True)
    (tmp_path / "videos" / "tackling" / "notes.txt").write_text("hello")
    explorer = Explorer(output=tmp_path / "out")
    request = BuildRequest(videos=str(tmp_path / "videos"), db=str(tmp_path / "db"), output=str(tmp_path / "out"),
                           spec=tiny_spec)  # fmt: skip
    with pytest.raises(UserError, match="not a video file type"):
        explorer.build(request)
    assert not (tmp_path / "db").exists()


def test_check_source_without_videos_is_an_error_on_the_build_page(tmp_path: Path) -> None:
    (tmp_path / "videos" / "tackling").mkdir(parents=True)
    (tmp_path / "videos" / "tackling" / "readme.txt").write_text("no video here")
    at = run_page(make_app(tmp_path / "db", tmp_path / "out", roots=[tmp_path]), "pages/build.py")
    at.text_input(key="videos_input").input(str(tmp_path / "videos"))
    _button(at, "Check the source").click().run()
    assert not at.success, [s.value for s in at.success]
    assert any("No videos found" in e.value and "not a video file type" in e.value for e in at.error)


def test_offline_demo_from_the_build_page_then_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No videos folder and no weights: one click makes sample clips and the demo model, the form is filled,
    the build runs, and the Metrics page scores the clips."""
    monkeypatch.chdir(tmp_path)
    at = run_page(make_app(tmp_path / "db", tmp_path / "out", roots=[tmp_path]), "pages/build.py")
    _button(at, "Set up the offline demo").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(list((tmp_path / "videos" / "sample").rglob("*.*"))) == 50
    inputs = {t.label: t.value for t in at.text_input}
    assert inputs["open_clip model"] == "TinyCLIP-demo"
    assert inputs["Pretrained tag or local checkpoint"].endswith("tiny_clip.pt")
    assert any("mean nothing" in w.value for w in at.warning)
    _button(at, "Start the build").click().run()
    assert not at.error, [e.value for e in at.error]
    from core.resources import get_build_manager

    job = get_build_manager().job(str(tmp_path / "db"))
    assert job is not None and job.thread is not None
    job.thread.join(timeout=300)
    assert job.state == "done", job.error
    at.switch_page("pages/metrics.py").run()
    metrics = {m.label: float(m.value) for m in at.metric if m.label.startswith("precision")}
    assert metrics["precision@5"] > 0.5  # the demo model knows the sample clips' colours


def test_build_form_keeps_its_values_and_follows_the_selected_index(built_index: dict) -> None:
    at = run_page(make_app(built_index["db"], built_index["output"]), "pages/build.py")
    inputs = {t.label: t for t in at.text_input}
    # The form starts from the selected index: its model and frame strategy.
    assert inputs["open_clip model"].value == "TinyCLIP-test"
    assert at.radio[0].value == "uniform" and at.slider[0].value == 3
    at.number_input(key="form_batch_input").set_value(7).run()
    at.switch_page("pages/search.py").run()
    at.switch_page("pages/build.py").run()
    assert at.number_input(key="form_batch_input").value == 7, "the form forgot a value on a page change"
    assert {t.label: t.value for t in at.text_input}["open_clip model"] == "TinyCLIP-test"


def test_prompt_box_says_custom_after_an_edit(built_index: dict) -> None:
    at = run_page(make_app(built_index["db"], built_index["output"]), "pages/metrics.py")
    assert at.selectbox(key="preset").value == "english"
    at.text_area(key="templates").input("a clip of {label}").run()
    assert at.selectbox(key="preset").value == "custom"


def test_histogram_axis_stays_in_the_data_range() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.1, 0.35, (20, 4)).astype(np.float32)
    report = compute_metrics(scores, np.arange(20) % 4, ["a", "b", "c", "d"])
    figure = similarity_histogram(report)
    low, high = figure.layout.xaxis.range
    assert scores.min() - 1e-6 <= low and high <= scores.max() + 1e-6
    assert not figure.layout.annotations  # the means are named in the legend, never cut off at the edge
    assert any(f"mean {report.mean_similarity_correct:.3f}" in trace.name for trace in figure.data)


def test_runs_chart_names_the_reference_in_the_legend_not_on_the_bars() -> None:
    row = {**REFERENCE_RUN, "name": "a run"}
    figure = runs_chart([row], reference=REFERENCE_RUN)
    assert not figure.layout.annotations
    names = [trace.name for trace in figure.data]
    assert "reference precision@1 0.43" in names and "reference precision@3 0.53" in names


def test_search_and_info_say_which_collection(built_index: dict, capsys: pytest.CaptureFixture) -> None:
    assert main(["search", "fire", "--db", str(built_index["db"])]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Index:   frames-TinyCLIP-test-uniform3") and "--collection" in out


def test_explorer_records_a_setting_once_and_searches(built_index: dict, tmp_path: Path) -> None:
    import shutil

    db = tmp_path / "db"
    shutil.copytree(built_index["db"], db)
    (db / "runs.jsonl").unlink(missing_ok=True)
    explorer = Explorer(output=tmp_path / "out")
    ref = IndexRef(db=str(db))
    settings = [EvalSettings(pooling=p) for p in ("mean", "max", "mean")]
    results = explorer.grid(ref, settings, save=True)
    assert [r.pooling for r in results] == ["mean", "max", "mean"]
    lines = (db / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 2 and {json.loads(line)["pooling"] for line in lines} == {"mean", "max"}
    explorer.grid(ref, settings, save=True)
    assert len((db / "runs.jsonl").read_text().splitlines()) == 2
    hits = explorer.search(ref, SearchQuery("juggling fire", k=3)).hits
    assert len(hits) == 3 and hits[0].label == "juggling fire"


def test_models_load_once_for_concurrent_callers(tiny_spec, tmp_path: Path) -> None:
    from core.model.embed import load_model
    from core.reader import ProcessCache

    started = threading.Barrier(4)
    loads: list[int] = []

    def loader(spec, device):
        loads.append(1)
        return load_model(spec, device)

    cache = ProcessCache(model_loader=loader)
    explorers = [Explorer(output=tmp_path, device="cpu", cache=cache) for _ in range(4)]
    got: list[object] = []

    def use(explorer: Explorer) -> None:
        started.wait()
        got.append(explorer.model(tiny_spec))

    threads = [threading.Thread(target=use, args=(e,)) for e in explorers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len({id(m) for m in got}) == 1


def test_config_path_is_confined_before_it_is_read(tmp_path: Path) -> None:
    explorer = Explorer(output=tmp_path, roots=[tmp_path])
    with pytest.raises(Exception, match="outside the folders this app may use"):
        explorer.resolve_spec(None, "none", str(CONFIG))


@pytest.mark.skipif(not (SHARED_CLIPS / "imageio__cockatoo.mp4").is_file(), reason="../shared/data/realclips absent")
def test_unplayable_video_is_said_so_and_its_copy_is_remembered(tmp_path: Path, tiny_model) -> None:
    """H.264 High 4:4:4 plays as a blank box in browsers: the dialog says why and offers a copy; once
    made, the copy is used next time instead of asking again."""
    import shutil

    folder = tmp_path / "videos" / "bathing_dog"
    folder.mkdir(parents=True)
    shutil.copy(SHARED_CLIPS / "imageio__cockatoo.mp4", folder / "cockatoo.mp4")
    build_into(tmp_path / "videos", tmp_path / "db", tmp_path / "out", model=tiny_model)
    at = run_page(make_app(tmp_path / "db", tmp_path / "out", roots=[tmp_path]), "pages/search.py")
    at.text_input(key="query").input("a bird")
    at.form_submit_button[0].click().run()
    _button(at, "▶ Play from here").click().run()
    warning = " ".join(w.value for w in at.warning)
    assert "cannot play in a browser" in warning and "4:4:4" in warning
    assert not at.get("video")
    assert any(b.label == "Make a playable copy (H.264 MP4)" for b in at.button)
    # AppTest reruns the whole script on a click inside a dialog (the browser reruns the dialog alone),
    # so the conversion the button starts is made here, through the same application call.
    Explorer(output=tmp_path / "out", roots=[tmp_path]).playable_copy(folder / "cockatoo.mp4")
    _button(at, "▶ Play from here").click().run()  # a new visit: the copy is found, nothing asked
    assert at.get("video") and not any("cannot play" in w.value for w in at.warning)
    assert any("copy made earlier" in c.value for c in at.caption)


def test_an_index_of_a_newer_schema_is_explained_not_used(built_index: dict, tmp_path: Path) -> None:
    import shutil

    db = tmp_path / "db"
    shutil.copytree(built_index["db"], db)
    collection = list_indexes(connect(db))[0].collection
    collection.modify(metadata={**(collection.metadata or {}), "schema_version": 99})
    at = run_page(make_app(db, built_index["output"]), "pages/search.py")
    assert any("newer version of this tool" in w.value for w in at.sidebar.warning)
    assert any("newer version of this tool" in w.value for w in at.main.warning)
    assert not at.form_submit_button  # no search form is offered on an index it cannot read


def test_check_the_source_probes_the_files_it_counts(tmp_path: Path, video_root: Path) -> None:
    """A JPEG renamed .mp4 and random bytes beside one real clip: 1 video, the other two named with reasons,
    on the Build page as in the application layer."""
    import shutil

    from PIL import Image

    folder = tmp_path / "videos" / "juggling_fire"
    folder.mkdir(parents=True)
    shutil.copy(video_root / "juggling_fire" / "clip0.mp4", folder / "real.mp4")
    Image.new("RGB", (32, 32), (200, 0, 0)).save(folder / "photo.mp4", format="JPEG")
    (folder / "noise.mp4").write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    scan = Explorer(output=tmp_path / "out").check_source(tmp_path / "videos")
    assert [v.path.name for v in scan.videos] == ["real.mp4"]
    reasons = {Path(s.item).name: s.reason for s in scan.skipped}
    assert reasons["photo.mp4"] == "this is a JPEG image, not a video"
    assert reasons["noise.mp4"].startswith("cannot be opened as a video")
    at = run_page(make_app(tmp_path / "db", tmp_path / "out", roots=[tmp_path]), "pages/build.py")
    at.text_input(key="videos_input").input(str(tmp_path / "videos"))
    next(b for b in at.button if b.label == "Check the source").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [s.value for s in at.success] == ["1 video of 1 label (folders layout); 2 items skipped."]
    skipped = at.dataframe[0].value
    assert sorted(Path(item).name for item in skipped["item"]) == ["noise.mp4", "photo.mp4"]


def test_an_uploaded_query_image_keeps_its_name_in_the_search_header(built_index: dict, tmp_path: Path) -> None:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (30, 60, 200)).save(buffer, format="PNG")
    explorer = Explorer(output=tmp_path / "out")
    saved = explorer.save_query_image(buffer.getvalue(), "my holiday photo.png")
    assert saved.name == "my holiday photo.png" and saved.is_file()
    assert explorer.save_query_image(buffer.getvalue(), "my holiday photo.png") == saved  # one copy per content
    result = explorer.search(IndexRef(db=str(built_index["db"])), SearchQuery("", k=2, image=str(saved)))
    assert "my holiday photo.png" in result.query and len(result.hits) == 2
    odd = explorer.save_query_image(buffer.getvalue(), "C:\\Users\\me\\nul\x00byte.png")  # no ValueError
    assert odd.name == "nul_byte.png"
