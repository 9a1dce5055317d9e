"""Hostile inputs by category: each one is a sentence (exit 2, or the app's warning), never a traceback."""

from __future__ import annotations

# --- arguments ---
import os
import re
import subprocess
import sys

import pytest

from core.build import resolve_workers
from core.cli import build_parser
from core.errors import UserError
from core.limits import RANGES, WORKERS_PER_CORE
from core.runtime import usable_cores
from tests.helpers import ROOT

_ARGS_HEAVY = ("torch", "open_clip", "chromadb")  # what an argument error must not wait for
_ARGS_TOO_MANY_WORKERS = str(WORKERS_PER_CORE * usable_cores() + 1)
_ARGS_PAIRS = {  # (flag, a value it must refuse) of the commands with several numeric flags
    "loadtest": [("--threads", "0"), ("--requests", "0"), ("--seconds", "0"), ("--seconds", "nan"), ("--k", "0")],
    "download": [("--per-class", "0"), ("--jobs", "0"), ("--jobs", "1000"), ("--retries", "-1"), ("--retries", "99")],
    "sample-videos": [("--classes", "0"), ("--classes", "51"), ("--per-class", "0"), ("--frames", "0")],
}
# (the command before the flag, the flag, a value it must refuse)
_ARGS_BAD = [
    *[(["build", "--videos", "v"], "--batch-size", v) for v in ("-5", "0", "4097", "1.5", "nan", "abc")],
    *[(["build", "--videos", "v"], "--workers", v) for v in ("0", "-1", _ARGS_TOO_MANY_WORKERS, "2.5", "many")],
    *[(["search", "x"], "--k", v) for v in ("0", "-3", "1001", "inf", "1e3")],
    *[(["search", "x"], "--min-similarity", v) for v in ("5", "1.01", "-1.5", "nan", "inf")],
    *[(["search", "x", "--moments"], "--margin", v) for v in ("nan", "inf", "2.5", "-0.1")],
    *[(["loadtest"], flag, v) for flag, v in _ARGS_PAIRS["loadtest"]],
    *[(["subset"], flag, "0") for flag in ("--per-class", "--candidates")],
    *[(["download"], flag, v) for flag, v in _ARGS_PAIRS["download"]],
    *[(["sample-videos"], flag, v) for flag, v in _ARGS_PAIRS["sample-videos"]],
    *[(["demo-model"], flag, "0") for flag in ("--classes", "--steps")],
    *[(["info"], "--chroma-port", v) for v in ("0", "70000")],
]


def _args_run(*args: str) -> subprocess.CompletedProcess:
    """``python -X importtime -m core ARGS``: its exit status, stdout, and stderr (import lines included)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "core", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _args_imported(stderr: str) -> set[str]:
    """The modules -X importtime reports as imported."""
    return {m.group(1) for m in re.finditer(r"^import time:.*\|\s*([\w.]+)\s*$", stderr, re.MULTILINE)}


def _args_said(stderr: str) -> list[str]:
    """stderr without the import-time lines: what the user sees."""
    return [line for line in stderr.splitlines() if not line.startswith("import time:")]


def _args_heavy(stderr: str, heavy: tuple[str, ...] = _ARGS_HEAVY) -> set[str]:
    return {name for name in _args_imported(stderr) if name.split(".")[0] in heavy}


def _args_id(value: object) -> str:
    return " ".join(value) if isinstance(value, list) else str(value)


@pytest.mark.parametrize(("command", "flag", "value"), _ARGS_BAD, ids=_args_id)
def test_args_a_number_out_of_range_is_one_sentence_before_any_heavy_import(
    command: list[str], flag: str, value: str
) -> None:
    result = _args_run(*command, f"{flag}={value}")
    said = _args_said(result.stderr)
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(said) == 1 and said[0].startswith(f"error: {flag} must be "), said
    assert "Traceback" not in result.stderr and not _args_heavy(result.stderr)


def test_args_search_k_0_imports_neither_torch_nor_open_clip_nor_chromadb() -> None:
    """The issue's own check: ``python -X importtime -m core search x --k 0``."""
    result = _args_run("search", "x", "--k", "0")
    assert result.returncode == 2 and _args_said(result.stderr) == [
        "error: --k must be a whole number from 1 to 1000, not 0: see python -m core search --help."
    ]
    assert _args_imported(result.stderr) and not _args_heavy(result.stderr)


@pytest.mark.parametrize("args", [["--help"], ["build", "--help"], ["build"], ["search", "x", "--bogus"]])
def test_args_help_and_argument_errors_import_nothing_heavy(args: list[str]) -> None:
    result = _args_run(*args)
    assert result.returncode == (0 if "--help" in args else 2)
    assert "Traceback" not in result.stderr and not _args_heavy(result.stderr)
    if result.returncode == 2:
        assert len(_args_said(result.stderr)) == 1


@pytest.mark.parametrize(
    ("args", "key", "expected"),
    [
        (["build", "--videos", "v", "--batch-size", "1"], "batch_size", 1),
        (["build", "--videos", "v", "--batch-size", "4096"], "batch_size", 4096),
        (["build", "--videos", "v", "--workers", "auto"], "workers", "auto"),
        (["build", "--videos", "v", "--workers", "1"], "workers", 1),
        (["search", "x", "--min-similarity", "-1"], "min_similarity", -1.0),
        (["search", "x", "--min-similarity", "0.25"], "min_similarity", 0.25),
        (["search", "x", "--margin", "0"], "margin", 0.0),
        (["search", "x", "--k", "1000"], "k", 1000),
        (["download", "--retries", "0"], "retries", 0),
    ],
)
def test_args_values_at_the_bounds_are_taken(args: list[str], key: str, expected: object) -> None:
    value = getattr(build_parser().parse_args(args), key)
    assert value == expected and type(value) is type(expected)


def test_args_the_build_checks_the_same_ranges_whatever_the_front_door() -> None:
    """A request made by the app (or a script) meets the ranges the CLI's flags have: no silent default."""
    from core.build import run_build
    from core.requests import BuildRequest

    for bad in (0, -5):
        with pytest.raises(UserError, match=r"^--batch-size must be a whole number from 1 to 4096"):
            run_build(BuildRequest(videos="nowhere", batch_size=bad))
    with pytest.raises(UserError, match=r"^--workers must be"):
        resolve_workers(int(_ARGS_TOO_MANY_WORKERS))
    assert resolve_workers("2") == 2 and resolve_workers("auto") >= 1
    assert RANGES["workers"].check("auto") == "auto"
