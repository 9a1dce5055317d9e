"""The local engine (`core.engines.local`): worker processes (from a background job too), a worker that dies,
the frames it prepares, how many videos it keeps in flight, and torch's thread count while a build runs.

Nothing waits for time to pass: threads and processes meet on events, barriers or files, and every wait
has a bound only so that a bug fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from core.app import Explorer, ProcessCache
from core.engines import local
from core.engines.build import build_index
from core.engines.local import CRASH_REASON, FramePool, ThreadGovernor, videos_in_flight
from core.ground import UserError
from core.jobs import BuildManager
from core.media.frames import FrameStrategy
from core.media.sources import scan_source
from core.requests import BuildRequest
from core.store.catalog import open_index
from core.store.index import connect, open_for_build
from tests import worker_tasks

WAIT_S = 120


def test_a_background_job_builds_with_two_worker_processes(
    tmp_path: Path, video_root: Path, tiny_model, tiny_spec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard's path: BuildManager → job thread → Explorer.build → run_build → 2 worker processes.

    Each video is prepared only once two different worker processes have started one (a rendezvous
    through files), so the build cannot finish unless both take part; each notes its process id."""
    monkeypatch.setattr(local, "prepare_video", worker_tasks.prepare_in_pairs)
    explorer = Explorer(cache=ProcessCache(model_loader=lambda *_: tiny_model))
    out = tmp_path / "out"
    request = BuildRequest(videos=str(video_root), db=str(tmp_path / "db"), output=str(out), spec=tiny_spec,
                           frames="uniform:2", workers=2, batch_size=4)  # fmt: skip
    job = BuildManager().start(explorer, request)
    assert job.thread is not None
    job.thread.join(WAIT_S)
    assert job.state == "done", (job.state, job.error)
    summary = job.summary
    assert summary.videos_indexed == 12 and summary.frames == 24 and not summary.skipped
    pids = {note.reason.rsplit(" ", 1)[1] for note in summary.notes if note.reason.startswith("prepared by process")}
    assert len(pids) == 2 and str(os.getpid()) not in pids, pids
    assert {p.name for p in (out / "worker-pids").iterdir()} == pids
    index = open_index(connect(tmp_path / "db"))
    assert index.count() == 24 and len(index.complete_videos()) == 12


@pytest.mark.parametrize("helpers", [1, 2])
def test_process_workers_give_the_same_embeddings_as_preparing_here(
    tmp_path: Path, video_root: Path, tiny_model, helpers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames prepared in worker processes (uint8 at the model's input size, normalised per batch), with or
    without a helper thread in each worker, encode to what the model's own transform gives for the same
    decoded frames."""
    from core.media.frames import read_video_frames

    monkeypatch.setattr(local, "prepare_threads_for", lambda workers: helpers)  # read in the parent
    scan = scan_source(video_root)
    index = open_for_build(connect(tmp_path / "db"), tiny_model.spec, tiny_model.embed_dim, "uniform:2")
    build_index(scan.videos, tiny_model, index, FrameStrategy.parse("uniform:2"), tmp_path / "out", batch_size=5)
    contents = index.contents()
    assert len(contents) == 24
    by_id = dict(zip(contents.ids, contents.embeddings, strict=True))
    for record in scan.videos[:4]:
        frames = read_video_frames(record, FrameStrategy.parse("uniform:2")).frames
        reference = tiny_model.encode_images(torch.stack([tiny_model.preprocess_rgb(f.rgb) for f in frames]))
        got = np.stack([by_id[f"{record.video_id}:{f.frame_index}"] for f in frames])
        assert np.allclose(got, reference, atol=1e-5)


def test_a_worker_that_dies_costs_only_its_own_video(tmp_path: Path, video_root: Path, tiny_model) -> None:
    videos = tmp_path / "videos"
    shutil.copytree(video_root / "golf_chipping", videos / "golf_chipping")
    shutil.copy(video_root / "golf_chipping" / "clip0.mp4", videos / "golf_chipping" / "crash_me.mp4")
    scan = scan_source(videos)
    assert len(scan.videos) == 3
    strategy = FrameStrategy.parse("middle")
    index = open_for_build(connect(tmp_path / "db"), tiny_model.spec, tiny_model.embed_dim, str(strategy))
    pool = FramePool(2, strategy, tmp_path / "out", task=worker_tasks.prepare_or_die)
    summary = build_index(scan.videos, tiny_model, index, strategy, tmp_path / "out", pool=pool)
    assert [(Path(s.item).name, s.reason) for s in summary.skipped] == [("crash_me.mp4", CRASH_REASON)]
    assert summary.videos_indexed == 2 and index.count() == 2


def test_videos_prefetched_while_the_index_opens_are_prepared_once_and_those_indexed_are_dropped(
    tmp_path: Path, video_root: Path, tiny_model
) -> None:
    """The build's workers begin on the first videos before the index says which it has (`prefetch`): a
    prefetched video the build still needs is not prepared a second time, and one the index has is dropped:
    not handed back, and prepared at most once (if it was already running)."""
    videos = scan_source(video_root).videos
    strategy = FrameStrategy.parse("middle")
    out = tmp_path / "out"
    pool = FramePool(1, strategy, out, task=worker_tasks.prepare_and_count).start()
    try:
        pool.prefetch(videos, tiny_model.geometry, 4)
        todo = videos[2:]  # the first two are "already indexed"
        pool.drop_early({video.video_id for video in todo})
        handed_back = [record.video_id for record, _ in pool.prepare(todo, tiny_model.geometry, 3)]
    finally:
        pool.close()
    assert handed_back == [video.video_id for video in todo]
    calls = Counter(path.name.split("@")[0] for path in (out / "calls").iterdir())
    assert all(calls[video.video_id.replace("/", "_")] == 1 for video in todo), calls
    assert all(calls[video.video_id.replace("/", "_")] <= 1 for video in videos[:2]), calls


def test_an_unwritable_output_folder_stops_the_build_with_one_sentence(
    tmp_path: Path, video_root: Path, tiny_model
) -> None:
    blocked = tmp_path / "out"
    blocked.write_text("a file where the output folder should be")
    strategy = FrameStrategy.parse("middle")
    index = open_for_build(connect(tmp_path / "db"), tiny_model.spec, tiny_model.embed_dim, str(strategy))
    with pytest.raises(UserError, match="Cannot write thumbnails under"):
        build_index(scan_source(video_root).videos, tiny_model, index, strategy, blocked)
    assert index.count() == 0


def test_torch_threads_follow_the_bottleneck_on_a_cpu() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        governor = ThreadGovernor(torch.device("cpu"), workers=3)
        few = governor.few
        assert few < 4
        governor.observe(waited=0.9, worked=0.2)  # waiting for frames: the workers need the cores
        assert torch.get_num_threads() == few
        governor.observe(waited=0.05, worked=1.5)  # the model is the bottleneck: every core for it
        assert torch.get_num_threads() == 4
        governor.observe(waited=2.0, worked=0.1)
        governor.restore()
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_videos_in_flight() -> None:
    # Two videos per worker at least, two full batches when videos are short, a frame budget when long.
    assert videos_in_flight(4, 1, 32) == 64
    assert videos_in_flight(4, 8, 32) == 8
    assert videos_in_flight(2, 32, 1024) == local.FRAMES_IN_FLIGHT // 32
    assert videos_in_flight(16, 32, 32) == 32


def test_workers_never_run_the_parents_main_script(
    tmp_path: Path, video_root: Path, tiny_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the dashboard, `__main__` is the page script Streamlit installed there; multiprocessing would run it
    again in every new worker. A stand-in script that leaves a mark when run must leave none."""
    import types

    trap = tmp_path / "page.py"
    mark = tmp_path / "the page ran in a worker"
    trap.write_text(f"from pathlib import Path\nPath({str(mark)!r}).touch()\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(trap)
    monkeypatch.setitem(sys.modules, "__main__", page)
    strategy = FrameStrategy.parse("middle")
    index = open_for_build(connect(tmp_path / "db"), tiny_model.spec, tiny_model.embed_dim, str(strategy))
    summary = build_index(scan_source(video_root).videos, tiny_model, index, strategy, tmp_path / "out", workers=2)
    assert summary.videos_indexed == 12 and not summary.skipped
    assert sys.modules["__main__"] is page  # put back after the workers started
    assert not mark.exists()


def test_helper_threads_prepare_exactly_what_one_thread_does(video_root: Path, tmp_path: Path) -> None:
    """Model inputs and thumbnails made by a helper thread while the next frames decode: the same pixels,
    metadata, order and thumbnails as in one thread."""
    from core.engines.prepare import prepare_video
    from core.media.frames import FrameStrategy
    from core.media.geometry import InputGeometry
    from core.media.sources import scan_source
    from core.runtime import prepare_threads_for

    record = scan_source(video_root).videos[0]
    geometry = InputGeometry((32, 32))
    for strategy in ("fps:5", "scenes"):  # a path that reads by time, and one that streams its frames
        a = prepare_video(record, FrameStrategy.parse(strategy), geometry, tmp_path / "a", helpers=1)
        b = prepare_video(record, FrameStrategy.parse(strategy), geometry, tmp_path / "b", helpers=3)
        assert a.pixels is not None and b.pixels is not None and np.array_equal(a.pixels, b.pixels), strategy
    one = prepare_video(record, FrameStrategy.parse("uniform:5"), geometry, tmp_path / "one", helpers=1)
    two = prepare_video(record, FrameStrategy.parse("uniform:5"), geometry, tmp_path / "two", helpers=2)
    assert one.pixels is not None and two.pixels is not None and one.pixels.shape == (5, 3, 32, 32)
    assert np.array_equal(one.pixels, two.pixels)
    strip = [{k: v for k, v in m.items() if k != "frame_path"} for m in one.metadatas]
    assert strip == [{k: v for k, v in m.items() if k != "frame_path"} for m in two.metadatas]
    for a, b in zip(one.metadatas, two.metadatas, strict=True):
        assert Path(a["frame_path"]).read_bytes() == Path(b["frame_path"]).read_bytes()
    as_bytes = prepare_video(
        record, FrameStrategy.parse("uniform:5"), geometry, tmp_path / "x", thumbnail_bytes=True, helpers=2
    )
    assert [Path(m["frame_path"]).read_bytes() for m in one.metadatas] == as_bytes.thumbnails
    assert (prepare_threads_for(1, cores=2), prepare_threads_for(2, cores=2), prepare_threads_for(15, cores=16)) == (
        2, 1, 1)  # fmt: skip
