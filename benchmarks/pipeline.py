"""The process pipeline's side of the benchmark: peak memory of a build (5), build ÷ decode floor (7), core
scaling of frame preparation (8), and on CUDA the GPU build figures (11)."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.clips import kinetics_like_folder
from benchmarks.floor import decode_planned, prepare_planned, spin
from benchmarks.throughput import build_rate, encode_rate
from benchmarks.workload import ROOT, TINY_224_CONFIG, TINY_CONFIG, Sizes, make_videos
from core.engines.build import default_batch_size, resolve_workers
from core.engines.local import worker_pool
from core.engines.prepare import ping
from core.media.sources import scan_source
from core.model.embed import RANDOM_WEIGHTS, ClipModel, ModelSpec, load_model
from core.runtime import usable_cores

KINETICS_700_VALIDATION_CLIPS = 34_000


def peak_rss_of_build(videos: Path, work: Path, tag: str, device: str) -> dict[str, Any]:
    """A CLI build in its own process, which reports its own peak resident memory (benchmarks/peak_rss.py)."""
    command = [
        sys.executable, "-m", "benchmarks.peak_rss", "build", "--videos", str(videos),
        "--db", str(work / f"mem-db-{tag}"), "--output", str(work / f"mem-out-{tag}"),
        "--model-config", str(TINY_CONFIG), "--pretrained", "none", "--device", device, "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"memory build failed: {result.stderr[-2000:]}")
    report = json.loads(result.stderr.strip().splitlines()[-1])
    return {
        "peak_rss_mb": report["peak_rss_mb"],
        "seconds": time.perf_counter() - started,
        "summary": result.stdout.strip(),
    }


def memory(sizes: Sizes, work: Path, device: str) -> dict[str, Any]:
    small_sizes = replace(sizes, unique_clips=4, clip_seconds=1)
    small = make_videos(work / "mem-videos", sizes.memory_small, small_sizes, size=(64, 48), fps=12)
    large = make_videos(work / "mem-videos", sizes.memory_large, small_sizes, size=(64, 48), fps=12)
    a = peak_rss_of_build(small, work, "small", device)
    b = peak_rss_of_build(large, work, "large", device)
    return {
        "videos": [sizes.memory_small, sizes.memory_large],
        "small": a,
        "large": b,
        "growth": b["peak_rss_mb"] / a["peak_rss_mb"] - 1,
    }


@contextlib.contextmanager
def warm_pool(workers: int) -> Any:
    """A pool of `workers` processes started the build's way, every worker already running."""
    pool = worker_pool(workers)
    try:
        for future in [pool.submit(ping) for _ in range(workers)]:
            future.result()
        yield pool
    finally:
        pool.shutdown(wait=True)


def pool_rate(pool: Any, fn: Any, jobs: list[tuple[Any, ...]], count: Any = len) -> float:
    """Frames/s of `fn` over `jobs` in `pool` (results in order, one job per task)."""
    started = time.perf_counter()
    frames = sum(count(result) for result in pool.map(fn, *zip(*jobs, strict=True)))
    return frames / (time.perf_counter() - started)


def kinetics_like(sizes: Sizes, work: Path) -> dict[str, Path]:
    root = work / "kinetics-like"
    return {
        "middle": kinetics_like_folder(root, sizes.pipeline_videos, sizes.kinetics_unique, sizes.kinetics_seconds),
        "uniform:8": kinetics_like_folder(
            root, sizes.pipeline_uniform_videos, sizes.kinetics_unique, sizes.kinetics_seconds
        ),
    }


def spread(values: list[float]) -> list[float]:
    """[lowest, highest] of a figure's runs: how far apart the runs behind its median are."""
    return [min(values), max(values)]


def overhead_runs(
    clip: ClipModel, folders: dict[str, Path], work: Path, workers: int, floor_processes: int, sizes: Sizes, tag: str
) -> dict[str, Any]:
    """Build frames/s with `workers` frame workers ÷ the decode floor of `floor_processes` processes, per
    strategy, `sizes.repeats` times interleaved (floor, build, floor); the median and the spread of the runs.

    Beside each run, the workers' own work alone in the floor's pool (`workers_alone_ratio`): the part of the
    gap that is the workers' per-frame work (model input, thumbnails), not the encoding, writing or ordering.
    """
    batch = sizes.batch_size or default_batch_size(clip)
    out: dict[str, Any] = {"workers": workers, "floor_processes": floor_processes, "batch_size": batch}
    with warm_pool(floor_processes) as pool:
        build_rate(clip, folders["uniform:8"], work, "middle", batch, f"{tag}-warm", workers=workers)
        for strategy, folder in folders.items():
            records = scan_source(folder).videos
            jobs = [(record, strategy) for record in records]
            worker_jobs = [(record, strategy, clip.geometry, str(work / f"{tag}-alone-out")) for record in records]
            runs: list[dict[str, Any]] = []
            for r in range(sizes.repeats):
                before = pool_rate(pool, decode_planned, jobs, count=int)
                build = build_rate(clip, folder, work, strategy, batch, f"{tag}-{strategy[:3]}-{r}", workers=workers)
                after = pool_rate(pool, decode_planned, jobs, count=int)
                workers_alone = pool_rate(pool, prepare_planned, worker_jobs) if clip.geometry else None
                floor = (before + after) / 2
                runs.append({"floor_frames_per_s": floor, "build_frames_per_s": build["frames_per_s"],
                             "ratio": build["frames_per_s"] / floor, "workers_alone_frames_per_s": workers_alone,
                             "workers_alone_ratio": workers_alone / floor if workers_alone else None})  # fmt: skip
            alone = [r["workers_alone_ratio"] for r in runs if r["workers_alone_ratio"] is not None]
            ratios = [r["ratio"] for r in runs]
            out[strategy] = {
                "runs": runs,
                "videos": len(jobs),
                "ratio": statistics.median(ratios),
                "spread": spread(ratios),
                "floor_frames_per_s": statistics.median(r["floor_frames_per_s"] for r in runs),
                "build_frames_per_s": statistics.median(r["build_frames_per_s"] for r in runs),
                "workers_alone_ratio": statistics.median(alone) if alone else None,
            }
    return out


def pipeline_overhead(sizes: Sizes, work: Path, device: str, model: ClipModel | None = None) -> dict[str, Any]:
    """Build frames/s ÷ decode-floor frames/s on Kinetics-like clips, against two floors.

    `all_cores`: a build with one frame worker per core against the same planned frames decoded by one
    process per core (the machine's floor: what every core decoding and nothing else gives). `auto_workers`:
    a build with the default workers (`auto`: one per core less one) against a floor of as many processes.
    Without `model`, the near-free tiny model at 224-pixel input (the build's own overhead); with one (on
    CUDA, ViT-B/32 in fp16), only the all-core figure, as the GPU target asks.
    """
    tiny = model is None
    clip = model or load_model(ModelSpec.resolve(None, RANDOM_WEIGHTS, TINY_224_CONFIG), device)
    cores = usable_cores()
    root = work / "kinetics-like"
    every = {s: kinetics_like_folder(root, sizes.allcore_videos, sizes.kinetics_unique, sizes.kinetics_seconds)
             for s in ("middle", "uniform:8")}  # fmt: skip
    out: dict[str, Any] = {"cores": cores}
    out["all_cores"] = overhead_runs(clip, every, work, cores, cores, sizes, f"pipe-all-{tiny}")
    if tiny:
        workers = resolve_workers("auto")
        folders = kinetics_like(sizes, work)
        out["auto_workers"] = overhead_runs(clip, folders, work, workers, workers, sizes, "pipe-auto")
    return out


def core_scaling(sizes: Sizes, work: Path) -> dict[str, Any]:
    """Frame preparation (decode, model input, thumbnails, transfer) frames/s with one worker per core ÷ one.

    Beside it, the machine's own ceiling measured the same way on pure CPU work (a Python loop in each
    process): on a shared or oversubscribed machine, cores that are listed are not always there.
    """
    from core.media.geometry import InputGeometry

    cores = usable_cores()
    geometry = InputGeometry((224, 224))
    out: dict[str, Any] = {"cores": cores}
    with warm_pool(1) as one, warm_pool(cores) as every:
        loops = [(2_000_000,)] * (4 * cores)
        ceiling = []
        for strategy, folder in kinetics_like(sizes, work).items():
            output = str(work / "scaling-out")
            jobs = [(record, strategy, geometry, output) for record in scan_source(folder).videos]
            ratios, rates = [], []
            for _ in range(sizes.repeats):
                ceiling.append(pool_rate(every, spin, loops, count=bool) / pool_rate(one, spin, loops, count=bool))
                a = pool_rate(one, prepare_planned, jobs)
                b = pool_rate(every, prepare_planned, jobs)
                ratios.append(b / a)
                rates.append((a, b))
            out[strategy] = {"ratio": statistics.median(ratios), "one_worker_frames_per_s": [r[0] for r in rates],
                             "all_workers_frames_per_s": [r[1] for r in rates]}  # fmt: skip
    out["ratio"] = min(out[s]["ratio"] for s in ("middle", "uniform:8"))
    out["machine_ceiling"] = statistics.median(ceiling)
    out["machine_ceiling_runs"] = ceiling
    return out


def gpu_figures(model: ClipModel, sizes: Sizes, work: Path) -> dict[str, Any]:
    """On CUDA: ViT-B/32 fp16 builds ÷ min(fp16 encode, decode floor with every core), the GPU's busy share
    while building (NVML's utilisation when available, else the share of the build's time the model
    alone would need), and the projected time to index Kinetics-700's validation set."""
    fp16 = model.with_precision("fp16")
    batch = sizes.batch_size or default_batch_size(fp16)
    encode = encode_rate(fp16, sizes.encode_seconds, batch)
    sampler = _UtilisationSampler(fp16.device)
    with sampler:
        builds = pipeline_overhead(sizes, work, str(fp16.device), model=fp16)["all_cores"]
    out: dict[str, Any] = {"fp16_encode_frames_per_s": encode, "batch_size": batch, "builds": builds,
                           "gpu_utilisation_nvml": sampler.mean()}  # fmt: skip
    for strategy in ("middle", "uniform:8"):
        b = builds[strategy]
        bound = min(encode, b["floor_frames_per_s"])
        out[strategy] = {
            "ratio": b["build_frames_per_s"] / bound,
            "bound": "encode" if encode <= b["floor_frames_per_s"] else "decode floor",
            "gpu_busy_share": b["build_frames_per_s"] / encode,
        }
    uniform_rate = builds["uniform:8"]["build_frames_per_s"]
    out["kinetics700_validation_hours"] = KINETICS_700_VALIDATION_CLIPS * 8 / uniform_rate / 3600
    return out


class _UtilisationSampler:
    """Samples the GPU's utilisation (NVML, through torch) every half second while in use; None without NVML."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.samples = device, []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.samples.append(float(torch.cuda.utilization(self.device)))
            except Exception:  # no pynvml / NVML: reported as None
                return

    def __enter__(self) -> _UtilisationSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def mean(self) -> float | None:
        return statistics.mean(self.samples) / 100 if self.samples else None
