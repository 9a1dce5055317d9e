"""``python -m core`` end to end, in subprocesses, exactly as other tools call it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.app import Explorer
from core.cli import main
from core.engines.records import MILESTONES
from core.ground import IndexLockedError
from core.reader import ProcessCache
from core.requests import BuildRequest, ModelSpec
from core.store.locking import BuildLock
from tests.helpers import EVALUATE_KEYS, ROOT, free_port, make_broken_files, run_cli
from tests.tiny_model import CONFIG

HIT_KEYS = {"video_id", "label", "frame_path", "timestamp_s", "similarity"}


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory: pytest.TempPathFactory, video_root: Path, tiny_checkpoint: Path) -> dict:
    work = tmp_path_factory.mktemp("cli")
    db, out = work / "db", work / "output"
    result = run_cli(
        "build",
        "--videos",
        str(video_root),
        "--db",
        str(db),
        "--output",
        str(out),
        "--model-config",
        str(CONFIG),
        "--pretrained",
        str(tiny_checkpoint),
        "--frames",
        "uniform:2",
        "--batch-size",
        "4",
        "--json",
        str(work / "build.json"),
    )
    assert result.returncode == 0, result.stderr
    return {"db": db, "out": out, "work": work, "build": result}


def test_build_prints_a_summary(cli_index: dict) -> None:
    line = cli_index["build"].stdout.strip().splitlines()[-1]
    assert line.startswith("indexed 12 videos (0 already indexed), skipped 0, 24 frames in ")
    assert line.endswith(" frames/s")
    summary = json.loads((cli_index["work"] / "build.json").read_text())
    assert summary["videos_indexed"] == 12 and summary["frames"] == 24
    # Where the time went: every milestone, in seconds since the build began; before it, the process's own
    # start (interpreter and imports: negative). Start-up runs side by side, then frames, flush and close.
    timings = summary["timings"]
    assert list(timings) == list(MILESTONES), timings
    assert timings["imports"] < 0 < timings["workers_started"] <= timings["start_up"]
    assert timings["model_load"] <= timings["index_open"] <= timings["start_up"]  # the index needs the model's size
    assert timings["first_worker_ready"] > 0  # whenever the pool's thread saw it: not ordered against the rest
    assert timings["start_up"] <= timings["first_frame"] <= timings["last_frame_encoded"] <= timings["writer_flush"]
    assert timings["writer_flush"] <= timings["index_close"]
    # Both in seconds: the summary's own indexing time lies within the milestones.
    assert summary["seconds"] <= timings["index_close"]
    # The progress bar's time left is in the app's format (core.ground.format_duration), not tqdm's own clock.
    stderr = cli_index["build"].stderr
    assert re.search(r"ETA=(–|\d+ s|\d+ min \d\d s)", stderr) and not re.search(r"\d\d:\d\d<", stderr), stderr


def test_evaluate_json_contract(cli_index: dict) -> None:
    target = cli_index["work"] / "metrics.json"
    result = run_cli("evaluate", "--db", str(cli_index["db"]), "--json", str(target))
    assert result.returncode == 0, result.stderr
    data = json.loads(target.read_text())
    assert set(data) >= EVALUATE_KEYS
    assert data["precision_at_1"] == 1.0 and data["n_videos"] == 12 and data["n_classes"] == 6
    assert data["per_class"]["juggling fire"] == 1.0
    assert "precision@1: 1.000" in result.stdout


def test_json_to_stdout_keeps_it_parseable(cli_index: dict, capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", "--db", str(cli_index["db"]), "--prompt", "reference-fr", "--json", "-"]) == 0
    captured = capsys.readouterr()
    french = json.loads(captured.out)
    assert french["settings"]["prompt_set"] == "reference-fr" and "precision@1" in captured.err


def test_search_json_contract(cli_index: dict) -> None:
    target = cli_index["work"] / "hits.json"
    result = run_cli("search", "someone juggling fire", "--k", "3", "--db", str(cli_index["db"]), "--json", str(target))
    assert result.returncode == 0, result.stderr
    hits = json.loads(target.read_text())
    assert len(hits) == 3 and all(set(h) >= HIT_KEYS for h in hits)
    assert hits[0]["label"] == "juggling fire" and Path(hits[0]["frame_path"]).is_file()


def test_model_mismatch_is_refused(cli_index: dict) -> None:
    result = run_cli(
        "search", "fire", "--db", str(cli_index["db"]), "--model-config", str(CONFIG), "--pretrained", "none"
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: The index at") and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "   ", "--db", "{db}"], "The query is empty"),
        (["search", "fire", "--k", "0", "--db", "{db}"], "--k must be a whole number from 1 to 1000, not 0"),
        (["search", "fire", "--db", "{missing}"], "There is no index at"),
        (["evaluate", "--db", "{missing}"], "There is no index at"),
        (["build", "--videos", "{missing}", "--db", "{db}"], "does not exist"),
        (["build", "--videos", "{videos}", "--db", "{db}", "--model", "NoSuchNet"], "Unknown model"),
        (["build", "--videos", "{videos}", "--db", "{db}", "--frames", "uniform:99"], "Unknown frame strategy"),
        (["evaluate", "--db", "{db}", "--prompt", "no placeholder"], "placeholder"),
    ],
)
def test_user_errors_are_one_line(
    cli_index: dict, video_root: Path, args: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    """In-process (same code as the subprocess path, without paying the interpreter's start-up each time)."""
    values = {"db": str(cli_index["db"]), "missing": str(cli_index["work"] / "missing"), "videos": str(video_root)}
    assert main([a.format(**values) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def _import_lines(stderr: str) -> tuple[set[str], list[str]]:
    """The modules ``-X importtime`` reports, and the other lines of stderr (what the user sees)."""
    modules = {m.group(1) for m in re.finditer(r"^import time:.*\|\s*([\w.]+)\s*$", stderr, re.MULTILINE)}
    return modules, [line for line in stderr.splitlines() if not line.startswith("import time:")]


def _model_library(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in ("torch", "open_clip")}


@pytest.mark.parametrize("offline", ["HF_HUB_OFFLINE", "no route to the hub"])
def test_offline_default_model_is_one_line(tmp_path: Path, video_root: Path, offline: str) -> None:
    """The weights are looked for in the (empty) cache and the hub asked once, before the videos are read
    or a store is made: one line, not the hub client's retries (a closed port stands for no internet)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HOME": str(tmp_path / "hf")}
    if offline == "HF_HUB_OFFLINE":
        env["HF_HUB_OFFLINE"] = "1"
    else:
        env.pop("HF_HUB_OFFLINE", None)
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    db, out = tmp_path / "db", tmp_path / "o"
    result = subprocess.run(
        [sys.executable, "-m", "core", "build", "--videos", str(video_root), "--db", str(db), "--output", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: The weights of ViT-B-32-quickgelu")
    assert "(pretrained 'openai')" in result.stderr and not db.exists() and not out.exists()


def test_a_second_build_is_refused_before_the_model_library_is_imported(tmp_path: Path, video_root: Path) -> None:
    """The lock is held here; the build sees it first: one line, and neither torch nor open_clip imported."""
    db = tmp_path / "db"
    with BuildLock(db, owner="the test"):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "core", "build", "--videos", str(video_root), "--db", str(db),
             "--output", str(tmp_path / "o"), "--model-config", str(CONFIG), "--pretrained", "none"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    modules, said = _import_lines(result.stderr)
    assert result.returncode == 2 and len(said) == 1, said
    assert said[0].startswith(f"error: Another build is already running on {db}")
    assert "core.app" in modules and not _model_library(modules)


def test_the_app_refuses_a_locked_build_before_loading_the_model(
    tmp_path: Path, video_root: Path, tiny_spec: ModelSpec
) -> None:
    loaded: list[ModelSpec] = []

    def loader(spec: ModelSpec, device: str) -> Any:
        loaded.append(spec)
        raise AssertionError("the model must not load while another build holds the index")

    explorer = Explorer(output=tmp_path / "o", cache=ProcessCache(model_loader=loader))
    request = BuildRequest(videos=str(video_root), db=str(tmp_path / "db"), output=str(tmp_path / "o"), spec=tiny_spec)
    with BuildLock(tmp_path / "db"), pytest.raises(IndexLockedError, match="Another build is already running"):
        explorer.build(request)
    assert loaded == [] and not (tmp_path / "db" / "chroma.sqlite3").exists()


def test_info_imports_no_model_library(cli_index: dict) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "core", "info", "--db", str(cli_index["db"])],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    modules, said = _import_lines(result.stderr)
    assert result.returncode == 0 and said == [], said
    assert "uniform:2" in result.stdout and "chromadb" in modules and not _model_library(modules)


def test_demo_model_shows_its_progress(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["demo-model", "--out", str(tmp_path / "demo"), "--classes", "2", "--steps", "3"]) == 0
    captured = capsys.readouterr()
    assert "Training the demo model" in captured.err and "3/3" in captured.err
    assert (tmp_path / "demo" / "tiny_clip.pt").is_file() and "--pretrained" in captured.out


def test_evaluate_accepts_output_like_search_and_report(cli_index: dict, tmp_path: Path) -> None:
    """--output is where evaluate's files go (its runs, with a Chroma server); next to an embedded index the
    runs stay in the index folder, where `runs` finds them whatever --output says."""
    db, out = str(cli_index["db"]), str(tmp_path / "out")
    assert main(["evaluate", "--db", db, "--output", out, "--pooling", "max", "--json", str(tmp_path / "m.json")]) == 0
    runs = json.loads((tmp_path / "m.json").read_text())
    assert main(["runs", "--db", db, "--output", out, "--json", str(tmp_path / "runs.json")]) == 0
    saved = json.loads((tmp_path / "runs.json").read_text())
    assert runs["settings"]["pooling"] == "max" and any(row["pooling"] == "max" for row in saved)


def test_a_long_query_is_shown_short_with_one_notice(cli_index: dict, capsys: pytest.CaptureFixture) -> None:
    text = "someone juggling fire " * 230  # 5,060 characters
    assert main(["search", text, "--db", str(cli_index["db"]), "--k", "2"]) == 0
    out = capsys.readouterr().out
    query = next(line for line in out.splitlines() if line.startswith("Query:"))
    assert len(query) < 200 and "(5,059 characters)" in query and text[:40] in query
    assert out.count("reads only the first 32 tokens") == 1  # the tiny model's text context
    assert main(["search", "someone juggling fire", "--db", str(cli_index["db"]), "--k", "2"]) == 0
    assert "reads only the first" not in capsys.readouterr().out


def test_folder_of_broken_files_only(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    make_broken_files(tmp_path / "videos" / "tackling")
    code = main(
        [
            "build",
            "--videos",
            str(tmp_path / "videos"),
            "--db",
            str(tmp_path / "db"),
            "--output",
            str(tmp_path / "o"),
            "--model-config",
            str(CONFIG),
            "--pretrained",
            str(tiny_checkpoint),
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert "skipped 3" in captured.out and "no usable video" in captured.err


def test_grid_in_one_command(cli_index: dict) -> None:
    target = cli_index["work"] / "grid.json"
    result = run_cli(
        "evaluate", "--db", str(cli_index["db"]), "--all-prompt-sets", "--all-poolings", "--json", str(target)
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(target.read_text())
    assert set(data) >= EVALUATE_KEYS and len(data["grid"]) == 12
    combos = {(g["settings"]["prompt_set"], g["settings"]["pooling"]) for g in data["grid"]}
    assert len(combos) == 12
    runs = (cli_index["db"] / "runs.jsonl").read_text().splitlines()
    assert len(runs) >= 12


def test_reports_and_hostile_search_stay_inside_output(cli_index: dict, capsys: pytest.CaptureFixture) -> None:
    out = cli_index["work"] / "reports"
    assert main(["report", "--db", str(cli_index["db"]), "--output", str(out)]) == 0
    for name in ("results_kinetics.html", "similarity_distribution.png", "similarity_distribution.html"):
        assert (out / name).stat().st_size > 1000
    for query in ("<script>alert(1)</script>", "../../x", "/etc/passwd", "a" * 5000):
        assert main(["search", query, "--db", str(cli_index["db"]), "--html", "--output", str(out)]) == 0
    written = sorted(p.name for p in out.iterdir() if p.name.startswith("search_results_"))
    assert len(written) == 4 and all(len(name) < 100 for name in written)
    assert not (cli_index["work"] / "x").exists() and all(p.parent == out for p in out.iterdir())
    page = next(p for p in out.iterdir() if "script" in p.name).read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_runs_command_lists_and_compares(cli_index: dict, capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", "--db", str(cli_index["db"]), "--pooling", "max"]) == 0
    capsys.readouterr()
    assert main(["runs", "--db", str(cli_index["db"]), "--json", "-"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["id"] == "reference-study" and len(rows) >= 2
    a, b = rows[1]["id"], rows[-1]["id"]
    assert main(["runs", "--db", str(cli_index["db"]), "--compare", a, b]) == 0
    assert "juggling fire" in capsys.readouterr().out
    assert main(["runs", "--db", str(cli_index["db"]), "--compare", a, "nope"]) == 2
