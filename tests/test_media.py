"""Which files a browser can play, and the playable copy made for the others."""

from __future__ import annotations

from pathlib import Path

from core.media import browser_playability, playable_copy, video_codec
from core.samples import write_clip


def test_playability_and_conversion(tmp_path: Path) -> None:
    webm = write_clip(tmp_path / "a.webm", (200, 0, 0), n_frames=6)
    mp4v = write_clip(tmp_path / "b.mp4", (200, 0, 0), n_frames=6)
    avi = write_clip(tmp_path / "c.avi", (200, 0, 0), n_frames=6)
    assert browser_playability(webm).playable
    check = browser_playability(mp4v)
    assert not check.playable and "codec" in check.reason
    assert not browser_playability(avi).playable
    assert not browser_playability(tmp_path / "missing.mp4").playable
    copy = playable_copy(mp4v, tmp_path / "out")
    assert copy.parent == tmp_path / "out" / "playback" and video_codec(copy) in ("avc1", "h264")
    assert browser_playability(copy).playable
    assert playable_copy(mp4v, tmp_path / "out") == copy  # made once, then reused
