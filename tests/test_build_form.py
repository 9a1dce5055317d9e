"""The Build form and what stands behind it (issue 24): a collection remembers its source, another source
is confirmed first, an empty videos folder is refused, and the index's own model may always be loaded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.app import Explorer, IndexRef, ProcessCache, SourceError, UserError
from core.cli import main
from core.requests import BuildRequest
from core.resources import get_build_manager
from core.store.catalog import list_indexes
from core.store.index import connect
from tests.test_app import _private_copy, make_app, run_page
from tests.tiny_model import CONFIG

OUTSIDE = "outside the folders this app may use"


def _button(at, label: str):
    return next(b for b in at.button if b.label == label)


def _one_label_folder(video_root: Path, tmp_path: Path) -> Path:
    """Another source: one label of the test clips, copied elsewhere."""
    other = tmp_path / "other"
    label = sorted(p for p in video_root.iterdir() if p.is_dir())[0]
    shutil.copytree(label, other / label.name)
    return other


def _finish_build(db: Path) -> None:
    """Wait for the page's background build to end (its thread, not a timer)."""
    job = get_build_manager().job(str(db))
    assert job is not None, "no build was started"
    assert job.thread is not None
    job.thread.join(timeout=120)
    assert job.state == "done", job.error


# -- item 3: an empty videos folder ---------------------------------------------------------------
def test_an_empty_videos_folder_is_refused_by_the_application_layer(tmp_path: Path, tiny_spec) -> None:
    explorer = Explorer(output=tmp_path / "out")
    with pytest.raises(SourceError) as caught:
        explorer.check_source("  ")
    assert str(caught.value) == "The videos folder is empty: give the folder that holds your videos, e.g. videos/."
    request = BuildRequest(videos="", db=str(tmp_path / "db"), output=str(tmp_path / "out"), spec=tiny_spec)
    with pytest.raises(SourceError, match="The videos folder is empty"):
        explorer.build(request)
    assert not (tmp_path / "db").exists() and not (tmp_path / "out").exists()


def test_build_with_an_empty_videos_argument_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["build", "--videos", "", "--db", str(tmp_path / "db"), "--output", str(tmp_path / "out"),
            "--model-config", str(CONFIG), "--pretrained", "none"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: The videos folder is empty") and err.count("\n") == 1
    assert not (tmp_path / "db").exists()


def test_the_build_page_refuses_an_empty_videos_folder(tmp_path: Path) -> None:
    at = run_page(make_app(tmp_path / "db", tmp_path / "out", roots=[tmp_path]), "pages/build.py")
    at.text_input(key="videos_input").input("").run()
    _button(at, "Check the source").click().run()
    assert [e.value for e in at.error] == [
        "The videos folder is empty: give the folder that holds your videos, e.g. videos/."
    ]
    assert not at.success, "the working directory was scanned"
    _button(at, "Start the build").click().run()
    assert any("The videos folder is empty" in e.value for e in at.error)
    assert not (tmp_path / "db").exists()


# -- item 4: the model recorded in the index ------------------------------------------------------
def test_the_index_model_may_be_loaded_from_outside_the_roots(
    built_index: dict, tmp_path: Path, video_root: Path, tiny_checkpoint: Path, tiny_model
) -> None:
    db = _private_copy(built_index, tmp_path)
    assert not tiny_checkpoint.resolve().is_relative_to(tmp_path.resolve())
    cache = ProcessCache(model_loader=lambda spec, device: tiny_model)
    explorer = Explorer(output=tmp_path / "out", roots=[tmp_path, video_root], cache=cache)
    store = IndexRef(db=str(db))
    spec = explorer.resolve_spec("TinyCLIP-test", str(tiny_checkpoint), str(CONFIG), store)
    assert spec.identity() == list_indexes(connect(db))[0].spec.identity()
    request = BuildRequest(videos=str(video_root), db=str(db), output=str(tmp_path / "out"), spec=spec,
                           frames="uniform:3", workers=1)  # fmt: skip
    summary = explorer.build(request)
    assert summary.videos_already_indexed == 12
    # Only that file: the same weights copied to another folder outside the roots are still refused.
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    copy = Path(shutil.copy(tiny_checkpoint, elsewhere / "copy.pt"))
    with pytest.raises(UserError, match=OUTSIDE):
        explorer.resolve_spec("TinyCLIP-test", str(copy), str(CONFIG), store)
    with pytest.raises(UserError, match=OUTSIDE):  # and with no index to vouch for it, the file is refused
        explorer.resolve_spec("TinyCLIP-test", str(tiny_checkpoint), str(CONFIG), IndexRef(db=str(tmp_path / "x")))


def test_the_build_page_starts_from_the_index_model_outside_the_roots(
    built_index: dict, tmp_path: Path, video_root: Path
) -> None:
    db = _private_copy(built_index, tmp_path)
    at = run_page(make_app(db, tmp_path / "out", roots=[tmp_path, video_root]), "pages/build.py")
    _button(at, "Start the build").click().run()
    assert not at.exception
    assert not any(OUTSIDE in e.value for e in at.error), [e.value for e in at.error]
    _finish_build(db)


# -- item 2: a collection remembers its source ----------------------------------------------------
def test_a_collection_records_its_source_and_another_source_is_a_conflict(
    built_index: dict, tmp_path: Path, video_root: Path, tiny_spec
) -> None:
    info = list_indexes(connect(built_index["db"]))[0].info()
    assert info.source_videos == str(video_root.resolve()) and info.source_annotations == ""
    explorer = Explorer(output=tmp_path / "out")
    same = BuildRequest(videos=str(video_root), db=str(built_index["db"]), spec=tiny_spec, frames="uniform:3")
    assert explorer.source_conflict(same) == ""
    other = _one_label_folder(video_root, tmp_path)
    conflict = explorer.source_conflict(BuildRequest(**{**same.__dict__, "videos": str(other)}))
    assert f"was built from {video_root.resolve()}" in conflict and f"the videos of {other.resolve()}" in conflict
    # Another frame strategy writes to another collection: nothing to confirm.
    assert explorer.source_conflict(BuildRequest(**{**same.__dict__, "videos": str(other), "frames": "middle"})) == ""


def test_the_build_form_starts_from_the_source_and_confirms_another(
    built_index: dict, tmp_path: Path, video_root: Path, tiny_checkpoint: Path
) -> None:
    db = _private_copy(built_index, tmp_path)
    roots = [tmp_path, video_root, tiny_checkpoint.parent]
    at = run_page(make_app(db, tmp_path / "out", roots=roots), "pages/build.py")
    assert at.text_input(key="videos_input").value == str(video_root.resolve())
    other = _one_label_folder(video_root, tmp_path)
    at.text_input(key="videos_input").input(str(other)).run()
    _button(at, "Start the build").click().run()
    assert any("was built from" in w.value for w in at.warning), "another source must be said first"
    assert get_build_manager().job(str(db)) is None, "nothing starts before the confirmation"
    _button(at, "Cancel: build nothing").click().run()
    assert not any("was built from" in w.value for w in at.warning)
    assert get_build_manager().job(str(db)) is None
    _button(at, "Start the build").click().run()
    _button(at, "Add them to this collection").click().run()
    _finish_build(db)
    job = get_build_manager().job(str(db))
    assert job is not None and job.summary.videos_found == 2  # the other folder's, into the same collection


# -- item 9: weights that cannot be had, said at the top ----------------------------------------------
def test_missing_weights_are_said_at_the_top_beside_the_offline_demo(tmp_path: Path, video_root: Path) -> None:
    """The tests run offline with an empty Hugging Face cache: the default model's weights cannot be had.
    Start says so at once, above the *Try it offline* panel (opened), and starts no build."""
    at = run_page(make_app(tmp_path / "db", tmp_path / "out", roots=[tmp_path, video_root]), "pages/build.py")
    at.text_input(key="videos_input").input(str(video_root)).run()
    _button(at, "Start the build").click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "are not in the local cache" in errors[0] and "offline demo" in errors[0], errors
    blocks = [n.type for n in at.main.children.values()]
    assert blocks[:3] == ["header", "error", "expander"], blocks  # the sentence, then the offline demo
    assert at.expander[0].label.startswith("0 · Try it offline") and at.expander[0].proto.expanded
    assert get_build_manager().job(str(tmp_path / "db")) is None and not (tmp_path / "db").exists()
