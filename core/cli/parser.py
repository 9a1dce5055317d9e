"""The command line's parser: every sub-command and flag of ``python -m core``.

The sub-commands, flags and their help are a contract other tools rely on: add to them, never rename.
Numeric flags are checked against their ranges (core/limits.py) while the arguments are parsed, so that a
bad one is refused before anything heavy is imported.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, TypeAlias

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


if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[_Parser]


def _setting(name: str) -> Callable[[str], int | float | str]:
    """The argparse type of a numeric flag: its value checked against its range (core/limits.py), while the
    arguments are parsed, so that a bad one is refused before anything heavy is imported."""

    def parse(text: str) -> int | float | str:
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
    group.add_argument(
        "--chroma-host", help="host of a Chroma server; several, comma-separated (host[:port],…), for a sharded index"
    )
    group.add_argument(
        "--chroma-port", type=_setting("chroma_port"), default=None, help="their port where not given (default: 8000)"
    )
    group.add_argument("--chroma-ssl", action="store_true", help="use HTTPS")
    group.add_argument("--chroma-token-header", default=None, help="auth header (default: Authorization, as Bearer)")


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
    batch = "images per encoding batch, 1 to 4096 (default: 32 on a CPU, 128 on a GPU)"
    build.add_argument("--batch-size", type=_setting("batch_size"), default=None, help=batch)
    workers = "frame workers (processes): 1 to 4 per core, or auto (default: one per core but one)"
    build.add_argument("--workers", type=_setting("workers"), default="auto", help=workers)
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
    build.add_argument(
        "--shards", type=_setting("shards"), default=None,
        help="write the index as N collections, a writer each, spread over the --chroma-host servers (or in "
        "sub-folders of --db): 1 to 64 (default: the index's own; 1 for a new one)",
    )  # fmt: skip
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
    margin = "with --moments: frames within this much (0 to 2) of a video's best similarity join its segments "
    search.add_argument("--margin", type=_setting("margin"), default=None, help=margin + "(default 0.02)")
    floor = "drop hits whose similarity (-1 to 1) is below X"
    search.add_argument("--min-similarity", type=_setting("min_similarity"), metavar="X", help=floor)
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
    classes = "as many classes as sample-videos made (default: 10)"
    demo.add_argument("--classes", type=_setting("sample_classes"), default=10, help=classes)
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


def _add_sweep_parser(sub: Subparsers) -> None:
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


def _add_bundle_parsers(sub: Subparsers) -> None:
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
