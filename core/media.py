"""Video files for people: can a browser play this one, and a browser-playable copy when it cannot.

Browsers play H.264 (or AV1) in MP4 and VP8/VP9/AV1 in WebM; OpenCV's own ``mp4v``, MJPEG AVIs, FLV
and MPEG-1 they do not. Conversion uses the ffmpeg binary that the ``imageio-ffmpeg`` package ships,
so no system ffmpeg is needed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2

import core.frames  # noqa: F401  (sets OpenCV's logging before cv2 is first loaded)

PLAYABLE = {
    ".mp4": {"avc1", "h264", "x264", "av01"},
    ".m4v": {"avc1", "h264", "x264", "av01"},
    ".webm": {"vp80", "vp90", "vp08", "vp09", "av01"},
}
PLAYBACK_DIRNAME = "playback"


@dataclass(frozen=True)
class Playability:
    playable: bool
    codec: str
    reason: str = ""


def video_codec(path: Path | str) -> str:
    """The video codec's four-character code as OpenCV reports it, lower-case ('' if unreadable)."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            return ""
        code = int(cap.get(cv2.CAP_PROP_FOURCC))
        return code.to_bytes(4, "little").decode("ascii", errors="replace").strip("\x00 ").lower()
    finally:
        cap.release()


def browser_playability(path: Path | str) -> Playability:
    """Whether a browser's <video> element can play the file as it is."""
    path = Path(path)
    if not path.is_file():
        return Playability(False, "", "the video file is no longer there")
    codec = video_codec(path)
    if not codec:
        return Playability(False, "", "the file cannot be read as a video")
    allowed = PLAYABLE.get(path.suffix.lower())
    if allowed is None:
        return Playability(False, codec, f"browsers do not play {path.suffix or 'this'} files")
    if codec not in allowed:
        return Playability(False, codec, f"browsers do not play the {codec} codec in {path.suffix} files")
    return Playability(True, codec)


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def h264_command(
    source: Path | str, output: Path | str, start: float = 0.0, duration: float | None = None
) -> list[str]:
    """ffmpeg arguments for a browser-playable H.264/AAC MP4 (even dimensions, index at the front),
    optionally of `duration` seconds from `start`."""
    window = ["-ss", f"{start:.3f}"] if start else []
    length = ["-t", f"{duration:.3f}"] if duration is not None else []
    return [
        ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *window, "-i", str(source), *length,
        "-map", "0:v:0", "-map", "0:a:0?", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
        "-pix_fmt", "yuv420p", "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-c:a", "aac",
        "-movflags", "+faststart", str(output),
    ]  # fmt: skip


def playable_copy(path: Path | str, output_dir: Path | str, timeout: float = 600) -> Path:
    """An H.264/AAC MP4 copy of `path` under ``output_dir/playback/`` (made once, then reused)."""
    source = Path(path)
    stat = source.stat()
    digest = hashlib.sha1(f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = Path(output_dir) / PLAYBACK_DIRNAME / f"{digest}.mp4"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.mp4")
    try:
        subprocess.run(h264_command(source, tmp), check=True, capture_output=True, timeout=timeout)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
