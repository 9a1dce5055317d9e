"""Saving uploaded videos into a labelled folder, safely.

The file name is reduced to a plain base name, the label to a folder name, the size is bounded, and
the content must decode as a video (the extension alone proves nothing) before the file takes its
final name; nothing existing is overwritten.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from core.ground import UserError, atomic_path, safe_name
from core.media.frames import FrameStrategy, VideoReadError, read_video_frames
from core.media.sources import VIDEO_EXTENSIONS, VideoRecord

MAX_UPLOAD_BYTES = 1024 * 1024 * 1024  # 1 GiB per file
MAX_NAME_BYTES = 120  # UTF-8 bytes of the stem: well under the 255 file systems allow


def _readable(text: str, what: str) -> str:
    name = safe_name(text, readable=True, max_len=MAX_NAME_BYTES)
    if not name:
        raise UserError(f"The {what} {text!r} has no usable characters.")
    return name


def _names(folder: Path, stem: str, suffix: str) -> Iterator[Path]:
    """``stem.ext``, then ``stem_1.ext``, ``stem_2.ext``, ... (those not taken yet)."""
    for n in itertools.count():
        target = folder / (f"{stem}{suffix}" if n == 0 else f"{stem}_{n}{suffix}")
        if not target.exists():
            yield target


def save_upload(name: str, data: bytes, videos_dir: Path | str, label: str) -> Path:
    """Store `data` as ``videos_dir/<label>/<name>`` after checking it is a decodable video."""
    if not label.strip():
        raise UserError("Give the uploaded videos a label (it becomes their folder name).")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UserError(f"{name} is larger than {MAX_UPLOAD_BYTES // 2**20} MiB.")
    base = Path(name.replace("\\", "/")).name  # a browser may send a Windows path
    suffix = Path(base).suffix.lower()
    if suffix not in VIDEO_EXTENSIONS:
        raise UserError(f"{name} does not have a video extension ({', '.join(VIDEO_EXTENSIONS)}).")
    # The stem is cleaned on its own, so that a long name loses characters but never its extension.
    stem = _readable(Path(base).stem, "file name")
    folder = Path(videos_dir) / _readable(label.strip().replace(" ", "_"), "label")
    for target in _names(folder, stem, suffix):
        try:
            with atomic_path(target, replace=False) as tmp:
                tmp.write_bytes(data)
                try:
                    record = VideoRecord(video_id=target.name, label=label, path=tmp)
                    read_video_frames(record, FrameStrategy.parse("middle"))
                except VideoReadError as exc:
                    raise UserError(f"{name} is not a usable video: {exc.reason}.") from None
        except FileExistsError:
            continue  # another upload took this name meanwhile: the next one
        return target
    raise AssertionError("unreachable: the names never run out")
