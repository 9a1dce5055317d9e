"""The benchmark's smoke mode: it runs end to end on tiny sizes and reports every figure, each judged
against its target the same way in the table and in the JSON. (Timings are not checked here; the real
figures come from `python -m benchmarks.run`, see benchmarks/README.md.)"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers import ROOT

FIGURES = [
    "1. build ÷ encode, middle",
    "1. build ÷ encode, uniform:8",
    "2. build ÷ reference method",
    "3a. query encoder p50 ÷ stock encode_text p50",
    "3b. search p50 ÷ query encoder p50",
    "3b. search p95 ÷ search p50",
    "4. HNSW recall@10 (text- and frame-like queries)",
    "5. peak RSS growth, 1k → 10k videos",
    "6. metrics ÷ (E @ T.T + argsort)",
    "7. pipeline: build ÷ all-core decode floor, middle",
    "7. pipeline: build ÷ all-core decode floor, uniform:8",
    "7b. auto workers ({workers}) ÷ their floor, middle",
    "7b. auto workers ({workers}) ÷ their floor, uniform:8",
    "8. core scaling: {cores} workers ÷ 1",
    "9. load_model ÷ create_model_and_transforms",
    "10. whole-process build ÷ encode, {videos} videos",
]


def _met(value: float, target: str) -> bool:
    sign, bound = target.split()
    return value >= float(bound) if sign == "≥" else value <= float(bound)


def test_benchmark_quick_mode_reports_every_target(tmp_path: Path) -> None:
    target = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--device", "cpu", "--json", str(target),
         "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(target.read_text())
    for key in ("throughput", "latency", "memory", "evaluation", "pipeline", "scaling", "startup", "whole_process",
                "optional", "machine"):  # fmt: skip
        assert key in data, key
    assert data["device"] == "cpu" and "gpu" not in data  # the CUDA figures only on CUDA
    cores, videos = data["scaling"]["cores"], data["whole_process"]["videos"]
    workers = data["pipeline"]["auto_workers"]["workers"]
    rows = data["targets"]
    assert [row["figure"] for row in rows] == [f.format(cores=cores, videos=videos, workers=workers) for f in FIGURES]
    # The printed table: one line per figure, its value and verdict as in the JSON, and the verdict
    # is the value against the stated target.
    lines = {line[:56].strip(): line for line in result.stdout.splitlines() if re.match(r"^\d+[ab]?\. ", line)}
    for row in rows:
        value, verdict = row["value"], row["met"]
        assert isinstance(value, float) and math.isfinite(value), row
        assert verdict == _met(value, row["target"]), row
        line = lines[row["figure"]]
        assert f"{value:9.3f}" in line and row["target"] in line
        if row["spread"] is not None:  # a repeated figure: its runs' range beside the median
            assert f"{row['spread'][0]:.3f}–{row['spread'][1]:.3f}" in line
        assert line.rstrip().endswith(" met") and line.rstrip().endswith("NOT met") == (not verdict), line
    all_cores, auto = data["pipeline"]["all_cores"], data["pipeline"]["auto_workers"]
    assert all_cores["workers"] == all_cores["floor_processes"] == cores  # the machine's floor: every core decodes
    assert auto["workers"] == auto["floor_processes"]
    for pipeline in (all_cores, auto):
        assert pipeline["middle"]["floor_frames_per_s"] > 0 and pipeline["uniform:8"]["build_frames_per_s"] > 0
        for strategy in ("middle", "uniform:8"):  # the workers' own ceiling, measured in the floor's pool
            figure = pipeline[strategy]
            ratios = [run["ratio"] for run in figure["runs"]]
            assert figure["spread"] == [min(ratios), max(ratios)] and min(ratios) <= figure["ratio"] <= max(ratios)
            for run in figure["runs"]:
                assert run["workers_alone_ratio"] == run["workers_alone_frames_per_s"] / run["floor_frames_per_s"] > 0
    whole = data["whole_process"]
    assert whole["spread"] == [min(whole["ratios"]), max(whole["ratios"])]
    # Each whole-process build says where its time went (`build --json`'s timings), in milestone order.
    for timings in whole["timings"]:
        assert timings["imports"] < 0 < timings["start_up"] <= timings["first_frame"] <= timings["last_frame_encoded"]
        assert timings["last_frame_encoded"] <= timings["writer_flush"] <= timings["index_close"]
    assert "the workers' own work alone:" in result.stdout
    assert "absolute:" in result.stdout and "results:" in result.stdout


STORE_CONFIGS = [
    ("one server, 1 shard", 1, 1),
    ("one server, 2 shards", 1, 2),
    ("one server, 4 shards", 1, 4),
    ("two servers, 2 shards", 2, 2),
    ("two servers, 4 shards", 2, 4),
    ("embedded, 1 shard", 0, 1),
    ("embedded, 2 shards", 0, 2),
    ("embedded, 4 shards", 0, 4),
]


def _quick_mode(module: str, target: Path) -> tuple[dict[str, Any], str]:
    """Run a benchmark module's `--quick` mode; its JSON and what it printed."""
    result = subprocess.run(
        [sys.executable, "-m", module, "--quick", "--json", str(target)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(target.read_text()), result.stdout


def test_store_benchmark_quick_mode_runs_every_configuration(tmp_path: Path) -> None:
    """The sharded index's benchmark runs end to end on tiny sizes; its figures are reported, not judged here."""
    data, _ = _quick_mode("benchmarks.store_bench", tmp_path / "store.json")
    assert [(row["name"], row["servers"], row["shards"]) for row in data["writes"]] == STORE_CONFIGS
    for row in data["writes"]:
        assert row["records"] == data["sizes"]["write_records"] and row["records_per_s"] > 0, row
    search = data["search"]
    for shards in ("1_shard", "4_shard"):
        assert 0.0 <= search[shards]["recall_at_10"] <= 1.0 and search[shards]["p50_ms"] > 0, search
    assert data["targets"] and all(set(row) == {"figure", "value", "target", "met"} for row in data["targets"])
    figures = [row["figure"] for row in data["targets"]]
    assert "search p50, 4 shards ÷ 1 shard" in figures and sum("recall@10" in f for f in figures) == 2, figures
    assert {"cpu", "cpu_count", "usable_cores", "load_average_at_start"} <= set(data["machine"])


def test_frame_parts_quick_mode_reports_each_part(tmp_path: Path) -> None:
    """The per-frame parts benchmark runs on tiny clips and reports every part; our JPEG is Pillow's, byte for byte."""
    data, printed = _quick_mode("benchmarks.frame_parts", tmp_path / "parts.json")
    parts = data["ms_per_frame"]
    assert len(parts) == 11 and all(ms > 0 for ms in parts.values()), parts
    assert data["jpeg_same_bytes_as_pillow"] and data["jpeg_bytes"]["ours"] == data["jpeg_bytes"]["pillow"]
    assert 0 < data["beyond_decoding_ms"] < sum(parts.values())
    assert all(part in printed for part in parts)
