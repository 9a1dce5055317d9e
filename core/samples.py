"""Synthetic labelled clips, for trying the pipeline without a dataset (and for tests and benchmarks).

Each label gets its own colour; a clip is that colour with some noise and a white square moving
across it. The clips are VP8 WebM by default (OpenCV writes it, browsers play it) in the
folder-per-label layout, so ``python -m core build --videos DIR`` reads them as they are.
"""

from __future__ import annotations

import colorsys
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

import core.frames  # noqa: F401  (sets OpenCV's logging before cv2 is first loaded)

CONTAINERS = {"webm": "VP80", "mp4": "mp4v", "avi": "MJPG", "mkv": "VP80"}


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
    """Write one clip (container from the file extension); temporary name, then rename."""
    path = Path(path)
    ext = path.suffix.lower().lstrip(".")
    if ext not in CONTAINERS:
        raise ValueError(f"unsupported container {ext!r}: use one of {', '.join(CONTAINERS)}")
    width, height = size
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*CONTAINERS[ext]), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {ext} files here")
    # OpenCV writes BGR: the colour is given in RGB and reversed once, here.
    bgr = np.array(colour_rgb[::-1], dtype=np.float32)
    side = max(4, min(width, height) // 4)
    try:
        for i in range(n_frames):
            frame = np.clip(bgr + rng.normal(0, noise, (height, width, 3)), 0, 255).astype(np.uint8)
            x = int((width - side) * i / max(1, n_frames - 1))
            y = (height - side) // 2
            frame[y : y + side, x : x + side] = 255
            writer.write(frame)
    finally:
        writer.release()
    os.replace(tmp, path)
    return path


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
