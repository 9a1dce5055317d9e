"""Plotly figures of an evaluation: the correct-vs-incorrect similarity histogram, the runs, the sweep
and the confusions. Histograms are binned here with numpy: an index's millions of (video, class) pairs
are far too many points to ship to a browser.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from core.analysis.metrics import MetricsReport
from core.ground import plural

CORRECT_COLOUR = "#2a9d5c"
INCORRECT_COLOUR = "#d1495b"


@dataclass(frozen=True)
class HistogramSeries:
    """One side of the similarity histogram: its density per bin, colour, mean and legend text."""

    name: str
    density: np.ndarray
    colour: str
    mean: float
    count: int

    @property
    def label(self) -> str:
        # The mean is named in the legend (and drawn as a dashed line): a label on the plot would be cut
        # off at the edge of the data's range.
        shown_mean = f", mean {self.mean:.3f}" if np.isfinite(self.mean) else ""
        return f"{self.name} pairs ({self.count:,}){shown_mean}"


@dataclass(frozen=True)
class SimilarityHistogram:
    """The correct-vs-incorrect similarity histogram, defined once: the app's Plotly figure and the
    reports' PNG both draw these bins, colours and labels."""

    edges: np.ndarray
    series: tuple[HistogramSeries, ...]  # in drawing order: incorrect first, correct over it
    x_title: str = "cosine similarity (frame vs. prompt)"
    y_title: str = "density"


def histogram_data(report: MetricsReport, bins: int = 60) -> SimilarityHistogram:
    """Shared bin edges over the data's range and the density of correct and incorrect similarities."""
    values = [v for v in (report.similarities_correct, report.similarities_incorrect) if v.size]
    if values:
        low = float(min(v.min() for v in values))
        high = float(max(v.max() for v in values))
        if high - low < 1e-6:
            low, high = low - 0.05, high + 0.05
    else:
        low, high = -1.0, 1.0
    edges = np.linspace(low, high, bins + 1)

    def density(v: np.ndarray) -> np.ndarray:
        return np.histogram(v, bins=edges, density=True)[0] if v.size else np.zeros(bins)

    incorrect, correct = report.similarities_incorrect, report.similarities_correct
    return SimilarityHistogram(
        edges,
        (
            HistogramSeries("incorrect", density(incorrect), INCORRECT_COLOUR, report.mean_similarity_incorrect,
                            int(incorrect.size)),
            HistogramSeries("correct", density(correct), CORRECT_COLOUR, report.mean_similarity_correct,
                            int(correct.size)),
        ),
    )  # fmt: skip


def similarity_histogram(report: MetricsReport, bins: int = 60) -> go.Figure:
    """Overlaid densities of cosine similarity for correct and incorrect (video, prompt) pairs, means marked."""
    data = histogram_data(report, bins)
    edges = data.edges
    centres = (edges[:-1] + edges[1:]) / 2
    width = float(edges[1] - edges[0])
    fig = go.Figure()
    for series in data.series:
        fig.add_trace(
            go.Bar(
                x=centres,
                y=series.density,
                width=width,
                name=series.label,
                marker_color=series.colour,
                opacity=0.6,
                hovertemplate=f"{series.name}<br>cosine %{{x:.3f}}<br>density %{{y:.2f}}<extra></extra>",
            )
        )
        if np.isfinite(series.mean):
            fig.add_vline(x=series.mean, line_color=series.colour, line_dash="dash")
    fig.update_layout(
        barmode="overlay",
        # The data's own range: cosines never reach the axis' automatic padding for the mean labels.
        xaxis={"range": [float(edges[0]), float(edges[-1])]},
        xaxis_title=data.x_title,
        yaxis_title=data.y_title,
        legend={"orientation": "h", "y": -0.2},
        margin={"l": 40, "r": 20, "t": 40, "b": 40},
        height=420,
    )
    return fig


def runs_chart(rows: list[dict], reference: dict | None = None) -> go.Figure:
    """precision@1 and @3 per run with 95% intervals; the reference study's figures as dashed lines."""
    names = [row["name"] for row in rows]
    fig = go.Figure()
    for key, label, colour in (
        ("precision_at_1", "precision@1", "#2a6fdb"),
        ("precision_at_3", "precision@3", "#9bbcf0"),
    ):
        values = [row.get(key) for row in rows]
        low = [row.get("ci95", {}).get(key, [None, None])[0] for row in rows]
        high = [row.get("ci95", {}).get(key, [None, None])[1] for row in rows]
        fig.add_trace(
            go.Bar(
                x=names,
                y=values,
                name=label,
                marker_color=colour,
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [
                        h - v if h is not None and v is not None else 0 for h, v in zip(high, values, strict=True)
                    ],
                    "arrayminus": [
                        v - lo if lo is not None and v is not None else 0 for lo, v in zip(low, values, strict=True)
                    ],
                },
                hovertemplate=f"{label} %{{y:.3f}}<extra>%{{x}}</extra>",
            )
        )
    if reference:
        for key, label, dash in (
            ("precision_at_1", "reference precision@1", "dash"),
            ("precision_at_3", "reference precision@3", "dot"),
        ):
            # Named in the legend, not beside the line: a label on the plot would sit on the bars.
            fig.add_hline(y=reference[key], line_dash=dash, line_color="#d1495b")
            fig.add_trace(
                go.Scatter(
                    x=[None],
                    y=[None],
                    mode="lines",
                    line={"color": "#d1495b", "dash": dash},
                    name=f"{label} {reference[key]:.2f}",
                )
            )
    fig.update_layout(
        barmode="group",
        yaxis={"title": "precision", "range": [0, 1.05]},
        xaxis={"tickangle": -30, "automargin": True},
        legend={"orientation": "h", "y": 1.08, "x": 0},
        margin={"l": 40, "r": 20, "t": 30, "b": 40},
        height=440,
    )
    return fig


def score_histogram(scores: np.ndarray, cutoff: float | None, kept: int, bins: int = 80) -> go.Figure:
    """A query's similarity to every frame of the index (counts, log scale), the cut-off marked.

    Binned here: an index of 100,000 frames is one small bar chart, not 100,000 points.
    """
    scores = np.asarray(scores, dtype=np.float64)
    fig = go.Figure()
    if scores.size:
        low, high = float(scores.min()), float(scores.max())
        if cutoff is not None:
            low, high = min(low, cutoff), max(high, cutoff)
        if high - low < 1e-6:
            low, high = low - 0.05, high + 0.05
        counts, edges = np.histogram(scores, bins=bins, range=(low, high))
        centres = (edges[:-1] + edges[1:]) / 2
        above = centres >= (cutoff if cutoff is not None else np.inf)
        fig.add_trace(
            go.Bar(
                x=centres, y=counts, width=float(edges[1] - edges[0]),
                marker_color=[CORRECT_COLOUR if a else "#8d99ae" for a in above], name="frames",
                customdata=[plural(int(c), "frame") for c in counts],
                hovertemplate="cosine %{x:.3f}<br>%{customdata}<extra></extra>",
            )
        )  # fmt: skip
    if cutoff is not None:
        fig.add_vline(x=cutoff, line_color=INCORRECT_COLOUR, line_dash="dash")
        # The cut-off is named in the title: an annotation at the line is cut off at the plot's edge.
    title = (
        f"{plural(scores.size, 'frame')}; cut-off {cutoff:.4f}, {kept:,} kept"
        if cutoff is not None
        else (f"{plural(scores.size, 'frame')}; no cut-off")
    )
    fig.update_layout(
        title={"text": title, "font": {"size": 13}},
        xaxis_title="cosine similarity (frame vs. query)",
        yaxis_title="frames",
        yaxis_type="log",
        showlegend=False,
        margin={"l": 40, "r": 20, "t": 40, "b": 40},
        height=260,
    )
    return fig


def confusion_counts_heatmap(classes: list[str], counts: np.ndarray) -> go.Figure:
    """A confusion matrix of counts, coloured by each true class's share, every cell selectable.

    Plotly cannot select heatmap cells, so an invisible square marker sits on each cell: clicking it
    selects (true, predicted) in the app (`customdata`)."""
    counts = np.asarray(counts, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    fig = go.Figure(
        go.Heatmap(
            z=shares,
            x=classes,
            y=classes,
            text=counts.astype(int),
            texttemplate="%{text}",
            colorscale="Reds",
            zmin=0,
            zmax=1,
            hoverinfo="skip",
            colorbar={"title": "share of row"},
        )
    )
    cells = [(t, p) for t in range(len(classes)) for p in range(len(classes))]
    fig.add_trace(
        go.Scatter(
            x=[classes[p] for _, p in cells],
            y=[classes[t] for t, _ in cells],
            customdata=[[classes[t], classes[p], plural(int(counts[t, p]), "video")] for t, p in cells],
            mode="markers",
            marker={"symbol": "square", "size": 24, "opacity": 0},
            hovertemplate="true %{customdata[0]}<br>predicted %{customdata[1]}<br>%{customdata[2]}"
            "<extra>click to list them</extra>",
            showlegend=False,
        )
    )
    fig.update_layout(
        xaxis_title="predicted",
        yaxis_title="true label",
        yaxis_autorange="reversed",
        height=max(360, 28 * len(classes) + 160),
        margin={"l": 40, "r": 20, "t": 30, "b": 40},
        clickmode="event+select",
    )
    return fig


POOLING_COLOURS = {"mean": "#2a6fdb", "max": "#e76f51", "middle": "#2a9d5c", "frame": "#8d6cab"}


def sweep_chart(rows: list[dict]) -> go.Figure:
    """precision@1 against build seconds, one point per frame strategy and pooling, 95% intervals.

    Rows without a known build time are left out (the table lists them)."""
    fig = go.Figure()
    shown = [r for r in rows if r.get("build_seconds") is not None]
    # Poolings often tie (one frame per video makes them equal): shrinking markers keep each one visible.
    for number, pooling in enumerate(dict.fromkeys(r["pooling"] for r in shown)):
        group = sorted((r for r in shown if r["pooling"] == pooling), key=lambda r: r["build_seconds"])
        values = [r["precision_at_1"] for r in group]
        ci = [r.get("precision_at_1_ci95") or [v, v] for r, v in zip(group, values, strict=True)]
        fig.add_trace(
            go.Scatter(
                x=[r["build_seconds"] for r in group],
                y=values,
                mode="markers+lines+text" if number == 0 else "markers+lines",
                name=f"pooling {pooling}",
                text=[r["frames"] for r in group],
                textposition="top center",
                marker={"size": max(6, 18 - 4 * number), "color": POOLING_COLOURS.get(pooling)},
                line={"width": 1, "dash": "dot", "color": POOLING_COLOURS.get(pooling)},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [hi - v for (_, hi), v in zip(ci, values, strict=True)],
                    "arrayminus": [v - lo for (lo, _), v in zip(ci, values, strict=True)],
                },
                customdata=[[r.get("model", ""), r.get("n_frames", 0), r.get("frames_per_s") or 0] for r in group],
                hovertemplate="%{text} · precision@1 %{y:.3f}<br>build %{x:.1f} s · %{customdata[1]} frames "
                "(%{customdata[2]:.1f} frames/s)<br>%{customdata[0]}<extra></extra>",
            )
        )
    fig.update_layout(
        xaxis={"title": "build seconds", "rangemode": "tozero"},
        yaxis={"title": "precision@1 (95% interval)", "range": [0, 1.05]},
        legend={"orientation": "h", "y": 1.08, "x": 0},
        margin={"l": 40, "r": 20, "t": 30, "b": 40},
        height=440,
    )
    return fig
