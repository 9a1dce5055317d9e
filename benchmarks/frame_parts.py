"""Where a frame worker's time goes, part by part, on Kinetics-like clips (`python -m benchmarks.frame_parts`).

``python -m benchmarks.frame_parts [--videos 16] [--strategy uniform:8] [--quick] [--json FILE]`` decodes the
planned frames of generated one-GOP 640×360 H.264 clips (`benchmarks/clips.py`) in this one process, then times,
per frame and on those same frames, each piece of work a build adds to decoding: the model input (the exact
resize, and the centre crop), the thumbnail (shrink, JPEG encode, the atomic write), the prepared video's
pickling and unpickling (the transfer from a worker to the build process), and the encoding process's
normalisation. Beside our JPEG encoder (OpenCV), Pillow's at the same quality, with the sizes of both; beside
our resize (the vertical pass skips the columns the crop drops), the plain resize then crop. Everything runs
on one core (OpenCV's threads: 1), each part timed over all frames, the best of `--rounds` rounds.
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.clips import kinetics_like_folder  # noqa: E402
from core.engines.prepare import prepare_video  # noqa: E402
from core.media.frames import FrameStrategy, read_video_frames  # noqa: E402
from core.media.geometry import InputGeometry, _centre_crop_or_pad, _resize, _shortest_edge  # noqa: E402
from core.media.sources import scan_source  # noqa: E402
from core.media.thumbnails import JPEG_QUALITY, shrink_for_thumbnail, thumbnail_jpeg, write_thumbnail  # noqa: E402
from core.runtime import configure_runtime, cpu_model  # noqa: E402

# The parts a build adds to decoding besides those marked "(ours)" (the others are references to compare with).
BESIDES = ("thumbnail shrink", "thumbnail write", "pickling", "unpickling", "normalisation")


def best_ms(fn: Callable[[Any], Any], items: list[Any], rounds: int) -> float:
    """The best over `rounds` of the mean time of `fn` over `items`, in milliseconds per item."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for item in items:
            fn(item)
        times.append((time.perf_counter() - started) / len(items) * 1000)
    return min(times)


def plain_resize_then_crop(rgb: np.ndarray, geometry: InputGeometry) -> np.ndarray:
    """open_clip's transform as torchvision applies it to a square input: resize the shortest side, then crop."""
    from PIL import Image

    image = Image.fromarray(rgb)
    side = geometry.size[0]
    resized = _resize(image, _shortest_edge(image, side), Image.Resampling.BICUBIC)
    return np.asarray(_centre_crop_or_pad(resized, geometry.size, 0), dtype=np.uint8)


def pillow_jpeg(small: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(small).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def measure(videos: int, strategy: str, rounds: int, work: Path) -> dict[str, Any]:
    folder = kinetics_like_folder(work / "clips", videos, unique=min(8, videos), seconds=10 if videos > 4 else 2)
    records = scan_source(folder).videos
    plan = FrameStrategy.parse(strategy)
    geometry = InputGeometry((224, 224))

    started = time.perf_counter()
    decoded = [read_video_frames(record, plan) for record in records]
    decode_ms = (time.perf_counter() - started) / sum(len(v.frames) for v in decoded) * 1000
    frames = [frame.rgb for video in decoded for frame in video.frames]
    smalls = [shrink_for_thumbnail(rgb) for rgb in frames]
    jpegs = [thumbnail_jpeg(rgb) for rgb in frames]
    out = work / "out"
    prepared = [prepare_video(record, plan, geometry, out) for record in records]
    pickled = [pickle.dumps(p, protocol=pickle.HIGHEST_PROTOCOL) for p in prepared]
    per_video = len(frames) / len(records)
    inputs = np.stack([geometry.apply(rgb).transpose(2, 0, 1) for rgb in frames[:32]])

    import torch

    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
    batch = torch.from_numpy(inputs)

    def normalise(_: object) -> None:  # ClipModel._normalise's operations
        batch.to(torch.float32).div_(255).sub_(mean).div_(std)

    def normalise_promoting(_: object) -> None:  # the same numbers, uint8 ÷ 255 in one promoting pass
        batch.div(255).sub_(mean).div_(std)

    counter = iter(range(10**9))
    parts = {
        "decode (planned frames, to RGB)": decode_ms,
        "model input: resize + crop (ours)": best_ms(geometry.apply, frames, rounds),
        "model input: plain resize, then crop": best_ms(lambda f: plain_resize_then_crop(f, geometry), frames, rounds),
        "thumbnail shrink (OpenCV)": best_ms(shrink_for_thumbnail, frames, rounds),
        "thumbnail JPEG, OpenCV (ours)": best_ms(thumbnail_jpeg, smalls, rounds),
        "thumbnail JPEG, Pillow": best_ms(pillow_jpeg, smalls, rounds),
        "thumbnail write (atomic)": best_ms(lambda j: write_thumbnail(out, "parts", next(counter), j), jpegs, rounds),
        "pickling a prepared video": best_ms(lambda p: pickle.dumps(p, protocol=5), prepared, rounds) / per_video,
        "unpickling it (the build process)": best_ms(pickle.loads, pickled, rounds) / per_video,
        "normalisation (encoding process)": best_ms(normalise, [None] * 4, rounds) / len(inputs),
        "normalisation, uint8 ÷ 255 promoting": best_ms(normalise_promoting, [None] * 4, rounds) / len(inputs),
    }
    sizes = {"ours": statistics.mean(map(len, jpegs)), "pillow": statistics.mean(len(pillow_jpeg(s)) for s in smalls)}
    same = all(thumbnail_jpeg(rgb) == pillow_jpeg(small) for rgb, small in zip(frames[:8], smalls[:8], strict=True))
    return {
        "machine": cpu_model(),
        "videos": len(records),
        "frames": len(frames),
        "strategy": strategy,
        "frame_size": list(frames[0].shape[:2]),
        "ms_per_frame": parts,
        "jpeg_bytes": sizes,
        "jpeg_same_bytes_as_pillow": same,
        "beyond_decoding_ms": sum(v for k, v in parts.items() if k.endswith("(ours)") or k.startswith(BESIDES)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--strategy", default="uniform:8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 short clips, one round: checks that it runs (CI)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    configure_runtime()
    videos, rounds = (2, 1) if args.quick else (args.videos, args.rounds)
    with tempfile.TemporaryDirectory(prefix="frame-parts-") as tmp:
        result = measure(videos, args.strategy, rounds, Path(tmp))
    print(f"{result['frames']} frames of {result['videos']} clips ({result['strategy']}, "
          f"{result['frame_size'][1]}×{result['frame_size'][0]}) on {result['machine']}, ms per frame:")  # fmt: skip
    for part, ms in result["ms_per_frame"].items():
        print(f"  {part:<40} {ms:8.3f}")
    print(f"  {'beyond decoding, in all (ours)':<40} {result['beyond_decoding_ms']:8.3f}")
    print(f"JPEG: {result['jpeg_bytes']['ours']:.0f} bytes (ours), {result['jpeg_bytes']['pillow']:.0f} (Pillow); "
          f"the same bytes: {result['jpeg_same_bytes_as_pillow']}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
