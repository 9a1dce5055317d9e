"""How the command line shows results: the text tables and lines of each sub-command, and JSON files.

The lines, and the JSON keys (each record's own `to_json`), are a contract other tools rely on.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from core.ground import plural, printable, write_text_atomic

if TYPE_CHECKING:
    from core.analysis.evaluation import Evaluation
    from core.analysis.probe import ProbeResult
    from core.analysis.search import SearchResult
    from core.analysis.sweep import SweepRow
    from core.store.runs import RunComparison


class Say(Protocol):
    """Where a command's lines go: print, or print to another stream."""

    def __call__(self, *values: object) -> None: ...


def write_json(target: str, data: object) -> None:
    """Write JSON to a file (temporary name, then rename) or to stdout for '-'."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    if target == "-":
        sys.stdout.write(printable(text) + "\n")
        return
    write_text_atomic(target, text + "\n")


def print_evaluation(say: Say, result: Evaluation) -> None:
    rep = result.report
    templates = result.prompts.templates
    more = f" and {len(templates) - 1} more" if len(templates) > 1 else ""
    say(f"Prompt:  {result.prompts.name} ({templates[0]!r}{more})   labels: {result.label_mode}")
    say(f"Pooling: {result.pooling}   samples: {rep.n_videos}   classes: {result.settings['classes']}")
    for k in (1, 3, 5):
        low, high = rep.interval(k)
        value = getattr(rep, f"precision_at_{k}")
        say(f"  precision@{k}: {value:.3f}  (95% CI {low:.3f}-{high:.3f})")
    say(f"  MRR:         {rep.mrr:.3f}   Kinetics accuracy mean(top-1, top-5): {rep.kinetics_accuracy:.3f}")
    say(f"  mean cosine, correct prompt:   {rep.mean_similarity_correct:.4f}")
    say(f"  mean cosine, incorrect prompts: {rep.mean_similarity_incorrect:.4f}")
    say(f"  mean margin: {rep.mean_margin:.4f}   ROC-AUC correct vs incorrect: {rep.auc:.3f}")


def print_grid(say: Say, results: Sequence[Evaluation]) -> None:
    """Each evaluation, then (for several) one line per setting."""
    for result in results:
        say("")
        print_evaluation(say, result)
    if len(results) > 1:
        say("")
        say(f"{'prompt set':<20} {'pooling':<8} {'p@1':>6} {'p@3':>6} {'p@5':>6}  95% CI of p@1")
        for result in results:
            rep, (low, high) = result.report, result.report.interval(1)
            say(
                f"{result.prompts.name:<20} {result.pooling:<8} {rep.precision_at_1:6.3f} {rep.precision_at_3:6.3f} "
                f"{rep.precision_at_5:6.3f}  {low:.3f}-{high:.3f}"
            )


def print_probe(say: Say, probe: ProbeResult) -> None:
    """The linear probe, beside the zero-shot figures of the same folds."""
    say("")
    say(
        f"Linear probe ({probe.pooling} pooling, {probe.k}-fold over {plural(probe.n_videos, 'video')}, C by inner CV):"
    )
    data = probe.to_json()
    for name in ("top1", "top5", "balanced_accuracy"):
        say(f"  {name + ':':<19} {data[name]:.3f} ± {data[name + '_std']:.3f} over folds")
    say(
        f"  zero-shot top1, same folds: {probe.zero_shot_top1:.3f}   "
        f"prompt gap: {probe.top1 - probe.zero_shot_top1:+.3f}"
    )
    gaps = sorted(probe.per_class, key=lambda c: (-c.prompt_gap, c.name))[:5]
    if gaps and gaps[0].prompt_gap > 0:
        say("  largest prompt gaps: " + ", ".join(f"{c.name} {c.prompt_gap:+.2f}" for c in gaps if c.prompt_gap > 0))
    for note in probe.notes:
        print(f"note: {note}", file=sys.stderr)


def print_result(say: Say, result: SearchResult) -> None:
    say(f"Query:   {result.query}")
    for note in result.notes:
        say(f"Note:    {note}")
    if result.cutoff is not None and result.cutoff.value is not None:
        say(f"Cut-off: {result.cutoff.rule}")
    if result.moments is not None:
        if not result.moments:
            say("No moment matched (the index or the label filter is empty, or nothing passed the cut-off).")
        for rank, m in enumerate(result.moments, start=1):
            frames = plural(m.frames, "frame")
            where = f"{m.video_id}  {m.start_s:.2f}–{m.end_s:.2f}s  best t={m.best_timestamp_s:.2f}s ({frames})"
            say(f"{rank:3d}. {m.score:+.4f}  {m.label:<30.30}  {where}")
        return
    if not result.hits:
        say("No frame matched (the index or the label filter is empty, or nothing passed the cut-off).")
    for rank, hit in enumerate(result.hits, start=1):
        where = f"{hit.video_id}  t={hit.timestamp_s:.2f}s  {hit.frame_path}"
        say(f"{rank:3d}. {hit.similarity:+.4f}  {hit.label:<30.30}  {where}")


def result_json(result: SearchResult) -> list[dict[str, object]]:
    items = result.moments if result.moments is not None else result.hits
    return [item.to_json() for item in items]


def print_runs(say: Say, rows: Sequence[Mapping[str, object]]) -> None:
    """The saved runs (the reference run first), one line each."""
    header = f"{'run':<13} {'frames':<10} {'pooling':<7} {'prompt set':<18} {'classes':<10}"
    say(f"{header} {'p@1':>6} {'95% CI':>13} {'p@3':>6}")
    for row in rows:
        ci95 = row["ci95"]
        low, high = ci95.get("precision_at_1", [0, 0]) if isinstance(ci95, dict) else (0, 0)
        say(
            f"{row['id']:<13.13} {row['frames']:<10} {row['pooling']:<7} {row['prompt_set']:<18.18} "
            f"{row['classes']:<10.10} {row['precision_at_1']:6.3f} {low:6.3f}-{high:.3f} {row['precision_at_3']:6.3f}"
        )


def print_comparison(say: Say, comparison: RunComparison) -> None:
    """Two or more runs side by side (models, typically), then per class each run's precision@1 and
    its gain over the first."""
    fmt = lambda v: "   -  " if v is None else f"{v:6.3f}"  # noqa: E731
    letters = [chr(ord("A") + i) if i < 26 else str(i) for i in range(len(comparison.runs))]
    for letter, row in zip(letters, comparison.summary(), strict=True):
        low, high = (row.get("ci95") or {}).get("precision_at_1", [0.0, 0.0])
        say(
            f"{letter}: {row['id']:<13.13} {row['model']:<32.32} {row['frames']:<10} {row['pooling']:<7} "
            f"{row['prompt_set']:<18.18} n={row['n_videos']} p@1 {fmt(row['precision_at_1'])} ({low:.3f}-{high:.3f})"
        )
    for note in comparison.notes:
        say(f"note: {note}")
    gains = [f"{letter} - A" for letter in letters[1:]]
    say(f"{'class':<40} " + " ".join(f"{letter:>6}" for letter in letters) + " " + " ".join(f"{g:>7}" for g in gains))
    for name, values, deltas in comparison.per_class:
        shown = " ".join("       " if d is None else f"{d:+7.3f}" for d in deltas[1:])
        say(f"{name:<40.40} " + " ".join(fmt(v) for v in values) + " " + shown)


def print_sweep(say: Say, rows: Sequence[SweepRow]) -> None:
    say(f"{'frames':<12} {'pooling':<8} {'p@1':>6} {'95% CI':>13} {'p@5':>6} {'MRR':>6} {'frames':>7} {'build s':>8}")
    for row in rows:
        low, high = row.precision_at_1_ci95 or [0.0, 0.0]
        seconds = "       -" if row.build_seconds is None else f"{row.build_seconds:8.1f}"
        say(
            f"{row.frames:<12} {row.pooling:<8} {row.precision_at_1:6.3f} {low:6.3f}-{high:.3f} "
            f"{row.precision_at_5:6.3f} {row.mrr:6.3f} {row.n_frames:7d} {seconds}"
        )
