"""Work for the benchmark's own process pools, importable without torch (as the build's workers are).

The **decode floor** is what the build cannot go below: the same planned frames, decoded by as many
processes as the build has workers, with nothing else (no resize, thumbnail, transfer or model).
"""

from __future__ import annotations

from core.engines.prepare import PreparedVideo, prepare_video
from core.media.frames import FrameStrategy, VideoReadError, read_video_frames
from core.media.geometry import InputGeometry
from core.media.sources import VideoRecord


def decode_planned(record: VideoRecord, strategy: str) -> int:
    """Decode the planned frames of one video (to RGB, as the build's reader does); how many."""
    try:
        return len(read_video_frames(record, FrameStrategy.parse(strategy)).frames)
    except VideoReadError:
        return 0


def prepare_planned(record: VideoRecord, strategy: str, geometry: InputGeometry, output_dir: str) -> PreparedVideo:
    """What a build worker does for one video (decode, model input, thumbnails), returned as the build gets it."""
    return prepare_video(record, FrameStrategy.parse(strategy), geometry, output_dir)


def spin(iterations: int) -> int:
    """Pure CPU work (a Python loop), to measure how many cores this machine really gives at once."""
    total = 0
    for i in range(iterations):
        total += i
    return iterations
