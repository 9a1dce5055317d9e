"""Concurrency: searches while a build runs, two builds on one index, and a bounded load test."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.index import connect, list_indexes, open_index
from core.jobs import BuildManager, BuildRequest
from core.loadtest import run_search_load
from core.locking import LOCK_FILENAME
from core.samples import write_clip
from core.search import search
from tests.helpers import ROOT
from tests.tiny_model import COLOURS


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("concurrent")
    colours = list(COLOURS.items())
    for i in range(150):
        label, colour = colours[i % len(colours)]
        write_clip(root / label.replace(" ", "_") / f"v{i:03d}.avi", colour, n_frames=6, size=(40, 32), seed=i)
    return root


def test_searches_answer_while_a_build_runs(tmp_path: Path, videos: Path, tiny_model, tiny_spec) -> None:
    manager = BuildManager(model_loader=lambda spec, device: tiny_model)
    db = tmp_path / "db"
    job = manager.start(
        BuildRequest(videos=str(videos), db=str(db), output=str(tmp_path / "out"), spec=tiny_spec,
                     frames="uniform:3", batch_size=2)
    )  # fmt: skip
    while not list_indexes(connect(db)) and job.active:
        time.sleep(0.01)
    errors, seen, latencies = [], [], []

    def searcher() -> None:
        index = open_index(connect(db))
        while job.active:
            started = time.perf_counter()
            try:
                hits = search(tiny_model, index, "a video of a person juggling fire.", k=5)
            except Exception as exc:  # any error fails the test below
                errors.append(repr(exc))
                return
            latencies.append(time.perf_counter() - started)
            seen.append((index.count(), len(hits)))

    threads = [threading.Thread(target=searcher) for _ in range(4)]
    for thread in threads:
        thread.start()
    job.thread.join(timeout=300)
    for thread in threads:
        thread.join(timeout=60)
    assert job.state == "done" and job.summary.videos_indexed == 150
    assert not errors, errors[:3]
    partial = [count for count, hits in seen if 0 < count < 450]
    assert partial, "no search ran against a half-built index"
    assert max(latencies) < 5.0  # the build never blocks searches for long
    assert open_index(connect(db)).count() == 450


def test_a_second_build_on_the_same_index_is_refused(tmp_path: Path, videos: Path) -> None:
    """The first build uses the real ViT-B/32 architecture (random weights: nothing downloaded), slow
    enough on a CPU to still hold the index when the second process, seconds later, asks for it."""
    db, out = tmp_path / "db", tmp_path / "out"
    command = [
        sys.executable, "-m", "core", "build", "--videos", str(videos), "--db", str(db), "--output", str(out),
        "--model", "ViT-B-32-quickgelu", "--pretrained", "none", "--batch-size", "8", "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = db / LOCK_FILENAME
    deadline = time.time() + 120
    while time.time() < deadline and not (lock.exists() and lock.read_text()):
        time.sleep(0.05)
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    first_out, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert second.returncode == 2
    assert second.stderr.startswith("error: Another build is already running on") and "Traceback" not in second.stderr
    assert "indexed 150 videos" in first_out


def test_bounded_load_test(built_index: dict, tiny_model, record_property) -> None:
    index = open_index(connect(built_index["db"]))
    report = run_search_load(tiny_model, index, threads=8, requests=400, k=10, time_limit_s=60)
    record_property("search_load", report.line())
    print(report.line())
    assert report.errors == 0 and report.requests == 400
    assert report.p95_ms < 2000 and report.throughput_per_s > 5
