"""Hostile inputs by category: each one is a sentence (exit 2, or the app's warning), never a traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.build import resolve_workers
from core.cli import build_parser
from core.errors import UserError
from core.limits import RANGES, WORKERS_PER_CORE
from core.paths import confine
from core.requests import EvalSettings
from core.runtime import usable_cores
from tests.helpers import ROOT

# --- URL parameters and app fields ---

_URL_TEMPLATES_1000 = [f"a video of {{label}}, take {i}" for i in range(1000)]
_URL_TEMPLATES_60 = [f"a video of {{label}}, take {i}" for i in range(60)]
# (the ?settings= value, a phrase its one sentence holds)
_URL_BAD_LINKS = [
    ('{"prompts":5}', "prompts must be a text or a list of texts"),
    ('{"prompts":["a {label}", 3]}', "prompts must be a text or a list of texts"),
    ('{"prompts":{"a":1}}', "prompts must be a text or a list of texts"),
    ('{"pooling":[1]}', "pooling must be a text"),
    ('{"classes":null}', "classes must be a text"),
    ('{"pooling":"median"}', "Unknown pooling"),
    ("[" * 5000 + "]" * 5000, "nest too deeply"),
    ('{"prompts":' + "[" * 5000 + "]" * 5000 + "}", "nest too deeply"),
    (json.dumps({"prompts": _URL_TEMPLATES_1000, "classes": "all"}), "at most 100"),
    (json.dumps({"prompts": ["{label} " + "x" * 600]}), "at most 500 characters"),
    (json.dumps({"prompts": _URL_TEMPLATES_60, "classes": "all"}), "prompts to encode"),
    ("x" * 40_000, "characters long"),
    ('{"prompts":["a {label}"],"extra":{"deep":[[[1]]]}}', "unknown keys (extra)"),
    ("not json", "not valid JSON"),
    ("[1, 2]", "not an object"),
]


def _url_one_sentence(text: str) -> None:
    assert text and "\n" not in text and "Traceback" not in text, text


@pytest.mark.parametrize(("link", "phrase"), _URL_BAD_LINKS, ids=lambda v: str(v)[:30])
def test_url_a_bad_settings_link_is_one_sentence(link: str, phrase: str) -> None:
    with pytest.raises(UserError) as caught:
        EvalSettings.loads(link)
    _url_one_sentence(str(caught.value))
    assert phrase in str(caught.value)


def test_url_good_settings_links_still_open() -> None:
    for settings in (
        EvalSettings(),
        EvalSettings(prompts=("kinetics-ensemble",), pooling="max", label_mode="strip", classes="all"),
        EvalSettings(prompts=tuple(_URL_TEMPLATES_60), classes="present"),
    ):
        assert EvalSettings.loads(settings.dumps()) == settings


@pytest.mark.parametrize("what", ["The index folder", "The output folder", "The videos folder"])
def test_url_a_nul_byte_in_a_path_is_refused_by_confine(tmp_path: Path, what: str) -> None:
    for roots in ([tmp_path], None):
        with pytest.raises(UserError) as caught:
            confine(f"{tmp_path}/db\x00x", roots, what)
        _url_one_sentence(str(caught.value))
        assert what in str(caught.value) and "NUL byte" in str(caught.value)


def _url_app(db: Path, output: Path, roots: list[Path]):
    from streamlit.testing.v1 import AppTest

    from tests.helpers import ROOT

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.session_state["db"] = str(db)
    at.session_state["output"] = str(output)
    at.session_state["roots"] = [str(r.resolve()) for r in roots]
    return at


def _url_page(at, page: str):
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("field", ["db_input", "output_input"])
def test_url_a_nul_byte_in_a_sidebar_folder_is_one_error(tmp_path: Path, field: str) -> None:
    at = _url_page(_url_app(tmp_path / "db", tmp_path / "out", [tmp_path]), "pages/build.py")
    at.text_input(key=field).input(f"{tmp_path}/x\x00y").run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "NUL byte" in errors[0], errors
    _url_one_sentence(errors[0])
    assert at.session_state[field.removesuffix("_input")] == str(tmp_path / ("db" if field == "db_input" else "out"))


def test_url_a_nul_byte_in_the_build_pages_videos_folder_is_one_error(tmp_path: Path) -> None:
    at = _url_page(_url_app(tmp_path / "db", tmp_path / "out", [tmp_path]), "pages/build.py")
    at.text_input(key="videos_input").input(f"{tmp_path}/videos\x00").run()
    next(b for b in at.button if b.label == "Check the source").click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "The videos folder" in errors[0] and "NUL byte" in errors[0], errors


@pytest.mark.parametrize(
    "link",
    [
        '{"prompts":5}',
        "[" * 5000 + "]" * 5000,
        json.dumps({"prompts": _URL_TEMPLATES_1000, "classes": "all"}),
        json.dumps({"prompts": _URL_TEMPLATES_60, "classes": "all"}),
    ],
    ids=["prompts-number", "nested", "1000-templates-all", "60-templates-all"],
)
def test_url_a_bad_link_shows_one_warning_and_the_default_view(built_index: dict, link: str) -> None:
    from core.prompts import DEFAULT_PROMPT, PROMPT_SETS

    at = _url_app(built_index["db"], built_index["output"], [built_index["db"].parent])
    at.query_params["settings"] = link
    at = _url_page(at, "pages/metrics.py")
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1, warnings
    _url_one_sentence(warnings[0])
    assert at.radio(key="pooling").value == "mean" and at.radio(key="classes").value == "present"
    assert at.text_area(key="templates").value == "\n".join(PROMPT_SETS[DEFAULT_PROMPT].templates)
    assert any(m.label == "precision@1" for m in at.metric)  # the default view is evaluated and shown


def test_url_the_cost_cap_holds_in_the_application_layer(built_index: dict, tiny_model) -> None:
    """Typed templates (the Metrics page's box, the CLI's --prompt) meet the same cap as a link."""
    from core.app import Explorer, IndexRef, ProcessCache

    explorer = Explorer(output=built_index["output"], cache=ProcessCache(model_loader=lambda *_: tiny_model))
    settings = EvalSettings(prompts=tuple(_URL_TEMPLATES_60), classes="all")
    with pytest.raises(UserError) as caught:
        explorer.evaluate(IndexRef(db=str(built_index["db"])), settings)
    _url_one_sentence(str(caught.value))
    assert "60 templates × 700 classes" in str(caught.value)


def test_url_a_nul_byte_in_an_uploads_name_or_label_is_harmless(tmp_path: Path) -> None:
    from core.app import Explorer
    from core.samples import write_clip

    clip = write_clip(tmp_path / "src" / "clip.mp4", (20, 200, 20), n_frames=6, size=(64, 48), fps=10)
    explorer = Explorer(output=tmp_path / "out", roots=[tmp_path])
    saved = explorer.save_upload("C:\\clips\\my\x00clip.mp4", clip.read_bytes(), tmp_path / "videos", "jug\x00gling")
    assert saved.is_file() and "\x00" not in str(saved) and saved.parent.parent == (tmp_path / "videos").resolve()
    with pytest.raises(UserError) as caught:
        explorer.save_upload("clip.mp4", clip.read_bytes(), f"{tmp_path}/videos\x00", "juggling")
    _url_one_sentence(str(caught.value))
    assert "NUL byte" in str(caught.value)


# --- arguments ---


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
