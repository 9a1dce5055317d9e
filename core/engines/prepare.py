"""Frame preparation, the part of a build that runs in worker processes: decode → model input + thumbnail.

A worker holds no model and imports no torch (it would add seconds to its start): it gets a video, the
frame strategy and the model's `InputGeometry`, and returns the planned frames resized and cropped to
the model's input size as one compact uint8 array, with each frame's metadata. Thumbnails are written
here, before the video's records can reach the index.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.ground import printable
from core.media.frames import DEFAULT_MAX_SIDE, Frame, FrameStrategy, VideoFrames, VideoReadError, read_video_frames
from core.media.geometry import InputGeometry
from core.media.sources import VideoRecord
from core.media.thumbnails import thumbnail_jpeg, thumbnail_path, write_thumbnail
from core.runtime import configure_runtime

# Index-contract keys; a source's own metadata with one of these names is kept as meta_<name>.
RESERVED_KEYS = frozenset(
    {"video_id", "label", "frame_index", "timestamp_s", "video_path", "frame_path", "frames_in_video",
     "video_frames", "fps"}
)  # fmt: skip


@dataclass
class PreparedVideo:
    """One video ready to encode: per-frame metadata and the model inputs, in frame order.

    `pixels` is N×3×H×W uint8 at the model's input size; without a geometry (a model whose transform
    does not split) it is None and `frames` holds the RGB frames, which the encoding process preprocesses.
    """

    video_id: str
    metadatas: list[dict[str, Any]]
    pixels: np.ndarray | None
    frames: list[np.ndarray] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    thumbnails: list[bytes] = field(default_factory=list)  # JPEG bytes, in frame order, when asked for

    def __len__(self) -> int:
        return len(self.metadatas)


def frame_metadata(record: VideoRecord, frame: Frame, frame_path: Path, vf: VideoFrames) -> dict[str, Any]:
    """One record's metadata: the index contract's keys, then the source's own."""
    meta: dict[str, Any] = {
        "video_id": record.video_id,
        "label": record.label,
        "frame_index": int(frame.frame_index),
        "timestamp_s": float(frame.timestamp_s),
        "video_path": printable(str(record.path)),
        "frame_path": printable(str(frame_path)),
        "frames_in_video": len(vf.frames),
        "video_frames": int(vf.n_frames),
        "fps": float(vf.fps or 0.0),
    }
    for key, value in record.meta.items():
        meta[key if key not in RESERVED_KEYS else f"meta_{key}"] = value
    return meta


def prepare_video(
    record: VideoRecord,
    strategy: FrameStrategy,
    geometry: InputGeometry | None,
    output_dir: Path | str,
    max_side: int = DEFAULT_MAX_SIDE,
    thumbnail_bytes: bool = False,
    threads: int = 1,
    helpers: int = 1,
) -> PreparedVideo:
    """Decode the planned frames, write their thumbnails and make the model inputs.

    With `thumbnail_bytes` the thumbnails are returned as JPEG bytes (`PreparedVideo.thumbnails`) instead
    of written: a Ray worker on another machine sends them to the one that writes the output folder.
    `threads` is FFmpeg's decoding threads (1, or 0 for FFmpeg's choice: see `core.runtime.decode_threads_for`).
    With `helpers` > 1, each frame's model input and thumbnail are made in `helpers` − 1 other threads
    while the next frames decode, on a core the workers leave free (`core.runtime.prepare_threads_for`).
    Raises `VideoReadError` (the video is skipped with its reason) or `UserError` (the output folder is not
    writable: the build stops).
    """
    if helpers > 1 and strategy.count > 1:  # one frame has nothing to overlap with
        # Each frame's model input and thumbnail are made by helper threads while the next frames decode
        # (Pillow, OpenCV and FFmpeg all release the GIL): the worker then runs at about its decoding speed.
        with ThreadPoolExecutor(helpers - 1) as pool:
            started: list[tuple[np.ndarray, Future[_Finished]]] = []

            def on_frame(rgb: np.ndarray) -> None:
                started.append((rgb, pool.submit(_finish, rgb, geometry)))

            vf = read_video_frames(record, strategy, max_side=max_side, threads=threads, on_frame=on_frame)
            ready = {id(rgb): future for rgb, future in started}
            finished = [
                ready[id(f.rgb)].result() if id(f.rgb) in ready else _finish(f.rgb, geometry) for f in vf.frames
            ]
    else:
        vf = read_video_frames(record, strategy, max_side=max_side, threads=threads)
        finished = [_finish(f.rgb, geometry) for f in vf.frames]
    if not vf.frames:
        raise VideoReadError("no frames could be read")
    output_dir = Path(output_dir)
    metadatas = []
    thumbnails: list[bytes] = []
    for frame, (jpeg, _) in zip(vf.frames, finished, strict=True):
        if thumbnail_bytes:
            thumbnails.append(jpeg)
            path = thumbnail_path(output_dir, record.video_id, frame.frame_index)
        else:
            path = write_thumbnail(output_dir, record.video_id, frame.frame_index, jpeg)
        metadatas.append(frame_metadata(record, frame, path.resolve(), vf))
    if geometry is None:
        return PreparedVideo(record.video_id, metadatas, None, [f.rgb for f in vf.frames], vf.notes, thumbnails)
    pixels = np.stack([model_input for _, model_input in finished if model_input is not None])
    return PreparedVideo(record.video_id, metadatas, pixels, [], vf.notes, thumbnails)


# A frame's thumbnail (JPEG bytes) and model input (C×H×W uint8, or None without a geometry).
_Finished = tuple[bytes, np.ndarray | None]


def _finish(rgb: np.ndarray, geometry: InputGeometry | None) -> _Finished:
    """The work on one decoded frame: its thumbnail's JPEG bytes and its model input."""
    jpeg = thumbnail_jpeg(rgb)
    return jpeg, geometry.apply(rgb).transpose(2, 0, 1) if geometry is not None else None


def init_worker() -> None:
    """Set up a worker process: quiet FFmpeg, one OpenCV thread, ignore Ctrl-C, and die with the build.

    Ctrl-C reaches every process of the terminal's group; the build process alone handles it (it stops
    submitting and lets the running videos finish). If the build process is killed, nothing tells a
    pool's idle workers, so each one watches its parent and exits with it.
    """
    configure_runtime()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel

    def exit_with_parent() -> None:
        multiprocessing.connection.wait([sentinel])
        os._exit(0)

    threading.Thread(target=exit_with_parent, name="exit-with-parent", daemon=True).start()


def ping() -> None:
    """A task that does nothing: submitting it starts a worker process ahead of the real work."""
