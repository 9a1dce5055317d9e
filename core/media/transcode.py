"""Video files for people: can a browser play this one, and a browser-playable copy when it cannot.

Browsers play H.264 (Baseline, Main or High profile) or AV1 in MP4, and VP8/VP9/AV1 in WebM, all with
8-bit 4:2:0 colour. OpenCV's own ``mp4v`` (MPEG-4 Part 2), H.264 High 4:4:4, MJPEG AVIs, FLV and
MPEG-1 they do not: the player stays blank. Probing and conversion use the ffmpeg binary that the
``imageio-ffmpeg`` package ships, so no system ffmpeg is needed.
"""

from __future__ import annotations

import functools
import hashlib
import re
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from core.ground import atomic_path

PLAYABLE = {
    ".mp4": {"h264", "av1"},
    ".m4v": {"h264", "av1"},
    ".webm": {"vp8", "vp9", "av1"},
}
# The H.264 profiles every browser decodes; High 10, High 4:2:2 and High 4:4:4 they do not.
H264_PROFILES = {"Constrained Baseline", "Baseline", "Main", "High"}
PLAYABLE_PIXEL_FORMATS = {"yuv420p", "yuvj420p"}  # 8-bit 4:2:0
# Codec names as a person knows them (FFmpeg's names otherwise).
CODEC_NAMES = {
    "h264": "H.264",
    "hevc": "H.265 (HEVC)",
    "mpeg4": "MPEG-4 Part 2",
    "mjpeg": "Motion JPEG",
    "flv1": "Flash video (Sorenson H.263)",
    "mpeg1video": "MPEG-1",
    "mpeg2video": "MPEG-2",
    "wmv1": "Windows Media Video 7",
    "wmv2": "Windows Media Video 8",
    "wmv3": "Windows Media Video 9",
    "theora": "Theora",
}
PLAYBACK_DIRNAME = "playback"
PROBE_TIMEOUT_S = 30


@dataclass(frozen=True)
class VideoStream:
    """The first video stream of a file, as FFmpeg describes it."""

    codec: str  # FFmpeg's codec name: h264, mpeg4, vp8, ...
    profile: str = ""  # "High", "High 4:4:4 Predictive", "Simple Profile"; '' when none is given
    tag: str = ""  # the container's four-character code (avc1, mp4v), '' when it has none
    pixel_format: str = ""  # yuv420p, yuv444p, ...
    width: int = 0  # coded size in pixels; 0 when FFmpeg does not say
    height: int = 0

    def describe(self) -> str:
        """The codec as a person reads it: "OpenCV's MPEG-4 Part 2 (mp4v)", "H.264 High 4:4:4 Predictive"."""
        if self.codec == "mpeg4" and self.tag == "mp4v":
            return "OpenCV's MPEG-4 Part 2 (mp4v)"  # what cv2.VideoWriter_fourcc(*"mp4v") writes
        name = CODEC_NAMES.get(self.codec, self.codec)
        return f"{name} {self.profile}" if self.codec == "h264" and self.profile else name


@dataclass(frozen=True)
class Playability:
    playable: bool
    codec: str  # FFmpeg's codec name; '' when the file cannot be read as a video
    reason: str = ""
    profile: str = ""
    width: int = 0  # the video's size in pixels (0: unknown), for showing it at its natural size
    height: int = 0


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


# "Stream #0:0[0x1](und): Video: h264 (High 4:4:4 Predictive) (avc1 / 0x31637661), yuv444p(progressive), ..."
# imageio-ffmpeg ships no ffprobe, and reads this same header itself; each parenthesised group after the
# codec name is either the profile or "tag / 0xHEX".
_VIDEO_LINE = re.compile(r"Stream #[^\n]*?: Video: (?P<codec>\w+)(?P<groups>(?: \([^)]*\))*), (?P<pix>\w+)")
_GROUP = re.compile(r" \(([^)]*)\)")
_SIZE = re.compile(r", (?P<w>\d{1,5})x(?P<h>\d{1,5})\b")


def parse_video_stream(ffmpeg_header: str) -> VideoStream | None:
    """The first video stream in what ``ffmpeg -i FILE`` prints, or None when there is none."""
    match = _VIDEO_LINE.search(ffmpeg_header)
    if match is None:
        return None
    profile, tag = "", ""
    for group in _GROUP.findall(match["groups"]):
        if " / 0x" in group:
            tag = group.split(" / ")[0].strip().lower()
        elif not profile:
            profile = group.strip()
    line_end = ffmpeg_header.find("\n", match.end())
    size = _SIZE.search(ffmpeg_header, match.end(), line_end if line_end >= 0 else len(ffmpeg_header))
    width, height = (int(size["w"]), int(size["h"])) if size else (0, 0)
    return VideoStream(
        codec=match["codec"], profile=profile, tag=tag, pixel_format=match["pix"], width=width, height=height
    )


def probe_stream(path: Path | str) -> VideoStream | None:
    """Codec, profile and pixel format of the file's first video stream (None if it has none)."""
    return parse_video_stream(_header_of(path))


def has_no_video_stream(path: Path | str) -> bool:
    """Whether FFmpeg reads the file as a container whose streams include no video (an audio-only MP4),
    rather than not at all (random bytes, a damaged file)."""
    try:
        header = _header_of(path)
    except OSError:  # the file went away, or ffmpeg cannot run: nothing more to say than "cannot be opened"
        return False
    return bool(_ANY_STREAM.search(header)) and parse_video_stream(header) is None


_ANY_STREAM = re.compile(r"Stream #\d+:\d+")


def _header_of(path: Path | str) -> str:
    path = Path(path)
    stat = path.stat()
    return _header(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _header(path: str, size: int, mtime_ns: int) -> str:
    """What ``ffmpeg -i FILE`` says about the file's streams ('' when it says nothing in time)."""
    # Keyed by size and modification time as well: a file replaced under the same name is probed again.
    del size, mtime_ns
    try:
        result = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return ""
    return result.stderr  # exit status 1 ("no output file") is expected


def browser_playability(path: Path | str) -> Playability:
    """Whether a browser's <video> element can play the file as it is, and if not, why."""
    path = Path(path)
    if not path.is_file():
        return Playability(False, "", "the video file is no longer there")
    stream = probe_stream(path)
    if stream is None:
        return Playability(False, "", "the file cannot be read as a video")
    return replace(_playability(path, stream), width=stream.width, height=stream.height)


def _playability(path: Path, stream: VideoStream) -> Playability:
    codec, profile = stream.codec, stream.profile
    allowed = PLAYABLE.get(path.suffix.lower())
    if allowed is None:
        return Playability(False, codec, f"browsers do not play {path.suffix or 'this'} files", profile)
    if codec not in allowed:
        return Playability(
            False, codec, f"browsers do not play {stream.describe()} video in {path.suffix} files", profile
        )
    if codec == "h264" and profile and profile not in H264_PROFILES:
        return Playability(
            False, codec, f"browsers do not play {stream.describe()} video (only Baseline, Main and High)", profile
        )
    if stream.pixel_format not in PLAYABLE_PIXEL_FORMATS:
        return Playability(
            False,
            codec,
            f"browsers do not play {stream.describe()} video with {stream.pixel_format} colour (only 8-bit 4:2:0)",
            profile,
        )
    return Playability(True, codec, "", profile)


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


def playable_copy_path(path: Path | str, output_dir: Path | str) -> Path:
    """Where the playable copy of this version of `path` lives: ``output_dir/playback/<hash>.mp4``.

    The hash covers the source's absolute path, size and modification time, so an edited or replaced
    source gets a new copy and an unchanged one finds its old copy.
    """
    source = Path(path)
    stat = source.stat()
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return Path(output_dir) / PLAYBACK_DIRNAME / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.mp4"


def cached_playable_copy(path: Path | str, output_dir: Path | str) -> Path | None:
    """The playable copy made earlier for this version of `path`, or None (nothing is converted here)."""
    try:
        target = playable_copy_path(path, output_dir)
    except OSError:  # the source is gone
        return None
    return target if target.is_file() else None


def playable_copy(path: Path | str, output_dir: Path | str, timeout: float = 600) -> Path:
    """An H.264/AAC MP4 copy of `path` under ``output_dir/playback/`` (made once, then reused)."""
    existing = cached_playable_copy(path, output_dir)
    if existing is not None:
        return existing
    target = playable_copy_path(path, output_dir)
    with atomic_path(target) as tmp:
        subprocess.run(h264_command(path, tmp), check=True, capture_output=True, timeout=timeout)
    return target
