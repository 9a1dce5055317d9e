"""``python -m benchmarks.ray_bench [--quick] [--json FILE] [--work DIR]``: the Ray engine against the local one.

Measured in one run on this machine (interleaved, repeated, medians):

1. **overhead**: the Ray engine with a local Ray instance ÷ the local engine, frames/s on the same build
   (ViT-B/32, random weights; the benchmark's sizes: 160 videos ``middle``, 24 videos ``uniform:8`` of
   320×240 10-second clips). Target ≥ 0.7. Frames/s as each build's summary reports it (from the end of its
   start-up: the local engine's model loaded and workers started; Ray joined, its actors still to start),
   with beside it the whole call's wall time (Ray's start and the model loads included);
2. **scaling**: frames/s with 1 … cores encoding actors of one torch thread each, and the efficiency
   frames/s(n) ÷ (n × frames/s(1));
3. **Chroma server write rate**: records/s of 512-record upserts (512-d vectors, a frame's metadata) into a
   ``chroma run`` server on 127.0.0.1, as a build writes them;
4. **driver intake**: frames/s this process takes in (frames gathered into videos, thumbnails written);
5. **frame preparation per core**: frames/s of one prepare task on Kinetics-like H.264 clips (640×360, one
   keyframe), ``middle`` and ``uniform:8``;

and a projection for Kinetics-700 (train 545k clips, validation 34k) at 1, 8 and 32 nodes: the cluster's
rate is min(nodes × a node's rate, the Chroma server's write rate, the driver's intake).

Ray binds to the machine's network address. On the development machines here, run it in a network
namespace of its own: ``unshare -n sh -c 'ip link set lo up && python -m benchmarks.ray_bench'``.
This entry module imports only the standard library at the top: the local engine's worker processes import
the main module again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]

if TYPE_CHECKING:
    from core.model.embed import ClipModel, ModelSpec

KINETICS_700 = {"train": 545_000, "validation": 34_000}  # clips
NODES = (1, 8, 32)
# Not measured here (no GPU on the development machines): fp16 ViT-B/32 on one H100, from the project's design
# notes (DESIGN.md, "Performance model": 16–25k images/s); the low end is used.
GPU_ENCODE_IMAGES_PER_S = 16_000
GPU_NODE_CORES = 16


@dataclass
class RaySizes:
    build_videos: int = 160  # middle (the benchmark's sizes, benchmarks/workload.py)
    uniform_videos: int = 24  # uniform:8
    unique_clips: int = 16
    clip_seconds: int = 10
    repeats: int = 2
    scaling_videos: int = 96
    chroma_records: int = 20_000
    driver_frames: int = 4_000
    prepare_videos: int = 8
    model: str = "vit"  # "vit": ViT-B/32 (random weights); "tiny": the tiny 224-pixel model (--quick)


QUICK = RaySizes(
    build_videos=8,
    uniform_videos=2,
    unique_clips=2,
    clip_seconds=2,
    repeats=1,
    scaling_videos=4,
    chroma_records=1_024,
    driver_frames=64,
    prepare_videos=2,
    model="tiny",
)


def _model(sizes: RaySizes) -> tuple[ModelSpec, ClipModel]:
    from core.model.embed import RANDOM_WEIGHTS, ModelSpec, load_model

    if sizes.model == "tiny":
        spec = ModelSpec.resolve(None, RANDOM_WEIGHTS, ROOT / "benchmarks" / "assets" / "TinyCLIP-bench224.json")
    else:
        spec = replace(ModelSpec.resolve(), pretrained=RANDOM_WEIGHTS)
    return spec, load_model(spec, "cpu", "fp32")


def one_build(
    model: ClipModel, videos: Path, work: Path, frames: str, engine: str, tag: str, **overrides: Any
) -> dict[str, Any]:
    """A build through `run_build` (`overrides` go to the Ray engine: actors, actor_threads)."""
    from core.engines.build import run_build
    from core.engines.ray_engine import RayEngine
    from core.requests import BuildRequest

    request = BuildRequest(
        videos=str(videos),
        db=str(work / f"db-{tag}"),
        output=str(work / f"out-{tag}"),
        frames=frames,
        device="cpu",
        precision="fp32",
        engine=engine,
    )
    started = time.perf_counter()
    tuned = RayEngine(request, **overrides) if overrides else None
    summary: Any = run_build(request, model=model, engine=tuned)
    wall = time.perf_counter() - started
    return {
        "frames": summary.frames,
        "frames_per_s": summary.frames_per_s,
        "wall_s": wall,
        "wall_frames_per_s": summary.frames / wall if wall > 0 else 0.0,
        "ray_start_s": getattr(summary, "ray_start_s", 0.0),
    }


def overhead(model: ClipModel, sizes: RaySizes, work: Path) -> dict[str, Any]:
    """Ray (local instance, started and stopped by each build) ÷ local, interleaved local, Ray, local, Ray..."""
    from benchmarks.workload import Sizes, make_videos

    clip_sizes = replace(Sizes(), unique_clips=sizes.unique_clips, clip_seconds=sizes.clip_seconds)
    folders = {
        "middle": make_videos(work / "videos", sizes.build_videos, clip_sizes),
        "uniform:8": make_videos(work / "videos", sizes.uniform_videos, clip_sizes),
    }
    out: dict[str, Any] = {}
    for strategy, folder in folders.items():
        runs = []
        for r in range(sizes.repeats):
            local = one_build(model, folder, work, strategy, "local", f"local-{strategy[:3]}-{r}")
            ray = one_build(model, folder, work, strategy, "ray", f"ray-{strategy[:3]}-{r}")
            runs.append(
                {
                    "local": local,
                    "ray": ray,
                    "ratio": ray["frames_per_s"] / local["frames_per_s"],
                    "wall_ratio": ray["wall_frames_per_s"] / local["wall_frames_per_s"],
                }
            )
        out[strategy] = {
            "runs": runs,
            "videos": sizes.build_videos if strategy == "middle" else sizes.uniform_videos,
            **{key: statistics.median(run[key] for run in runs) for key in ("ratio", "wall_ratio")},
            **{
                f"{engine}_{key}": statistics.median(run[engine][key] for run in runs)
                for engine in ("local", "ray")
                for key in ("frames_per_s", "wall_s")
            },
        }
    return out


def scaling(model: ClipModel, sizes: RaySizes, work: Path) -> dict[str, Any]:
    """Frames/s with n = 1 … cores encoding actors of one torch thread each, on one Ray instance this function
    starts with a logical CPU per actor and one more, for the prepare tasks."""
    import ray

    from benchmarks.workload import Sizes, make_videos
    from core.engines.ray_engine import worker_env
    from core.runtime import usable_cores

    cores = usable_cores()
    clip_sizes = replace(Sizes(), unique_clips=sizes.unique_clips, clip_seconds=sizes.clip_seconds)
    folder = make_videos(work / "videos", sizes.scaling_videos, clip_sizes)
    ray.init(
        address="local",
        num_cpus=cores + 1,
        include_dashboard=False,
        logging_level=logging.ERROR,
        runtime_env=worker_env(),
    )
    try:
        runs = {
            n: one_build(model, folder, work, "middle", "ray", f"scale-{n}", actors=n, actor_threads=1)
            for n in range(1, cores + 1)
        }
    finally:
        ray.shutdown()
    one = runs[1]
    return {
        "cores": cores,
        "videos": sizes.scaling_videos,
        "runs": {str(n): run for n, run in runs.items()},
        "efficiency": {str(n): run["frames_per_s"] / (n * one["frames_per_s"]) for n, run in runs.items()},
    }


@contextlib.contextmanager
def chroma_server(path: Path) -> Iterator[tuple[int, int]]:
    """A `chroma run` server on 127.0.0.1 for the duration; yields its port and process id."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = Path(sys.executable).parent / "chroma"
    with (path.parent / "chroma.log").open("a") as log:
        proc = subprocess.Popen(
            [str(exe), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("chroma run did not start") from None
                time.sleep(0.2)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _frame_metadata(video: int, frame: int) -> dict[str, Any]:
    return {
        "video_id": f"label_{video % 700:03d}/v{video:07d}",
        "label": f"label {video % 700}",
        "frame_index": frame * 31,
        "timestamp_s": frame * 1.24,
        "video_path": f"/data/k700/v{video:07d}.mp4",
        "frame_path": f"/out/frames/v{video:07d}/{frame * 31:06d}.jpg",
        "frames_in_video": 8,
        "video_frames": 250,
        "fps": 25.0,
    }


def _write_records(port: int, first: int, count: int, dim: int = 512) -> list[tuple[int, float]]:
    """Upsert records `first` … `first + count - 1` in UPSERT_BATCH batches, through the index's own collection
    settings and writer call; (records, seconds) per batch."""
    import numpy as np

    from core.model.embed import ModelSpec
    from core.store.index import ChromaServer, connect, open_for_build
    from core.store.writer import UPSERT_BATCH

    index = open_for_build(connect("unused", ChromaServer("127.0.0.1", port)), ModelSpec(), dim, "uniform:8")
    rng = np.random.default_rng(first)
    times = []
    for start in range(first, first + count, UPSERT_BATCH):
        size = min(UPSERT_BATCH, first + count - start)
        metas = [_frame_metadata((start + i) // 8, (start + i) % 8) for i in range(size)]
        ids = [f"{m['video_id']}:{m['frame_index']}" for m in metas]
        vectors = rng.standard_normal((size, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        began = time.perf_counter()
        index.upsert(ids, vectors, metas)
        times.append((size, time.perf_counter() - began))
    return times


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux's /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def chroma_write_rate(sizes: RaySizes, work: Path) -> dict[str, Any]:
    """Records/s of a build's upserts into a Chroma server, over `chroma_records` records (and over the last
    quarter: HNSW inserts slow down as it grows); the server's and the writer's CPU per record; then the same
    number of records from two writer processes at once, into another server (does the rate scale?)."""
    from concurrent.futures import ProcessPoolExecutor

    from core.store.writer import UPSERT_BATCH

    with chroma_server(work / "chroma-write") as (port, pid):
        server_cpu, client_cpu = _cpu_seconds(pid), time.process_time()
        times = _write_records(port, 0, sizes.chroma_records)
        server_cpu, client_cpu = _cpu_seconds(pid) - server_cpu, time.process_time() - client_cpu
    total = sum(t for _, t in times)
    tail = times[-max(1, len(times) // 4) :]
    half = sizes.chroma_records // 2
    with chroma_server(work / "chroma-write-2") as (port, _), ProcessPoolExecutor(2) as pool:
        _write_records(port, 0, 1)  # the collection exists before the writers race to make it
        started = time.perf_counter()
        for future in [pool.submit(_write_records, port, 1 + i * half, half) for i in range(2)]:
            future.result()
        two_writers = 2 * half / (time.perf_counter() - started)
    return {
        "records": sizes.chroma_records,
        "batch": UPSERT_BATCH,
        "records_per_s": sizes.chroma_records / total,
        "last_quarter_records_per_s": sum(c for c, _ in tail) / sum(t for _, t in tail),
        "server_cpu_ms_per_record": 1000 * server_cpu / sizes.chroma_records,
        "writer_cpu_ms_per_record": 1000 * client_cpu / sizes.chroma_records,
        "two_writers_records_per_s": two_writers,
    }


def driver_intake(sizes: RaySizes, work: Path, dim: int = 512) -> dict[str, Any]:
    """Frames/s of this process's part: encoded frame rows gathered into videos, thumbnails written (the upserts
    are the Chroma server's rate, measured apart)."""
    import numpy as np

    from core.engines.ray_engine import VideoAssembler, write_thumbnails
    from core.media.thumbnails import thumbnail_jpeg

    rng = np.random.default_rng(1)
    # A 384×216 thumbnail of a smooth scene with some grain (pure noise would make a JPEG 3-4 times larger
    # than a real frame's).
    ramp = np.linspace(0, 255, 384, dtype=np.float32)[None, :, None] * np.ones((216, 1, 3), np.float32)
    jpeg = thumbnail_jpeg(np.clip(ramp + rng.normal(0, 6, ramp.shape), 0, 255).astype(np.uint8))
    per_batch, frames_per_video = 256, 8
    batches = []
    for start in range(0, sizes.driver_frames, per_batch):
        rows = range(start, min(start + per_batch, sizes.driver_frames))
        metas = [_frame_metadata(i // frames_per_video, i % frames_per_video) for i in rows]
        thumbnails = np.empty(len(metas), dtype=object)
        thumbnails[:] = [jpeg] * len(metas)
        batches.append(
            {
                "video_id": np.array([m["video_id"] for m in metas], dtype=object),
                "position": np.array([i % frames_per_video for i in rows], dtype=np.int32),
                "frames": np.full(len(metas), frames_per_video, dtype=np.int32),
                "reason": np.array([""] * len(metas), dtype=object),
                "meta": np.array([json.dumps(m) for m in metas], dtype=object),
                "notes": np.array(["[]"] * len(metas), dtype=object),
                "thumbnail": thumbnails,
                "vector": rng.standard_normal((len(metas), dim)).astype(np.float32),
                "prepared_on": np.array(["a"] * len(metas), dtype=object),
                "encoded_on": np.array(["b"] * len(metas), dtype=object),
            }
        )
    assembler = VideoAssembler(dim)
    output = work / "driver-out"
    started = time.perf_counter()
    written = 0
    for batch in batches:
        complete, _ = assembler.add(batch)
        for video in complete:
            written += len(write_thumbnails(video, output))
    seconds = time.perf_counter() - started
    return {"frames": written, "frames_per_s": written / seconds, "thumbnail_bytes": len(jpeg)}


def prepare_per_core(sizes: RaySizes, work: Path) -> dict[str, Any]:
    """Frames/s of one prepare task (decode, model input, thumbnail bytes) in this process, on Kinetics-like
    H.264 clips: what one core of a node gives the encoders."""
    from benchmarks.clips import kinetics_like_folder
    from core.engines.prepare import prepare_video
    from core.media.frames import FrameStrategy
    from core.media.geometry import InputGeometry
    from core.media.sources import scan_source

    folder = kinetics_like_folder(
        work / "kinetics-like", sizes.prepare_videos, min(8, sizes.prepare_videos), sizes.clip_seconds
    )
    records = scan_source(folder).videos
    geometry = InputGeometry((224, 224))
    out: dict[str, Any] = {"videos": len(records), "clip": "640×360 H.264, one keyframe"}
    for strategy in ("middle", "uniform:8"):
        started, frames = time.perf_counter(), 0
        for record in records:
            frames += len(prepare_video(record, FrameStrategy.parse(strategy), geometry, work, thumbnail_bytes=True))
        out[strategy] = frames / (time.perf_counter() - started)
    return out


def projection(results: dict[str, Any]) -> dict[str, Any]:
    """Kinetics-700 train and validation at 1, 8 and 32 nodes: hours = frames ÷ min(nodes × node rate, Chroma
    write rate, driver intake), for a node like this one (measured) and a GPU node (projected)."""
    chroma = results["chroma"]["last_quarter_records_per_s"]
    driver = results["driver"]["frames_per_s"]
    prepare = results["prepare"]
    nodes: dict[str, dict[str, float]] = {
        "this machine (measured)": {s: results["overhead"][s]["ray_frames_per_s"] for s in ("middle", "uniform:8")},
        f"GPU node, {GPU_NODE_CORES} cores (projected)": {
            s: min(GPU_ENCODE_IMAGES_PER_S, (GPU_NODE_CORES - 1) * prepare[s]) for s in ("middle", "uniform:8")
        },
    }
    table = []
    for node, rates in nodes.items():
        for strategy, per_node in rates.items():
            frames_per_clip = 1 if strategy == "middle" else 8
            for count in NODES:
                rate = min(count * per_node, chroma, driver)
                limit = "nodes" if rate == count * per_node else ("Chroma" if rate == chroma else "driver")
                table.append(
                    {
                        "node": node,
                        "frames": strategy,
                        "nodes": count,
                        "frames_per_s": rate,
                        "limit": limit,
                        **{
                            f"{split}_hours": clips * frames_per_clip / rate / 3600
                            for split, clips in KINETICS_700.items()
                        },
                    }
                )
    return {"chroma_records_per_s": chroma, "driver_frames_per_s": driver, "node_rates": nodes, "table": table}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and model: checks that it runs")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "ray.json"), help="results file")
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from core.runtime import configure_runtime

    configure_runtime()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sizes = QUICK if args.quick else RaySizes()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="clip-explorer-ray-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    from benchmarks.workload import machine

    _, model = _model(sizes)
    results: dict[str, Any] = {
        "machine": machine(),
        "sizes": vars(sizes),
        "model": "ViT-B-32-quickgelu, random weights" if sizes.model == "vit" else "tiny",
    }
    for name, step in (("chroma", chroma_write_rate), ("driver", driver_intake), ("prepare", prepare_per_core)):
        results[name] = step(sizes, work)
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    from benchmarks.throughput import encode_rate

    # The machine's speed at the time, for scale: the model alone on ready batches of 32 (this process, all cores).
    results["encode_images_per_s"] = encode_rate(model, 1.0 if args.quick else 8.0, 32)
    print(f"encode: {results['encode_images_per_s']:.1f} images/s", flush=True)
    results["overhead"] = overhead(model, sizes, work)
    brief = {s: {k: v for k, v in r.items() if k != "runs"} for s, r in results["overhead"].items()}
    print(f"overhead: {json.dumps(brief)}", flush=True)
    results["scaling"] = scaling(model, sizes, work)
    print(f"scaling: {json.dumps({k: v for k, v in results['scaling'].items() if k != 'runs'})}", flush=True)
    results["projection"] = projection(results)
    results["targets"] = [
        {
            "figure": f"Ray ÷ local frames/s, {s}",
            "value": results["overhead"][s]["ratio"],
            "target": "≥ 0.7",
            "met": results["overhead"][s]["ratio"] >= 0.7,
        }
        for s in ("middle", "uniform:8")
    ]
    results["seconds"] = time.perf_counter() - started
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    for row in results["targets"]:
        print(f"{row['figure']:<40} {row['value']:.3f}  target {row['target']}  {'pass' if row['met'] else 'FAIL'}")
    for row in results["projection"]["table"]:
        print(
            f"{row['node']:<34} {row['frames']:<10} {row['nodes']:>3} nodes {row['frames_per_s']:>9.1f} frames/s "
            f"({row['limit']}) train {row['train_hours']:8.2f} h  validation {row['validation_hours']:7.2f} h"
        )
    print(f"written to {args.json} in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
