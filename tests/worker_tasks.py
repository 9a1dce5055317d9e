"""Stand-ins for the build's worker task (`core.engines.prepare.prepare_video`), run in worker processes.

They live in their own small module because a worker process imports the task by name: this one
imports nothing heavy.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from core.engines.prepare import PreparedVideo, prepare_video

RENDEZVOUS_S = 60  # a bound, so that a pool that never runs two tasks at once fails instead of hanging


def prepare_in_pairs(record: Any, strategy: Any, geometry: Any, output_dir: Any, threads: int = 1,
                     helpers: int = 1) -> PreparedVideo:  # fmt: skip
    """`prepare_video`, once two different worker processes have each started a video (a rendezvous
    through files under the output folder), noting which process prepared it."""
    here = Path(output_dir) / "worker-pids"
    here.mkdir(parents=True, exist_ok=True)
    (here / str(os.getpid())).touch()
    deadline = time.monotonic() + RENDEZVOUS_S
    while len(list(here.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    prepared = prepare_video(record, strategy, geometry, output_dir, threads=threads)
    prepared.notes.append(f"prepared by process {os.getpid()}")
    return prepared


def prepare_or_die(record: Any, strategy: Any, geometry: Any, output_dir: Any, threads: int = 1,
                     helpers: int = 1) -> PreparedVideo:  # fmt: skip
    """`prepare_video`, except that a video whose id contains "crash" kills its worker process, as a
    decoder crashing on a malformed file would."""
    if "crash" in record.video_id:
        os._exit(3)
    return prepare_video(record, strategy, geometry, output_dir, threads=threads)


def prepare_and_count(record: Any, strategy: Any, geometry: Any, output_dir: Any, threads: int = 1,
                      helpers: int = 1) -> PreparedVideo:  # fmt: skip
    """`prepare_video`, leaving one file per call under the output folder's ``calls/`` (named by the video
    id, the process and the time), so that a test counts how many times each video was prepared."""
    calls = Path(output_dir) / "calls"
    calls.mkdir(parents=True, exist_ok=True)
    (calls / f"{record.video_id.replace('/', '_')}@{os.getpid()}@{time.monotonic_ns()}").touch()
    return prepare_video(record, strategy, geometry, output_dir, threads=threads)
