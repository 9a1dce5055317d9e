"""Reports: self-contained, and every user-supplied string escaped."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from core.analysis.evaluation import evaluate_contents
from core.analysis.reports import STYLE, metrics_csv, per_class_csv, per_video_csv, results_html, search_html
from core.analysis.search import SearchHit
from core.store.index import connect, open_index

HOSTILE = '<script>alert("x")</script> & "quotes" \'single\''


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.scripts = 0
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)
        self.scripts += tag == "script"
        if tag == "img":
            self.images.append(dict(attrs)["src"])


def parse(text: str) -> Collector:
    collector = Collector()
    collector.feed(text)
    collector.close()
    return collector


def test_search_page_escapes_the_query_and_labels(tmp_path: Path, built_index: dict) -> None:
    frame = next((built_index["output"] / "frames").rglob("*.jpg"))
    hits = [
        SearchHit(HOSTILE, HOSTILE, str(frame), 1.5, 0.25, 3, "/v.mp4"),
        SearchHit("b", "x", "/none.jpg", 0, -0.1, 0, ""),
    ]
    page = search_html(HOSTILE, hits)
    parsed = parse(page)
    assert parsed.scripts == 0 and "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert parsed.images[0].startswith("data:image/jpeg;base64,")  # self-contained
    assert "no image" in page  # a missing thumbnail does not break the page


def test_results_page_and_csv(built_index: dict, tiny_model) -> None:
    contents = open_index(connect(built_index["db"])).contents()
    contents.labels = np.array(
        [HOSTILE if label == "juggling fire" else label for label in contents.labels], dtype=object
    )
    evaluation = evaluate_contents(contents, tiny_model, prompts=["a video of {label}"])
    page = results_html(evaluation, title=HOSTILE)
    parsed = parse(page)
    assert parsed.scripts == 0 and "<script>alert" not in page
    assert len(parsed.images) == 12 and all(src.startswith("data:image/jpeg") for src in parsed.images)
    assert "<svg" in page and "precision@1" in page
    assert metrics_csv(evaluation.report).splitlines()[0] == "metric,value,ci95_low,ci95_high"
    assert len(per_video_csv(evaluation).splitlines()) == 13
    assert HOSTILE.replace('"', '""') in per_class_csv(evaluation.report)


def test_thumbnails_keep_their_shape_and_long_ids_their_tooltip(built_index: dict) -> None:
    frame = next((built_index["output"] / "frames").rglob("*.jpg"))
    long_id = "a_very_long_folder_name_for_one_label/" + "x" * 200
    page = search_html("q", [SearchHit(long_id, "tackling", str(frame), 1.0, 0.5, 10, "/v.mp4")])
    rules = dict(re.findall(r"([^{}]+)\{([^}]*)\}", STYLE.replace("\n", "")))
    for selector in ("img.thumb", ".card img.thumb"):
        # Only bounds (max-width, max-height): a forced width or height would stretch the picture.
        assert not re.search(r"(?<![-\w])(width|height):(?!auto)", rules[selector]), rules[selector]
    assert "width:auto;height:auto" in rules["img.thumb"]  # the box follows the picture's own ratio
    assert "text-overflow:ellipsis" in rules[".card .vid"] and "min-width:0" in rules[".card"]
    assert f"class='muted vid' title='{long_id}'>{long_id}</div>" in page


def test_the_svg_histograms_mean_labels_stay_inside_the_picture() -> None:
    """A mean near the right edge (correct pairs score highest) had its label run past the edge, cut off."""
    from core.analysis.metrics import compute_metrics
    from core.analysis.reports import histogram_svg

    # Two videos, two classes: the correct similarities are the highest values, so their mean sits at the right.
    similarity = np.array([[0.9, 0.1], [0.05, 0.88]])
    report = compute_metrics(similarity, np.array([0, 1]), ["a", "b"])
    svg = histogram_svg(report, width=640)
    width = 640
    for match in re.finditer(r"<text ([^>]*)>(mean [^<]*)</text>", svg):
        attrs, text = match.groups()
        x = float(re.search(r'x="([\d.]+)"', attrs).group(1))
        size = float(re.search(r'font-size="([\d.]+)"', attrs).group(1))
        extent = 0.6 * size * len(text)  # a generous average glyph width
        start, end = (x - extent, x) if 'text-anchor="end"' in attrs else (x, x + extent)
        assert start >= 0 and end <= width, (text, start, end)
    assert "mean correct" in svg and "mean incorrect" in svg
