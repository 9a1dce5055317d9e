"""JPEG thumbnails of indexed frames, named safely and written atomically.

A thumbnail's path depends only on the video id and the frame index, so a rebuild writes the same
file again instead of a second copy, and the index can point at it before the file is read back.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from core.ground import UserError, remove_temporaries, safe_name, write_bytes_atomic

THUMBNAIL_MAX_SIDE = 384
JPEG_QUALITY = 88
FRAMES_DIRNAME = "frames"


def thumbnail_path(output_dir: Path | str, video_id: str, frame_index: int) -> Path:
    """``output_dir/frames/<safe video id>/<NNNNNN>.jpg``."""
    return Path(output_dir) / FRAMES_DIRNAME / safe_name(video_id) / f"{int(frame_index):06d}.jpg"


def thumbnail_jpeg(rgb: np.ndarray, max_side: int = THUMBNAIL_MAX_SIDE) -> bytes:
    """`rgb` (HxWx3 uint8, RGB) as the bytes of a JPEG no larger than `max_side`: what a build writes, and
    what a Ray worker sends to the machine that writes the files."""
    image = Image.fromarray(rgb)
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


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
