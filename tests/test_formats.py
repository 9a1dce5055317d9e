"""Every documented video file type is found and decoded; every other file is listed as skipped.

The clips are real files in each container, made by the ffmpeg binary that imageio-ffmpeg ships (the one
the product itself uses), from FFmpeg's own test pattern.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from core.media.frames import FrameStrategy, read_video_frames
from core.media.sources import NOT_A_VIDEO, VIDEO_EXTENSIONS, scan_source
from core.media.transcode import ffmpeg_exe

# file name → the encoder and muxer a camera, an old website or a broadcast would have used.
FORMATS = {
    "flash.flv": ["-c:v", "flv", "-f", "flv"],
    "dvd.mpg": ["-c:v", "mpeg1video", "-f", "mpeg"],
    "apple.m4v": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mp4"],
    "broadcast.ts": ["-c:v", "mpeg2video", "-f", "mpegts"],
    "phone.3gp": ["-c:v", "h263", "-f", "3gp"],
    "windows.wmv": ["-c:v", "wmv2", "-f", "asf"],
    "SHOUTING.MPG": ["-c:v", "mpeg2video", "-f", "mpeg"],  # upper-case extensions count too
}
SECONDS, FPS = 2, 25


def _encode(path: Path, codec_and_muxer: list[str]) -> Path:
    # 176x144 (QCIF): one of the few sizes H.263 in 3GP accepts; 25 fps: a rate MPEG-1 accepts.
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", f"testsrc=size=176x144:rate={FPS}:duration={SECONDS}", *codec_and_muxer, str(path)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def formats_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("formats")
    for name, args in FORMATS.items():
        _encode(root / "juggling_fire" / name, args)
    (root / "juggling_fire" / "notes.txt").write_text("filmed on Tuesday\n")
    (root / "juggling_fire" / "poster.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "juggling_fire" / "no_extension").write_bytes(b"\x00" * 10)
    (root / "juggling_fire" / ".DS_Store").write_bytes(b"\x00")  # hidden: not worth a line
    (root / "labels.csv").write_text("label,youtube_id,time_start,time_end\n")  # annotations: not a skip
    (root / "manifest.jsonl").write_text("{}\n")
    return root


def test_the_documented_list() -> None:
    documented = "mp4 mkv mov avi wmv flv webm m4v 3gp mpeg mpg ts ogv rm rmvb vob asf f4v m2ts mts divx xvid mxf"
    assert {f".{e}" for e in documented.split()} == set(VIDEO_EXTENSIONS)


def test_every_container_is_found_and_decoded(formats_folder: Path) -> None:
    scan = scan_source(formats_folder)
    assert sorted(v.path.name for v in scan.videos) == sorted(FORMATS)
    assert {v.label for v in scan.videos} == {"juggling fire"}
    for video in scan.videos:
        result = read_video_frames(video, FrameStrategy.parse("uniform:3"))
        assert len(result.frames) == 3, video.path.name
        assert result.frames[0].rgb.shape == (144, 176, 3), video.path.name
        # testsrc draws moving colour bars: frames decoded for real differ from each other.
        assert not np.array_equal(result.frames[0].rgb, result.frames[-1].rgb), video.path.name
        assert abs(result.n_frames - SECONDS * FPS) <= 2, (video.path.name, result.n_frames)


def test_other_files_are_listed_as_skipped(formats_folder: Path) -> None:
    skipped = {s.item: s.reason for s in scan_source(formats_folder).skipped}
    assert skipped == {
        "juggling_fire/no_extension": NOT_A_VIDEO,
        "juggling_fire/notes.txt": NOT_A_VIDEO,
        "juggling_fire/poster.png": NOT_A_VIDEO,
    }
