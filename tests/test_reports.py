"""Reports: self-contained, and every user-supplied string escaped."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from core.evaluation import evaluate_contents
from core.index import connect, open_index
from core.reports import metrics_csv, per_class_csv, per_video_csv, results_html, safe_report_name, search_html
from core.search import SearchHit

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


def test_safe_report_names() -> None:
    names = {safe_report_name("search_results", q) for q in ("../../etc/passwd", "a/b", "a b", "a_b", "", "é" * 500)}
    assert len(names) == 6
    for name in names:
        assert "/" not in name and ".." not in name and "\\\\" not in name
        assert name.startswith("search_results_") and name.endswith(".html") and len(name) < 100
