"""Crashes and resumption: a build killed (SIGKILL) at random points, several times, then finished,
equals a clean build, and its worker processes do not outlive it; Ctrl-C leaves an index that the next
build completes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core.ground import TEMPORARY_GLOB, plural
from core.media.samples import write_clip
from core.media.thumbnails import FRAMES_DIRNAME
from core.store.catalog import Store, open_index
from tests.helpers import ROOT, build_into
from tests.tiny_model import COLOURS, CONFIG

N_VIDEOS = 200
HAS_PROC = Path("/proc/self/stat").exists()  # where process trees can be read (Linux)
FRAMES = "uniform:3"


@pytest.fixture(scope="module")
def many_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("many")
    colours = list(COLOURS.items())
    for i in range(N_VIDEOS):
        label, colour = colours[i % len(colours)]
        write_clip(root / label.replace(" ", "_") / f"v{i:03d}.avi", colour, n_frames=6, size=(40, 32), seed=i)
    return root


def _build_command(videos: Path, db: Path, out: Path, checkpoint: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "core", "build", "--videos", str(videos), "--db", str(db), "--output", str(out),
        "--model-config", str(CONFIG), "--pretrained", str(checkpoint), "--frames", FRAMES,
        "--batch-size", "4", "--workers", "2", "--quiet", *extra,
    ]  # fmt: skip


def _thumbnails(out: Path) -> set[str]:
    root = out / FRAMES_DIRNAME
    return {str(p.resolve()) for p in root.rglob("*.jpg")} if root.is_dir() else set()


def _start(command: list[str], session: bool = False) -> subprocess.Popen:
    """The command, in a process group of its own with `session` (to be sent a terminal's Ctrl-C)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=session)  # fmt: skip


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (the build's fork server and its workers), from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _snapshot(db: Path) -> dict[str, np.ndarray]:
    contents = open_index(Store(db)).contents(complete_only=False)
    return dict(zip(contents.ids, contents.embeddings, strict=True)), contents


@pytest.mark.parametrize("shards", [1, 4])
def test_sigkill_at_random_points_then_resume(tmp_path: Path, many_videos: Path, tiny_model, tiny_checkpoint: Path,
                                              shards: int) -> None:  # fmt: skip
    """Each time, the resumed build's records equal an uninterrupted unsharded build's; with 4 shards, each
    shard's writer process ends with the killed build."""
    clean_db, clean_out = tmp_path / "clean-db", tmp_path / "clean-out"
    clean = build_into(many_videos, clean_db, clean_out, frames=FRAMES, model=tiny_model, batch_size=4)
    assert clean.videos_indexed == N_VIDEOS and clean.frames == 3 * N_VIDEOS
    reference, _ = _snapshot(clean_db)

    db, out = tmp_path / "db", tmp_path / "out"
    command = _build_command(many_videos, db, out, tiny_checkpoint, "--shards", str(shards))
    rng = random.Random(1234)
    kills = 0
    for _ in range(3):
        # Kill once a random share of the thumbnails (written just before their records) exists.
        target = len(_thumbnails(out)) + rng.randint(30, 150)
        proc = _start(command)
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline and len(_thumbnails(out)) < target:
            time.sleep(0.005)
        if proc.poll() is None:
            below = _descendants(proc.pid) if HAS_PROC else set()
            proc.send_signal(signal.SIGKILL)
            kills += 1
            proc.wait()
            # Nothing tells a killed build's workers; they watch their parent and exit with it.
            deadline = time.time() + 60
            while time.time() < deadline and any(_alive(p) for p in below):
                time.sleep(0.05)
            assert below or not HAS_PROC, "the build had no worker processes when it was killed"
            assert not [p for p in below if _alive(p)], "worker processes outlived the killed build"
        proc.wait()
    assert kills >= 2, "the build finished before it could be killed: make it longer"

    final = _start(command)
    _, stderr = final.communicate(timeout=300)
    assert final.returncode == 0, stderr
    rebuilt, contents = _snapshot(db)
    # Exactly one record per expected frame, no duplicates, each equal to the clean build's.
    assert sorted(rebuilt) == sorted(reference) and len(contents.ids) == len(set(contents.ids)) == 3 * N_VIDEOS
    worst = max(float(np.abs(rebuilt[i] - reference[i]).max()) for i in reference)
    assert worst <= 1e-5, worst
    assert len(open_index(Store(db)).complete_videos()) == N_VIDEOS
    assert shards == 1 or len(list(db.glob("shard-*/chroma.sqlite3"))) == shards
    # The thumbnails on disk are those the index points at, all readable.
    on_disk = _thumbnails(out)
    assert on_disk == {str(Path(p).resolve()) for p in contents.frame_paths}
    assert not list((out / FRAMES_DIRNAME).rglob(TEMPORARY_GLOB))


@pytest.mark.parametrize("shards", [1, 4])
def test_ctrl_c_leaves_a_consistent_index(
    tmp_path: Path, many_videos: Path, tiny_checkpoint: Path, shards: int
) -> None:
    """Ctrl-C as a terminal sends it, to the build's whole process group (its workers, its shard writers)."""
    db, out = tmp_path / "db", tmp_path / "out"
    command = _build_command(many_videos, db, out, tiny_checkpoint, "--shards", str(shards))
    proc = _start(command, session=True)
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline and len(_thumbnails(out)) < 60:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Interrupted" in stderr and "run the same command again" in stderr and "Traceback" not in stderr
    index = open_index(Store(db))
    complete = index.complete_videos()
    assert 0 < len(complete) < N_VIDEOS
    counts = index.video_frame_counts()
    assert all(have == want for vid, (have, want) in counts.items() if vid in complete)
    again = _start(command)
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    assert f"indexed {plural(N_VIDEOS - len(complete), 'video')} ({len(complete)} already indexed)" in stdout
    assert len(open_index(Store(db)).complete_videos()) == N_VIDEOS
