"""Which files a browser can play (codec, profile and colour), and the playable copy made for the others."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from core.media.capture import video_codec
from core.media.samples import write_clip
from core.media.transcode import (
    browser_playability,
    cached_playable_copy,
    ffmpeg_exe,
    parse_video_stream,
    playable_copy,
)
from tests.helpers import SHARED_CLIPS


def _x264(path: Path, pix_fmt: str) -> Path:
    subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", "testsrc=size=64x48:rate=10:duration=1", "-c:v", "libx264", "-pix_fmt", pix_fmt, str(path)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return path


def test_playability_and_conversion(tmp_path: Path) -> None:
    webm = write_clip(tmp_path / "a.webm", (200, 0, 0), n_frames=6)
    mp4v = write_clip(tmp_path / "b.mp4", (200, 0, 0), n_frames=6)
    avi = write_clip(tmp_path / "c.avi", (200, 0, 0), n_frames=6)
    assert browser_playability(webm).playable
    check = browser_playability(mp4v)
    assert not check.playable and check.codec == "mpeg4"
    assert check.reason == "browsers do not play OpenCV's MPEG-4 Part 2 (mp4v) video in .mp4 files"
    assert browser_playability(avi).reason == "browsers do not play .avi files"
    assert browser_playability(tmp_path / "missing.mp4").reason == "the video file is no longer there"
    (tmp_path / "text.mp4").write_text("not a video")
    assert browser_playability(tmp_path / "text.mp4").reason == "the file cannot be read as a video"
    assert cached_playable_copy(mp4v, tmp_path / "out") is None
    copy = playable_copy(mp4v, tmp_path / "out")
    assert copy.parent == tmp_path / "out" / "playback" and video_codec(copy) in ("avc1", "h264")
    assert browser_playability(copy).playable
    assert sorted(p.name for p in copy.parent.iterdir()) == [copy.name]  # no temporary left


def test_the_copy_is_remembered_until_the_source_changes(tmp_path: Path) -> None:
    source = write_clip(tmp_path / "b.mp4", (0, 200, 0), n_frames=6)
    copy = playable_copy(source, tmp_path / "out")
    made = copy.stat().st_mtime_ns
    # Another session (a new process, a rerun of the page) finds it without converting again.
    assert cached_playable_copy(source, tmp_path / "out") == copy
    assert playable_copy(source, tmp_path / "out") == copy and copy.stat().st_mtime_ns == made
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the source was edited
    assert cached_playable_copy(source, tmp_path / "out") is None
    assert cached_playable_copy(tmp_path / "gone.mp4", tmp_path / "out") is None


def test_h264_profiles_and_colour(tmp_path: Path) -> None:
    assert browser_playability(_x264(tmp_path / "420.mp4", "yuv420p")).playable
    full = browser_playability(_x264(tmp_path / "444.mp4", "yuv444p"))
    assert not full.playable and full.codec == "h264" and full.profile == "High 4:4:4 Predictive"
    assert full.reason == "browsers do not play H.264 High 4:4:4 Predictive video (only Baseline, Main and High)"
    copy = playable_copy(tmp_path / "444.mp4", tmp_path / "out")
    assert browser_playability(copy).playable and browser_playability(copy).profile == "High"


def test_ffmpeg_headers_are_read() -> None:
    lines = {
        "Stream #0:0[0x1](und): Video: h264 (High 4:4:4 Predictive) (avc1 / 0x31637661), yuv444p(progressive), 128x72":
            ("h264", "High 4:4:4 Predictive", "avc1", "yuv444p"),
        "Stream #0:0: Video: mjpeg (Baseline) (MJPG / 0x47504A4D), yuvj420p(pc, bt470bg/unknown/unknown), 96x64":
            ("mjpeg", "Baseline", "mjpg", "yuvj420p"),
        "Stream #0:0: Video: h264 (avc1 / 0x31637661), yuv420p, 64x48": ("h264", "", "avc1", "yuv420p"),
        "Stream #0:0: Video: vp6f, yuv420p, 112x80, 49 kb/s": ("vp6f", "", "", "yuv420p"),
    }  # fmt: skip
    for line, expected in lines.items():
        stream = parse_video_stream(f"Input #0, mov,mp4, from 'x':\n  {line}\n")
        assert stream is not None and (stream.codec, stream.profile, stream.tag, stream.pixel_format) == expected
    assert parse_video_stream("  Stream #0:0: Audio: mp3, 16000 Hz, mono") is None


@pytest.mark.skipif(not SHARED_CLIPS.is_dir(), reason="the shared real clips are not on this machine")
def test_real_clips() -> None:
    cockatoo = browser_playability(SHARED_CLIPS / "imageio__cockatoo.mp4")  # H.264 High 4:4:4: a blank player
    assert not cockatoo.playable and "High 4:4:4" in cockatoo.reason
    assert browser_playability(SHARED_CLIPS / "askanything__yoga.mp4").playable  # H.264 High 4:2:0
    assert browser_playability(SHARED_CLIPS / "moviepy__clip1024.flv").reason == "browsers do not play .flv files"
