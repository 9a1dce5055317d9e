"""Hostile inputs by category: each one is a sentence (exit 2, or the app's warning), never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import UserError

# --- URL parameters and app fields ---
from core.paths import confine
from core.requests import EvalSettings

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
