"""Synthetic clips: every container decodes to the label's colour, and writing them prints nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from core.media.frames import FrameStrategy, read_video_frames
from core.media.samples import CONTAINERS, label_colour, make_sample_videos
from core.media.sources import VideoRecord, scan_source
from tests.helpers import ROOT


def test_every_container_keeps_the_colour(tmp_path: Path) -> None:
    colour = label_colour("juggling fire")
    for container in CONTAINERS:
        (path,) = make_sample_videos(tmp_path / container, ["juggling fire"], per_class=1, container=container)
        result = read_video_frames(VideoRecord("x", "juggling fire", path), FrameStrategy.parse("uniform:3"))
        assert result.n_frames == 24 and (result.width, result.height) == (96, 64), container
        corner = result.frames[0].rgb[:8, :8].reshape(-1, 3).mean(axis=0)
        assert np.abs(corner - colour).max() < 12, (container, corner, colour)
    assert len(scan_source(tmp_path / "webm").videos) == 1


def test_writing_sample_clips_is_silent(tmp_path: Path) -> None:
    # OpenCV's WebM writer printed a "tag 'VP80' is not supported" line per clip straight to stderr
    # (below Python, so only a separate process shows it).
    code = (
        "import sys; from core.media.samples import make_sample_videos\n"
        "for c in ('webm', 'mkv', 'mp4', 'avi'):\n"
        "    make_sample_videos(sys.argv[1] + '/' + c, ['a', 'b'], per_class=2, n_frames=6, container=c)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""
    assert len(list(tmp_path.rglob("*.*"))) == 16
