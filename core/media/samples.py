"""Synthetic labelled clips, for trying the pipeline without a dataset (and for tests and benchmarks).

Each label gets its own colour; a clip is that colour with some noise and a white square moving
across it. The clips are VP8 WebM by default (browsers play it) in the folder-per-label layout, so
``python -m core build --videos DIR`` reads them as they are.

WebM is written by imageio-ffmpeg's ffmpeg, the other containers by OpenCV: OpenCV's writer prints an
unavoidable "tag 'VP80' is not supported with codec id 139 and format 'webm / WebM'" line on stderr
for every WebM file (a plain fprintf in its FFmpeg backend, whatever its log level; the file is fine).
"""

from __future__ import annotations

import colorsys
import hashlib
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from core.ground import atomic_path
from core.media.transcode import ffmpeg_exe

# Container → OpenCV four-character code, or None where ffmpeg writes the file (VP8 in WebM).
CONTAINERS: dict[str, str | None] = {"webm": None, "mp4": "mp4v", "avi": "MJPG", "mkv": "VP80"}


def label_colour(label: str) -> tuple[int, int, int]:
    """A stable, saturated RGB colour for a label."""
    hue = int(hashlib.sha1(label.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.9)
    return int(r * 255), int(g * 255), int(b * 255)


def write_clip(
    path: Path | str,
    colour_rgb: tuple[int, int, int],
    n_frames: int = 24,
    size: tuple[int, int] = (96, 64),
    fps: float = 12.0,
    seed: int = 0,
    noise: float = 6.0,
) -> Path:
    """Write one clip (container from the file extension), atomically."""
    path = Path(path)
    ext = path.suffix.lower().lstrip(".")
    if ext not in CONTAINERS:
        raise ValueError(f"unsupported container {ext!r}: use one of {', '.join(CONTAINERS)}")
    frames = _frames(colour_rgb, n_frames, size, seed, noise)
    with atomic_path(path) as tmp:
        fourcc = CONTAINERS[ext]
        if fourcc is None:
            _write_with_ffmpeg(tmp, frames, size, fps)
        else:
            _write_with_opencv(tmp, frames, size, fps, fourcc)
    return path


def _frames(
    colour_rgb: tuple[int, int, int], n_frames: int, size: tuple[int, int], seed: int, noise: float
) -> Iterator[np.ndarray]:
    """The clip's frames, BGR uint8 (both writers take BGR): the colour with noise, a white square moving."""
    width, height = size
    rng = np.random.default_rng(seed)
    bgr = np.array(colour_rgb[::-1], dtype=np.float32)  # given in RGB, reversed once, here
    side = max(4, min(width, height) // 4)
    for i in range(n_frames):
        frame = np.clip(bgr + rng.normal(0, noise, (height, width, 3)), 0, 255).astype(np.uint8)
        x = int((width - side) * i / max(1, n_frames - 1))
        y = (height - side) // 2
        frame[y : y + side, x : x + side] = 255
        yield frame


def _write_with_opencv(
    path: Path, frames: Iterator[np.ndarray], size: tuple[int, int], fps: float, fourcc: str
) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path.suffix} files here")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()


def _write_with_ffmpeg(path: Path, frames: Iterator[np.ndarray], size: tuple[int, int], fps: float) -> None:
    """VP8 WebM from raw frames on ffmpeg's standard input (quality high enough to keep the colours)."""
    width, height = size
    command = [
        ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
        "-s", f"{width}x{height}", "-r", f"{fps}", "-i", "-", "-c:v", "libvpx", "-crf", "10", "-b:v", "2M",
        "-pix_fmt", "yuv420p", "-threads", "1", "-f", "webm", str(path),
    ]  # fmt: skip
    raw = b"".join(frame.tobytes() for frame in frames)
    result = subprocess.run(command, input=raw, capture_output=True, timeout=300)
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", errors="replace").strip().splitlines()[-1:]
        raise RuntimeError(f"ffmpeg could not write {path.name}: {' '.join(detail) or result.returncode}")


def make_sample_videos(
    out_dir: Path | str,
    labels: Sequence[str],
    per_class: int = 5,
    n_frames: int = 24,
    size: tuple[int, int] = (96, 64),
    fps: float = 12.0,
    container: str = "webm",
    colours: Mapping[str, tuple[int, int, int]] | None = None,
) -> list[Path]:
    """``out_dir/<label_with_underscores>/<label>_<i>.<container>`` for every label."""
    out = Path(out_dir)
    paths = []
    for label in labels:
        colour = (colours or {}).get(label) or label_colour(label)
        folder = out / label.replace(" ", "_")
        for i in range(per_class):
            name = f"{folder.name}_{i:03d}.{container}"
            seed = int(hashlib.sha1(f"{label}/{i}".encode()).hexdigest()[:8], 16)
            paths.append(write_clip(folder / name, colour, n_frames=n_frames, size=size, fps=fps, seed=seed))
    return paths
