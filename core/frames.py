"""Pick and decode frames from a video with OpenCV.

Strategies: ``middle`` (the centre frame, as the reference notebook did) and ``uniform:K``
(K frames at the centres of K equal segments of the clip). Frames are reached by seeking, or by
grabbing forward when the next one is close, so a 10-second clip is not decoded in full to get one
frame. This module is the only place that knows OpenCV hands out BGR: every `Frame.rgb` is RGB.

Real files lie: frame counts may be missing or wrong (variable frame rate, truncated downloads,
WebM without duration). When a planned frame cannot be read, the decodable frames are counted and
the plan is made again on that count, with a note; a file that cannot be opened or yields no frame
raises `VideoReadError` with the reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from core.errors import UserError
from core.sources import VideoRecord

MAX_UNIFORM_FRAMES = 32
# Grab forward instead of seeking when the next planned frame is at most this many frames away:
# a seek decodes from the previous keyframe anyway, and short hops are cheaper without it.
SEEK_MIN_GAP = 48
# Frames larger than this (longest side, pixels) are shrunk right after decoding, so that a 4K
# clip sampled at 32 frames does not hold gigabytes; every CLIP input size is far below it.
DEFAULT_MAX_SIDE = 1280
# A count beyond this is a container bug, not a clip; the frames are then counted by decoding.
_IMPLAUSIBLE_FRAME_COUNT = 10_000_000


class VideoReadError(Exception):
    """The video cannot be used; `reason` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class FrameStrategy:
    """How many frames to take from a video and where."""

    kind: str  # "middle" or "uniform"
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> FrameStrategy:
        value = (text or "").strip().lower()
        if value == "middle":
            return cls("middle", 1)
        match = re.fullmatch(r"uniform:(\d+)", value)
        if match:
            count = int(match.group(1))
            if 1 <= count <= MAX_UNIFORM_FRAMES:
                return cls("uniform", count)
        raise UserError(
            f"Unknown frame strategy {text!r}: use 'middle' or 'uniform:K' with K from 1 to {MAX_UNIFORM_FRAMES}."
        )

    def __str__(self) -> str:
        return "middle" if self.kind == "middle" else f"uniform:{self.count}"

    def indices(self, n_frames: int) -> list[int]:
        """Frame indices to read from a clip of `n_frames` frames (sorted, unique)."""
        if n_frames <= 0:
            return []
        if self.kind == "middle":
            return [n_frames // 2]
        # Centres of K equal segments: symmetric, never the very first or last frame of a long
        # clip (often black or a transition), and K=1 gives the middle frame.
        picks = {min(n_frames - 1, int((i + 0.5) * n_frames / self.count)) for i in range(self.count)}
        return sorted(picks)


@dataclass
class Frame:
    """One decoded frame, RGB, with where it came from."""

    video_id: str
    label: str
    frame_index: int
    timestamp_s: float
    video_path: str
    rgb: np.ndarray = field(repr=False)


@dataclass
class VideoFrames:
    """The frames read from one video, plus what was learnt about the file."""

    record: VideoRecord
    frames: list[Frame]
    n_frames: int
    fps: float | None
    width: int
    height: int
    notes: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        return self.n_frames / self.fps if self.fps else None


# FFmpeg happily opens a still image as a one-frame "video"; a file with a video extension whose
# content is an image is a mistake worth naming.
_IMAGE_SIGNATURES = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
)


def _sniff_image(head: bytes) -> str:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    return next((name for signature, name in _IMAGE_SIGNATURES if head.startswith(signature)), "")


def _check_file(path: Path) -> None:
    try:
        if not path.exists():
            raise VideoReadError("file not found")
        if not path.is_file():
            raise VideoReadError("not a regular file")
        if path.stat().st_size == 0:
            raise VideoReadError("empty file (0 bytes)")
        with path.open("rb") as fh:
            head = fh.read(16)
    except PermissionError:
        raise VideoReadError("permission denied: the file cannot be read") from None
    except OSError as exc:
        raise VideoReadError(f"the file cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    image = _sniff_image(head)
    if image:
        raise VideoReadError(f"this is {image}, not a video")


# Videos are decoded in parallel, one per worker process, each with one FFmpeg thread: FFmpeg's own
# threads would only compete with the other workers and with the model (benchmarks/README.md has the
# figures). `threads` 0 lets FFmpeg choose, for a caller that decodes alone. FFmpeg's log level and
# OpenCV's thread pool are process settings: core.runtime.configure_runtime sets them.


def _open(path: Path, threads: int = 1) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, max(0, int(threads))])
    if not cap.isOpened():
        cap.release()
        raise VideoReadError("cannot be opened as a video (not a video file, damaged, or an unsupported codec)")
    return cap


def _count_decodable(path: Path, threads: int) -> int:
    cap = _open(path, threads)
    try:
        n = 0
        while cap.grab():
            n += 1
        return n
    finally:
        cap.release()


def _to_rgb(bgr: np.ndarray, max_side: int) -> np.ndarray:
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    h, w = bgr.shape[:2]
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    # The one BGR→RGB conversion of the whole pipeline.
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _read_planned(
    cap: cv2.VideoCapture, targets: Sequence[int], fps: float | None, allow_seek: bool, max_side: int
) -> list[tuple[int, float, np.ndarray]] | None:
    """Read `targets` in order; None as soon as one cannot be read."""
    out: list[tuple[int, float, np.ndarray]] = []
    pos = 0  # index of the frame the next read() returns
    for target in targets:
        if allow_seek and (target < pos or target - pos > SEEK_MIN_GAP):
            if not cap.set(cv2.CAP_PROP_POS_FRAMES, target):
                return None
            pos = target
        while pos < target:
            if not cap.grab():
                return None
            pos += 1
        ok, bgr = cap.read()
        if not ok or bgr is None or bgr.size == 0:
            return None
        pos += 1
        # Past the end of a cut-short file, a seek can land on the last decodable frame and read()
        # still succeeds: the decoder's own position then disagrees with ours.
        if allow_seek and int(cap.get(cv2.CAP_PROP_POS_FRAMES)) != pos:
            return None
        msec = cap.get(cv2.CAP_PROP_POS_MSEC)
        # POS_MSEC is the decoded frame's own timestamp (right for variable frame rates); some
        # containers report 0 or garbage, and then the index over the nominal rate is the best guess.
        if math.isfinite(msec) and (msec > 0 or target == 0):
            timestamp = msec / 1000.0
        else:
            timestamp = target / fps if fps else 0.0
        out.append((target, round(timestamp, 3), _to_rgb(bgr, max_side)))
    return out


def probe_video(path: Path | str) -> tuple[int, float | None, int, int]:
    """(frame count reported by the container, fps or None, width, height)."""
    path = Path(path)
    _check_file(path)
    cap = _open(path)
    try:
        return _properties(cap)
    finally:
        cap.release()


def _properties(cap: cv2.VideoCapture) -> tuple[int, float | None, int, int]:
    raw_count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    count = int(raw_count) if math.isfinite(raw_count) and 0 < raw_count < _IMPLAUSIBLE_FRAME_COUNT else 0
    raw_fps = cap.get(cv2.CAP_PROP_FPS)
    fps = float(raw_fps) if math.isfinite(raw_fps) and 0 < raw_fps < 1000 else None
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    return count, fps, width, height


def read_video_frames(
    record: VideoRecord, strategy: FrameStrategy, max_side: int = DEFAULT_MAX_SIDE, threads: int = 1
) -> VideoFrames:
    """Decode the frames `strategy` picks from `record`'s file, as RGB arrays.

    `threads` is FFmpeg's decoding threads (1: one per worker; 0: FFmpeg's choice). Raises
    `VideoReadError` when the file cannot be opened or no planned frame can be decoded.
    """
    try:
        return _read_video_frames(record, strategy, max_side, threads)
    except cv2.error as exc:
        # OpenCV raises on some malformed streams instead of failing the read.
        raise VideoReadError(f"OpenCV could not decode it ({str(exc).strip().splitlines()[-1][:120]})") from None


def _read_video_frames(record: VideoRecord, strategy: FrameStrategy, max_side: int, threads: int) -> VideoFrames:
    path = Path(record.path)
    _check_file(path)
    notes: list[str] = []
    cap = _open(path, threads)
    try:
        reported, fps, width, height = _properties(cap)
        read = None
        if reported > 0:
            read = _read_planned(cap, strategy.indices(reported), fps, allow_seek=True, max_side=max_side)
    finally:
        cap.release()
    n_frames = reported
    if read is None:
        # The container's count is missing or wrong (or the file is cut short): count what can
        # really be decoded and plan again on that, reading straight through without seeking.
        n_frames = _count_decodable(path, threads)
        if n_frames == 0:
            raise VideoReadError("no decodable frames (damaged file or unsupported codec)")
        if reported and n_frames != reported:
            notes.append(f"container reports {reported} frames but {n_frames} are decodable")
        elif not reported:
            notes.append(f"frame count missing from the container; {n_frames} frames decoded")
        cap = _open(path, threads)
        try:
            read = _read_planned(cap, strategy.indices(n_frames), fps, allow_seek=False, max_side=max_side)
        finally:
            cap.release()
        if read is None:
            raise VideoReadError(f"decoding failed mid-file (after counting {n_frames} frames)")
    frames = [
        Frame(
            video_id=record.video_id,
            label=record.label,
            frame_index=index,
            timestamp_s=timestamp,
            video_path=str(path),
            rgb=rgb,
        )
        for index, timestamp, rgb in read
    ]
    if frames and not (width and height):
        height, width = frames[0].rgb.shape[:2]
    return VideoFrames(record, frames, n_frames, fps, width, height, notes)
