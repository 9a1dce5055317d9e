"""The evaluation lab's computations over what an Explorer has read: the linear probe's inputs, the
motion gain of many frames over one, a sampling sweep's rows and a comparison of saved runs.

Each function takes the evaluations, contents and records it needs (or a function that evaluates), so
that the application layer only fetches them and the rules live here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from core.analysis.evaluation import Evaluation, check_prompt_cost, class_names_for, evaluate_grid, pooled_embeddings
from core.analysis.probe import ProbeResult, linear_probe
from core.analysis.sweep import SweepRow, SweepStore
from core.ground import UserError, now_iso, plural
from core.model.embed import ClipModel
from core.model.prompts import resolve_prompts
from core.requests import EvalSettings, IndexRef
from core.store.index import IndexContents, IndexInfo
from core.store.runs import RunComparison, RunStore, compare_runs_side_by_side

# Evaluates one setting on the collection a reference names (the Explorer's `evaluate`, unsaved).
Evaluate = Callable[[IndexRef, EvalSettings], Evaluation]


def evaluate_settings(
    contents: IndexContents, model: ClipModel, settings: Sequence[EvalSettings], about: dict[str, str]
) -> list[Evaluation]:
    """Several settings on the same frames, in the order of `settings`: each prompt set's texts encoded
    once, no frame encoded again; every setting's prompt cost is checked before any work. `about` (the
    index's name and frames) and each setting's JSON form are recorded in the evaluation's settings."""
    results: dict[EvalSettings, Evaluation] = {}
    groups: dict[tuple[tuple[str, ...], str, str], list[EvalSettings]] = {}
    for item in settings:
        groups.setdefault((item.prompts, item.label_mode, item.classes), []).append(item)
    present = sorted({str(x) for x in contents.labels})
    prompt_sets = {key: resolve_prompts(list(key[0])) for key in groups}
    for (_prompts, _label_mode, classes), prompt_set in prompt_sets.items():
        check_prompt_cost(len(prompt_set.templates), len(class_names_for(classes, present)[0]))
    for (prompts, label_mode, classes), members in groups.items():
        poolings = list(dict.fromkeys(m.pooling for m in members))
        evaluations = evaluate_grid(
            contents, model, [prompt_sets[(prompts, label_mode, classes)]], poolings, classes, label_mode
        )
        for member in members:
            evaluation = evaluations[poolings.index(member.pooling)]
            evaluation.settings.update({**about, "request": member.to_json()})
            results[member] = evaluation
    return [results[item] for item in settings]


def probe_evaluation(evaluation: Evaluation, contents: IndexContents, pooling: str, seed: int = 0) -> ProbeResult:
    """A cross-validated linear probe on `contents` pooled as `pooling`, with the zero-shot hits of
    `evaluation` (the same index and pooling) on the same folds beside it."""
    features = pooled_embeddings(contents, pooling)
    # A sample's video decides its fold; with frame pooling several samples share one.
    videos = contents.video_ids if pooling == "frame" else evaluation.samples.ids
    hits = evaluation.report.ranks == 1
    return linear_probe(features, evaluation.samples.labels, list(videos), hits, pooling, seed)


def uniform_gain(
    listed: Sequence[tuple[IndexRef, IndexInfo]], evaluation: Evaluation, evaluate: Evaluate
) -> tuple[dict[str, float], list[str]]:
    """Per class, precision@1 of the same model's `uniform:K` collection (largest K) minus its `middle`
    one, when the store's usable collections (`listed`) hold both; and a sentence saying what was compared."""
    request = evaluation.settings.get("request")
    name = evaluation.settings.get("index")
    this = next((info for _, info in listed if info.name == name), None)
    if this is None or request is None:
        return {}, []
    same_model = [(ref, info) for ref, info in listed if info.spec.identity() == this.spec.identity()]
    middle = next((ref for ref, info in same_model if info.frames == "middle"), None)
    uniform = sorted(
        ((ref, info) for ref, info in same_model if info.frames.startswith("uniform:")),
        key=lambda pair: int(pair[1].frames.split(":")[1]),
    )
    if middle is None or not uniform:
        return {}, []
    settings = EvalSettings.from_json(request)
    pooling = settings.pooling if settings.pooling in ("mean", "max") else "mean"
    wide_ref, wide = uniform[-1]
    a = evaluate(middle, replace(settings, pooling="middle")).report.per_class
    b = evaluate(wide_ref, replace(settings, pooling=pooling)).report.per_class
    gains = {label: b[label] - a[label] for label in a if label in b}
    note = f"Motion by frames: {wide.frames} ({pooling} pooling) against middle, same model."
    return gains, [note]


def sweep_build_time(
    store: SweepStore, frames: str, collection: str, n_frames: int, built: tuple[float, float] | None
) -> tuple[float | None, float | None, list[str]]:
    """The build seconds and frames per second a sweep row records: those of this build (`built`), else
    those a sweep recorded for the same collection and frames, else none with a sentence saying why."""
    if built is not None:
        return built[0], built[1], []
    known = store.known_build(collection, n_frames)
    if known is not None:
        return known[0], known[1], []
    note = (
        f"{frames}: reused {collection}, whose build time is unknown (not built by a sweep, or resumed): its "
        "build seconds are left empty."
    )
    return None, None, [note]


def sweep_rows(
    frames: str,
    collection: str,
    evaluations: Sequence[Evaluation],
    n_frames: int,
    build_seconds: float | None,
    frames_per_s: float | None,
) -> list[SweepRow]:
    """One sweep row per evaluation (pooling) of the collection built with the strategy `frames`."""
    rows = []
    for evaluation in evaluations:
        rep = evaluation.report
        rows.append(
            SweepRow(
                frames=frames,
                pooling=evaluation.pooling,
                precision_at_1=rep.precision_at_1,
                precision_at_5=rep.precision_at_5,
                mrr=rep.mrr,
                n_frames=n_frames,
                build_seconds=build_seconds,
                frames_per_s=frames_per_s,
                precision_at_1_ci95=list(rep.interval(1)),
                n_videos=rep.n_videos,
                model=evaluation.settings.get("model", ""),
                collection=collection,
                prompt_set=evaluation.prompts.name,
                timestamp=now_iso(),
            )
        )
    return rows


def compare_saved_runs(store: RunStore, run_ids: Sequence[str], db: str) -> RunComparison:
    """Two or more saved runs side by side with per-class gains over the first (different models on the
    same videos, typically); unknown ids, or fewer than two, are one sentence."""
    runs = [store.get(run_id) for run_id in run_ids]
    missing = [run_id for run_id, run in zip(run_ids, runs, strict=True) if run is None]
    if missing or len(run_ids) < 2:
        unknown = f"{plural(len(missing), 'unknown run id')}: {', '.join(missing)}"
        what = unknown if missing else "Give at least two run ids"
        raise UserError(f"{what}: see python -m core runs --db {db}.")
    return compare_runs_side_by_side([run for run in runs if run is not None])
