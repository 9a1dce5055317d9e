"""JPEG thumbnails of indexed frames, named safely and written atomically.

A thumbnail's path depends only on the video id and the frame index, so a rebuild writes the same
file again instead of a second copy, and the index can point at it before the file is read back.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

THUMBNAIL_MAX_SIDE = 384
JPEG_QUALITY = 88
FRAMES_DIRNAME = "frames"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, max_len: int = 60) -> str:
    """A file-name-safe slug of `text` plus a short hash, so distinct texts never collide."""
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]
    slug = _UNSAFE.sub("_", text).strip("._-")[:max_len].strip("._-")
    return f"{slug}-{digest}" if slug else digest


def thumbnail_path(output_dir: Path | str, video_id: str, frame_index: int) -> Path:
    return Path(output_dir) / FRAMES_DIRNAME / safe_name(video_id) / f"{int(frame_index):06d}.jpg"


def write_thumbnail(rgb: np.ndarray, path: Path, max_side: int = THUMBNAIL_MAX_SIDE) -> Path:
    """Write `rgb` (HxWx3 uint8, RGB) as a JPEG no larger than `max_side`; temporary name, then rename."""
    image = Image.fromarray(rgb)
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    image.save(tmp, format="JPEG", quality=JPEG_QUALITY)
    os.replace(tmp, path)
    return path


def remove_stale_temporaries(output_dir: Path | str) -> int:
    """Delete temporary files left by a build that was killed mid-write; returns how many."""
    root = Path(output_dir) / FRAMES_DIRNAME
    removed = 0
    if root.is_dir():
        for tmp in root.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed
