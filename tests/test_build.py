"""The pipeline end to end on generated videos with the tiny trained model and a real ChromaDB."""

from __future__ import annotations

import ast
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.app import Explorer, ProcessCache
from core.engines.build import build_index
from core.engines.local import FramePool
from core.engines.records import BuildProgress, BuildStage
from core.ground import IndexLockedError
from core.media.frames import FrameStrategy
from core.media.sources import scan_source
from core.requests import BuildRequest
from core.store.catalog import open_index
from core.store.index import connect, open_for_build
from core.store.locking import BuildLock
from tests.helpers import ROOT, build_into, make_broken_files
from tests.tiny_model import COLOURS

WAIT_S = 120  # a bound on every wait, so that a bug fails instead of hanging the suite


def test_built_index_contents_and_thumbnails(built_index: dict) -> None:
    summary = built_index["summary"]
    assert summary.videos_indexed == 12 and summary.frames == 36 and not summary.skipped
    assert summary.frames_strategy == "uniform:3" and not summary.cancelled
    index = open_index(connect(built_index["db"]))
    assert index.count() == 36 and len(index.complete_videos()) == 12
    contents = index.contents()
    assert sorted(set(contents.labels)) == sorted(COLOURS)
    assert set(contents.frame_index.tolist()) == {2, 6, 10}  # uniform:3 over 12 frames
    assert np.allclose(np.linalg.norm(contents.embeddings, axis=1), 1.0, atol=1e-5)
    for i, record_id in enumerate(contents.ids):
        assert record_id == f"{contents.video_ids[i]}:{contents.frame_index[i]}"
        thumb = Path(contents.frame_paths[i])
        assert thumb.is_file() and thumb.is_relative_to(built_index["output"].resolve())
    # Thumbnails keep the clip's colour (RGB on disk, not BGR).
    red = next(p for p, label in zip(contents.frame_paths, contents.labels, strict=True) if label == "juggling fire")
    pixel = np.asarray(Image.open(red).convert("RGB"))[:4, :4].reshape(-1, 3).mean(axis=0)
    assert pixel[0] > 180 and pixel[2] < 80


def test_rebuild_adds_nothing_and_completes_half_written_videos(tmp_path: Path, video_root: Path, tiny_model) -> None:
    db, out = tmp_path / "db", tmp_path / "out"
    first = build_into(video_root, db, out, frames="uniform:2", model=tiny_model)
    assert first.videos_indexed == 12
    index = open_index(connect(db))
    before = index.contents()
    # Simulate a build killed mid-video: one frame of one video is missing.
    index.collection.delete(ids=[before.ids[0]])
    again = build_into(video_root, db, out, frames="uniform:2", model=tiny_model)
    assert again.videos_already_indexed == 11 and again.videos_indexed == 1 and again.frames == 2
    after = open_index(connect(db)).contents()
    assert after.ids == before.ids and index.count() == 24
    assert np.allclose(after.embeddings, before.embeddings, atol=1e-5)
    third = build_into(video_root, db, out, frames="uniform:2", model=tiny_model)
    assert third.videos_indexed == 0 and third.frames == 0 and index.count() == 24


def test_bad_files_are_skipped_with_reasons(tmp_path: Path, video_root: Path, tiny_model) -> None:
    videos = tmp_path / "videos"
    shutil.copytree(video_root / "juggling_fire", videos / "juggling_fire")
    broken = make_broken_files(videos / "tackling")
    summary = build_into(videos, tmp_path / "db", tmp_path / "out", model=tiny_model)
    assert summary.videos_indexed == 2
    reasons = {Path(s.item).name: s.reason for s in summary.skipped}
    assert reasons[broken["empty"].name] == "empty file (0 bytes)"
    assert "cannot be opened" in reasons[broken["text"].name]
    assert broken["corrupt"].name in reasons
    assert "skipped 3" in summary.line()


def test_progress_and_cancel(tmp_path: Path, video_root: Path, tiny_model) -> None:
    scan = scan_source(video_root)
    index = open_for_build(connect(tmp_path / "db"), tiny_model.spec, tiny_model.embed_dim, "middle")
    cancel = threading.Event()
    seen = []

    def progress(p) -> None:
        seen.append(p)
        if p.videos_done >= 4:
            cancel.set()

    summary = build_index(
        scan.videos,
        tiny_model,
        index,
        FrameStrategy.parse("middle"),
        tmp_path / "out",
        batch_size=2,
        progress=progress,
        cancel=cancel,
    )
    assert summary.cancelled and 4 <= summary.videos_indexed < 12
    assert seen[0].videos_total == 12 and seen[-1].videos_indexed == summary.videos_indexed
    assert len(index.complete_videos()) == summary.videos_indexed == index.count()
    resumed: list = []
    finish = build_index(
        scan.videos, tiny_model, index, FrameStrategy.parse("middle"), tmp_path / "out", progress=resumed.append
    )
    assert not finish.cancelled and finish.videos_indexed == 12 - summary.videos_indexed
    assert index.count() == 12
    # A resumed build counts the videos indexed before: it starts at "4 / 12" (say), not "0 / 8".
    assert (resumed[0].videos_done, resumed[0].videos_total) == (summary.videos_indexed, 12)
    assert (resumed[-1].videos_done, resumed[-1].videos_total) == (12, 12)


def test_second_build_on_the_same_index_is_refused(tmp_path: Path, video_root: Path, tiny_model) -> None:
    with BuildLock(tmp_path / "db", owner="someone else"), pytest.raises(IndexLockedError, match="Another build"):
        build_into(video_root, tmp_path / "db", tmp_path / "out", model=tiny_model)
    # The lock goes with its holder: the next build runs.
    assert build_into(video_root, tmp_path / "db", tmp_path / "out", model=tiny_model).videos_indexed == 12


def test_the_app_loads_its_model_while_the_workers_start_and_reports_each_stage(
    tmp_path: Path, video_root: Path, tiny_model, tiny_spec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every front door builds through `Explorer.build`: its model loader runs while the frame workers start
    (it waits here until they have started, so a build that loads first never gets there), once per
    process, and the build says each stage before its counts."""
    workers_started = threading.Event()
    start = FramePool.start

    def start_and_say_so(pool: FramePool, on_ready: Any = None) -> FramePool:
        started = start(pool, on_ready)
        workers_started.set()
        return started

    monkeypatch.setattr(FramePool, "start", start_and_say_so)
    loads: list[bool] = []

    def loader(*_: Any) -> Any:
        loads.append(workers_started.wait(WAIT_S))
        return tiny_model

    explorer = Explorer(output=str(tmp_path / "out"), cache=ProcessCache(model_loader=loader))
    request = BuildRequest(videos=str(video_root), db=str(tmp_path / "db"), output=str(tmp_path / "out"),
                           spec=tiny_spec, frames="middle", workers=1)  # fmt: skip
    events: list[BuildProgress] = []
    summary = explorer.build(request, progress=events.append)
    assert loads == [True] and summary.videos_indexed == 12
    stages = [e.stage for e in events]
    assert stages[:3] == [BuildStage.SCANNING, BuildStage.STARTING, BuildStage.INDEXING]
    assert set(stages[3:-1]) == {BuildStage.INDEXING} and stages[-1] is BuildStage.FINISHED
    assert [e.describe() for e in events[:3]] == ["scanning videos", f"loading the model {tiny_spec.describe()}",
                                                  "indexing"]  # fmt: skip
    assert not any(e.counting for e in events[:2])
    last = events[-1]
    assert (last.videos_done, last.videos_total, last.videos_indexed, last.frames_done) == (12, 12, 12, 12)
    # The next build reuses the process's model: no second load.
    again = explorer.build(request)
    assert again.videos_already_indexed == 12 and loads == [True]


def test_the_engines_import_neither_the_skeleton_nor_each_other_in_a_circle() -> None:
    """The build skeleton imports the engines, which import only what lies below them (the settings, the
    records, the writer): no circle, at the top of a module or inside a function."""
    folder = ROOT / "core" / "engines"
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("core.engines."):
                found.add(node.module.rsplit(".", 1)[1])
        graph[path.stem] = found

    def reaches(start: str, seen: set[str]) -> set[str]:
        for name in graph.get(start, set()) - seen:
            seen.add(name)
            reaches(name, seen)
        return seen

    circles = sorted(name for name in graph if name in reaches(name, set()))
    assert not circles, circles
    assert "build" not in set().union(*(graph[name] for name in graph if name != "build"))
