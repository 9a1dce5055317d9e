"""Saving uploaded videos into a labelled folder, safely.

The file name is reduced to a plain base name, the label to a folder name, the size is bounded, and
the content must decode as a video (the extension alone proves nothing) before the file takes its
final name; nothing existing is overwritten.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from core.errors import UserError
from core.frames import FrameStrategy, VideoReadError, read_video_frames
from core.sources import VIDEO_EXTENSIONS, VideoRecord

MAX_UPLOAD_BYTES = 1024 * 1024 * 1024  # 1 GiB per file
_UNSAFE = re.compile(r"[^\w.\- ()]+", re.UNICODE)


def safe_component(text: str, what: str) -> str:
    """A single path component: no separators, no leading dots, not empty."""
    cleaned = _UNSAFE.sub("_", text.replace("/", "_").replace("\\", "_")).strip(" ._")
    if not cleaned:
        raise UserError(f"The {what} {text!r} has no usable characters.")
    return cleaned[:120]


def save_upload(name: str, data: bytes, videos_dir: Path | str, label: str) -> Path:
    """Store `data` as ``videos_dir/<label>/<name>`` after checking it is a decodable video."""
    if not label.strip():
        raise UserError("Give the uploaded videos a label (it becomes their folder name).")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UserError(f"{name} is larger than {MAX_UPLOAD_BYTES // 2**20} MiB.")
    base = safe_component(Path(name).name, "file name")
    suffix = Path(base).suffix.lower()
    if suffix not in VIDEO_EXTENSIONS:
        raise UserError(f"{name} does not have a video extension ({', '.join(VIDEO_EXTENSIONS)}).")
    folder = Path(videos_dir) / safe_component(label.strip().replace(" ", "_"), "label")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".upload-{os.getpid()}-{abs(hash((name, len(data))))}{suffix}"
    tmp.write_bytes(data)
    try:
        read_video_frames(VideoRecord(video_id=base, label=label, path=tmp), FrameStrategy.parse("middle"))
    except VideoReadError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{name} is not a usable video: {exc.reason}.") from None
    target = folder / base
    stem, n = target.stem, 1
    while target.exists():
        target = folder / f"{stem}_{n}{suffix}"
        n += 1
    os.replace(tmp, target)
    return target
