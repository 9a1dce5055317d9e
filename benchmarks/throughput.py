"""The model's side of the benchmark: build ÷ pure encode (1), build ÷ the reference notebook's method (2),
model start-up (9), a whole build process ÷ a whole encode process (10), and the optional precision variants."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.workload import ROOT, VIT_B32, Sizes, make_videos, sync
from core.engines.build import default_batch_size, resolve_workers, run_build
from core.media.sources import scan_source
from core.model.embed import ClipModel, ModelSpec, load_model
from core.requests import BuildRequest
from core.store.index import connect


def encode_rate(model: ClipModel, seconds: float, batch_size: int) -> float:
    """Pure batched encode_images on ready uint8 inputs (what the build feeds it), frames/s, model warm.

    On a GPU the batch is pinned, as the build's is; encode_images returns CPU results (synchronised).
    """
    height, width = model.geometry.size if model.geometry is not None else (224, 224)
    batch = torch.randint(0, 256, (batch_size, 3, height, width), dtype=torch.uint8)
    if model.device.type == "cuda":
        batch = batch.pin_memory()
    model.encode_images(batch)
    started, frames = time.perf_counter(), 0
    while time.perf_counter() - started < seconds or frames == 0:
        model.encode_images(batch)
        frames += batch_size
    return frames / (time.perf_counter() - started)


def build_rate(
    model: ClipModel, videos: Path, work: Path, frames: str, batch_size: int, tag: str, workers: int | str = "auto"
) -> dict[str, float]:
    """One build through the public entry point (`run_build`), in this process, with `model` already loaded,
    into a new index (one left in a reused `--work` folder would make it resume with nothing to do); its
    frames/s over the time from its workers' start to its last record written."""
    for leftover in (work / f"db-{tag}", work / f"out-{tag}"):
        shutil.rmtree(leftover, ignore_errors=True)
    request = BuildRequest(
        videos=str(videos), db=str(work / f"db-{tag}"), output=str(work / f"out-{tag}"), frames=frames,
        batch_size=batch_size, workers=workers, device=str(model.device), precision=model.precision,
    )  # fmt: skip
    summary = run_build(request, model=model)
    # From the moment the workers could take work (they begin on the first videos while the index opens) to
    # the last record written: not the summary's `seconds`, whose clock starts once the index is open.
    seconds = summary.timings["writer_flush"] - summary.timings["workers_started"]
    return {"frames": summary.frames, "seconds": seconds, "frames_per_s": summary.frames / seconds}


def reference_rate(model: ClipModel, videos: Path, work: Path, count: int, tag: str) -> float:
    """The reference notebook's method, faithfully: one video at a time, PNG round trip, batch of one,
    one record per insert (a default Chroma collection)."""
    import cv2
    from PIL import Image

    records = scan_source(videos).videos[:count]
    client = connect(work / f"ref-db-{tag}")
    collection = client.get_or_create_collection("kinetics_700_subset", embedding_function=None)
    frames_dir = work / f"ref-frames-{tag}"
    frames_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for i, record in enumerate(records):
        cap = cv2.VideoCapture(str(record.path))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.set(cv2.CAP_PROP_POS_FRAMES, total // 2)
        _, frame = cap.read()
        cap.release()
        png = frames_dir / f"frame_video_{i}.png"
        cv2.imwrite(str(png), frame)
        image = Image.open(png).convert("RGB")
        with torch.no_grad():
            pixels = model.preprocess(image).unsqueeze(0).to(model.device, model.dtype)
            embedding = model.model.encode_image(pixels).float()
            embedding = embedding / embedding.norm(dim=-1, keepdim=True)
        collection.add(
            ids=[f"video_{i}"],
            embeddings=[embedding[0].tolist()],  # .tolist() waits for the GPU
            metadatas=[{"label": record.label, "frame_path": str(png), "video_id": f"video_{i}"}],
        )
    return len(records) / (time.perf_counter() - started)


def throughput(model: ClipModel, sizes: Sizes, work: Path) -> dict[str, Any]:
    mid_videos = make_videos(work / "videos", sizes.build_videos, sizes)
    uni_videos = make_videos(work / "videos", sizes.uniform_videos, sizes)
    batch = sizes.batch_size or default_batch_size(model)
    build_rate(model, uni_videos, work, "middle", batch, "warm-up")  # starts the fork server, warms the caches
    runs: list[dict[str, Any]] = []
    for r in range(sizes.repeats):
        p0 = encode_rate(model, sizes.encode_seconds, batch)
        middle = build_rate(model, mid_videos, work, "middle", batch, f"mid{r}")
        p1 = encode_rate(model, sizes.encode_seconds, batch)
        uniform = build_rate(model, uni_videos, work, "uniform:8", batch, f"uni{r}")
        p2 = encode_rate(model, sizes.encode_seconds, batch)
        reference = reference_rate(model, mid_videos, work, sizes.reference_videos, f"{r}")
        middle_again = build_rate(model, mid_videos, work, "middle", batch, f"mid{r}b")
        runs.append(
            {
                "encode_frames_per_s": [p0, p1, p2],
                "build_middle": middle,
                "build_uniform8": uniform,
                "reference_frames_per_s": reference,
                "build_middle_after_reference": middle_again,
                "ratio_middle": middle["frames_per_s"] / ((p0 + p1) / 2),
                "ratio_uniform8": uniform["frames_per_s"] / ((p1 + p2) / 2),
                "ratio_vs_reference": ((middle["frames_per_s"] + middle_again["frames_per_s"]) / 2) / reference,
            }
        )
    return {
        "runs": runs,
        "ratio_middle": statistics.median(r["ratio_middle"] for r in runs),
        "ratio_uniform8": statistics.median(r["ratio_uniform8"] for r in runs),
        "ratio_vs_reference": statistics.median(r["ratio_vs_reference"] for r in runs),
        "encode_frames_per_s": statistics.median(v for r in runs for v in r["encode_frames_per_s"]),
        "build_middle_frames_per_s": statistics.median(r["build_middle"]["frames_per_s"] for r in runs),
        "build_uniform8_frames_per_s": statistics.median(r["build_uniform8"]["frames_per_s"] for r in runs),
        "reference_frames_per_s": statistics.median(r["reference_frames_per_s"] for r in runs),
        "videos": {"middle": sizes.build_videos, "uniform8": sizes.uniform_videos, "reference": sizes.reference_videos},
        "batch_size": batch,
        "workers": resolve_workers("auto"),
    }


def _cosine_deviation(reference: torch.Tensor, other: torch.Tensor) -> float:
    """The largest 1 − cos between matching rows (both L2-normalised here)."""
    a = torch.nn.functional.normalize(reference.float(), dim=-1)
    b = torch.nn.functional.normalize(other.float(), dim=-1)
    return float(1 - (a * b).sum(-1).min())


def _module_rate(fn: Any, batch: torch.Tensor, seconds: float, device: torch.device) -> float:
    fn(batch)
    sync(device)
    started, frames = time.perf_counter(), 0
    while time.perf_counter() - started < seconds or frames == 0:
        fn(batch)
        frames += len(batch)
    sync(device)
    return frames / (time.perf_counter() - started)


def optional_variants(model: ClipModel, sizes: Sizes) -> dict[str, Any]:
    """Not defaults, measured and reported. On a CPU: int8 dynamic quantisation of the image tower and
    bfloat16 autocast; on a GPU: fp16 autocast against the half weights that are the default there."""
    import warnings

    device = model.device
    height, width = model.geometry.size if model.geometry is not None else (224, 224)
    batch = torch.randn(sizes.batch_size or default_batch_size(model), 3, height, width, device=device)
    out: dict[str, Any] = {}
    with torch.inference_mode():
        reference = model.model.encode_image(batch) if model.precision == "fp32" else None
        if device.type == "cuda":
            fp32 = load_model(model.spec, str(device), "fp32")
            reference = fp32.model.encode_image(batch)
            base = _module_rate(fp32.model.encode_image, batch, sizes.encode_seconds, device)
            half = model.with_precision("fp16")
            out["fp16_half_weights"] = {
                "speedup_over_fp32": _module_rate(half.model.encode_image, batch.half(), sizes.encode_seconds, device)
                / base,
                "max_cosine_deviation": _cosine_deviation(reference, half.model.encode_image(batch.half())),
            }
            with torch.autocast("cuda", dtype=torch.float16):
                out["fp16_autocast"] = {
                    "speedup_over_fp32": _module_rate(fp32.model.encode_image, batch, sizes.encode_seconds, device)
                    / base,
                    "max_cosine_deviation": _cosine_deviation(reference, fp32.model.encode_image(batch)),
                }
            return out
        assert reference is not None
        base = _module_rate(model.model.encode_image, batch, sizes.encode_seconds, device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantised = torch.ao.quantization.quantize_dynamic(model.model.visual, {torch.nn.Linear}, dtype=torch.qint8)
        out["int8_dynamic"] = {
            "speedup": _module_rate(quantised, batch, sizes.encode_seconds, device) / base,
            "max_cosine_deviation": _cosine_deviation(reference, quantised(batch)),
            "precision_at_1_change": "not measurable offline: needs trained weights and labelled clips",
        }
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out["bfloat16_autocast"] = {
                "speedup": _module_rate(model.model.encode_image, batch, sizes.encode_seconds, device) / base,
                "max_cosine_deviation": _cosine_deviation(reference, model.model.encode_image(batch)),
            }
    return out


def _checkpoint(work: Path) -> Path:
    """ViT-B/32's architecture with random weights, saved as a checkpoint file (what a user passes)."""
    import open_clip

    path = work / "vit-b-32-random.pt"
    if not path.exists():
        torch.manual_seed(0)
        torch.save(open_clip.create_model(VIT_B32).state_dict(), path)
    return path


def startup(sizes: Sizes, work: Path, device: torch.device) -> dict[str, Any]:
    """load_model ÷ open_clip's create_model_and_transforms, same checkpoint, interleaved, warm imports."""
    import open_clip

    checkpoint = _checkpoint(work)
    spec = ModelSpec.resolve(VIT_B32, str(checkpoint))
    precision = "fp16" if device.type == "cuda" else "fp32"
    ours, stock = [], []
    for _ in range(max(2, sizes.repeats + 1)):
        started = time.perf_counter()
        open_clip.create_model_and_transforms(VIT_B32, pretrained=str(checkpoint), device=device, precision=precision)
        sync(device)
        stock.append(time.perf_counter() - started)
        started = time.perf_counter()
        load_model(spec, str(device), precision)
        sync(device)
        ours.append(time.perf_counter() - started)
    return {"load_model_s": ours, "create_model_and_transforms_s": stock,
            "ratio": statistics.median(ours) / statistics.median(stock)}  # fmt: skip


def whole_process(sizes: Sizes, work: Path, device: torch.device) -> dict[str, Any]:
    """Wall time of a whole `python -m core build` (N one-frame videos) and of a whole encode-only process
    (`benchmarks.encode_only`, N images), same checkpoint, batch size and device; as rates, build ÷ encode."""
    checkpoint = _checkpoint(work)
    videos = make_videos(work / "videos", sizes.whole_videos, sizes)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    common = ["--model", VIT_B32, "--pretrained", str(checkpoint), "--device", device.type]

    def timed(command: list[str]) -> float:
        started = time.perf_counter()
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:4])} failed: {result.stderr[-2000:]}")
        return time.perf_counter() - started

    builds, encodes, timings = [], [], []  # timings: each build's milestones (`build --json`)
    for r in range(sizes.repeats):  # interleaved pairs, so that the machine's drift hits both alike
        encodes.append(timed([sys.executable, "-m", "benchmarks.encode_only", *common,
                              "--images", str(sizes.whole_videos)]))  # fmt: skip
        summary = work / f"whole-{r}.json"
        builds.append(timed([sys.executable, "-m", "core", "build", "--videos", str(videos), "--db",
                             str(work / f"whole-db-{r}"), "--output", str(work / f"whole-out-{r}"),
                             "--frames", "middle", "--quiet", "--json", str(summary), *common]))  # fmt: skip
        timings.append(json.loads(summary.read_text(encoding="utf-8"))["timings"])
    ratios = [e / b for e, b in zip(encodes, builds, strict=True)]
    return {"videos": sizes.whole_videos, "build_s": builds, "encode_s": encodes, "ratios": ratios,
            "ratio": statistics.median(ratios), "spread": [min(ratios), max(ratios)],
            "timings": timings}  # fmt: skip
