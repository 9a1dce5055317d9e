"""The Search page's query features (issue 16) in AppTest: an image query, the + / − list, *More like
this*, moments, the cut-offs and the score histogram."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from tests.test_app import make_app, run_page
from tests.tiny_model import COLOURS


def _labels(at) -> list[str]:
    return [m.value.split("**")[1] for m in at.main.markdown if m.value.startswith("**") and "  \n" in m.value]


def _search(at, text: str):
    at.text_input(key="query").input(text)
    return at.form_submit_button[0].click().run()


def test_an_image_query_from_the_page(built_index: dict, tmp_path: Path) -> None:
    at = run_page(make_app(built_index["db"], built_index["output"], roots=[built_index["db"].parent, tmp_path]),
                  "pages/search.py")  # fmt: skip
    image = tmp_path / "blue.png"
    Image.fromarray(np.full((40, 60, 3), COLOURS["wading through water"], np.uint8)).save(image)
    at.session_state["query_image_path"] = str(image)  # what an upload leaves (AppTest cannot upload)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert _labels(at)[:2] == ["wading through water"] * 2
    assert any(c.value.startswith("Image query: blue") for c in at.caption)
    assert any(m.value.startswith("Query: **") and "image blue" in m.value for m in at.main.markdown)


def test_plus_minus_terms_and_more_like_this(built_index: dict) -> None:
    at = run_page(make_app(built_index["db"], built_index["output"]), "pages/search.py")
    at.selectbox(key="term_sign").select("−")
    at.text_input(key="term_text").input("golf chipping")
    next(b for b in at.button if b.label == "Add term").click().run()
    assert at.session_state["terms"] == [(-1, "golf chipping")]
    _search(at, "juggling fire")
    assert not at.exception, [e.value for e in at.exception]
    assert any("juggling fire" in m.value and "−" in m.value for m in at.main.markdown if "Query:" in m.value)
    assert _labels(at)[-1] == "golf chipping"  # subtracted: last (one frame per video, 12 videos)
    first_video = next(m.value for m in at.main.markdown if m.value.startswith("**")).split("  \n")[1]
    like = next(b for b in at.button if b.label == "More like this")
    like.click().run()
    assert at.session_state["like"][0] == first_video.replace("\\", "")
    assert any("More like frame" in c.value for c in at.caption)
    assert at.session_state["terms"] == []  # that frame alone: the terms went with the text
    at.text_input(key="term_text").input("golf chipping")
    next(b for b in at.button if b.label == "Add term").click().run()
    assert at.session_state["terms"] == [(-1, "golf chipping")]
    at.button(key="remove-term-0").click().run()
    assert at.session_state["terms"] == []


def test_moments_cut_offs_and_the_histogram(built_index: dict) -> None:
    at = run_page(make_app(built_index["db"], built_index["output"]), "pages/search.py")
    at.toggle(key="moments").set_value(True)
    _search(at, "a video of a person juggling fire.")
    assert not at.exception, [e.value for e in at.exception]
    plays = [b for b in at.button if b.label == "▶ Play the moment"]
    assert len(plays) == 12 and _labels(at)[:2] == ["juggling fire"] * 2
    assert any("–" in c.value and re.search(r"\b\d+ frames?\b", c.value) for c in at.caption)
    assert not any("(s)" in c.value for c in at.caption)
    assert at.get("plotly_chart")  # the score distribution
    at.number_input(key="min_similarity").set_value(0.5)
    at.form_submit_button[0].click().run()
    assert _labels(at) == ["juggling fire"] * 2  # only its two videos reach 0.5
    at.number_input(key="min_similarity").set_value(None)
    at.toggle(key="moments").set_value(False)
    at.toggle(key="adaptive").set_value(True)
    at.form_submit_button[0].click().run()
    # Six classes of equal size: nothing stands out from the rest, and the page says so.
    assert any("passed the cut-off" in i.value for i in at.info)
    assert any(c.value.startswith("adaptive: similarity ≥") for c in at.caption)
