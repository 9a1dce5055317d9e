"""Command-line interface: ``python -m core build|evaluate|search|info``.

The sub-commands, flags and JSON keys are a contract other tools rely on: add to them, never
rename. Errors the user can fix print one line on stderr and exit with status 2; Ctrl-C exits
with 130 after saving what was finished; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

from core.ground import UserError
from core.limits import check_setting

DEFAULT_DB = "chroma_db"
DEFAULT_OUTPUT = "output"


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors said in one line on stderr (exit 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        # "argument --k: --k must be ..." (a range's own sentence names the flag): said once.
        message = re.sub(r"^argument (\S+): (?=\1 )", "", message)
        self.exit(2, f"error: {message.rstrip('.')}: see {self.prog} --help.\n")


def _setting(name: str) -> Callable[[str], Any]:
    """The argparse type of a numeric flag: its value checked against its range (core/limits.py), while the
    arguments are parsed, so that a bad one is refused before anything heavy is imported."""

    def parse(text: str) -> Any:
        try:
            return check_setting(name, text)
        except UserError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = name
    return parse


def _add_model_flags(parser: argparse.ArgumentParser, for_build: bool) -> None:
    default = " (default: ViT-B-32-quickgelu, OpenAI's ViT-B/32)" if for_build else " (default: the index's model)"
    parser.add_argument("--model", help="open_clip model name" + default)
    parser.add_argument(
        "--pretrained",
        help="pretrained tag (e.g. openai), a local checkpoint file (.pt/.bin/.safetensors), "
        "or 'none' for random weights",
    )
    parser.add_argument("--model-config", help="custom open_clip JSON config; --model defaults to its file name")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")


def _add_evaluation_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pooling", default="mean", help="mean (default), max, middle or frame")
    parser.add_argument("--labels", default="keep", help="keep (default) or strip parenthesised asides of labels")
    parser.add_argument(
        "--classes",
        default="present",
        help="present (default): the labels in the index; all: the 700 Kinetics-700 names",
    )


def _add_server_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "Chroma server (instead of the embedded --db folder; also CLIP_EXPLORER_CHROMA_HOST/_PORT/_SSL/_TOKEN)"
    )
    group.add_argument("--chroma-host", help="host of a Chroma server")
    group.add_argument("--chroma-port", type=_setting("chroma_port"), default=None, help="its port (default: 8000)")
    group.add_argument("--chroma-ssl", action="store_true", help="use HTTPS")
    group.add_argument("--chroma-token-header", default=None, help="auth header (default: Authorization, as Bearer)")


def _server(args: argparse.Namespace) -> Any:
    """The Chroma server from the flags, else from the environment, else None (the embedded store)."""
    from core.app import ChromaServer

    flags = ("chroma_host", "chroma_port", "chroma_ssl", "chroma_token_header")
    return ChromaServer.resolve(*(getattr(args, flag, None) for flag in flags))


def _add_index_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB, help=f"ChromaDB folder (default: {DEFAULT_DB}/)")
    parser.add_argument("--collection", help="collection to use when the folder holds several (default: newest)")
    _add_server_flags(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m core",
        description="Index video frames with CLIP into ChromaDB, evaluate how well CLIP matches them to "
        "action labels, and search them by text.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="extract frames, embed them and add them to the index")
    build.add_argument("--videos", required=True, help="videos folder (one sub-folder per label, or clips for a CSV)")
    build.add_argument("--annotations", help="annotations.json, or the official Kinetics CSV")
    build.add_argument("--db", default=DEFAULT_DB, help=f"ChromaDB folder (default: {DEFAULT_DB}/)")
    build.add_argument(
        "--output", default=DEFAULT_OUTPUT, help=f"output folder for thumbnails (default: {DEFAULT_OUTPUT}/)"
    )
    _add_model_flags(build, for_build=True)
    build.add_argument(
        "--frames",
        default="middle",
        help="middle (default); uniform:K, K frames from 1 to 32; fps:R, R frames per second of video (0 < R <= 30, "
        "e.g. fps:0.5; at most 600 a video, spread over it); scenes[:K], the middle frame of each shot, at most the K "
        "longest (K from 1 to 64, default 16)",
    )
    build.add_argument(
        "--batch-size",
        type=_setting("batch_size"),
        default=None,
        help="images per encoding batch, 1 to 4096 (default: 32 on a CPU, 128 on a GPU)",
    )
    build.add_argument(
        "--workers",
        type=_setting("workers"),
        default="auto",
        help="frame workers (processes): 1 to 4 per core, or auto (default: one per core but one)",
    )
    build.add_argument(
        "--precision", default="auto", help="auto (default: fp16 on a CUDA GPU, fp32 on a CPU), fp32 or fp16"
    )
    build.add_argument(
        "--engine", choices=("local", "ray"), default="local",
        help="local (default): processes on this machine; ray: a Ray cluster (pip install -r requirements-ray.txt)",
    )  # fmt: skip
    build.add_argument(
        "--ray-address", help="with --engine ray: an existing cluster, 'auto' or host:port (default: a local instance)"
    )
    _add_server_flags(build)
    build.add_argument("--json", help="also write the build summary as JSON to this file ('-' for stdout)")
    build.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = sub.add_parser("evaluate", help="precision@k, MRR and similarities of frames vs. class prompts")
    _add_index_flags(evaluate)
    _add_model_flags(evaluate, for_build=False)
    evaluate.add_argument(
        "--prompt",
        action="append",
        help="a prompt set name (english, reference-fr, kinetics-ensemble) or a template with {label}; "
        "repeat to ensemble (default: english)",
    )
    _add_evaluation_flags(evaluate)
    evaluate.add_argument("--all-prompt-sets", action="store_true", help="evaluate every named prompt set")
    evaluate.add_argument(
        "--all-poolings", action="store_true", help="evaluate every pooling (mean, max, middle, frame)"
    )
    evaluate.add_argument("--no-save", action="store_true", help="do not record the run(s) in <db>/runs.jsonl")
    evaluate.add_argument("--json", help="write the metrics as JSON to this file ('-' for stdout)")
    evaluate.add_argument(
        "--output", default=DEFAULT_OUTPUT, help="output folder (where runs are recorded with a Chroma server)"
    )
    _add_probe_flag(evaluate)

    load = sub.add_parser("loadtest", help="concurrent searches against an index: throughput and latency")
    _add_index_flags(load)
    _add_model_flags(load, for_build=False)
    load.add_argument("--threads", type=_setting("threads"), default=8, help="concurrent searchers (default: 8)")
    load.add_argument("--requests", type=_setting("requests"), default=200, help="searches in all (default: 200)")
    load.add_argument("--seconds", type=_setting("seconds"), default=60, help="time limit (default: 60)")
    load.add_argument("--k", type=_setting("k"), default=10, help="results per search (default: 10)")
    load.add_argument("--json", help="write the report as JSON to this file ('-' for stdout)")

    report = sub.add_parser("report", help="write the results page and the similarity histograms (HTML, PNG)")
    _add_index_flags(report)
    _add_model_flags(report, for_build=False)
    report.add_argument("--prompt", action="append", help="as for evaluate (default: english)")
    _add_evaluation_flags(report)
    report.add_argument("--output", default=DEFAULT_OUTPUT, help=f"folder to write into (default: {DEFAULT_OUTPUT}/)")

    search = sub.add_parser(
        "search",
        help="find the frames (or moments) that best match a text, an image, or a sum of them",
        description="The query vector is the normalised sum of its normalised parts (TEXT, --image, each --add), "
        "minus each --subtract. --interactive reads queries line by line instead.",
    )
    search.add_argument("text", nargs="?", default="", help="what to look for, e.g. 'someone juggling fire'")
    search.add_argument(
        "--k", type=_setting("k"), default=5, help="number of results, or of moments, 1 to 1000 (default: 5)"
    )
    search.add_argument("--image", metavar="PATH", help="an image to search with (added to TEXT when both are given)")
    search.add_argument("--add", action="append", default=[], metavar="TEXT", help="add a text to the query (repeat)")
    search.add_argument(
        "--subtract", action="append", default=[], metavar="TEXT", help="subtract a text from the query (repeat)"
    )
    search.add_argument(
        "--moments",
        action="store_true",
        help="merge each video's matching frames into time segments (start_s, end_s, score); --k counts segments",
    )
    search.add_argument(
        "--margin",
        type=_setting("margin"),
        default=None,
        help="with --moments: frames within this much (0 to 2) of a video's best similarity join its segments "
        "(default 0.02)",
    )
    search.add_argument(
        "--min-similarity",
        type=_setting("min_similarity"),
        metavar="X",
        help="drop hits whose similarity (-1 to 1) is below X",
    )
    search.add_argument(
        "--adaptive",
        action="store_true",
        help="keep only hits that stand out from the query's own scores over the whole index (robust z-score; "
        "may return none)",
    )
    search.add_argument(
        "--interactive",
        action="store_true",
        help="read queries line by line (':k N', ':html on|off', 'quit'); the model and index load once",
    )
    _add_index_flags(search)
    _add_model_flags(search, for_build=False)
    search.add_argument("--one-per-video", action="store_true", help="at most one frame per video")
    search.add_argument("--label", help="only frames of this label")
    search.add_argument("--json", help="write the hits as JSON to this file ('-' for stdout)")
    search.add_argument("--html", action="store_true", help="also write output/search_results_<query>.html")
    search.add_argument("--output", default=DEFAULT_OUTPUT, help=f"folder for --html (default: {DEFAULT_OUTPUT}/)")

    subset = sub.add_parser("subset", help="write the class subset file with candidate clips per class")
    subset.add_argument(
        "--csv",
        default=None,
        help="official Kinetics CSV (default: annotations/kinetics700_2020_validate.csv)",
    )
    subset.add_argument(
        "--classes",
        nargs="+",
        default=["reference"],
        help="'reference' (the study's 50, default), 'all', a file with one class per line, or class names",
    )
    subset.add_argument(
        "--per-class", type=_setting("per_class"), default=5, help="clips wanted per class (default: 5)"
    )
    subset.add_argument(
        "--candidates", type=_setting("candidates"), default=15, help="candidate clips kept per class (default: 15)"
    )
    subset.add_argument("--out", default=None, help="where to write it (default: annotations/selected_subset.json)")

    download = sub.add_parser("download", help="download a Kinetics subset (yt-dlp), cut to H.264/AAC MP4 clips")
    download.add_argument("--subset", default=None, help="subset file (default: annotations/selected_subset.json)")
    download.add_argument("--csv", help="an official Kinetics CSV instead of the subset file (needs --classes)")
    download.add_argument("--classes", nargs="+", help="only these classes (with --csv: the classes to take)")
    download.add_argument("--per-class", type=_setting("per_class"), help="clips per class (default: the subset's, 5)")
    download.add_argument("--out", default="videos", help="folder for the clips (default: videos/)")
    download.add_argument("--jobs", type=_setting("jobs"), default=4, help="parallel downloads, 1 to 32 (default: 4)")
    download.add_argument(
        "--retries", type=_setting("retries"), default=3, help="retries of a transient failure, 0 to 20 (default: 3)"
    )
    download.add_argument("--retry-failed", action="store_true", help="ask again for clips recorded as unavailable")
    download.add_argument("--json", help="also write the summary as JSON to this file ('-' for stdout)")
    download.add_argument("--quiet", action="store_true", help="no progress bar")

    samples = sub.add_parser("sample-videos", help="generate small synthetic labelled clips to try the pipeline")
    samples.add_argument("--out", default="videos/sample", help="folder to write (default: videos/sample)")
    samples.add_argument(
        "--classes", type=_setting("sample_classes"), default=10, help="how many classes of the reference subset (10)"
    )
    samples.add_argument(
        "--per-class", type=_setting("sample_per_class"), default=5, help="clips per class (default: 5)"
    )
    samples.add_argument("--frames", type=_setting("sample_frames"), default=48, help="frames per clip (default: 48)")

    demo = sub.add_parser(
        "demo-model",
        help="train the tiny offline demo model for the sample clips (seconds; its scores mean nothing on real videos)",
    )
    demo.add_argument(
        "--out", default="output/demo-model", help="folder for its weights and config (default: output/demo-model)"
    )
    demo.add_argument(
        "--classes",
        type=_setting("sample_classes"),
        default=10,
        help="as many classes as sample-videos made (default: 10)",
    )
    demo.add_argument(
        "--steps", type=_setting("demo_steps"), default=None, help="training steps (default: 160; fewer train worse)"
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bar")

    runs = sub.add_parser("runs", help="the saved evaluations side by side, or two of them compared per class")
    runs.add_argument("--db", default=DEFAULT_DB, help=f"ChromaDB folder (default: {DEFAULT_DB}/)")
    runs.add_argument("--output", default=DEFAULT_OUTPUT, help="output folder (where runs live with a Chroma server)")
    _add_server_flags(runs)
    runs.add_argument(
        "--compare", nargs="+", metavar="RUN",
        help="two or more run ids (e.g. one per model): side by side, per-class gains and losses over the first",
    )  # fmt: skip
    runs.add_argument("--json", help="write the runs (or the comparison) as JSON to this file ('-' for stdout)")

    _add_sweep_parser(sub)
    _add_bundle_parsers(sub)

    info = sub.add_parser("info", help="list the collections of an index folder")
    info.add_argument("--db", default=DEFAULT_DB, help=f"ChromaDB folder (default: {DEFAULT_DB}/)")
    _add_server_flags(info)
    info.add_argument("--json", help="write the list as JSON to this file ('-' for stdout)")
    return parser


def _add_probe_flag(evaluate: argparse.ArgumentParser) -> None:
    evaluate.add_argument(
        "--probe", action="store_true",
        help="also train a linear probe on the embeddings (cross-validated over videos), with zero-shot on the "
        "same folds beside it (JSON key linear_probe)",
    )  # fmt: skip


def _add_sweep_parser(sub: Any) -> None:
    sweep = sub.add_parser(
        "sweep", help="build (or reuse) one collection per frame strategy, score each with every pooling"
    )
    sweep.add_argument("--videos", required=True, help="videos folder (one sub-folder per label)")
    sweep.add_argument(
        "--frames",
        default="middle,uniform:4,uniform:8",
        help="comma-separated strategies (default: middle,uniform:4,uniform:8)",
    )
    sweep.add_argument("--db", default=DEFAULT_DB, help=f"ChromaDB folder (default: {DEFAULT_DB}/)")
    sweep.add_argument(
        "--output", default=DEFAULT_OUTPUT, help=f"output folder for thumbnails (default: {DEFAULT_OUTPUT}/)"
    )
    _add_model_flags(sweep, for_build=True)
    sweep.add_argument("--json", help="write the rows as JSON to this file ('-' for stdout)")
    sweep.add_argument("--csv", help="write the rows as CSV to this file ('-' for stdout)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_bundle_parsers(sub: Any) -> None:
    export = sub.add_parser(
        "export", help="write one collection, its thumbnails, runs and sweeps as a portable bundle (folder or .zip)"
    )
    export.add_argument("--out", required=True, help="the bundle to write: PATH.zip for one zip file, else a folder")
    _add_index_flags(export)
    export.add_argument("--output", default=DEFAULT_OUTPUT, help="output folder (where runs live with a Chroma server)")
    export.add_argument(
        "--include-model", action="store_true",
        help="also put the model's checkpoint file and custom config in the bundle, so that it is self-contained",
    )  # fmt: skip
    export.add_argument("--json", help="write the export summary as JSON to this file ('-' for stdout)")

    load = sub.add_parser("import", help="re-create a bundle's collection in an index (same ids and embeddings)")
    load.add_argument("path", help="a bundle folder or .zip made by export")
    load.add_argument("--db", default=DEFAULT_DB, help=f"ChromaDB folder (default: {DEFAULT_DB}/)")
    load.add_argument("--collection", help="the collection's name here (default: the name it had)")
    _add_server_flags(load)
    load.add_argument(
        "--output", default=DEFAULT_OUTPUT, help=f"folder for thumbnails and model files (default: {DEFAULT_OUTPUT}/)"
    )
    load.add_argument(
        "--pretrained", help="the checkpoint file, when the bundle records it without holding it (checked by sha256)"
    )
    load.add_argument("--json", help="write the import summary as JSON to this file ('-' for stdout)")


def write_json(target: str, data: Any) -> None:
    """Write JSON to a file (temporary name, then rename) or to stdout for '-'."""
    from core.app import printable, write_text_atomic

    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    if target == "-":
        sys.stdout.write(printable(text) + "\n")
        return
    write_text_atomic(target, text + "\n")


def _report_stream(args: argparse.Namespace) -> Any:
    """Where human-readable lines go: stderr when the JSON itself goes to stdout."""
    return sys.stderr if getattr(args, "json", None) == "-" else sys.stdout


def _requested_spec(args: argparse.Namespace) -> Any:
    from core.app import ModelSpec

    if not (args.model or args.pretrained or args.model_config):
        return None
    return ModelSpec.resolve(args.model, args.pretrained, args.model_config)


def _explorer(args: argparse.Namespace) -> Any:
    from core.app import Explorer

    return Explorer(output=getattr(args, "output", None) or DEFAULT_OUTPUT, device=getattr(args, "device", "auto"))


def _ref(args: argparse.Namespace) -> Any:
    """The index named by --db / --collection / the Chroma server flags."""
    from core.app import IndexRef

    return IndexRef(db=args.db, server=_server(args), collection=getattr(args, "collection", None))


class _ProgressBar:
    """A tqdm bar on stderr, made on the first update (nothing at all with --quiet)."""

    def __init__(self, quiet: bool, unit: str, desc: str) -> None:
        self.quiet, self.unit, self.desc = quiet, unit, desc
        self.bar: Any = None

    def show(self, done: int, total: int, **postfix: Any) -> None:
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
    from core.app import BuildProgress, BuildRequest, ModelSpec, NoUsableVideoError

    explorer = _explorer(args)
    explorer.refuse_if_building(_ref(args), args.output)  # before the model library is even imported
    spec = _requested_spec(args) or ModelSpec.resolve()
    bar = _ProgressBar(args.quiet, "video", "Indexing")
    say = partial(print, file=_report_stream(args))

    said: set[str] = set()

    def progress(p: BuildProgress) -> None:
        # On a terminal, say each stage the build reaches before the first video is done (loading or
        # downloading a model can take a minute); in logs and pipes an error stays one line.
        text = p.describe()
        if text and text not in said and not args.quiet and sys.stderr.isatty():
            print(f"{text[:1].upper()}{text[1:]}…", file=sys.stderr)
        said.add(text)
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
        server=_server(args),
    )
    try:
        summary = explorer.build(request, progress=progress, lock_owner="python -m core build")
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


def _print_evaluation(say: Any, result: Any) -> None:
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


def _settings_grid(args: argparse.Namespace) -> list[Any]:
    """The settings `evaluate` asked for: the --prompt set (first), every named set, every pooling."""
    from core.app import POOLINGS, PROMPT_SETS, EvalSettings

    prompt_sets: list[tuple[str, ...]] = [(name,) for name in PROMPT_SETS] if args.all_prompt_sets else []
    if args.prompt or not prompt_sets:
        prompt_sets.insert(0, tuple(args.prompt or ()))
    poolings = list(POOLINGS) if args.all_poolings else [args.pooling]
    return [
        EvalSettings(prompts=prompts, pooling=pooling, label_mode=args.labels, classes=args.classes)
        for prompts in prompt_sets
        for pooling in poolings
    ]


def _open_and_say(args: argparse.Namespace, explorer: Any) -> Any:
    """The index the command will use, and a line saying which (and how to pick another)."""
    ref = _ref(args)
    index = explorer.open(ref, _requested_spec(args))
    hint = "" if ref.collection else " (the newest; --collection NAME picks another, see python -m core info)"
    print(f"Index:   {index.name}{hint}", file=sys.stderr if getattr(args, "json", None) == "-" else sys.stdout)
    return ref.with_collection(index.name), index


def cmd_evaluate(args: argparse.Namespace) -> int:
    say = partial(print, file=_report_stream(args))
    explorer = _explorer(args)
    ref = _ref(args)
    index = explorer.open(ref, _requested_spec(args))
    say(f"Index:   {index.name} ({index.info().describe()})")
    results = explorer.grid(ref.with_collection(index.name), _settings_grid(args), save=not args.no_save)
    for result in results:
        say("")
        _print_evaluation(say, result)
    if len(results) > 1:
        say("")
        say(f"{'prompt set':<20} {'pooling':<8} {'p@1':>6} {'p@3':>6} {'p@5':>6}  95% CI of p@1")
        for result in results:
            rep, (low, high) = result.report, result.report.interval(1)
            say(
                f"{result.prompts.name:<20} {result.pooling:<8} {rep.precision_at_1:6.3f} {rep.precision_at_3:6.3f} "
                f"{rep.precision_at_5:6.3f}  {low:.3f}-{high:.3f}"
            )
    probe = _run_probe(args, explorer, ref.with_collection(index.name), results[0], say) if args.probe else None
    if args.json:
        data = results[0].to_json()
        if len(results) > 1:
            data["grid"] = [r.to_json() for r in results]
        if probe is not None:
            data["linear_probe"] = probe.to_json()
        write_json(args.json, data)
    return 0


def _run_probe(args: argparse.Namespace, explorer: Any, ref: Any, result: Any, say: Any) -> Any:
    """The linear probe for the first setting evaluated, printed beside its zero-shot figures."""
    from core.app import EvalSettings, plural

    settings = EvalSettings.from_json(result.settings["request"])
    probe = explorer.probe(ref, settings)
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
    from core.app import EvalSettings

    explorer = _explorer(args)
    ref, _index = _open_and_say(args, explorer)
    settings = EvalSettings(tuple(args.prompt or ()), args.pooling, args.labels, args.classes)
    result = explorer.evaluate(ref, settings, save=False)
    for path in explorer.write_reports(result, args.output, ref=ref).values():
        print(f"Wrote {path}")
    return 0


def _search_query(args: argparse.Namespace, text: str, k: int) -> Any:
    from core.app import DEFAULT_MARGIN, SearchQuery

    return SearchQuery(
        text=text, k=k, one_per_video=args.one_per_video, label=args.label, image=args.image,
        add=tuple(args.add), subtract=tuple(args.subtract), min_similarity=args.min_similarity,
        adaptive=args.adaptive, moments=args.moments,
        margin=DEFAULT_MARGIN if args.margin is None else args.margin,
    )  # fmt: skip


def _print_result(say: Any, result: Any) -> None:
    from core.app import plural

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


def _result_json(result: Any) -> list[dict[str, Any]]:
    items = result.moments if result.moments is not None else result.hits
    return [item.to_json() for item in items]


def cmd_search(args: argparse.Namespace) -> int:
    from core.app import check_query

    if args.interactive:
        return _interactive_search(args)
    query = _search_query(args, args.text, args.k)
    check_query(query)  # fail fast, before loading a model
    say = partial(print, file=_report_stream(args))
    explorer = _explorer(args)
    ref, _index = _open_and_say(args, explorer)
    result = explorer.find(ref, query, _requested_spec(args))
    _print_result(say, result)
    if args.json:
        write_json(args.json, _result_json(result))
    if args.html:
        say(f"Wrote {_write_html(explorer, args, args.text, result)}")
    return 0


def _write_html(explorer: Any, args: argparse.Namespace, text: str, result: Any) -> Any:
    """``search_results_<query>.html``: named after the text alone, as the notebook did, when the query is a
    text; after the composed query otherwise."""
    plain = not (args.image or args.add or args.subtract)
    name = " ".join(text.split()) if plain else result.query
    return explorer.write_search_report(name, result.hits, args.output, result.moments)


QUIT_WORDS = ("quit", "exit", "quitter", ":q")


def _interactive_search(args: argparse.Namespace) -> int:
    """The reference notebook's prompt: a query per line, `:k N`, `:html on|off`, quit/exit/quitter or EOF."""
    from core.app import UserError, check_k

    tty = sys.stdin.isatty()
    if tty:
        import readline  # noqa: F401  (line editing and history for input(), when a terminal is attached)
    explorer = _explorer(args)
    ref, _index = _open_and_say(args, explorer)
    k, html = check_k(args.k), True
    print("Type a query (':k N' sets the number of results, ':html on|off' the HTML pages; 'quit' leaves).")
    while True:
        try:
            line = input("query> " if tty else "")
        except EOFError:
            return 0
        line = line.strip()
        if not line:
            continue
        if line.lower() in QUIT_WORDS:
            return 0
        try:
            if line.startswith(":"):
                k, html = _prompt_command(line, k, html)
                continue
            result = explorer.find(ref, _search_query(args, line, k), _requested_spec(args))
        except UserError as exc:
            print(f"error: {exc}")
            continue
        _print_result(print, result)
        if html:
            print(f"Wrote {_write_html(explorer, args, line, result)}")


def _prompt_command(line: str, k: int, html: bool) -> tuple[int, bool]:
    """`:k N` or `:html on|off` → the new (k, html); anything else is a user's error."""
    from core.app import QueryError, check_k

    words = line[1:].split()
    if len(words) == 2 and words[0] == "k":
        if not words[1].isdigit():
            raise QueryError(f"':k' takes a whole number of results, not {words[1]!r}.")
        k = check_k(int(words[1]))
        print(f"k = {k}")
        return k, html
    if len(words) == 2 and words[0] == "html" and words[1] in ("on", "off"):
        print(f"HTML pages {words[1]}")
        return k, words[1] == "on"
    raise QueryError(f"Unknown command {line!r}: use ':k N', ':html on', ':html off' or 'quit'.")


def cmd_subset(args: argparse.Namespace) -> int:
    from core.app import DEFAULT_CSV, DEFAULT_SUBSET, plural, subset_classes, write_class_subset

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
    from core.app import DEFAULT_SUBSET, DownloadProgress, download, format_duration, plan_from

    subset_file = args.subset or (None if args.csv else str(DEFAULT_SUBSET))
    candidates, per_class = plan_from(subset_file, args.csv, args.classes, args.per_class)
    say = partial(print, file=_report_stream(args))
    bar = _ProgressBar(args.quiet, "clip", "Downloading")

    def progress(p: DownloadProgress) -> None:
        bar.show(p.clips_done, p.clips_wanted, failed=p.failures, running=p.in_flight,
                 elapsed=format_duration(p.elapsed_s))  # fmt: skip

    summary = download(
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
    from core.app import plural, sample_videos

    paths, labels = sample_videos(args.out, args.classes, args.per_class, args.frames)
    print(
        f"Wrote {plural(len(paths), 'clip')} of {plural(len(labels), 'class', 'classes')} under {args.out}/ "
        "(one folder per label)."
    )
    return 0


def cmd_demo_model(args: argparse.Namespace) -> int:
    from core.app import DEMO_STEPS, demo_model, plural

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
    from core.app import REFERENCE_RUN

    say = partial(print, file=_report_stream(args))
    explorer = _explorer(args)
    ref = _ref(args)
    if args.compare:
        return _compare_runs(args, explorer, ref, say)
    runs = explorer.runs(ref)
    rows = [{**REFERENCE_RUN}, *[run.row() for run in runs]]
    header = f"{'run':<13} {'frames':<10} {'pooling':<7} {'prompt set':<18} {'classes':<10}"
    say(f"{header} {'p@1':>6} {'95% CI':>13} {'p@3':>6}")
    for row in rows:
        low, high = row["ci95"].get("precision_at_1", [0, 0])
        say(
            f"{row['id']:<13.13} {row['frames']:<10} {row['pooling']:<7} {row['prompt_set']:<18.18} "
            f"{row['classes']:<10.10} {row['precision_at_1']:6.3f} {low:6.3f}-{high:.3f} {row['precision_at_3']:6.3f}"
        )
    if not runs:
        say("No run saved yet: python -m core evaluate records one.")
    if args.json:
        write_json(args.json, rows)
    return 0


def _compare_runs(args: argparse.Namespace, explorer: Any, ref: Any, say: Any) -> int:
    """Two or more runs side by side (models, typically), then per class each run's precision@1 and
    its gain over the first."""
    comparison = explorer.compare_models(ref, args.compare)
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
    if args.json:
        write_json(args.json, comparison.to_json())
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from core.app import BuildProgress, BuildRequest, ModelSpec, sweep_csv

    spec = _requested_spec(args) or ModelSpec.resolve()
    say = partial(print, file=_report_stream(args) if args.csv != "-" else sys.stderr)
    bar = _ProgressBar(args.quiet, "video", "Indexing")

    def progress(p: BuildProgress) -> None:
        bar.show(p.videos_done, p.videos_total, frames=p.frames_done, fps=f"{p.frames_per_s:.1f}",
                 elapsed=p.elapsed(), ETA=p.eta())  # fmt: skip

    request = BuildRequest(videos=args.videos, db=args.db, output=args.output, spec=spec, device=args.device)
    explorer = _explorer(args)
    try:
        rows, notes = explorer.sweep(request, args.frames.split(","), progress=progress)
    finally:
        bar.close()
    say(f"{'frames':<12} {'pooling':<8} {'p@1':>6} {'95% CI':>13} {'p@5':>6} {'MRR':>6} {'frames':>7} {'build s':>8}")
    for row in rows:
        low, high = row.precision_at_1_ci95 or [0.0, 0.0]
        seconds = "       -" if row.build_seconds is None else f"{row.build_seconds:8.1f}"
        say(
            f"{row.frames:<12} {row.pooling:<8} {row.precision_at_1:6.3f} {low:6.3f}-{high:.3f} "
            f"{row.precision_at_5:6.3f} {row.mrr:6.3f} {row.n_frames:7d} {seconds}"
        )
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        write_json(args.json, [row.to_json() for row in rows])
    if args.csv:
        text = sweep_csv(rows)
        if args.csv == "-":
            sys.stdout.write(text)
        else:
            from core.app import write_text_atomic

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
    print(summary.collection, file=sys.stderr if args.json == "-" else sys.stdout)
    if args.json:
        write_json(args.json, summary.to_json())
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    say = partial(print, file=_report_stream(args))
    ref = _ref(args)
    listed = _explorer(args).indexes(ref)
    if not listed:
        say(f"No index in {ref.server.describe() if ref.server else f'{args.db}/'}.")
    rows = []
    for item in listed:
        info = item.info
        say(f"{info.name}: {info.describe()}")
        rows.append(
            {
                "name": info.name,
                "model": info.spec.to_metadata(),
                "frames": info.frames,
                "embed_dim": info.embed_dim,
                "count": info.count,
                "created_at": info.created_at,
                "built_at": info.built_at,
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


COMMANDS = {
    "build": cmd_build,
    "evaluate": cmd_evaluate,
    "search": cmd_search,
    "report": cmd_report,
    "loadtest": cmd_loadtest,
    "subset": cmd_subset,
    "download": cmd_download,
    "sample-videos": cmd_sample_videos,
    "demo-model": cmd_demo_model,
    "runs": cmd_runs,
    "sweep": cmd_sweep,
    "info": cmd_info,
    "export": cmd_export,
    "import": cmd_import,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0), or an argument error already said in one line (2)
        return exc.code if isinstance(exc.code, int) else 2
    from core.app import UserError, configure_runtime, printable_errors

    configure_runtime()
    for stream in (sys.stdout, sys.stderr):  # names that are not UTF-8 are shown as everywhere else: \xNN
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors=printable_errors())
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
