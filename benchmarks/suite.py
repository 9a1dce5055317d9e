"""Performance benchmark, run by ``python -m benchmarks.run [--device auto|cpu|cuda] [--quick] [--json FILE]``.

It generates its own videos and index and measures, in one run on one machine, the performance targets as
ratios of rates measured side by side (interleaved and repeated, so the machine's drift does not pass for a
result), with the absolute rates beside them; benchmarks/README.md says how each figure is measured. This
module holds the command line, the table of targets and the JSON; the measurements are in
`benchmarks.throughput`, `benchmarks.search_cost` and `benchmarks.pipeline`. ``--quick`` runs everything on
tiny sizes (CI smoke: it checks that the benchmark runs and reports every figure, not the figures).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.pipeline import core_scaling, gpu_figures, memory, pipeline_overhead  # noqa: E402
from benchmarks.search_cost import evaluation_cost, latency_and_recall  # noqa: E402
from benchmarks.throughput import optional_variants, startup, throughput, whole_process  # noqa: E402
from benchmarks.workload import QUICK, Sizes, machine  # noqa: E402
from core.model.embed import RANDOM_WEIGHTS, ModelSpec, load_model, resolve_device  # noqa: E402
from core.runtime import configure_runtime  # noqa: E402

SECTIONS = ("throughput", "latency", "memory", "evaluation", "pipeline", "scaling", "startup", "whole_process", "gpu",
            "optional")  # fmt: skip


Spread = list[float] | None  # [lowest, highest] of the runs behind a median; None where not repeated


def verdicts(results: dict[str, Any]) -> list[tuple[str, float, str, bool, Spread]]:
    """The targets as (figure, value, target, met, spread), for the sections this run measured (``--only``)."""
    rows: list[tuple[str, float, str, float, int]] = []
    spreads: dict[str, Spread] = {}
    if "throughput" in results:
        t = results["throughput"]
        rows += [
            ("1. build ÷ encode, middle", t["ratio_middle"], "≥ 0.85", 0.85, 1),
            ("1. build ÷ encode, uniform:8", t["ratio_uniform8"], "≥ 0.85", 0.85, 1),
            ("2. build ÷ reference method", t["ratio_vs_reference"], "≥ 2", 2.0, 1),
        ]
        keys = ("ratio_middle", "ratio_uniform8", "ratio_vs_reference")
        for figure, key in zip((r[0] for r in rows), keys, strict=True):
            values = [run[key] for run in t["runs"]]
            spreads[figure] = [min(values), max(values)]
    if "latency" in results:
        q = results["latency"]
        structured = min(q["recall_at_10"]["text_like"], q["recall_at_10"]["frame_like"])
        rows += [
            ("3a. query encoder p50 ÷ stock encode_text p50", q["ratio_encoder_vs_stock"], "≤ 0.5", 0.5, -1),
            ("3b. search p50 ÷ query encoder p50", q["ratio_search_vs_encoder"], "≤ 1.25", 1.25, -1),
            ("3b. search p95 ÷ search p50", q["ratio_search_p95_vs_p50"], "≤ 2", 2.0, -1),
            ("4. HNSW recall@10 (text- and frame-like queries)", structured, "≥ 0.99", 0.99, 1),
        ]
    if "memory" in results:
        rows.append(("5. peak RSS growth, 1k → 10k videos", results["memory"]["growth"], "≤ 0.20", 0.20, -1))
    if "evaluation" in results:
        rows.append(("6. metrics ÷ (E @ T.T + argsort)", results["evaluation"]["ratio"], "≤ 3", 3.0, -1))
    if "pipeline" in results:
        p = results["pipeline"]
        a, w = p["all_cores"], p["auto_workers"]
        rows += [
            ("7. pipeline: build ÷ all-core decode floor, middle", a["middle"]["ratio"], "≥ 0.85", 0.85, 1),
            ("7. pipeline: build ÷ all-core decode floor, uniform:8", a["uniform:8"]["ratio"], "≥ 0.85", 0.85, 1),
            (f"7b. auto workers ({w['workers']}) ÷ their floor, middle", w["middle"]["ratio"], "≥ 0.8", 0.8, 1),
            (f"7b. auto workers ({w['workers']}) ÷ their floor, uniform:8", w["uniform:8"]["ratio"], "≥ 0.8", 0.8, 1),
        ]
        for row, figure in zip(rows[-4:], (a["middle"], a["uniform:8"], w["middle"], w["uniform:8"]), strict=True):
            spreads[row[0]] = figure["spread"]
    if "scaling" in results:
        c = results["scaling"]
        cores = c["cores"]
        scaling_bound = 1.7 if cores <= 2 else round(0.7 * cores, 2)
        rows.append((f"8. core scaling: {cores} workers ÷ 1", c["ratio"], f"≥ {scaling_bound}", scaling_bound, 1))
    if "startup" in results:
        rows.append(("9. load_model ÷ create_model_and_transforms", results["startup"]["ratio"], "≤ 1.15", 1.15, -1))
    if "whole_process" in results:
        w = results["whole_process"]
        rows.append((f"10. whole-process build ÷ encode, {w['videos']} videos", w["ratio"], "≥ 0.9", 0.9, 1))
        spreads[rows[-1][0]] = w["spread"]
    if "gpu" in results:
        g = results["gpu"]
        rows += [
            ("11. GPU build ÷ min(fp16 encode, floor), middle", g["middle"]["ratio"], "≥ 0.8", 0.8, 1),
            ("11. GPU build ÷ min(fp16 encode, floor), uniform:8", g["uniform:8"]["ratio"], "≥ 0.8", 0.8, 1),
        ]
    return [(f, v, text, v >= bound if sign > 0 else v <= bound, spreads.get(f)) for f, v, text, bound, sign in rows]


def _workers_alone(p: dict[str, Any]) -> str:
    """The workers' own ceiling (their work alone in the floor's pool ÷ the floor), where it was measured."""
    alone = [p[s].get("workers_alone_ratio") for s in ("middle", "uniform:8")]
    if None in alone:
        return ""
    return f" (the workers' own work alone: {alone[0]:.2f} / {alone[1]:.2f} of the floor)"


def _milestones(timings: list[dict[str, float]]) -> str:
    """The whole-process builds' milestones (`build --json`'s timings), each the median over the builds."""
    names = [name for name in timings[0] if all(name in t for t in timings)] if timings else []
    medians = {name: statistics.median(t[name] for t in timings) for name in names}
    return "the build's milestones, s from its start (median): " + ", ".join(f"{n} {v:.2f}" for n, v in medians.items())


def absolute_figures(results: dict[str, Any], device: torch.device) -> str:
    """One paragraph of the absolute rates behind the ratios, for the sections this run measured."""
    parts = []
    if "throughput" in results:
        t = results["throughput"]
        parts.append(
            f"encode {t['encode_frames_per_s']:.1f} img/s, build middle {t['build_middle_frames_per_s']:.1f} "
            f"and uniform:8 {t['build_uniform8_frames_per_s']:.1f} frames/s, reference "
            f"{t['reference_frames_per_s']:.1f} frames/s"
        )
    if "latency" in results:
        q = results["latency"]
        parts.append(
            f"stock encode_text p50 {q['stock_encode_text_p50_ms']:.1f} ms, our encoder p50 "
            f"{q['encoder_p50_ms']:.1f} ms, search p50 {q['search_p50_ms']:.1f} ms / p95 {q['search_p95_ms']:.1f} ms "
            f"over {q['index_frames']:,} frames"
        )
    if "pipeline" in results:
        for name, p in (("all cores", results["pipeline"]["all_cores"]), ("auto", results["pipeline"]["auto_workers"])):
            parts.append(
                f"pipeline, {name} ({p['workers']} workers, floor of {p['floor_processes']} processes): middle "
                f"{p['middle']['build_frames_per_s']:.1f} frames/s over {p['middle']['floor_frames_per_s']:.1f}, "
                f"uniform:8 {p['uniform:8']['build_frames_per_s']:.1f} over {p['uniform:8']['floor_frames_per_s']:.1f}"
                + _workers_alone(p)
            )
    if "scaling" in results:
        c = results["scaling"]
        parts.append(
            f"the machine's own scaling on pure CPU work {c['machine_ceiling']:.2f} ({c['cores']} processes ÷ 1)"
        )
    if "whole_process" in results:
        w = results["whole_process"]
        parts.append(
            f"whole process: build {', '.join(f'{b:.1f}' for b in w['build_s'])} s against encode-only "
            f"{', '.join(f'{e:.1f}' for e in w['encode_s'])} s; " + _milestones(w["timings"])
        )
    text = "absolute: " + "; ".join(parts) + f"; load average {results['load_average']}; "
    text += f"{results['seconds']:.0f} s in all on {results['machine']['cpu']} "
    text += f"({results['machine']['logical_cores']} cores, {device})"
    if "gpu" in results:
        g = results["gpu"]
        text += (
            f"\nGPU: fp16 encode {g['fp16_encode_frames_per_s']:.0f} img/s; busy share while building middle "
            f"{g['middle']['gpu_busy_share']:.2f}, uniform:8 {g['uniform:8']['gpu_busy_share']:.2f} (NVML: "
            f"{g['gpu_utilisation_nvml']}); Kinetics-700 validation (34k clips, uniform:8) in "
            f"{g['kinetics700_validation_hours']:.2f} h" + _workers_alone(g["builds"])
        )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that the benchmark runs (CI)")
    parser.add_argument("--device", default="auto", help="auto (default: cuda when available), cpu or cuda")
    parser.add_argument(
        "--json", default=str(ROOT / "benchmarks" / "results" / "latest.json"), help="where to write results"
    )
    parser.add_argument("--work", help="working folder (default: a temporary one, removed at the end)")
    parser.add_argument("--skip-optional", action="store_true", help="do not measure the optional variants")
    parser.add_argument(
        "--only",
        help=f"comma-separated sections to measure (default: all): {', '.join(SECTIONS)}",
    )
    for name, value in vars(Sizes()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=None, help=f"default {value}")
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",")] if args.only else []
    if set(only) - set(SECTIONS):
        unknown = ", ".join(sorted(set(only) - set(SECTIONS)))
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    configure_runtime()
    sizes = QUICK if args.quick else Sizes()
    sizes = replace(sizes, **{k: v for k, v in vars(args).items() if k in vars(Sizes()) and v is not None})
    device = resolve_device(args.device)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="clip-explorer-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    try:
        # fp32 for the figures that compare with earlier runs; the GPU figures use fp16 (the CUDA default).
        model = load_model(replace(ModelSpec.resolve(), pretrained=RANDOM_WEIGHTS), str(device), "fp32")
        results: dict[str, Any] = {
            "machine": machine(),
            "device": str(device),
            "sizes": vars(sizes),
            "model": "ViT-B-32-quickgelu, random weights",
        }
        steps = [
            ("throughput", lambda: throughput(model, sizes, work)),
            ("latency", lambda: latency_and_recall(model, sizes, work)),
            ("memory", lambda: memory(sizes, work, str(device))),
            ("evaluation", lambda: evaluation_cost(sizes)),
            ("pipeline", lambda: pipeline_overhead(sizes, work, str(device))),
            ("scaling", lambda: core_scaling(sizes, work)),
            ("startup", lambda: startup(sizes, work, device)),
            ("whole_process", lambda: whole_process(sizes, work, device)),
        ]
        if device.type == "cuda":
            steps.append(("gpu", lambda: gpu_figures(model, sizes, work)))
        if not args.skip_optional:
            steps.append(("optional", lambda: optional_variants(model, sizes)))
        if only:  # in the order asked for: the figures that matter most first, on a machine lent for minutes
            by_name = dict(steps)
            steps = [(name, by_name[name]) for name in only if name in by_name]
        partial = Path(args.json).with_suffix(".partial.json")
        for name, step in steps:
            t0 = time.perf_counter()
            results[name] = step()
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")  # kept if cut short
            print(
                f"[{time.perf_counter() - started:6.0f} s] {name} done in {time.perf_counter() - t0:.0f} s", flush=True
            )
        results["seconds"] = time.perf_counter() - started
        results["load_average"] = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
        table = verdicts(results)
        results["targets"] = [{"figure": f, "value": v, "target": t, "met": ok, "spread": sp}
                              for f, v, t, ok, sp in table]  # fmt: skip
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{'figure':<56} {'value':>9}  {'runs':<13}  {'target':<8} result")
    for figure, value, target, ok, runs in table:
        between = f"{runs[0]:.3f}–{runs[1]:.3f}" if runs else ""
        print(f"{figure:<56} {value:9.3f}  {between:<13}  {target:<8} {'met' if ok else 'NOT met'}")
    print("\n" + absolute_figures(results, device))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
