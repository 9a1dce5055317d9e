"""Concurrency: searches while a build runs, two builds on one index, and a bounded load test.

Nothing here waits for time to pass or compares durations: threads meet on events and barriers,
and every wait has a generous bound only so that a bug fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from core.analysis.loadtest import run_search_load
from core.analysis.search import search
from core.app import Explorer, ProcessCache
from core.jobs import BuildManager
from core.media.samples import write_clip
from core.model.embed import ClipModel
from core.requests import BuildRequest
from core.store.catalog import open_index
from core.store.index import FrameIndex, connect
from core.store.locking import BuildLock
from tests.helpers import run_cli
from tests.tiny_model import COLOURS, CONFIG

WAIT_S = 120  # a bound on every wait, so that a deadlock fails instead of hanging the suite
N_VIDEOS = 30  # × 3 frames; the build is paused half-way on purpose, so it need not be long


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("concurrent")
    colours = list(COLOURS.items())
    for i in range(N_VIDEOS):
        label, colour = colours[i % len(colours)]
        write_clip(root / label.replace(" ", "_") / f"v{i:03d}.avi", colour, n_frames=6, size=(40, 32), seed=i)
    return root


def explorer_with(model_loader: Any) -> Explorer:
    """An application layer whose models come from `model_loader` (the tests' tiny one), nothing loaded."""
    return Explorer(cache=ProcessCache(model_loader=model_loader))


class EncoderGate:
    """Makes the `pause_at`-th batch of images any model encodes wait for `resume`: the build stops
    half-way, for as long as the test needs, and says so with `paused`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, pause_at: int) -> None:
        self.paused, self.resume = threading.Event(), threading.Event()
        self._batches = 0
        self._lock = threading.Lock()
        encode = ClipModel.encode_images

        def encode_images(model: ClipModel, *args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self._batches += 1
                pause = self._batches == pause_at
            if pause:
                self.paused.set()
                if not self.resume.wait(WAIT_S):
                    raise RuntimeError("the test never resumed the build")
            return encode(model, *args, **kwargs)

        monkeypatch.setattr(ClipModel, "encode_images", encode_images)


def test_searches_answer_while_a_build_runs(
    tmp_path: Path, videos: Path, tiny_model, tiny_spec, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = EncoderGate(monkeypatch, pause_at=15)  # 15 batches of 2 frames: 10 of the 30 videos encoded
    written = threading.Event()  # set once the build's first records are in the index
    upsert = FrameIndex.upsert

    def upsert_and_say_so(self: FrameIndex, *args: Any, **kwargs: Any) -> None:
        upsert(self, *args, **kwargs)
        written.set()

    monkeypatch.setattr(FrameIndex, "upsert", upsert_and_say_so)
    db = tmp_path / "db"
    job = BuildManager().start(
        explorer_with(lambda *_: tiny_model),
        BuildRequest(videos=str(videos), db=str(db), output=str(tmp_path / "out"), spec=tiny_spec,
                     frames="uniform:3", batch_size=2)
    )  # fmt: skip
    # The build stops half-way and stays there; what it finished so far reaches the index.
    assert gate.paused.wait(WAIT_S), f"the build never reached its pause point: {job.state} {job.error}"
    assert written.wait(WAIT_S), "nothing was written while the build was paused"
    searchers = 4
    # Every searcher, then the test, meets here once each has searched the half-built index.
    all_searched_a_partial_index = threading.Barrier(searchers + 1, timeout=WAIT_S)
    errors: list[str] = []
    partial: list[tuple[int, int]] = []
    later: list[tuple[int, int]] = []

    def searcher() -> None:
        try:
            index = open_index(connect(db))
            hits = search(tiny_model, index, "a video of a person juggling fire.", k=5)
            partial.append((index.count(), len(hits)))
            all_searched_a_partial_index.wait()
            while job.active:  # and searches keep answering once the build runs again
                hits = search(tiny_model, index, "a video of a person juggling fire.", k=5)
                later.append((index.count(), len(hits)))
        except Exception as exc:  # any error fails the test below
            errors.append(repr(exc))
            all_searched_a_partial_index.abort()

    threads = [threading.Thread(target=searcher) for _ in range(searchers)]
    for thread in threads:
        thread.start()
    try:
        all_searched_a_partial_index.wait()
    except threading.BrokenBarrierError:
        pass  # a searcher failed: its error is reported below
    finally:
        gate.resume.set()
    job.thread.join(timeout=300)
    for thread in threads:
        thread.join(timeout=WAIT_S)
    assert not errors, errors[:3]
    assert job.state == "done" and job.summary.videos_indexed == N_VIDEOS
    assert len(partial) == searchers
    assert all(0 < count < 3 * N_VIDEOS and hits == min(5, count) for count, hits in partial), partial
    assert all(hits == 5 for _, hits in later)
    assert open_index(connect(db)).count() == 3 * N_VIDEOS


def list_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_a_second_build_on_the_same_index_is_refused(tmp_path: Path, video_root: Path) -> None:
    """The lock is held here, explicitly, while another process asks for the index; once released,
    that process builds."""
    db, out = tmp_path / "db", tmp_path / "out"
    command = ["build", "--videos", str(video_root), "--db", str(db), "--output", str(out),
               "--model-config", str(CONFIG), "--pretrained", "none", "--quiet"]  # fmt: skip
    with BuildLock(db, owner="the test") as lock:
        assert lock.held
        refused = run_cli(*command)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.startswith(f"error: Another build is already running on {db.resolve()}")
        assert f"process {os.getpid()} on " in refused.stderr and "Traceback" not in refused.stderr
        assert not list_files(out), "the refused build wrote output"
    done = run_cli(*command)
    assert done.returncode == 0, done.stderr
    assert "indexed 12 videos" in done.stdout


def test_bounded_load_test(built_index: dict, tiny_model, record_property) -> None:
    index = open_index(connect(built_index["db"]))
    # The time limit is a safety bound, far above what 400 searches take: the count ends the run.
    report = run_search_load(tiny_model, index, threads=8, requests=400, k=10, time_limit_s=600)
    record_property("search_load", report.line())
    print(report.line())
    assert report.errors == 0 and report.first_error == "" and report.requests == 400 and report.threads == 8
    assert 0 < report.p50_ms <= report.p95_ms <= report.max_ms
    assert report.throughput_per_s == pytest.approx(400 / report.seconds)
