"""Opening a video file with OpenCV (`open_capture`, any file name), reading what its container says
(`probe_video`), and the quick check of a source before a build (`unusable_reason`, `probe_source`)."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import cv2

from core.media.sources import SkippedItem, SourceScan
from core.media.transcode import has_no_video_stream

# A count beyond this is a container bug, not a clip; the frames are then counted by decoding.
_IMPLAUSIBLE_FRAME_COUNT = 10_000_000
NO_VIDEO_STREAM = "has no video stream (an audio-only file?)"
# The quick check of a source before a build: each FFmpeg step of a file (open, first frame) gets this
# long, and a few files are looked at side by side.
PROBE_TIMEOUT_MS = 5_000
PROBE_WORKERS = 4


class VideoReadError(Exception):
    """The video cannot be used; `reason` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


def check_file(path: Path) -> None:
    """Raise `VideoReadError` when `path` is not a readable, non-empty file, or is an image."""
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


@contextlib.contextmanager
def _name_opencv_takes(path: Path) -> Iterator[Path]:
    """`path`, or a link to it in a private folder when its name is not UTF-8.

    OpenCV passes file names to FFmpeg as UTF-8 and crashes on the bytes Python keeps as surrogates; the
    link has a plain name. It is needed only while the file is opened: FFmpeg reads through its handle.
    """
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        yield path
        return
    folder = tempfile.mkdtemp(prefix="clip-explorer-video-")
    suffix = path.suffix if path.suffix.isascii() and path.suffix.isprintable() else ""
    link = Path(folder) / f"video{suffix}"
    try:
        os.symlink(os.fsencode(path.absolute()), os.fsencode(link))
        yield link
    finally:
        link.unlink(missing_ok=True)
        os.rmdir(folder)


def open_capture(path: Path | str, threads: int = 1, timeout_ms: int = 0) -> cv2.VideoCapture:
    """The one place a video file is opened with OpenCV: an opened capture, or `VideoReadError`.

    Any file name works, including one that is not UTF-8.
    """
    params = [cv2.CAP_PROP_N_THREADS, max(0, int(threads))]
    if timeout_ms:  # FFmpeg gives up opening, and each read, after this long
        params += [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
    with _name_opencv_takes(Path(path)) as name:
        cap = cv2.VideoCapture(str(name), cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        if has_no_video_stream(path):  # asked only on failure: it runs ffmpeg once
            raise VideoReadError(NO_VIDEO_STREAM)
        raise VideoReadError("cannot be opened as a video (not a video file, damaged, or an unsupported codec)")
    return cap


def video_codec(path: Path | str) -> str:
    """The video codec's four-character code as OpenCV reports it, lower-case ('' if unreadable)."""
    try:
        cap = open_capture(path, threads=0)
    except VideoReadError:
        return ""
    try:
        code = int(cap.get(cv2.CAP_PROP_FOURCC))
        return code.to_bytes(4, "little").decode("ascii", errors="replace").strip("\x00 ").lower()
    finally:
        cap.release()


def unusable_reason(path: Path | str, timeout_ms: int = PROBE_TIMEOUT_MS) -> str:
    """Why the file cannot be indexed, in a few words, or '' when it can: a quick look (its first bytes,
    FFmpeg's open of the container, one frame decoded), each FFmpeg step bounded by `timeout_ms`."""
    path = Path(path)
    try:
        check_file(path)
        cap = open_capture(path, 1, timeout_ms)
    except VideoReadError as exc:
        return exc.reason
    try:
        if not cap.grab():
            return "no decodable frames (damaged file or unsupported codec)"
    except cv2.error:
        return "OpenCV could not decode its first frame"
    finally:
        cap.release()
    return ""


def probe_source(scan: SourceScan, workers: int = PROBE_WORKERS) -> SourceScan:
    """`scan` with the videos that `unusable_reason` refuses moved to its skipped items, with the reason.

    FFmpeg releases the GIL while it opens and decodes, so `workers` threads probe side by side."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        reasons = list(pool.map(lambda record: unusable_reason(record.path), scan.videos))
    kept = [record for record, reason in zip(scan.videos, reasons, strict=True) if not reason]
    refused = [
        SkippedItem(str(record.path), reason) for record, reason in zip(scan.videos, reasons, strict=True) if reason
    ]
    return replace(scan, videos=kept, skipped=[*scan.skipped, *refused])


def probe_video(path: Path | str) -> tuple[int, float | None, int, int]:
    """(frame count reported by the container, fps or None, width, height)."""
    path = Path(path)
    check_file(path)
    cap = open_capture(path)
    try:
        return capture_properties(cap)
    finally:
        cap.release()


def capture_properties(cap: cv2.VideoCapture) -> tuple[int, float | None, int, int]:
    """(frame count, fps or None, width, height) as an opened capture reports them; implausible values are 0/None."""
    raw_count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    count = int(raw_count) if math.isfinite(raw_count) and 0 < raw_count < _IMPLAUSIBLE_FRAME_COUNT else 0
    raw_fps = cap.get(cv2.CAP_PROP_FPS)
    fps = float(raw_fps) if math.isfinite(raw_fps) and 0 < raw_fps < 1000 else None
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    return count, fps, width, height
