"""What the benchmark runs on: its sizes (`Sizes`, `QUICK`), the generated videos, the machine's description,
and the GPU synchronisation every timing ends with."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.clips import fan_out
from core.media.samples import write_clip

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = Path(__file__).parent / "assets" / "TinyCLIP-bench.json"

TINY_224_CONFIG = Path(__file__).parent / "assets" / "TinyCLIP-bench224.json"

VIT_B32 = "ViT-B-32-quickgelu"


@dataclass
class Sizes:
    build_videos: int = 160
    uniform_videos: int = 24
    reference_videos: int = 40
    unique_clips: int = 16
    clip_seconds: int = 10
    index_frames: int = 100_000
    queries: int = 200
    memory_small: int = 1_000
    memory_large: int = 10_000
    eval_videos: int = 10_000
    eval_classes: int = 700
    encode_seconds: float = 8.0
    repeats: int = 3  # a figure is the median of this many interleaved runs, reported with their spread
    batch_size: int = 0  # 0: the device's default (32 on a CPU, 256 in fp16 on a GPU)
    pipeline_videos: int = 96
    pipeline_uniform_videos: int = 48
    allcore_videos: int = 120  # the all-core pipeline figure's clips, for both strategies
    kinetics_unique: int = 8
    kinetics_seconds: int = 10
    whole_videos: int = 240


QUICK = Sizes(
    build_videos=8, uniform_videos=2, reference_videos=4, unique_clips=2, clip_seconds=2, index_frames=2_000,
    queries=10, memory_small=20, memory_large=60, eval_videos=500, eval_classes=50, encode_seconds=1.0,
    repeats=1, batch_size=8, pipeline_videos=4, pipeline_uniform_videos=2, allcore_videos=4, kinetics_unique=2,
    kinetics_seconds=2, whole_videos=6,
)  # fmt: skip


def machine() -> dict[str, Any]:
    from core.runtime import cpu_model

    cpu = cpu_model()
    import chromadb
    import open_clip

    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "chromadb": chromadb.__version__,
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available",
    }


def make_videos(root: Path, count: int, sizes: Sizes, size: tuple[int, int] = (320, 240), fps: int = 25) -> Path:
    """`count` clips in a folder per label: a few unique clips, hard-linked (decoding costs the same)."""
    unique = root / "_unique"
    frames = sizes.clip_seconds * fps
    sources = []
    for i in range(min(sizes.unique_clips, count)):
        path = unique / f"u{i:03d}.mp4"
        if not path.exists():
            r, g, b = (int(c) for c in np.random.default_rng(i).integers(30, 230, 3))
            colour = (r, g, b)
            write_clip(path, colour, n_frames=frames, size=size, fps=fps, seed=i, noise=3.0)
        sources.append(path)
    return fan_out(sources, root / f"set-{count}-{size[0]}x{size[1]}-{frames}", count, prefix="v")


def sync(device: torch.device) -> None:
    """Wait for the GPU: CUDA calls return before the work is done, so a timing must end here."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
