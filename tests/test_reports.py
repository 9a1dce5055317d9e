"""Reports: self-contained, and every user-supplied string escaped."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from core.analysis.evaluation import evaluate_contents
from core.analysis.reports import STYLE, metrics_csv, per_class_csv, per_video_csv, results_html, search_html
from core.analysis.search import SearchHit
from core.store.catalog import open_index
from core.store.index import connect

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
    thumbnails = [src for src in parsed.images if src.startswith("data:image/jpeg")]
    assert len(thumbnails) == 12 and len(parsed.images) == 13  # and the histogram
    assert "precision@1" in page
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


def test_one_histogram_definition_drawn_by_the_figure_and_the_reports(
    tmp_path: Path, built_index: dict, tiny_model
) -> None:
    """The Plotly figure draws the shared bins, colours and labels; the results page embeds the very PNG the
    report writes (no hand-drawn SVG of its own, with bins of its own)."""
    import base64

    from core.analysis.plots import histogram_data, similarity_histogram
    from core.analysis.reports import HISTOGRAM_PNG, RESULTS_PAGE, write_reports

    contents = open_index(connect(built_index["db"])).contents()
    evaluation = evaluate_contents(contents, tiny_model, prompts=["a video of {label}"])
    report = evaluation.report
    data = histogram_data(report)
    figure = similarity_histogram(report)
    bars = [trace for trace in figure.data if trace.type == "bar"]
    assert [b.name for b in bars] == [s.label for s in data.series]
    assert [b.marker.color for b in bars] == [s.colour for s in data.series]
    for bar, series in zip(bars, data.series, strict=True):
        assert np.array_equal(bar.x, (data.edges[:-1] + data.edges[1:]) / 2) and np.array_equal(bar.y, series.density)
    assert figure.layout.xaxis.title.text == data.x_title and figure.layout.yaxis.title.text == data.y_title
    assert {s.name for s in data.series} == {"correct", "incorrect"}
    assert any(f"mean {report.mean_similarity_correct:.3f}" in s.label for s in data.series)

    written = write_reports(evaluation, tmp_path)
    page = (tmp_path / RESULTS_PAGE).read_text(encoding="utf-8")
    assert "<svg" not in page
    [png] = [src for src in parse(page).images if src.startswith("data:image/png;base64,")]
    assert base64.b64decode(png.split(",", 1)[1]) == (tmp_path / HISTOGRAM_PNG).read_bytes()
    assert written["histogram_png"] == tmp_path / HISTOGRAM_PNG
