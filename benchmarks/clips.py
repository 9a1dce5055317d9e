"""Clips like re-encoded Kinetics clips, for the pipeline benchmarks: H.264 640×360, 10 s, 25 fps, one GOP.

Kinetics clips are usually re-encoded by the downloader into short H.264 MP4s whose only keyframe is the
first frame, so reaching the middle frame means decoding half of the clip: decoding is the cost the
process workers have to hide. The clips are made by the ffmpeg that imageio-ffmpeg ships (nothing to
install), from ffmpeg's own moving test pattern with some grain, each one different.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

WIDTH, HEIGHT, FPS, SECONDS = 640, 360, 25, 10


def ffmpeg_binary() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def write_kinetics_like(
    path: Path, seed: int, seconds: int = SECONDS, size: tuple[int, int] = (WIDTH, HEIGHT), fps: int = FPS
) -> Path:
    """One H.264 clip whose only keyframe is the first frame (`-g` longer than the clip)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = seconds * fps
    source = f"testsrc2=size={size[0]}x{size[1]}:rate={fps}:duration={seconds}"
    # Grain and a per-clip hue make the bit rate and content look like a real clip's (≈ 0.5–1 Mbit/s).
    filters = f"hue=h={(seed * 47) % 360},noise=alls=12:allf=t+u"
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
    command = [
        ffmpeg_binary(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", source, "-vf", filters,
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "26", "-pix_fmt", "yuv420p",
        "-g", str(frames + 1), "-keyint_min", str(frames + 1), "-sc_threshold", "0", "-an", str(tmp),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    os.replace(tmp, path)
    return path


def kinetics_like_folder(root: Path, count: int, unique: int = 8, seconds: int = SECONDS) -> Path:
    """`count` clips in ten label folders: `unique` distinct clips, hard-linked (decoding costs the same)."""
    sources = []
    for i in range(min(unique, count)):
        path = root / "_unique-h264" / f"k{i:03d}-{seconds}s.mp4"
        if not path.exists():
            write_kinetics_like(path, seed=i, seconds=seconds)
        sources.append(path)
    return fan_out(sources, root / f"h264-{count}-{seconds}s", count, prefix="k")


def fan_out(sources: list[Path], folder: Path, count: int, prefix: str) -> Path:
    """`count` clips in ten label folders of `folder`, hard links to `sources` in turn (copies where links
    are refused): many videos for the price of a few distinct ones, each decoded at full cost."""
    for i in range(count):
        target = folder / f"label_{i % 10:02d}" / f"{prefix}{i:05d}.mp4"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(sources[i % len(sources)], target)
            except OSError:
                shutil.copyfile(sources[i % len(sources)], target)
    return folder
