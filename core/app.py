"""The application layer: the one place where the front doors' requests become work.

`python -m core` (core/cli/), the Streamlit pages and the background jobs (core/jobs.py) call an
`Explorer` for work, and take the values of core/requests.py and the record types from where they live.
Each decision lives in one method: build an index (`build`), evaluate it (`evaluate`, or `grid` for many
settings with texts encoded once), search it (`search`), record a run (`record`, when asked to save).

The Explorer owns the Chroma clients, the loaded models and the index contents it has read (through a
shared `ProcessCache`), so a long-lived process pays for each once. It is thread-safe: the dashboard
shares one between its sessions and its background builds.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from core.analysis.evaluation import POOLINGS, Evaluation, check_prompt_cost
from core.analysis.failures import FailureAnalysis, analyse_failures
from core.analysis.lab import (
    compare_saved_runs,
    evaluate_settings,
    probe_evaluation,
    sweep_build_time,
    sweep_rows,
    uniform_gain,
)
from core.analysis.loadtest import LoadReport, run_search_load
from core.analysis.moments import Moment
from core.analysis.probe import ProbeResult
from core.analysis.query import save_query_image
from core.analysis.reports import write_reports, write_search_report
from core.analysis.search import SearchHit, SearchResult, check_query, run_query
from core.analysis.sweep import SWEEP_KEYS, SweepRow, SweepStore, parse_strategies
from core.engines.build import BuildProgress, BuildSummary, BuildTimeline, run_build
from core.ground import IndexLockedError, SourceError, UserError, kinetics_classes
from core.kinetics.download import Candidate
from core.kinetics.download import download_subset as download
from core.media.frames import FrameStrategy, probe_source
from core.media.sources import SourceScan, scan_source
from core.media.transcode import cached_playable_copy, playable_copy
from core.media.uploads import save_upload
from core.model.embed import ClipModel
from core.model.prompts import resolve_prompts
from core.reader import IndexReader, ListedIndex, ProcessCache
from core.requests import BuildRequest, EvalSettings, IndexRef, ModelSpec, SearchQuery
from core.store.bundle import BundleSummary, export_bundle, import_bundle, open_bundle
from core.store.index import SOURCE_ANNOTATIONS, SOURCE_VIDEOS, FrameIndex
from core.store.locking import StoreLock
from core.store.runs import Run, RunComparison, RunStore, compare_per_class, run_from_evaluation

# Names the background jobs and the scenario tests import from here, besides the Explorer's own.
__all__ = [
    "POOLINGS", "SWEEP_KEYS", "BuildRequest", "Candidate", "EvalSettings", "Explorer", "IndexLockedError",
    "IndexRef", "ListedIndex", "ModelSpec", "NoUsableVideoError", "ProcessCache", "SearchHit",
    "SearchQuery", "SearchResult", "SourceError", "UserError", "download",
]  # fmt: skip


class Explorer(IndexReader):
    """Builds, evaluates and searches indexes; records runs (see `IndexReader` for what it reads, and where)."""

    # -- build ---------------------------------------------------------------------------------
    def check_source(self, videos: str | Path, annotations: str | Path | None = None, probe: bool = True) -> SourceScan:
        """What a build of this source would take and skip (nothing is written): with `probe`, each video
        file is probed (its header and first frame), so that an image or random bytes named .mp4 is skipped
        here with its reason rather than counted as a video; without it, only the folder and the
        annotations are read (the source's own errors, before a build starts)."""
        folder = self.videos_folder(videos)
        notes = self.confine(annotations, "The annotations file") if annotations else None
        scan = scan_source(folder, notes, allowed_roots=self.roots)
        return probe_source(scan) if probe else scan

    def save_upload(self, name: str, data: bytes, videos: str | Path, label: str) -> Path:
        """Store an uploaded video as ``videos/<label>/<name>`` once it proves decodable."""
        return save_upload(name, data, self.videos_folder(videos), label)

    def confined_request(self, request: BuildRequest) -> BuildRequest:
        """`request` with every path resolved, checked against the allowed roots (checkpoint and
        model config included, unless the store's collections were built with them); an empty
        videos folder is refused even without roots."""
        videos = self.videos_folder(request.videos)
        if self.roots is None:
            return request
        spec = request.spec
        recorded = self.recorded_paths(request.target)
        if spec.is_checkpoint:
            self._confine_model_file(spec.pretrained, "The checkpoint", recorded)
        if spec.config_path:
            self._confine_model_file(spec.config_path, "The model config", recorded)
        return BuildRequest(
            **{
                **request.__dict__,
                "videos": str(videos),
                "annotations": str(self.confine(request.annotations, "The annotations file"))
                if request.annotations
                else None,
                "output": str(self.confine(request.output, "The output folder")),
                "db": request.db if request.server is not None else str(self.confine(request.db, "The index folder")),
                "allowed_roots": tuple(str(r) for r in self.roots),
            }
        )

    def refuse_if_building(self, target: IndexRef, output: str | Path | None = None) -> None:
        """Raise `IndexLockedError` when a build already holds the store of `target` (its folder; with a
        Chroma server, this machine's builds on it, locked in the `output` folder): a second build is refused
        before it loads anything. The build still takes the lock itself."""
        servers = [server.describe() for server in target.servers]
        StoreLock.for_store(target.db, output or self.output, servers).refuse_if_held()

    def source_conflict(self, request: BuildRequest) -> str:
        """One sentence when `request` would add videos of another source to an existing collection
        (the one its model and frames write to, built from another folder or annotations file); ''
        when it starts a collection, continues the same source, or the collection's source is unknown."""
        frames = str(FrameStrategy.parse(request.frames))
        wanted = request.source()
        for listed in self.indexes(request.target):
            info = listed.info
            if info.spec.identity() != request.spec.identity() or info.frames != frames or not info.source_videos:
                continue
            if (info.source_videos, info.source_annotations) == (wanted[SOURCE_VIDEOS], wanted[SOURCE_ANNOTATIONS]):
                return ""
            built = describe_source(info.source_videos, info.source_annotations)
            other = describe_source(wanted[SOURCE_VIDEOS], wanted[SOURCE_ANNOTATIONS])
            return (
                f"The collection {info.name} was built from {built}: this build would add the videos of {other} "
                "to it, under their own labels; confirm to add them, or choose another index folder for a new "
                "collection."
            )
        return ""

    def build(
        self,
        request: BuildRequest,
        progress: Callable[[BuildProgress], None] | None = None,
        cancel: threading.Event | None = None,
        lock_owner: str = "",
        on_stage: Callable[[str], None] | None = None,
        timeline: BuildTimeline | None = None,
    ) -> BuildSummary:
        """Index the request's videos. A source with no usable video is refused with the reasons,
        before any collection is made. `timeline`: see `run_build`."""
        request = self.confined_request(request)
        self.refuse_if_building(request.target, request.output)

        def refuse_empty(scan: SourceScan) -> None:
            if not scan.videos:
                raise NoUsableVideoError(no_usable_video(request.videos, scan))

        def load() -> ClipModel:  # the process's model, loaded while the build's workers start
            model = self.model(request.spec, request.device)
            model.load_image_tower()  # here, not in the encoding loop: a build encodes nothing but images
            return model

        said: set[str] = set()

        def report(event: BuildProgress) -> None:
            text = event.describe()  # `on_stage`: each stage in words, once
            if on_stage is not None and text and text not in said:
                said.add(text)
                on_stage(text)
            if progress is not None:
                progress(event)

        summary = run_build(request, model=load, progress=report, cancel=cancel, lock_owner=lock_owner,
                            check_source=refuse_empty, timeline=timeline)  # fmt: skip
        if summary.videos_indexed == 0 and summary.videos_already_indexed == 0 and not summary.cancelled:
            raise NoUsableVideoError(no_usable_video(request.videos, summary), summary)
        return summary

    # -- evaluate ------------------------------------------------------------------------------
    def evaluate(self, ref: IndexRef, settings: EvalSettings, save: bool = False) -> Evaluation:
        """Score the index's videos for one setting; record it as a run only when `save`."""
        return self.grid(ref, [settings], save=save)[0]

    def grid(self, ref: IndexRef, settings: Sequence[EvalSettings], save: bool = True) -> list[Evaluation]:
        """Several settings on the same frames: each prompt set's texts encoded once, no frame re-encoded.

        Results come in the order of `settings`."""
        index, model = self.index_model(ref)
        contents = self.contents(ref.with_collection(index.name))
        version = index.version()
        ordered = evaluate_settings(contents, model, settings, {"index": index.name, "frames": index.frames})
        if save:
            for evaluation in {id(e): e for e in ordered}.values():  # one record per distinct setting
                self._record(ref, index, evaluation, version)
        return ordered

    def record(self, ref: IndexRef, evaluation: Evaluation) -> bool:
        """Save `evaluation` as a run of the index it came from; False when that run is already there
        (identical settings on an unchanged index are stored once)."""
        index = self.open(ref.with_collection(evaluation.settings.get("index") or ref.collection))
        return self._record(ref, index, evaluation, index.version())

    def _record(self, ref: IndexRef, index: FrameIndex, evaluation: Evaluation, version: str) -> bool:
        return self.run_store(ref).add(run_from_evaluation(evaluation, index, version))

    # -- runs ----------------------------------------------------------------------------------
    def run_store(self, ref: IndexRef) -> RunStore:
        """Next to an embedded index; with a Chroma server, in the output folder."""
        return RunStore.for_db(ref.db, self.output, ref.server)

    def runs(self, ref: IndexRef) -> list[Run]:
        return self.run_store(ref).load()

    def compare_runs(
        self, ref: IndexRef, run_a: str, run_b: str
    ) -> list[tuple[str, float | None, float | None, float | None]]:
        store = self.run_store(ref)
        a, b = store.get(run_a), store.get(run_b)
        if a is None or b is None:
            raise UserError(f"Unknown run id among {run_a}, {run_b}: see python -m core runs --db {ref.db}.")
        return compare_per_class(a, b)

    def link_settings(self, text: str) -> EvalSettings:
        """The evaluation settings of a deep link (`EvalSettings.loads`), refused in one sentence when their
        prompts on every Kinetics class would cost more than one evaluation may encode."""
        settings = EvalSettings.loads(text)
        if settings.classes == "all":  # the cost is known before the index is read: say it now
            check_prompt_cost(len(resolve_prompts(list(settings.prompts)).templates), len(kinetics_classes()))
        return settings

    # -- bundles -------------------------------------------------------------------------------
    def export(self, ref: IndexRef, out: str | Path, include_model: bool = False) -> BundleSummary:
        """Write the collection `ref` names (the newest when none) as a bundle, with its runs and sweeps."""
        index = self.open(ref)
        runs = [run for run in self.runs(ref) if run.index == index.name]
        sweeps = [row for row in self.sweeps(ref) if row.collection == index.name]
        return export_bundle(index, self.confine(out, "The bundle"), runs, sweeps, include_model)

    def import_bundle(
        self, source: str | Path, ref: IndexRef, pretrained: str | None = None, into: str | Path | None = None
    ) -> BundleSummary:
        """Re-create a bundle's collection in the store `ref` names (as `ref.collection` when given), its
        thumbnails and model files in the output folder. A zip is unpacked into `into` (else a temporary
        folder, removed afterwards)."""
        path = self.confine(source, "The bundle")
        scratch = None if into is not None or not path.is_file() else Path(tempfile.mkdtemp(prefix="clip-bundle-"))
        try:
            bundle = open_bundle(path, into or scratch)
            client = self.client(ref.store())
            output = self.confine(self.output, "The output folder")
            return import_bundle(bundle, client, output, self.run_store(ref), ref.collection, pretrained)
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    # -- search --------------------------------------------------------------------------------
    def search(self, ref: IndexRef, query: SearchQuery, spec: ModelSpec | None = None) -> SearchResult:
        """The answer to a query: hits (best first) or moments, the cut-off, and every frame's score when
        needed. A query that cannot be answered fails before a model is loaded."""
        if query.image:
            query = replace(query, image=str(self.confine(query.image, "The query image")))
        check_query(query)
        index, model = self.index_model(ref, spec)
        named = ref.with_collection(index.name)
        return run_query(model, index, query, lambda: self.contents(named))

    def save_query_image(self, data: bytes, name: str) -> Path:
        """An uploaded query image, kept in the output folder once per content (see `save_query_image`)."""
        return save_query_image(data, name, self.confine(self.output, "The output folder"))

    def loadtest(self, ref: IndexRef, threads: int, requests: int, k: int, seconds: float) -> LoadReport:
        index, model = self.index_model(ref)
        return run_search_load(model, index, threads=threads, requests=requests, k=k, time_limit_s=seconds)

    # -- playback ------------------------------------------------------------------------------
    def playable_copy(self, video_path: str | Path) -> Path:
        """An H.264 MP4 copy of a video a browser cannot play, in the output folder (made once)."""
        return playable_copy(video_path, self.confine(self.output, "The output folder"))

    def existing_playable_copy(self, video_path: str | Path) -> Path | None:
        """The copy made earlier for this version of the video, if any (nothing is converted)."""
        return cached_playable_copy(video_path, self.confine(self.output, "The output folder"))

    # -- reports -------------------------------------------------------------------------------
    def write_reports(
        self, evaluation: Evaluation, output: str | Path | None = None, ref: IndexRef | None = None
    ) -> dict[str, Path]:
        """The results page and histograms; with `ref` (the index evaluated), the failure analysis too."""
        folder = self.confine(output or self.output, "The output folder")
        failures = self.failures(ref, evaluation) if ref is not None else None
        title = f"CLIP results: {evaluation.settings.get('index', '')}"
        return write_reports(evaluation, folder, title=title, failures=failures)

    def write_search_report(
        self,
        text: str,
        hits: Sequence[SearchHit],
        output: str | Path | None = None,
        moments: Sequence[Moment] | None = None,
    ) -> Path:
        return write_search_report(text, hits, self.confine(output or self.output, "The output folder"), moments)

    # -- the evaluation lab: linear probe, failure analysis, sampling sweep, model comparison -------
    def probe(self, ref: IndexRef, settings: EvalSettings, seed: int = 0) -> ProbeResult:
        """A cross-validated linear probe on the index's embeddings, pooled as `settings` says, with
        zero-shot precision@1 (for `settings`) on the same folds beside it."""
        evaluation = self.evaluate(ref, settings, save=False)
        contents = self.contents(ref.with_collection(evaluation.settings.get("index") or ref.collection))
        return probe_evaluation(evaluation, contents, settings.pooling, seed)

    def uniform_gain(self, ref: IndexRef, evaluation: Evaluation) -> tuple[dict[str, float], list[str]]:
        """Per class, the gain of the same model's widest `uniform:K` collection over its `middle` one."""
        listed = [(ix.ref, ix.info) for ix in self.indexes(ref.store()) if not ix.problem]
        return uniform_gain(listed, evaluation, lambda at, settings: self.evaluate(at, settings))

    def failures(self, ref: IndexRef, evaluation: Evaluation) -> FailureAnalysis:
        """Confusion matrix, motion flags and worst margins of an evaluation of the index at `ref`."""
        gains, notes = self.uniform_gain(ref, evaluation)
        return analyse_failures(evaluation, gains, notes=notes)

    def sweep_store(self, ref: IndexRef) -> SweepStore:
        return SweepStore.beside(self.run_store(ref).path)

    def sweeps(self, ref: IndexRef) -> list[SweepRow]:
        """The sweep rows recorded for this store, newest per collection, pooling and prompts."""
        return self.sweep_store(ref).load()

    def sweep(
        self,
        request: BuildRequest,
        strategies: Sequence[str],
        settings: EvalSettings | None = None,
        progress: Callable[[BuildProgress], None] | None = None,
        on_stage: Callable[[str], None] | None = None,
    ) -> tuple[list[SweepRow], list[str]]:
        """Build (or reuse) one collection per frame strategy, score each with every pooling, record
        the rows (and the evaluations as runs). Returns the rows and notes, one sentence each."""
        settings = settings or EvalSettings()
        chosen = parse_strategies(",".join(strategies))  # every typo refused before the first build
        rows: list[SweepRow] = []
        notes: list[str] = []
        store = self.sweep_store(request.target)
        for frames in chosen:
            summary = self.build(replace(request, frames=frames), progress=progress, on_stage=on_stage,
                                 lock_owner="python -m core sweep")  # fmt: skip
            if summary.cancelled:
                notes.append(f"Cancelled during {frames}: run the same command again to finish.")
                break
            ref = request.target.with_collection(summary.index_name)
            n_frames = len(self.contents(ref))
            fresh = summary.videos_indexed and not summary.videos_already_indexed
            built = (summary.seconds, summary.frames_per_s) if fresh else None
            seconds, per_s, said = sweep_build_time(store, frames, summary.index_name, n_frames, built)
            notes += said
            evaluations = self.grid(ref, [replace(settings, pooling=p) for p in POOLINGS], save=True)
            rows += sweep_rows(frames, summary.index_name, evaluations, n_frames, seconds, per_s)
        store.add(rows)
        return rows, notes

    def compare_models(self, ref: IndexRef, run_ids: Sequence[str]) -> RunComparison:
        """Two or more saved runs side by side with per-class gains over the first."""
        return compare_saved_runs(self.run_store(ref), run_ids, ref.db)


class NoUsableVideoError(SourceError):
    """A build found nothing it could index; `summary` says what it tried (None: nothing to try)."""

    def __init__(self, message: str, summary: BuildSummary | None = None) -> None:
        super().__init__(message)
        self.summary = summary


def describe_source(videos: str, annotations: str = "") -> str:
    """A build's source in words: the videos folder, and its annotations file when there is one."""
    return f"{videos}" + (f" with the annotations {annotations}" if annotations else "")


def no_usable_video(videos: str | Path, found: SourceScan | BuildSummary) -> str:
    """One sentence: why a source gave nothing to index, with the first reasons."""
    skipped = list(found.skipped)
    reasons = "; ".join(str(s) for s in skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
    detail = f" ({reasons})" if reasons else " (it holds no video file)"
    return f"There is no usable video in {videos}{detail}: add videos there, or point to another folder."
