"""Background jobs (`core.jobs`): one job per target, the state and words a build job shows at each stage,
how a job ends (done, cancelled, failed with one sentence), and the time left.

Nothing here waits for time to pass: threads meet on events, and every wait has a bound only so that a bug
fails the test instead of hanging it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from core.app import Explorer, ProcessCache
from core.engines.records import BuildProgress, BuildStage
from core.ground import IndexLockedError, format_duration
from core.jobs import BuildManager, Job
from core.requests import BuildRequest

WAIT_S = 120


def test_one_eta_format_and_a_cancelled_job_never_says_done() -> None:
    assert [format_duration(s) for s in (None, 0.4, 45, 65, 3599, 3720)] == [
        "–", "0 s", "45 s", "1 min 05 s", "59 min 59 s", "1 h 02 min"
    ]  # fmt: skip
    p = BuildProgress(videos_done=35, videos_total=38, videos_indexed=0, frames_done=0, elapsed_s=125.0,
                      frames_per_s=0.0, eta_s=65.0, skipped=[])  # fmt: skip
    assert (p.eta(), p.elapsed()) == ("1 min 05 s", "2 min 05 s")
    job = Job(key="k", kind="build", request=None, state="running", progress=p)
    assert job.eta() == "1 min 05 s"
    for state in ("cancelled", "failed", "done"):
        job.state = state
        assert job.eta() == state


def test_a_second_build_in_the_same_process_is_refused_while_the_first_says_its_stage(
    tmp_path: Path, video_root: Path, tiny_model, tiny_spec
) -> None:
    loading, release = threading.Event(), threading.Event()

    def slow_loader(*_: Any) -> Any:  # holds the first build in "loading model"
        loading.set()
        release.wait(WAIT_S)
        return tiny_model

    manager, explorer = BuildManager(), Explorer(cache=ProcessCache(model_loader=slow_loader))
    request = BuildRequest(videos=str(video_root), db=str(tmp_path / "db"), output=str(tmp_path / "out"),
                           spec=tiny_spec, frames="middle", batch_size=32)  # fmt: skip
    first = manager.start(explorer, request)
    try:
        assert loading.wait(WAIT_S)
        # While the model loads, the job says so, in the words the page shows, and has no counts yet.
        assert (first.state, first.stage) == ("loading model", f"loading the model {tiny_spec.describe()}")
        assert first.progress is None and first.active
        with pytest.raises(IndexLockedError, match=r"^A build is already running on .*: wait for it to finish"):
            manager.start(explorer, request)
        assert manager.active_jobs() == [first]
    finally:
        release.set()
    first.thread.join(timeout=300)
    assert first.state == "done" and first.summary.videos_indexed == 12


def test_a_build_jobs_state_follows_the_builds_stages() -> None:
    job = Job(key="k", kind="build", request=None)
    job.report(BuildProgress(stage=BuildStage.SCANNING))
    assert (job.state, job.stage, job.progress) == ("scanning videos", "scanning videos", None)
    job.report(BuildProgress(stage=BuildStage.STARTING, model="ViT-B-32 (openai)"))
    assert (job.state, job.stage, job.progress) == ("loading model", "loading the model ViT-B-32 (openai)", None)
    counts = BuildProgress(videos_done=3, videos_total=12, stage=BuildStage.INDEXING)
    job.report(counts)
    assert (job.state, job.progress) == ("running", counts) and job.active
    final = BuildProgress(videos_done=12, videos_total=12, stage=BuildStage.FINISHED)
    job.report(final)
    assert job.progress is final and job.active  # the job ends when its work returns, not on an event


def test_a_build_job_that_cannot_start_fails_with_one_sentence(tmp_path: Path, tiny_model, tiny_spec) -> None:
    manager = BuildManager()
    request = BuildRequest(videos=str(tmp_path / "nowhere"), db=str(tmp_path / "db"), output=str(tmp_path / "out"),
                           spec=tiny_spec)  # fmt: skip
    job = manager.start(Explorer(cache=ProcessCache(model_loader=lambda *_: tiny_model)), request)
    assert job.thread is not None
    job.thread.join(WAIT_S)
    assert job.state == "failed" and job.eta() == "failed" and not job.active
    assert str(tmp_path / "nowhere") in job.error and "unexpectedly" not in job.error and "\n" not in job.error
    assert job.finished_at is not None and manager.active_jobs() == []
    # The target is free again: the next job on it starts.
    again = manager.start(Explorer(cache=ProcessCache(model_loader=lambda *_: tiny_model)), request)
    assert again is not job and again.thread is not None
    again.thread.join(WAIT_S)
