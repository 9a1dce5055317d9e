"""The Search page as a new user met it (issue 24, items 7 and 8): an empty query, *More like this*, an
uploaded image, a very long query, and the uploader's formats."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.analysis.query import IMAGE_FORMATS, IMAGE_SUFFIXES, read_query_image
from core.app import Explorer
from core.cli import main
from core.ground import QueryError
from tests.test_app import make_app, run_page
from tests.tiny_model import COLOURS


def _search(at, text: str):
    at.text_input(key="query").input(text)
    return at.form_submit_button[0].click().run()


def _header(at) -> str:
    return next(m.value for m in at.main.markdown if m.value.startswith("Query: "))


def test_an_empty_search_says_the_cli_sentence(built_index: dict, capsys: pytest.CaptureFixture) -> None:
    assert main(["search", "  ", "--db", str(built_index["db"])]) == 2
    sentence = capsys.readouterr().err.removeprefix("error: ").strip()
    at = run_page(make_app(built_index["db"], built_index["output"]), "pages/search.py")
    assert not at.warning  # nothing asked yet: no message
    _search(at, "   ")
    assert [w.value for w in at.warning] == [sentence]


def test_more_like_this_searches_that_frame_alone(built_index: dict) -> None:
    at = run_page(make_app(built_index["db"], built_index["output"]), "pages/search.py")
    at.session_state["terms"] = [(-1, "grass")]
    _search(at, "juggling fire")
    assert "juggling fire" in _header(at) and "grass" in _header(at)
    next(b for b in at.button if b.label == "More like this").click().run()
    assert not at.exception, [e.value for e in at.exception]
    header = _header(at)
    assert header.startswith("Query: **\\[frame") and "juggling fire" not in header and "grass" not in header
    assert at.text_input(key="query").value == "" and at.session_state["terms"] == []


def test_an_uploaded_image_searches_at_once_in_the_formats_the_message_names(built_index: dict) -> None:
    at = run_page(make_app(built_index["db"], built_index["output"]), "pages/search.py")
    uploader = at.get("file_uploader")[0].proto
    assert uploader.form_id == "", "inside the form, an upload waits for the Search button"
    assert sorted(uploader.type) == sorted(IMAGE_SUFFIXES)
    with pytest.raises(QueryError) as caught:
        read_query_image(b"not an image", "x.png")
    named = {"JPEG": (".jpg", ".jpeg"), "PNG": (".png",), "WebP": (".webp",), "BMP": (".bmp",), "GIF": (".gif",)}
    said = {fmt for fmt in IMAGE_FORMATS if fmt in str(caught.value)}
    assert sorted(s for fmt in said for s in named[fmt]) == sorted(IMAGE_SUFFIXES)


def test_the_search_header_names_the_uploaded_image(built_index: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    data = io.BytesIO()
    Image.fromarray(np.full((40, 60, 3), COLOURS["wading through water"], np.uint8)).save(data, format="PNG")
    explorer = Explorer(output=out)
    saved = explorer.save_query_image(data.getvalue(), "my pond.png")
    assert saved.name == "my pond.png" and saved.is_relative_to(out.resolve() / "queries")
    hostile = explorer.save_query_image(data.getvalue(), "../../../escape.png")
    assert hostile.is_relative_to(out.resolve() / "queries") and hostile.name == "escape.png"
    at = make_app(built_index["db"], out, roots=[built_index["db"].parent, tmp_path])
    at.session_state["query_image_path"] = str(saved)  # what an upload leaves (AppTest cannot upload)
    at = run_page(at, "pages/search.py")
    assert "image my pond\\.png" in _header(at)  # Markdown-escaped


def test_a_long_query_shows_its_start_and_says_clip_reads_only_its_first_tokens(built_index: dict) -> None:
    long = "a video of a person juggling fire at night " * 120  # over 5,000 characters
    at = run_page(make_app(built_index["db"], built_index["output"]), "pages/search.py")
    _search(at, long)
    assert not at.exception, [e.value for e in at.exception]
    assert len(_header(at)) < 300
    assert any("reads only the first 32 tokens" in c.value for c in at.caption)  # the tiny model's text context
    _search(at, "juggling fire")
    assert not any("reads only the first" in c.value for c in at.caption)


def test_playability_gives_the_video_s_natural_size(tmp_path: Path) -> None:
    """The dialog shows a video at its own width (not stretched), so the check reports the size."""
    from core.media.samples import write_clip
    from core.media.transcode import browser_playability, parse_video_stream

    clip = write_clip(tmp_path / "clip.mp4", (200, 30, 30), n_frames=4, size=(64, 48), fps=10)
    check = browser_playability(clip)
    assert (check.width, check.height) == (64, 48)
    line = "  Stream #0:0(und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709), 1080x1920, 30 fps\n"
    stream = parse_video_stream(line + "  Stream #0:1: Audio: aac, 44100 Hz, 640x480\n")
    assert stream is not None and (stream.width, stream.height) == (1080, 1920)
