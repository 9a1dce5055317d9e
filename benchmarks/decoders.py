"""Which decoder for the build: ``python -m benchmarks.decoders [--clips DIR] [--json FILE]``.

Compares OpenCV (what `core.media.frames` uses), PyAV and torchcodec on the same clips, for the frames the
build plans (``middle`` and ``uniform:8``):

- **exactness**: every planned frame a decoder returns equals the frame at that index when the same
  decoder reads the whole file sequentially (bit for bit, RGB), and the planned frames agree with
  OpenCV's (largest pixel difference: colour conversion may differ by a level or two);
- **frames/s per core**: planned frames over the CPU time of one process decoding with one FFmpeg
  thread, on the real clips of ``../shared/data/realclips`` and on Kinetics-like H.264 clips;
- **FFmpeg's threads against one thread per worker**: wall-clock frames/s of N processes each
  decoding with one thread, against N processes letting FFmpeg choose its thread count, for one process
  per core and for a single process.

PyAV and torchcodec are optional here: a decoder that does not import is reported as missing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.clips import kinetics_like_folder  # noqa: E402
from core.media.frames import FrameStrategy, VideoReadError, read_video_frames  # noqa: E402
from core.media.sources import VideoRecord  # noqa: E402
from core.runtime import configure_runtime  # noqa: E402

REAL_CLIPS = ROOT.parent / "shared" / "data" / "realclips"
STRATEGIES = ("middle", "uniform:8")
Planned = dict[int, np.ndarray]


# --- the decoders, each as "all frames in order" and "these frames" ------------------------------------


def opencv_all(path: Path, threads: int = 1) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def opencv_planned(path: Path, strategy: FrameStrategy, threads: int = 1) -> Planned:
    """What the build does: core.media.frames (seek or grab forward, recount when the container lies)."""
    record = VideoRecord(video_id=path.stem, label="x", path=path)
    vf = read_video_frames(record, strategy, max_side=100_000, threads=threads)
    return {f.frame_index: f.rgb for f in vf.frames}


def _pyav_open(path: Path, threads: int) -> tuple[Any, Any]:
    import av

    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.thread_type = "AUTO" if threads != 1 else "SLICE"
    stream.thread_count = 0 if threads != 1 else 1
    return container, stream


def _pyav_rgb(frame: Any) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24")
    turns = round(getattr(frame, "rotation", 0) or 0) // 90 % 4
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def pyav_all(path: Path, threads: int = 1) -> list[np.ndarray]:
    container, stream = _pyav_open(path, threads)
    try:
        return [_pyav_rgb(f) for f in container.decode(stream)]
    finally:
        container.close()


def pyav_planned(path: Path, strategy: FrameStrategy, threads: int = 1) -> Planned:
    """Count from the container (else decode to count), then decode in order up to the last planned frame,
    converting only the planned ones: exact by construction, no seeking (one-GOP clips gain nothing)."""
    container, stream = _pyav_open(path, threads)
    try:
        count = stream.frames
        if count <= 0:
            count = sum(1 for _ in container.decode(stream))
            container.seek(0)
        wanted = set(strategy.indices(count))
        out: Planned = {}
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                out[i] = _pyav_rgb(frame)
                if len(out) == len(wanted):
                    break
        return out
    finally:
        container.close()


def torchcodec_all(path: Path, threads: int = 1) -> list[np.ndarray]:
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(str(path), dimension_order="NHWC", num_ffmpeg_threads=threads, seek_mode="approximate")
    return [frame.numpy() for frame in decoder.get_frames_in_range(0, len(decoder)).data]


def torchcodec_planned(path: Path, strategy: FrameStrategy, threads: int = 1) -> Planned:
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(str(path), dimension_order="NHWC", num_ffmpeg_threads=threads, seek_mode="exact")
    indices = strategy.indices(decoder.metadata.num_frames or 0)
    batch = decoder.get_frames_at(indices).data.numpy()
    return dict(zip(indices, batch, strict=True))


DECODERS: dict[str, tuple[Callable[..., list[np.ndarray]], Callable[..., Planned]]] = {
    "opencv": (opencv_all, opencv_planned),
    "pyav": (pyav_all, pyav_planned),
    "torchcodec": (torchcodec_all, torchcodec_planned),
}


def available() -> dict[str, str]:
    """Decoder name → version, or why it is missing."""
    out = {}
    import cv2

    out["opencv"] = cv2.__version__
    try:
        import av

        out["pyav"] = av.__version__
    except ImportError as exc:
        out["pyav"] = f"missing ({exc})"
    try:
        import torchcodec
        from torchcodec.decoders import VideoDecoder  # noqa: F401  (loads FFmpeg: fails without it)

        out["torchcodec"] = torchcodec.__version__
    except Exception as exc:  # ImportError, or OSError/RuntimeError when its FFmpeg libraries are missing
        out["torchcodec"] = f"missing ({exc.__class__.__name__})"
    return out


# --- measurements ------------------------------------------------------------------------------------


def exactness(paths: list[Path], decoders: list[str]) -> dict[str, Any]:
    """Per decoder: clips where the planned frames equal its own sequential frames; disagreements with OpenCV."""
    report: dict[str, Any] = {
        name: {"exact": 0, "inexact": [], "failed": [], "max_diff_vs_opencv": 0} for name in decoders
    }
    for path in paths:
        reference: dict[str, Planned] = {}
        for name in decoders:
            read_all, planned = DECODERS[name]
            try:
                frames = read_all(path)
                got = {s: planned(path, FrameStrategy.parse(s)) for s in STRATEGIES}
            except (VideoReadError, Exception) as exc:  # a decoder refusing a damaged file is fine: noted
                report[name]["failed"].append(f"{path.name}: {str(exc)[:80] or exc.__class__.__name__}")
                continue
            ok = bool(frames) and all(
                i < len(frames) and frames[i].shape == rgb.shape and np.array_equal(frames[i], rgb)
                for planned_frames in got.values()
                for i, rgb in planned_frames.items()
            )
            if ok:
                report[name]["exact"] += 1
            else:
                report[name]["inexact"].append(path.name)
            reference[name] = {i: rgb for frames_ in got.values() for i, rgb in frames_.items()}
        base = reference.get("opencv")
        for name, frames_ in reference.items():
            if base is None or name == "opencv":
                continue
            for i, rgb in frames_.items():
                if i in base and base[i].shape == rgb.shape:
                    diff = int(np.abs(base[i].astype(np.int16) - rgb.astype(np.int16)).max())
                    report[name]["max_diff_vs_opencv"] = max(report[name]["max_diff_vs_opencv"], diff)
                elif i in base:
                    report[name].setdefault("shape_differs_from_opencv", []).append(path.name)
    return report


def _cpu_rate(job: tuple[str, list[str], str, int]) -> tuple[int, float, float]:
    """(frames, CPU seconds, wall seconds) of one process decoding `paths` with `decoder`."""
    name, paths, strategy, threads = job
    configure_runtime()
    planned = DECODERS[name][1]
    parsed = FrameStrategy.parse(strategy)
    frames = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for path in paths:
        try:
            frames += len(planned(Path(path), parsed, threads))
        except Exception:  # damaged files: the same for every decoder; they count no frames
            continue
    return frames, time.process_time() - cpu, time.perf_counter() - wall


def per_core(paths: list[Path], decoders: list[str], repeats: int) -> dict[str, Any]:
    """Planned frames per CPU-second, one process, one FFmpeg thread (median of interleaved repeats)."""
    rows: dict[str, Any] = {}
    ctx = get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        for strategy in STRATEGIES:
            rates: dict[str, list[float]] = {name: [] for name in decoders}
            for _ in range(repeats):
                for name in decoders:
                    frames, cpu, _ = pool.submit(_cpu_rate, (name, [str(p) for p in paths], strategy, 1)).result()
                    rates[name].append(frames / cpu if cpu else 0.0)
            rows[strategy] = {name: statistics.median(v) for name, v in rates.items()}
    return rows


def threads_vs_workers(paths: list[Path], name: str, workers: int, repeats: int) -> dict[str, Any]:
    """Wall frames/s of `workers` processes × 1 FFmpeg thread, against the same processes × FFmpeg's choice."""
    ctx = get_context("spawn")
    out: dict[str, Any] = {}
    chunks = [[str(p) for p in paths[i::workers]] for i in range(workers)]
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        list(pool.map(_cpu_rate, [(name, c[:1], "middle", 1) for c in chunks]))  # start and warm every worker
        for strategy in STRATEGIES:
            rates: dict[str, list[float]] = {"one_thread": [], "ffmpeg_threads": []}
            for _ in range(repeats):
                for label, threads in (("one_thread", 1), ("ffmpeg_threads", 0)):
                    started = time.perf_counter()
                    results = list(pool.map(_cpu_rate, [(name, c, strategy, threads) for c in chunks]))
                    wall = time.perf_counter() - started
                    rates[label].append(sum(r[0] for r in results) / wall)
            out[strategy] = {label: statistics.median(v) for label, v in rates.items()}
            out[strategy]["ffmpeg_threads_over_one"] = out[strategy]["ffmpeg_threads"] / out[strategy]["one_thread"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", default=str(REAL_CLIPS), help="folder of real clips (default: shared realclips)")
    parser.add_argument("--kinetics-like", type=int, default=24, help="Kinetics-like H.264 clips to time on")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: one per core)")
    parser.add_argument("--decoders", default="", help="comma-separated subset (default: every one that imports)")
    parser.add_argument("--only-threads", action="store_true", help="measure only FFmpeg's threads against workers")
    parser.add_argument("--work", help="folder for the generated clips (default: a temporary one)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "decoders.json"))
    args = parser.parse_args(argv)
    configure_runtime()
    versions = available()
    decoders = [name for name, version in versions.items() if not version.startswith("missing")]
    if args.decoders:
        decoders = [name for name in decoders if name in args.decoders.split(",")]
    real = sorted(p for p in Path(args.clips).iterdir() if p.suffix.lower() not in (".csv", ".md"))
    work = Path(args.work or tempfile.mkdtemp(prefix="clip-explorer-decoders-"))
    kinetics = sorted(kinetics_like_folder(work, args.kinetics_like).rglob("*.mp4"))
    results: dict[str, Any] = {"versions": versions, "cores": os.cpu_count(), "real_clips": len(real)}
    if not args.only_threads:
        results["exactness"] = exactness(real, decoders)
        results["frames_per_cpu_s_real"] = per_core(real, decoders, args.repeats)
        results["frames_per_cpu_s_kinetics_like"] = per_core(kinetics, decoders, args.repeats)
    results["threads_vs_workers"] = {
        name: {f"{n} processes": threads_vs_workers(kinetics, name, n, args.repeats) for n in sorted({1, args.workers})}
        for name in decoders
    }
    print(json.dumps(results, indent=2))
    target = Path(args.json)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
