"""The sub-commands of ``python -m core`` (but search: core/cli/search.py): each translates its arguments
into one call of the application layer and shows the result (core/cli/render.py).

The application layer is imported inside each command, not here: the command line answers its argument
errors and --help without importing a model, store or video library.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from core.cli.parser import DEFAULT_OUTPUT
from core.cli.render import (
    Say,
    print_comparison,
    print_grid,
    print_probe,
    print_runs,
    print_sweep,
    write_json,
)
from core.ground import format_duration, plural, write_text_atomic
from core.requests import POOLINGS, BuildRequest, ChromaServer, EvalSettings, IndexRef, ModelSpec

if TYPE_CHECKING:
    from tqdm import tqdm

    from core.analysis.evaluation import Evaluation
    from core.analysis.probe import ProbeResult
    from core.app import Explorer
    from core.kinetics.download import DownloadProgress
    from core.store.index import FrameIndex


def _servers(args: argparse.Namespace) -> tuple[ChromaServer, ...]:
    """The Chroma servers from the flags, else from the environment, else () (the embedded store)."""
    flags = ("chroma_host", "chroma_port", "chroma_ssl", "chroma_token_header")
    return ChromaServer.resolve(*(getattr(args, flag, None) for flag in flags))


def _report_stream(args: argparse.Namespace) -> TextIO:
    """Where human-readable lines go: stderr when the JSON itself goes to stdout."""
    return sys.stderr if getattr(args, "json", None) == "-" else sys.stdout


def _requested_spec(args: argparse.Namespace) -> ModelSpec | None:
    if not (args.model or args.pretrained or args.model_config):
        return None
    return ModelSpec.resolve(args.model, args.pretrained, args.model_config)


def _explorer(args: argparse.Namespace) -> Explorer:
    from core.app import Explorer

    return Explorer(output=getattr(args, "output", None) or DEFAULT_OUTPUT, device=getattr(args, "device", "auto"))


def _ref(args: argparse.Namespace) -> IndexRef:
    """The index named by --db / --collection / the Chroma server flags."""
    return IndexRef(db=args.db, servers=_servers(args), collection=getattr(args, "collection", None))


class _ProgressBar:
    """A tqdm bar on stderr, made on the first update (nothing at all with --quiet)."""

    def __init__(self, quiet: bool, unit: str, desc: str) -> None:
        self.quiet, self.unit, self.desc = quiet, unit, desc
        self.bar: tqdm | None = None

    def show(self, done: int, total: int, **postfix: object) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            # Without tqdm's own clock: a build's elapsed time and ETA come in the postfix, in the format the
            # app shows them (core.ground.format_duration).
            self.bar = tqdm(total=total, unit=self.unit, desc=self.desc, file=sys.stderr, dynamic_ncols=True,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{postfix}]")  # fmt: skip
        self.bar.total, self.bar.n = total, done
        self.bar.set_postfix(refresh=False, **postfix)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_build(args: argparse.Namespace) -> int:
    from core.app import BuildProgress, BuildRequest, BuildTimeline, ModelSpec, NoUsableVideoError
    from core.runtime import process_age_s

    explorer = _explorer(args)
    explorer.refuse_if_building(_ref(args), args.output)  # before the model library is even imported
    spec = _requested_spec(args) or ModelSpec.resolve()
    bar = _ProgressBar(args.quiet, "video", "Indexing")
    say = partial(print, file=_report_stream(args))

    def stage(text: str) -> None:
        # On a terminal, say each stage the build reaches before the first video is done (loading or
        # downloading a model can take a minute); in logs and pipes an error stays one line.
        if not args.quiet and sys.stderr.isatty():
            print(f"{text[:1].upper()}{text[1:]}…", file=sys.stderr)

    def progress(p: BuildProgress) -> None:
        if p.counting:
            bar.show(p.videos_done, p.videos_total, frames=p.frames_done, fps=f"{p.frames_per_s:.1f}",
                     skipped=len(p.skipped), elapsed=p.elapsed(), ETA=p.eta())  # fmt: skip

    request = BuildRequest(
        videos=args.videos,
        db=args.db,
        output=args.output,
        spec=spec,
        frames=args.frames,
        annotations=args.annotations,
        batch_size=args.batch_size,
        device=args.device,
        workers=args.workers,
        precision=args.precision,
        engine=args.engine,
        ray_address=args.ray_address,
        servers=_servers(args),
        shards=args.shards,
    )
    timeline = BuildTimeline()
    timeline.process_started(process_age_s())  # "imports" in --json's timings: the time before the build
    try:
        summary = explorer.build(request, progress=progress, lock_owner="python -m core build", on_stage=stage,
                                 timeline=timeline)  # fmt: skip
    except NoUsableVideoError as exc:
        bar.close()
        if exc.summary is not None:
            say(exc.summary.line())
            if args.json:
                write_json(args.json, exc.summary.to_json())
        raise
    bar.close()
    say(summary.line())
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        write_json(args.json, summary.to_json())
    if summary.cancelled:
        print("Interrupted: run the same command again to finish; finished videos are kept.", file=sys.stderr)
        return 130
    return 0


def _settings_grid(args: argparse.Namespace) -> list[EvalSettings]:
    """The settings `evaluate` asked for: the --prompt set (first), every named set, every pooling."""
    from core.model.prompts import PROMPT_SETS

    prompt_sets: list[tuple[str, ...]] = [(name,) for name in PROMPT_SETS] if args.all_prompt_sets else []
    if args.prompt or not prompt_sets:
        prompt_sets.insert(0, tuple(args.prompt or ()))
    poolings = list(POOLINGS) if args.all_poolings else [args.pooling]
    return [
        EvalSettings(prompts=prompts, pooling=pooling, label_mode=args.labels, classes=args.classes)
        for prompts in prompt_sets
        for pooling in poolings
    ]


def _open_and_say(args: argparse.Namespace, explorer: Explorer) -> tuple[IndexRef, FrameIndex]:
    """The index the command will use, and a line saying which (and how to pick another)."""
    ref = _ref(args)
    index = explorer.open(ref, _requested_spec(args))
    hint = "" if ref.collection else " (the newest; --collection NAME picks another, see python -m core info)"
    print(f"Index:   {index.name}{hint}", file=_report_stream(args))
    return ref.with_collection(index.name), index


def cmd_evaluate(args: argparse.Namespace) -> int:
    say = partial(print, file=_report_stream(args))
    explorer = _explorer(args)
    ref = _ref(args)
    index = explorer.open(ref, _requested_spec(args))
    say(f"Index:   {index.name} ({index.info().describe()})")
    results = explorer.grid(ref.with_collection(index.name), _settings_grid(args), save=not args.no_save)
    print_grid(say, results)
    probe = _run_probe(explorer, ref.with_collection(index.name), results[0], say) if args.probe else None
    if args.json:
        data = results[0].to_json()
        if len(results) > 1:
            data["grid"] = [r.to_json() for r in results]
        if probe is not None:
            data["linear_probe"] = probe.to_json()
        write_json(args.json, data)
    return 0


def _run_probe(explorer: Explorer, ref: IndexRef, result: Evaluation, say: Say) -> ProbeResult:
    """The linear probe for the first setting evaluated, printed beside its zero-shot figures."""
    probe = explorer.probe(ref, EvalSettings.from_json(result.settings["request"]))
    print_probe(say, probe)
    return probe


def cmd_loadtest(args: argparse.Namespace) -> int:
    explorer = _explorer(args)
    ref, _index = _open_and_say(args, explorer)
    report = explorer.loadtest(ref, max(1, args.threads), max(1, args.requests), args.k, args.seconds)
    print(report.line(), file=_report_stream(args))
    if report.first_error:
        print(f"first error: {report.first_error}", file=sys.stderr)
    if args.json:
        write_json(args.json, report.to_json())
    return 0 if report.errors == 0 else 1


def cmd_report(args: argparse.Namespace) -> int:
    explorer = _explorer(args)
    ref, _index = _open_and_say(args, explorer)
    settings = EvalSettings(tuple(args.prompt or ()), args.pooling, args.labels, args.classes)
    result = explorer.evaluate(ref, settings, save=False)
    for path in explorer.write_reports(result, args.output, ref=ref).values():
        print(f"Wrote {path}")
    return 0


def cmd_subset(args: argparse.Namespace) -> int:
    from core.ground import DEFAULT_CSV, DEFAULT_SUBSET
    from core.kinetics.reference import subset_classes, write_class_subset

    csv_path = args.csv or str(DEFAULT_CSV)
    classes = subset_classes(args.classes, csv_path)
    path, subset = write_class_subset(csv_path, classes, args.per_class, args.candidates, args.out or DEFAULT_SUBSET)
    short = [c for c, clips in subset["candidates"].items() if len(clips) < args.candidates]
    print(
        f"Wrote {path}: {plural(len(classes), 'class', 'classes')}, "
        f"up to {plural(args.candidates, 'candidate clip')} each."
    )
    if short:
        print(f"note: fewer candidates than asked for: {', '.join(short)}", file=sys.stderr)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from core.ground import DEFAULT_SUBSET
    from core.kinetics.download import download_subset, plan_from

    subset_file = args.subset or (None if args.csv else str(DEFAULT_SUBSET))
    candidates, per_class = plan_from(subset_file, args.csv, args.classes, args.per_class)
    say = partial(print, file=_report_stream(args))
    bar = _ProgressBar(args.quiet, "clip", "Downloading")

    def progress(p: DownloadProgress) -> None:
        bar.show(p.clips_done, p.clips_wanted, failed=p.failures, running=p.in_flight,
                 elapsed=format_duration(p.elapsed_s))  # fmt: skip

    summary = download_subset(
        candidates, args.out, per_class, jobs=args.jobs, retries=args.retries, progress=progress,
        retry_failed=args.retry_failed,
    )  # fmt: skip
    bar.close()
    say(summary.line())
    for label, why in summary.short_classes.items():
        say(f"  short: {label}: {why}")
    say(f"Clip states and reasons: {Path(args.out) / 'manifest.json'}; next: python -m core build --videos {args.out}")
    if args.json:
        write_json(args.json, summary.to_json())
    return 0 if summary.total else 2


def cmd_sample_videos(args: argparse.Namespace) -> int:
    from core.kinetics.reference import sample_videos

    paths, labels = sample_videos(args.out, args.classes, args.per_class, args.frames)
    print(
        f"Wrote {plural(len(paths), 'clip')} of {plural(len(labels), 'class', 'classes')} under {args.out}/ "
        "(one folder per label)."
    )
    return 0


def cmd_demo_model(args: argparse.Namespace) -> int:
    from core.kinetics.reference import demo_model
    from core.model.demo_model import STEPS as DEMO_STEPS

    bar = _ProgressBar(args.quiet, "step", "Training the demo model")
    try:
        spec = demo_model(args.out, args.classes, steps=args.steps or DEMO_STEPS, progress=bar.show)
    finally:
        bar.close()
    print(f"Trained the demo model for {plural(args.classes, 'sample class', 'sample classes')}: {spec.pretrained}")
    print("Its scores mean something on the sample clips only (it matches colours to labels).")
    print(f"Use it with: --model-config {spec.config_path} --pretrained {spec.pretrained}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from core.store.runs import REFERENCE_RUN

    say = partial(print, file=_report_stream(args))
    explorer = _explorer(args)
    ref = _ref(args)
    if args.compare:
        comparison = explorer.compare_models(ref, args.compare)
        print_comparison(say, comparison)
        if args.json:
            write_json(args.json, comparison.to_json())
        return 0
    runs = explorer.runs(ref)
    rows = [{**REFERENCE_RUN}, *[run.row() for run in runs]]
    print_runs(say, rows)
    if not runs:
        say("No run saved yet: python -m core evaluate records one.")
    if args.json:
        write_json(args.json, rows)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from core.analysis.sweep import sweep_csv
    from core.engines.build import BuildProgress

    spec = _requested_spec(args) or ModelSpec.resolve()
    say = partial(print, file=_report_stream(args) if args.csv != "-" else sys.stderr)
    bar = _ProgressBar(args.quiet, "video", "Indexing")

    def progress(p: BuildProgress) -> None:
        if p.counting:  # the scan and the start-up have no counts to show
            bar.show(p.videos_done, p.videos_total, frames=p.frames_done, fps=f"{p.frames_per_s:.1f}",
                     elapsed=p.elapsed(), ETA=p.eta())  # fmt: skip

    request = BuildRequest(videos=args.videos, db=args.db, output=args.output, spec=spec, device=args.device)
    explorer = _explorer(args)
    try:
        rows, notes = explorer.sweep(request, args.frames.split(","), progress=progress)
    finally:
        bar.close()
    print_sweep(say, rows)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        write_json(args.json, [row.to_json() for row in rows])
    if args.csv:
        text = sweep_csv(rows)
        if args.csv == "-":
            sys.stdout.write(text)
        else:
            write_text_atomic(args.csv, text)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    say = partial(print, file=_report_stream(args))
    summary = _explorer(args).export(_ref(args), args.out, include_model=args.include_model)
    model = summary.model
    weights = (
        f"; model {model.checkpoint} {'included' if model.included else 'recorded by sha256 (not included)'}"
        if model.checkpoint
        else ""
    )
    say(
        f"Wrote {summary.path}: {summary.collection}, {summary.records} records, {summary.thumbnails} thumbnails, "
        f"{summary.runs} runs, {summary.sweeps} sweep rows{weights}."
    )
    if args.json:
        write_json(args.json, summary.to_json())
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    summary = _explorer(args).import_bundle(args.path, _ref(args), pretrained=args.pretrained)
    print(
        f"Imported {summary.records} records ({summary.added} new), {summary.runs} runs and {summary.sweeps} sweep "
        f"rows from {summary.path} as:",
        file=sys.stderr,
    )
    print(summary.collection, file=_report_stream(args))
    if args.json:
        write_json(args.json, summary.to_json())
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    say = partial(print, file=_report_stream(args))
    ref = _ref(args)
    listed = _explorer(args).indexes(ref)
    if not listed:
        say(f"No index in {ref.describe()}.")
    rows = []
    for item in listed:
        info = item.info
        say(f"{info.name}: {info.describe()}")
        for shard in info.shards:
            say(f"  {shard.name}: {plural(shard.count, 'frame')} in {shard.where}")
        if item.problem:
            say(f"  {item.problem}")
        rows.append(
            {
                "name": info.name,
                "model": info.spec.to_metadata(),
                "frames": info.frames,
                "embed_dim": info.embed_dim,
                "count": info.count,
                "created_at": info.created_at,
                "built_at": info.built_at,
                "shards": [{"name": s.name, "where": s.where, "count": s.count} for s in info.shards],
            }
        )
    if len(listed) > 1:
        say(
            "evaluate, search and report use the newest collection (listed first); "
            "pass --collection NAME to use another."
        )
    if args.json:
        write_json(args.json, rows)
    return 0
