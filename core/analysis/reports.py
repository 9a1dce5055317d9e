"""HTML and PNG reports: the evaluation results page, the similarity histogram, search results.

Every page is self-contained (thumbnails and the histogram embedded as data URIs) so that it opens from
disk or a download; every string from a user or a file is HTML-escaped here, in one place.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from core.analysis.evaluation import Evaluation
from core.analysis.failures import FailureAnalysis, confused_samples
from core.analysis.metrics import MetricsReport
from core.analysis.moments import Moment
from core.analysis.plots import histogram_data, similarity_histogram
from core.analysis.search import SearchHit
from core.ground import plural, safe_name, write_bytes_atomic, write_text_atomic

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1f2933;background:#fff}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border-bottom:1px solid #e4e7eb;padding:.35rem .6rem;text-align:left;vertical-align:middle}
th{background:#f5f7fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.miss td{background:#fff5f5}td.vid{max-width:16rem;overflow-wrap:anywhere}
img.thumb{display:block;width:auto;height:auto;max-width:160px;max-height:120px;border-radius:4px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:1rem}
.card{border:1px solid #e4e7eb;border-radius:6px;padding:.5rem;min-width:0;overflow-wrap:anywhere}
.card img.thumb{max-width:100%;margin:0 auto .35rem}
.card .vid{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.muted{color:#616e7c;font-size:.85rem}
"""


def esc(value: object) -> str:
    """HTML-escape anything shown in a report (quotes included, for attributes)."""
    return html.escape(str(value), quote=True)


def safe_report_name(prefix: str, text: str, suffix: str = ".html") -> str:
    """``prefix_<safe name of text><suffix>``: one component, no ``..``, bounded, distinct texts never collide."""
    return f"{prefix}_{safe_name(text)}{suffix}"


def image_data_uri(path: str | Path, max_side: int = 200) -> str:
    """A small JPEG of an image file as a data URI ('' when the file is missing or unreadable)."""
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
            image.thumbnail((max_side, max_side))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=80)
    except (OSError, ValueError):
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(path: str, alt: str) -> str:
    uri = image_data_uri(path)
    return f'<img class="thumb" src="{uri}" alt="{esc(alt)}">' if uri else '<span class="muted">no image</span>'


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{esc(title)}</h1>{body}"
        f'<p class="muted">Generated {esc(datetime.now().strftime("%Y-%m-%d %H:%M"))} '
        "by the CLIP video-frame explorer.</p>"
        "</body></html>\n"
    )


def histogram_png_bytes(report: MetricsReport, width: int = 900, height: int = 480) -> bytes:
    """The similarity histogram (`histogram_data`, as the app's Plotly figure draws it) as a PNG, drawn
    with Pillow: Plotly's own image export needs a browser engine this tool does not ship."""
    data = histogram_data(report)
    edges = data.edges
    top = max([float(s.density.max(initial=0)) for s in data.series] + [1e-9])
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image, "RGBA")
    left, right, upper, lower = 60, width - 20, 20 + 14 * len(data.series), height - 60
    x0, x1 = float(edges[0]), float(edges[-1])

    def x(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * (right - left)

    def rgb(colour: str) -> tuple[int, int, int]:
        return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)

    for series in data.series:
        for i, d in enumerate(series.density):
            h = d / top * (lower - upper)
            draw.rectangle([x(edges[i]), lower - h, x(edges[i + 1]), lower], fill=(*rgb(series.colour), 140))
    draw.line([left, lower, right, lower], fill="black")
    draw.line([left, upper, left, lower], fill="black")
    for v in np.linspace(x0, x1, 6):
        draw.text((x(v) - 12, lower + 6), f"{v:.2f}", fill="black")
    for row, series in enumerate(reversed(data.series)):
        if math.isfinite(series.mean):
            draw.line([x(series.mean), upper, x(series.mean), lower], fill=rgb(series.colour), width=2)
        # The legend sits above the plot, as in the app: a label beside a line could run past the edge.
        draw.text((left, 6 + 14 * row), series.label, fill=rgb(series.colour))
    draw.text(((left + right) / 2 - 90, height - 30), data.x_title, fill="black")
    draw.text((4, upper), data.y_title, fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def metrics_rows(report: MetricsReport) -> list[tuple[str, str, str]]:
    """The global figures as (name, value, 95% interval) strings."""

    def ci(k: int) -> str:
        low, high = report.interval(k)
        return f"{low:.3f}–{high:.3f}"

    return [
        ("precision@1", f"{report.precision_at_1:.3f}", ci(1)),
        ("precision@3", f"{report.precision_at_3:.3f}", ci(3)),
        ("precision@5", f"{report.precision_at_5:.3f}", ci(5)),
        ("mean reciprocal rank", f"{report.mrr:.3f}", ""),
        ("Kinetics accuracy, mean(top-1, top-5)", f"{report.kinetics_accuracy:.3f}", ""),
        ("mean cosine, correct prompt", f"{report.mean_similarity_correct:.4f}", ""),
        ("mean cosine, incorrect prompts", f"{report.mean_similarity_incorrect:.4f}", ""),
        ("mean margin (correct − best incorrect)", f"{report.mean_margin:.4f}", ""),
        ("ROC-AUC, correct vs. incorrect pairs", f"{report.auc:.3f}", ""),
        ("videos", f"{report.n_videos}", ""),
        ("classes", f"{report.n_classes}", ""),
    ]


def failures_html(evaluation: Evaluation, failures: FailureAnalysis) -> str:
    """The failure analysis: the confusion matrix of the most-confused classes (each cell links to its
    videos, listed below it with thumbnails), the classes flagged as needing motion, the worst margins."""
    m = failures.heatmap
    parts = ["<h2>Failure analysis</h2>", *(f"<p class='muted'>{esc(n)}</p>" for n in failures.notes)]
    if m.classes:
        totals = m.counts.sum(axis=1)
        head = "".join(f"<th title='{esc(c)}'>{esc(c)}</th>" for c in m.classes)
        rows = []
        for i, true in enumerate(m.classes):
            cells = []
            for j, _predicted in enumerate(m.classes):
                n = int(m.counts[i, j])
                share = n / totals[i] if totals[i] else 0.0
                style = f"background:rgba(209,73,91,{share:.2f})"
                text = f"<a href='#pair-{i}-{j}'>{n}</a>" if n and i != j else str(n)
                cells.append(f"<td class='num' style='{style}'>{text}</td>")
            rows.append(f"<tr><th>{esc(true)}</th>{''.join(cells)}</tr>")
        parts.append(
            "<h3>Most-confused classes (rows: true label, columns: predicted; a number links to its videos)</h3>"
            f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"
        )
        position = {c: i for i, c in enumerate(m.classes)}
        for true, predicted, count in failures.pairs():
            cards = "".join(
                f"<div class='card'>{_img(r['frame_path'], r['video_id'])}"
                f"<div class='muted vid' title='{esc(r['video_id'])}'>{esc(r['video_id'])}</div></div>"
                for r in confused_samples(evaluation, true, predicted)
            )
            parts.append(
                f"<h4 id='pair-{position[true]}-{position[predicted]}'>{esc(true)} predicted as {esc(predicted)} "
                f"({count})</h4><div class='grid'>{cards}</div>"
            )
    else:
        parts.append("<p>No confusion: every video's true label ranks first.</p>")
    flags = "".join(f"<li>{esc(flag.describe())}</li>" for flag in failures.motion)
    parts.append(f"<h3>Classes that may need motion</h3>{f'<ul>{flags}</ul>' if flags else '<p>None flagged.</p>'}")
    worst = "".join(
        f"<div class='card'>{_img(v.frame_path, v.video_id)}<div><b>{esc(v.label)}</b></div>"
        f"<div class='muted'>best wrong: {esc(v.best_wrong)} · margin {v.margin:+.3f}</div>"
        f"<div class='muted vid' title='{esc(v.video_id)}'>{esc(v.video_id)}</div></div>"
        for v in failures.worst
    )
    parts.append(f"<h3>Worst videos (true class minus best wrong class)</h3><div class='grid'>{worst}</div>")
    return "".join(parts)


def results_html(
    evaluation: Evaluation,
    title: str = "CLIP results",
    max_rows: int | None = None,
    failures: FailureAnalysis | None = None,
    histogram_png: bytes | None = None,
) -> str:
    """Global metrics, the histogram, the per-video table (thumbnail, label, best prompts, scores), and
    with `failures` the failure analysis."""
    rep = evaluation.report
    settings = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in evaluation.settings.items())
    figures = "".join(
        f"<tr><th>{esc(k)}</th><td class='num'>{esc(v)}</td><td class='muted'>{esc(c and f'95% CI {c}')}</td></tr>"
        for k, v, c in metrics_rows(rep)
    )
    rows = evaluation.sample_rows(top=3)[: max_rows or None]
    body_rows = []
    for row in rows:
        tops = "<br>".join(f"{esc(label)} <span class='muted'>{score:.3f}</span>" for label, score in row["top"])
        body_rows.append(
            f"<tr class='{'' if row['correct'] else 'miss'}'><td class='vid'>{esc(row['video_id'])}</td>"
            f"<td>{_img(row['frame_path'], row['video_id'])}</td><td>{esc(row['label'])}</td>"
            f"<td>{esc(row['predicted'])}</td><td class='num'>{row['rank']}</td>"
            f"<td class='num'>{row['similarity_true']:.3f}</td><td>{tops}</td></tr>"
        )
    per_class = "".join(
        f"<tr><td>{esc(name)}</td><td class='num'>{rep.per_class[name]:.2f}</td>"
        f"<td class='num'>{rep.per_class_count[name]}</td></tr>"
        for name in sorted(rep.per_class, key=lambda n: (-rep.per_class[n], n))
    )
    shown = f" (first {len(rows)} of {rep.n_videos})" if len(rows) < rep.n_videos else ""
    png = base64.b64encode(histogram_png or histogram_png_bytes(rep)).decode("ascii")
    histogram_img = f'<img src="data:image/png;base64,{png}" alt="similarity histogram" style="max-width:100%">'
    body = (
        f"<h2>Settings</h2><table>{settings}</table>"
        f"<h2>Metrics</h2><table>{figures}</table>"
        f"<h2>Cosine similarity, correct vs. incorrect prompts</h2>{histogram_img}"
        f"<h2>Per video{esc(shown)}</h2><table><tr><th>video</th><th>frame</th><th>true label</th>"
        f"<th>best-matching prompt</th><th>rank of truth</th><th>cosine (truth)</th><th>top scores</th></tr>"
        f"{''.join(body_rows)}</table>"
        f"<h2>Per class</h2><table><tr><th>class</th><th>precision@1</th><th>videos</th></tr>{per_class}</table>"
    )
    if failures is not None:
        body += failures_html(evaluation, failures)
    return _page(title, body)


def search_html(
    query: str, hits: Sequence[SearchHit], title: str = "Search results", moments: Sequence[Moment] | None = None
) -> str:
    """A gallery of hits (thumbnail, label, video, timestamp, similarity) or of moments (the best frame,
    the segment's times, its score); the query escaped."""
    # A long video id is cut with an ellipsis in its card; the whole id is its tooltip.
    if moments is not None:
        cards = "".join(
            f"<div class='card'>{_img(m.frame_path, m.video_id)}<div><b>{esc(m.label)}</b></div>"
            f"<div class='muted vid' title='{esc(m.video_id)}'>{esc(m.video_id)}</div>"
            f"<div class='muted'>{m.start_s:.2f}–{m.end_s:.2f}s · best t={m.best_timestamp_s:.2f}s · "
            f"cosine {m.score:.4f} · {plural(m.frames, 'frame')}</div></div>"
            for m in moments
        )
        count = plural(len(moments), "moment")
    else:
        cards = "".join(
            f"<div class='card'>{_img(h.frame_path, h.video_id)}<div><b>{esc(h.label)}</b></div>"
            f"<div class='muted vid' title='{esc(h.video_id)}'>{esc(h.video_id)}</div>"
            f"<div class='muted'>t={h.timestamp_s:.2f}s · cosine {h.similarity:.4f}</div></div>"
            for h in hits
        )
        count = plural(len(hits), "result")
    body = f"<p>Query: <b>{esc(query)}</b> — {count}</p><div class='grid'>{cards}</div>"
    return _page(title, body)


def _csv(rows: Sequence[Sequence[object]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def metrics_csv(report: MetricsReport) -> str:
    """Global metrics, one per line: metric, value, 95% CI low, 95% CI high."""
    rows: list[list[object]] = [["metric", "value", "ci95_low", "ci95_high"]]
    for k in (1, 3, 5):
        low, high = report.interval(k)
        rows.append([f"precision_at_{k}", getattr(report, f"precision_at_{k}"), low, high])
    for name in ("mrr", "kinetics_accuracy", "mean_similarity_correct", "mean_similarity_incorrect", "mean_margin"):
        rows.append([name, getattr(report, name), "", ""])
    rows += [
        ["roc_auc", report.auc, "", ""],
        ["n_videos", report.n_videos, "", ""],
        ["n_classes", report.n_classes, "", ""],
    ]
    return _csv(rows)


def per_class_csv(report: MetricsReport) -> str:
    rows: list[list[object]] = [["class", "precision_at_1", "videos"]]
    rows += [[name, report.per_class[name], report.per_class_count[name]] for name in sorted(report.per_class)]
    return _csv(rows)


def per_video_csv(evaluation: Evaluation) -> str:
    rows: list[list[object]] = [["video_id", "label", "predicted", "correct", "rank", "similarity_true", "top3"]]
    for row in evaluation.sample_rows(top=3):
        top = "; ".join(f"{label}={score:.4f}" for label, score in row["top"])
        rows.append(
            [row["video_id"], row["label"], row["predicted"], row["correct"], row["rank"], row["similarity_true"], top]
        )
    return _csv(rows)


RESULTS_PAGE = "results_kinetics.html"
HISTOGRAM_PNG = "similarity_distribution.png"
HISTOGRAM_HTML = "similarity_distribution.html"


def write_reports(
    evaluation: Evaluation,
    output_dir: Path | str,
    title: str = "CLIP results",
    failures: FailureAnalysis | None = None,
) -> dict[str, Path]:
    """The reference study's three outputs, made safe: results page (with the failure analysis when
    given), static and interactive histograms."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = histogram_png_bytes(evaluation.report)  # drawn once: the file, and the picture in the results page
    interactive = similarity_histogram(evaluation.report).to_html(full_html=True, include_plotlyjs=True)
    page = results_html(evaluation, title=title, failures=failures, histogram_png=png)
    return {
        "results": write_text_atomic(out / RESULTS_PAGE, page),
        "histogram_png": write_bytes_atomic(out / HISTOGRAM_PNG, png),
        "histogram_html": write_text_atomic(out / HISTOGRAM_HTML, interactive),
    }


def write_search_report(
    query: str, hits: Sequence[SearchHit], output_dir: Path | str, moments: Sequence[Moment] | None = None
) -> Path:
    """``output_dir/search_results_<safe name>.html``; the name cannot leave `output_dir`."""
    out = Path(output_dir).resolve()
    path = (out / safe_report_name("search_results", query)).resolve()
    if path.parent != out:  # cannot happen with safe_report_name; checked because it guards the disk
        raise ValueError(f"refusing to write outside {out}")
    return write_text_atomic(path, search_html(query, hits, title="Search results", moments=moments))
