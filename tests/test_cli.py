"""``python -m core`` end to end, in subprocesses, exactly as other tools call it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from core.cli import main
from tests.helpers import EVALUATE_KEYS, make_broken_files, run_cli
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
    # The progress bar's time left is in the app's format (core.clock.format_duration), not tqdm's own clock.
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
        (["search", "fire", "--k", "0", "--db", "{db}"], "at least 1"),
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


def test_offline_default_model_is_one_line(tmp_path: Path, video_root: Path) -> None:
    result = run_cli(
        "build", "--videos", str(video_root), "--db", str(tmp_path / "db"), "--output", str(tmp_path / "o")
    )
    assert result.returncode == 2
    assert "ViT-B-32-quickgelu (pretrained 'openai')" in result.stderr and "Traceback" not in result.stderr


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
