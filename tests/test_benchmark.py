"""The benchmark's smoke mode: it runs end to end on tiny sizes and writes its table (timings are not
checked here; the real figures come from `python -m benchmarks.run`, see benchmarks/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT


def test_benchmark_quick_mode_runs(tmp_path: Path) -> None:
    target = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--json", str(target), "--work", str(tmp_path / "work")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(target.read_text())
    figures = [row["figure"] for row in data["targets"]]
    assert len(figures) == 9 and figures[0].startswith("1. build") and figures[-1].startswith("6. metrics")
    assert all(isinstance(row["value"], float) for row in data["targets"])
    for key in ("throughput", "latency", "memory", "evaluation", "optional", "machine"):
        assert key in data
    assert "result" in result.stdout and "pass" in result.stdout.replace("FAIL", "pass")
