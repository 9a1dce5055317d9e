"""Pick and decode frames from a video with OpenCV: the frame strategies and the reading behind each.

Strategies (`FrameStrategy.parse` reads them, `str()` gives the canonical name that names collections):

- ``middle``: the centre frame.
- ``uniform:K``: K frames at the centres of K equal segments of the clip (K from 1 to 32).
- ``fps:R``: R frames per second of video (0 < R <= 30, up to 3 decimals: ``fps:0.5``), placed by the
  decoded frames' own timestamps (the first frame at or after each time k/R), so variable-frame-rate files
  are sampled in real time. At most 600 frames a video: beyond that, 600 of the planned frames are taken
  evenly over them (first and last included), with a note.
- ``scenes:K`` (``scenes`` is ``scenes:16``): the middle frame of each shot found by PySceneDetect's
  content detector, at most K shots a video (K from 1 to 64): the K longest, in time order.

``middle`` and ``uniform:K`` seek, or grab forward when the next frame is close; ``fps:R`` decodes the file
once in order, converting only the frames it takes; ``scenes:K`` decodes once for the detection, then reads
the chosen frames as ``uniform`` does. This module is the only place that knows OpenCV hands out BGR: every
`Frame.rgb` is RGB.

Real files lie about their frame counts and timestamps: a plan that cannot be read is made again on the
decodable frames, a timestamp that is missing or not after the previous one is replaced by the previous one
plus one nominal frame, each with a note; a file that cannot be opened or yields no frame raises
`VideoReadError` with the reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from core.ground import UserError, plural
from core.media.capture import VideoReadError as VideoReadError
from core.media.capture import capture_properties, check_file, open_capture
from core.media.capture import probe_source as probe_source
from core.media.capture import probe_video as probe_video
from core.media.capture import video_codec as video_codec
from core.media.sources import VideoRecord

MAX_UNIFORM_FRAMES = 32
MAX_FPS = 30.0
# fps:R on a long video would otherwise hold thousands of frames in memory and in the index.
MAX_FPS_FRAMES = 600
DEFAULT_SCENES = 16
MAX_SCENES = 64
# Containers often store timestamps in whole milliseconds: a frame at 0.033 s is the one meant for 1/30 s.
_TIME_TOLERANCE_S = 0.0005
# Grab forward instead of seeking when the next planned frame is at most this many frames away:
# a seek decodes from the previous keyframe anyway, and short hops are cheaper without it.
SEEK_MIN_GAP = 48
# Frames larger than this (longest side, pixels) are shrunk right after decoding, so that a 4K
# clip sampled at 32 frames does not hold gigabytes; every CLIP input size is far below it.
DEFAULT_MAX_SIDE = 1280


OnFrame = Callable[[np.ndarray], None]  # sees each RGB frame as it is decoded


_STRATEGY_FORMS = (
    f"use 'middle', 'uniform:K' (K from 1 to {MAX_UNIFORM_FRAMES}), 'fps:R' (R frames per second of video, above 0 "
    f"and at most {MAX_FPS:g}, up to 3 decimals, e.g. fps:0.5) or 'scenes[:K]' (the middle frame of each shot, at "
    f"most K from 1 to {MAX_SCENES}, default {DEFAULT_SCENES})"
)


@dataclass(frozen=True)
class FrameStrategy:
    """How many frames to take from a video and where."""

    kind: str  # "middle", "uniform", "fps" or "scenes"
    # uniform: the frames; scenes: the most shots; fps: the most frames (MAX_FPS_FRAMES); middle: 1.
    count: int = 1
    rate: float = 0.0  # fps: frames per second of video

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
        # Three decimals at most keep the canonical name (which names the collection) exact.
        match = re.fullmatch(r"fps:(\d+(?:\.\d{1,3})?|\.\d{1,3})", value)
        if match:
            rate = float(match.group(1))
            if 0 < rate <= MAX_FPS:
                return cls("fps", MAX_FPS_FRAMES, rate)
        match = re.fullmatch(r"scenes(?::(\d+))?", value)
        if match:
            count = int(match.group(1)) if match.group(1) else DEFAULT_SCENES
            if 1 <= count <= MAX_SCENES:
                return cls("scenes", count)
        raise UserError(f"Unknown frame strategy {text!r}: {_STRATEGY_FORMS}.")

    def __str__(self) -> str:
        if self.kind == "middle":
            return "middle"
        if self.kind == "fps":
            # At most 2 integer digits and 3 decimals: 'g' writes them exactly (fps:2, fps:0.5, fps:12.125).
            return f"fps:{self.rate:g}"
        return f"{self.kind}:{self.count}"

    def indices(self, n_frames: int) -> list[int]:
        """Frame indices to read from a clip of `n_frames` frames (sorted, unique): `middle` and `uniform`
        only, the strategies that depend on the frame count alone."""
        if self.kind not in ("middle", "uniform"):
            raise ValueError(f"{self} places its frames by reading the video, not from a frame count")
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


def _count_decodable(path: Path, threads: int) -> int:
    cap = open_capture(path, threads)
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
    cap: cv2.VideoCapture,
    targets: Sequence[int],
    fps: float | None,
    allow_seek: bool,
    max_side: int,
    on_frame: OnFrame | None = None,
) -> list[tuple[int, float, np.ndarray]] | None:
    """Read `targets` in order; None as soon as one cannot be read. `on_frame` sees each RGB frame as it
    is decoded (a frame of a read that fails later is seen too, and is then not in any result)."""
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
        timestamp = _timestamp(cap.get(cv2.CAP_PROP_POS_MSEC), target, fps)
        rgb = _to_rgb(bgr, max_side)
        if on_frame is not None:
            on_frame(rgb)
        out.append((target, round(timestamp, 3), rgb))
    return out


def _timestamp(msec: float, index: int, fps: float | None) -> float:
    """Seconds from the start of frame `index`, given OpenCV's POS_MSEC right after decoding it."""
    # POS_MSEC is the decoded frame's own timestamp (right for variable frame rates); some
    # containers report 0 or garbage, and then the index over the nominal rate is the best guess.
    if math.isfinite(msec) and (msec > 0 or index == 0):
        return msec / 1000.0
    return index / fps if fps else 0.0


def read_video_frames(
    record: VideoRecord,
    strategy: FrameStrategy,
    max_side: int = DEFAULT_MAX_SIDE,
    threads: int = 1,
    on_frame: OnFrame | None = None,
) -> VideoFrames:
    """Decode the frames `strategy` picks from `record`'s file, as RGB arrays.

    `threads` is FFmpeg's decoding threads (1: one per worker; 0: FFmpeg's choice). `on_frame`, if given,
    is called with each RGB frame as soon as it is decoded (so that a caller can work on it while the
    next one decodes; `middle`, `uniform:K` and `scenes`; the returned frames are the same arrays), and
    may see frames of an attempt that is then read again. Raises `VideoReadError` when the file cannot be
    opened or no planned frame can be decoded.
    """
    try:
        return _read_video_frames(record, strategy, max_side, threads, on_frame)
    except cv2.error as exc:
        # OpenCV raises on some malformed streams instead of failing the read.
        raise VideoReadError(f"OpenCV could not decode it ({str(exc).strip().splitlines()[-1][:120]})") from None


def _read_video_frames(
    record: VideoRecord, strategy: FrameStrategy, max_side: int, threads: int, on_frame: OnFrame | None
) -> VideoFrames:
    path = Path(record.path)
    check_file(path)
    if strategy.kind == "fps":
        read, n_frames, fps, width, height, notes = _read_by_time(path, strategy, max_side, threads)
    elif strategy.kind == "scenes":
        read, n_frames, fps, width, height, notes = _read_scenes(path, strategy, max_side, threads, on_frame)
    else:
        read, n_frames, fps, width, height, notes = _read_by_count(path, strategy, max_side, threads, on_frame)
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


# What each reading path returns: the frames read (index, timestamp, RGB), the video's frame count, its
# nominal fps, width, height, and the notes about the file.
_Read = tuple[list[tuple[int, float, np.ndarray]], int, float | None, int, int, list[str]]


def _read_by_count(
    path: Path, strategy: FrameStrategy, max_side: int, threads: int, on_frame: OnFrame | None = None
) -> _Read:
    """`middle` and `uniform:K`: plan on the container's frame count, on the decodable count if that fails."""
    notes: list[str] = []
    cap = open_capture(path, threads)
    try:
        reported, fps, width, height = capture_properties(cap)
        read = None
        if reported > 0:
            read = _read_planned(cap, strategy.indices(reported), fps, True, max_side, on_frame)
    finally:
        cap.release()
    n_frames = reported
    if read is None:
        # The container's count is missing or wrong (or the file is cut short): count what can
        # really be decoded and plan again on that, reading straight through without seeking.
        n_frames = _count_decodable(path, threads)
        if n_frames == 0:
            raise VideoReadError("no decodable frames (damaged file or unsupported codec)")
        notes.extend(_count_notes(reported, n_frames))
        cap = open_capture(path, threads)
        try:
            read = _read_planned(cap, strategy.indices(n_frames), fps, False, max_side, on_frame)
        finally:
            cap.release()
        if read is None:
            raise VideoReadError(f"decoding failed mid-file (after counting {plural(n_frames, 'frame')})")
    return read, n_frames, fps, width, height, notes


def _count_notes(reported: int, decoded: int) -> list[str]:
    """What a full decode learnt about the container's frame count, when worth saying (every strategy's
    one rule): a small difference (a frame or two, common in real files) is not."""
    if not reported:
        return [f"frame count missing from the container; {plural(decoded, 'frame')} decoded"]
    if abs(reported - decoded) > max(2, reported // 20):
        return [f"container reports {plural(reported, 'frame')} but {decoded:,} are decodable"]
    return []


def _spread(items: Sequence[int], count: int) -> list[int]:
    """`count` of `items` evenly over them, the first and the last included (all when there are fewer)."""
    n = len(items)
    if n <= count:
        return list(items)
    if count == 1:
        return [items[n // 2]]
    return [items[math.floor(j * (n - 1) / (count - 1) + 0.5)] for j in range(count)]


@dataclass
class _TimeSampler:
    """Takes the first frame at or after each target time k/rate, k = 0, 1, 2, ...; a frame that reaches
    several targets at once (a rate above the video's) is taken once."""

    rate: float
    next_target: int = 0

    def take(self, seconds: float) -> bool:
        reached = math.floor((seconds + _TIME_TOLERANCE_S) * self.rate)
        if reached < self.next_target:
            return False
        self.next_target = reached + 1
        return True


def _expected_picks(reported: int, fps: float | None, rate: float) -> int:
    """How many frames fps sampling will take, judged from the container's count and nominal rate (0: unknown)."""
    if not (reported and fps):
        return 0
    sampler = _TimeSampler(rate)
    return sum(sampler.take(i / fps) for i in range(reported))


def _retrieve(cap: cv2.VideoCapture, index: int, max_side: int) -> np.ndarray:
    ok, bgr = cap.retrieve()
    if not ok or bgr is None or bgr.size == 0:
        raise VideoReadError(f"decoding failed mid-file (frame {index} was found but could not be decoded)")
    return _to_rgb(bgr, max_side)


def _read_by_time(path: Path, strategy: FrameStrategy, max_side: int, threads: int) -> _Read:
    """`fps:R`: one read in order, placing the frames by their own timestamps (see the module's docstring)."""
    cap = open_capture(path, threads)
    try:
        reported, fps, width, height = capture_properties(cap)
        # Under the cap, which planned frames to keep depends on how many there are: guess it from the
        # container, so that one read is enough whenever the container tells the truth.
        expected = _expected_picks(reported, fps, strategy.rate)
        keep = set(_spread(range(expected), strategy.count)) if expected > strategy.count else None
        sampler = _TimeSampler(strategy.rate)
        planned: list[tuple[int, float]] = []
        kept: list[tuple[int, float, np.ndarray]] = []
        previous: float | None = None
        repaired = 0
        n_frames = 0
        while cap.grab():
            seconds = _timestamp(cap.get(cv2.CAP_PROP_POS_MSEC), n_frames, fps)
            if previous is not None and seconds <= previous:
                # Missing, repeated or backwards (some AVI files report 0 for their last frames): one
                # nominal frame after the previous one is the best guess, and keeps the times increasing.
                if not fps:
                    raise VideoReadError(
                        f"neither frame timestamps nor a frame rate, so {strategy} cannot place its frames in time"
                    )
                seconds, repaired = previous + 1.0 / fps, repaired + 1
            previous = seconds
            if sampler.take(seconds):
                if (keep is None or len(planned) in keep) and len(kept) < strategy.count:
                    kept.append((n_frames, round(seconds, 3), _retrieve(cap, n_frames, max_side)))
                planned.append((n_frames, seconds))
            n_frames += 1
    finally:
        cap.release()
    if n_frames == 0:
        raise VideoReadError("no decodable frames (damaged file or unsupported codec)")
    notes = _count_notes(reported, n_frames)
    if repaired:
        missing = plural(repaired, "frame timestamp")
        notes.append(f"{missing} missing or out of order; the nominal frame rate placed them")
    chosen = planned
    if len(planned) > strategy.count:
        chosen = [planned[i] for i in _spread(range(len(planned)), strategy.count)]
        notes.append(
            f"{strategy} capped at {strategy.count} frames: {len(planned)} planned, {strategy.count} taken evenly "
            "over the whole video"
        )
    if [index for index, _, _ in kept] != [index for index, _ in chosen]:
        # The container's count misled the first read: read the chosen frames again (the first read's
        # frames are let go before, not after, the second holds as many).
        kept.clear()
        kept = _read_chosen(path, chosen, max_side, threads)
    return kept, n_frames, fps, width, height, notes


def _read_chosen(
    path: Path, chosen: Sequence[tuple[int, float]], max_side: int, threads: int
) -> list[tuple[int, float, np.ndarray]]:
    """The frames at `chosen` indices (sorted), by one read in order, with the timestamps already known."""
    wanted = dict(chosen)
    out: list[tuple[int, float, np.ndarray]] = []
    cap = open_capture(path, threads)
    try:
        index = 0
        while len(out) < len(wanted) and cap.grab():
            if index in wanted:
                out.append((index, round(wanted[index], 3), _retrieve(cap, index, max_side)))
            index += 1
    finally:
        cap.release()
    if len(out) < len(wanted):
        raise VideoReadError(f"decoding failed mid-file (a second read stopped after {plural(index, 'frame')})")
    return out


def _detect_shots(path: Path, fps: float | None, threads: int) -> tuple[list[tuple[int, int]], int]:
    """(start, end) frame indices of each shot, end exclusive, in order, and the frames decoded."""
    # Imported here: scene detection is needed by `scenes` builds alone, and importing it costs time.
    from scenedetect import ContentDetector, SceneManager
    from scenedetect.backends.opencv import VideoCaptureAdapter

    cap = open_capture(path, threads)  # our capture: one FFmpeg thread in a worker, like every other read
    try:
        # The adapter counts frames in decoding order, as every index here does (the rate only names
        # times). No retry past a frame that fails to decode: every read here stops there, so the shots'
        # indices are those of the frames read afterwards. OpenCV's exceptions become a reason in
        # read_video_frames.
        video = VideoCaptureAdapter(cap, frame_rate=fps or 25.0, max_read_attempts=0)
        manager = SceneManager()
        manager.add_detector(ContentDetector())
        decoded = int(manager.detect_scenes(video=video))
        scenes = manager.get_scene_list(start_in_scene=True)  # no cut: one shot, the whole video
    finally:
        cap.release()
    shots = [(int(start.frame_num), int(end.frame_num)) for start, end in scenes]
    return [(start, min(end, decoded)) for start, end in shots if start < min(end, decoded)], decoded


def _read_scenes(
    path: Path, strategy: FrameStrategy, max_side: int, threads: int, on_frame: OnFrame | None = None
) -> _Read:
    """`scenes:K`: the middle frame of each of the K longest shots, in time order."""
    cap = open_capture(path, threads)
    try:
        reported, fps, width, height = capture_properties(cap)
    finally:
        cap.release()
    shots, decoded = _detect_shots(path, fps, threads)
    if decoded == 0 or not shots:
        raise VideoReadError("no decodable frames (damaged file or unsupported codec)")
    if len(shots) > strategy.count:
        # Longest first, the earlier of equal lengths first; then back in time order.
        longest = sorted(shots, key=lambda shot: (shot[0] - shot[1], shot[0]))[: strategy.count]
        shots = sorted(longest)
    targets = [start + (end - start) // 2 for start, end in shots]
    # Seeking lands on the planned frame, as for `uniform`; where a seek misses, one read in order does.
    for allow_seek in (True, False):
        cap = open_capture(path, threads)
        try:
            read = _read_planned(cap, targets, fps, allow_seek, max_side, on_frame)
        finally:
            cap.release()
        if read is not None:
            return read, decoded, fps, width, height, _count_notes(reported, decoded)
    raise VideoReadError(f"decoding failed mid-file (after detecting shots over {plural(decoded, 'frame')})")
