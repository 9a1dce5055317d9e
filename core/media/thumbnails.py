"""JPEG thumbnails of indexed frames, named safely and written atomically.

A thumbnail's path depends only on the video id and the frame index, so a rebuild writes the same
file again instead of a second copy, and the index can point at it before the file is read back.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from core.ground import UserError, remove_temporaries, safe_name, write_bytes_atomic

THUMBNAIL_MAX_SIDE = 384
JPEG_QUALITY = 88
FRAMES_DIRNAME = "frames"


def thumbnail_path(output_dir: Path | str, video_id: str, frame_index: int) -> Path:
    """``output_dir/frames/<safe video id>/<NNNNNN>.jpg``."""
    return Path(output_dir) / FRAMES_DIRNAME / safe_name(video_id) / f"{int(frame_index):06d}.jpg"


def shrink_for_thumbnail(rgb: np.ndarray, max_side: int = THUMBNAIL_MAX_SIDE) -> np.ndarray:
    """The frame at thumbnail size, shrunk with OpenCV (far cheaper than Pillow's antialiased resize; see
    benchmarks/README.md): bilinear below 2×, pixel-area averaging beyond, where bilinear sampling would alias."""
    height, width = rgb.shape[:2]
    if max(height, width) <= max_side:
        return rgb
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR if scale > 0.5 else cv2.INTER_AREA)


def thumbnail_jpeg(rgb: np.ndarray, max_side: int = THUMBNAIL_MAX_SIDE) -> bytes:
    """`rgb` (HxWx3 uint8, RGB) as the bytes of a JPEG no larger than `max_side`: what a build writes, and
    what a Ray worker sends to the machine that writes the files. Encoded by OpenCV's libjpeg-turbo: the
    same bytes as Pillow's at the same quality, in three quarters of its time (benchmarks/README.md)."""
    small = shrink_for_thumbnail(rgb, max_side)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # OpenCV reports a failed encode only by its flag; a uint8 RGB array always encodes
        raise RuntimeError(f"OpenCV could not encode a {small.shape} thumbnail as JPEG")
    return encoded.tobytes()


def write_thumbnail(output_dir: Path | str, video_id: str, frame_index: int, jpeg: bytes) -> Path:
    """Write a frame's thumbnail (JPEG bytes) at its `thumbnail_path`, atomically; returns the path. A folder
    that cannot be written is the user's to fix: `UserError` (the build stops)."""
    path = thumbnail_path(output_dir, video_id, frame_index)
    try:
        return write_bytes_atomic(path, jpeg)
    except OSError as exc:
        raise UserError(
            f"Cannot write thumbnails under {output_dir} ({exc.strerror or exc}): check that the output "
            "folder is writable and the disk is not full."
        ) from None


def remove_stale_temporaries(output_dir: Path | str) -> int:
    """Delete temporary files left by a build that was killed mid-write; returns how many."""
    return remove_temporaries(Path(output_dir) / FRAMES_DIRNAME)
