"""The application layer: the one place where the front doors' requests become work.

`python -m core` (core/cli.py), the Streamlit pages and the background jobs (core/jobs.py) call an
`Explorer` and nothing else of core, apart from the values of core/requests.py, the errors and the
record types and rendering helpers re-exported at the bottom of this module. Each decision lives
in one method:

- build an index: `Explorer.build`
- evaluate it: `Explorer.evaluate` (one setting) and `Explorer.grid` (many, texts encoded once)
- search it: `Explorer.search`
- record a run: `Explorer.record` (called by evaluate/grid only when asked to save)

The Explorer owns the Chroma clients, the loaded models and the index contents it has read, so a
long-lived process (the dashboard, the interactive prompt) pays for each once. It is thread-safe:
the dashboard shares one between its sessions and its background builds.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.analysis.evaluation import (
    CLASS_SETS,
    POOLINGS,
    Evaluation,
    check_prompt_cost,
    class_names_for,
    evaluate_grid,
    pooled_embeddings,
)
from core.analysis.failures import FailureAnalysis, MotionFlag, VideoMargin, analyse_failures, confused_samples
from core.analysis.loadtest import LoadReport, run_search_load
from core.analysis.moments import DEFAULT_MARGIN, Moment
from core.analysis.plots import confusion_counts_heatmap, runs_chart, score_histogram, similarity_histogram, sweep_chart
from core.analysis.probe import ProbeResult, linear_probe
from core.analysis.query import IMAGE_FORMATS, IMAGE_SUFFIXES, read_query_image, shorten_query
from core.analysis.reports import (
    image_data_uri,
    metrics_csv,
    metrics_rows,
    per_class_csv,
    per_video_csv,
    results_html,
    safe_report_name,
    search_html,
    write_reports,
    write_search_report,
)
from core.analysis.search import MAX_K, SearchHit, SearchResult, check_k, check_request, normalise_query, run_query
from core.analysis.sweep import SWEEP_KEYS, SweepRow, SweepStore, parse_strategies, sweep_csv
from core.engines.build import BuildProgress, BuildSummary, run_build
from core.ground import (
    DEFAULT_CSV,
    DEFAULT_SUBSET,
    IndexLockedError,
    IndexUnavailableError,
    QueryError,
    SourceError,
    UserError,
    confine,
    format_duration,
    now_iso,
    plural,
    printable,
    printable_errors,
    safe_name,
    write_bytes_atomic,
    write_text_atomic,
)
from core.kinetics.download import Candidate, DownloadProgress, DownloadSummary, download_subset, plan_from
from core.kinetics.subset import make_subset, reference_classes, write_subset
from core.media.frames import (
    DEFAULT_SCENES,
    MAX_FPS,
    MAX_FPS_FRAMES,
    MAX_SCENES,
    MAX_UNIFORM_FRAMES,
    FrameStrategy,
    probe_source,
)
from core.media.samples import make_sample_videos
from core.media.sources import VIDEO_EXTENSIONS, SourceScan, read_kinetics_csv, scan_source
from core.media.transcode import browser_playability, cached_playable_copy, playable_copy
from core.media.uploads import save_upload
from core.model.demo_model import DEMO_MODEL_NAME, make_demo_model
from core.model.demo_model import STEPS as DEMO_STEPS
from core.model.embed import (
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    ClipModel,
    ModelSpec,
    check_weights_available,
    load_model,
)
from core.model.prompts import DEFAULT_PROMPT, LABEL_MODES, PROMPT_SETS, resolve_prompts
from core.requests import BuildRequest, EvalSettings, IndexRef, SearchQuery
from core.runtime import configure_runtime
from core.store.bundle import BundleSummary, export_bundle, fetch_bundle, import_bundle, open_bundle
from core.store.index import (
    SOURCE_ANNOTATIONS,
    SOURCE_VIDEOS,
    ChromaServer,
    FrameIndex,
    IndexContents,
    IndexInfo,
    connect,
    list_indexes,
    open_index,
)
from core.store.locking import BuildLock
from core.store.runs import (
    REFERENCE_RUN,
    Run,
    RunComparison,
    RunStore,
    compare_per_class,
    compare_runs_side_by_side,
    run_from_evaluation,
)

if TYPE_CHECKING:
    import chromadb

ModelLoader = Callable[[ModelSpec, str], ClipModel]
# What an Explorer may offer beyond reading: pages ask `Explorer.offers` rather than checking a mode.
WRITES = ("build", "upload", "download", "save_run")
_CONTENTS_CACHED = 2  # index contents kept in memory (each holds every embedding of a collection)


def store_exists(ref: IndexRef) -> bool:
    """Whether there is a store to read: a server (assumed), or an embedded folder with a database."""
    return ref.server is not None or (Path(ref.db).expanduser() / "chroma.sqlite3").is_file()


@dataclass(frozen=True)
class ListedIndex:
    """A collection as the front doors show it: where it is and what it holds (`info.version`
    changes with its content)."""

    ref: IndexRef
    info: IndexInfo
    problem: str = ""  # why this tool cannot use it (another schema version), in one sentence


def load_text_first(spec: ModelSpec, device: str) -> ClipModel:
    """The model as an Explorer first needs it: the text tower now (text queries, prompts), the image tower
    when an image is first encoded (an image query, a build); see `load_model`."""
    return load_model(spec, device, towers=("text",))


class ProcessCache:
    """What a process loads once and shares between its Explorers (and threads): the models, the
    Chroma clients and the index contents last read."""

    def __init__(self, model_loader: ModelLoader = load_text_first) -> None:
        self.load_model = model_loader
        self.lock = threading.RLock()
        self.models: dict[tuple[ModelSpec, str], ClipModel] = {}
        self.model_locks: dict[tuple[ModelSpec, str], threading.Lock] = {}
        self.clients: dict[tuple[str, Any], chromadb.ClientAPI] = {}
        self.contents: OrderedDict[tuple[IndexRef, str], IndexContents] = OrderedDict()


class Explorer:
    """Builds, evaluates and searches indexes; records runs.

    `output`: where thumbnails, reports and (with a Chroma server) runs go. `roots`: when given,
    every path that comes from a request (videos, annotations, output, index folder, checkpoint,
    model config, uploads) must lie inside one of these folders (the dashboard); None trusts the
    caller (the command line, whose user owns the machine). Explorers are cheap: the loaded models
    and clients live in the `cache`, which a long-lived process shares between them.
    """

    def __init__(
        self,
        output: str | Path = "output",
        device: str = "auto",
        roots: Sequence[str | Path] | None = None,
        cache: ProcessCache | None = None,
    ) -> None:
        self.output = str(output)
        self.device = device
        self.roots = [Path(r).expanduser().resolve() for r in roots] if roots is not None else None
        self.cache = cache or ProcessCache()

    shared_bundle = ""  # the name of the bundle a read-only Explorer shows ("" for none)

    def offers(self, feature: str) -> bool:
        """Whether this Explorer does `feature` (one of `WRITES`); a read-only one does none of them."""
        return feature in WRITES

    # -- paths ---------------------------------------------------------------------------------
    def confine(self, path: str | Path, what: str) -> Path:
        """`path` resolved; refused (one sentence) outside the allowed roots when there are any."""
        return confine(path, self.roots, what)

    def videos_folder(self, videos: str | Path | None) -> Path:
        """The videos folder of a request, resolved and confined; an empty field is refused (it would
        mean the working directory, whose files have nothing to do with the videos)."""
        if not str(videos or "").strip():
            raise SourceError("The videos folder is empty: give the folder that holds your videos, e.g. videos/.")
        return self.confine(str(videos), "The videos folder")

    def recorded_paths(self, store: IndexRef | None) -> set[str]:
        """The checkpoint and config files the store's collections were built with: the operator
        chose them when building, so the app may load them again wherever they lie."""
        if store is None:
            return set()
        try:
            listed = self.indexes(store.store())
        except UserError:  # no store to read (a server down): nothing is recorded
            return set()
        paths = set()
        for ix in listed:
            spec = ix.info.spec
            if spec.is_checkpoint:
                paths.add(str(Path(spec.pretrained).expanduser().resolve()))
            if spec.config_path:
                paths.add(str(Path(spec.config_path).expanduser().resolve()))
        return paths

    def _confine_model_file(self, path: str, what: str, recorded: set[str]) -> str:
        resolved = Path(path).expanduser().resolve()
        return str(resolved) if str(resolved) in recorded else str(self.confine(path, what))

    def resolve_spec(
        self, model: str | None, pretrained: str | None, config: str | None, store: IndexRef | None = None
    ) -> ModelSpec:
        """A model choice checked without loading it; a checkpoint or config path typed into the app
        must lie inside the allowed roots (it is read, so it is confined like every other path),
        unless a collection of `store` was built with that very file."""
        if self.roots is not None:
            recorded = self.recorded_paths(store)
            if config:
                config = self._confine_model_file(config, "The model config", recorded)
            # A file that exists, or anything written as a path: tags ("openai") have no separators.
            if pretrained and ("/" in pretrained or "\\" in pretrained or Path(pretrained).expanduser().exists()):
                pretrained = self._confine_model_file(pretrained, "The checkpoint", recorded)
        return ModelSpec.resolve(model or None, pretrained or None, config or None)

    # -- stores and models ---------------------------------------------------------------------
    def client(self, ref: IndexRef, create: bool = False) -> chromadb.ClientAPI | None:
        """The store's client, or None for an embedded folder that holds no index yet (and then
        nothing is created on disk unless `create`: typing a folder name must not make one)."""
        db = str(Path(ref.db).expanduser().resolve()) if ref.server is None else ""
        if ref.server is None and not create and not store_exists(ref):
            return None
        key = (db, ref.server)
        cache = self.cache
        with cache.lock:
            # An embedded folder deleted since its client was made is a new, empty store.
            if key in cache.clients and (ref.server is not None or store_exists(ref)):
                return cache.clients[key]
            client = connect(db or ref.db, ref.server)
            cache.clients[key] = client
            return client

    def model(self, spec: ModelSpec, device: str | None = None) -> ClipModel:
        """The loaded model for `spec`, made once per process (concurrent callers wait for it)."""
        key = (spec, device or self.device)
        cache = self.cache
        with cache.lock:
            if key in cache.models:
                return cache.models[key]
            lock = cache.model_locks.setdefault(key, threading.Lock())
        with lock:
            with cache.lock:
                if key in cache.models:
                    return cache.models[key]
            model = cache.load_model(spec, key[1])
            with cache.lock:
                cache.models[key] = model
            return model

    # -- indexes -------------------------------------------------------------------------------
    def where(self, ref: IndexRef) -> str:
        return f"the index at {ref.db}/" if ref.server is None else f"the Chroma server at {ref.server.describe()}"

    def indexes(self, ref: IndexRef) -> list[ListedIndex]:
        """The store's collections, newest build first (an embedded folder without an index: none)."""
        client = self.client(ref)
        if client is None:
            return []
        return [
            ListedIndex(ref.with_collection(ix.name), ix.info(), ix.schema_problem()) for ix in list_indexes(client)
        ]

    def open(self, ref: IndexRef, spec: ModelSpec | None = None) -> FrameIndex:
        """The collection `ref` names (the newest when it names none; with `spec`, the newest of that model)."""
        client = self.client(ref)
        if client is None:
            raise IndexUnavailableError(
                f"There is no index at {ref.db}/: build one first with python -m core build --videos DIR "
                f"--db {ref.db}, or on the Build page."
            )
        return open_index(client, spec=spec, name=ref.collection, where=self.where(ref))

    def index_model(self, ref: IndexRef, spec: ModelSpec | None = None) -> tuple[FrameIndex, ClipModel]:
        """The index and the model to query it with: the index's own unless `spec` (which must match)."""
        index = self.open(ref, spec)
        return index, self.model(spec or index.spec)

    def contents(self, ref: IndexRef) -> IndexContents:
        """Every complete video's frames with their embeddings; read once per index version."""
        index = self.open(ref)
        key = (ref.with_collection(index.name), index.version())
        cache = self.cache
        with cache.lock:
            if key in cache.contents:
                cache.contents.move_to_end(key)
                return cache.contents[key]
        contents = index.contents()
        with cache.lock:
            cache.contents[key] = contents
            while len(cache.contents) > _CONTENTS_CACHED:
                cache.contents.popitem(last=False)
        return contents

    def labels(self, ref: IndexRef) -> list[str]:
        return self.open(ref).labels()

    # -- build ---------------------------------------------------------------------------------
    def check_source(self, videos: str | Path, annotations: str | Path | None = None) -> SourceScan:
        """What a build of this source would take and skip (nothing is written): each video file is
        probed (its header and first frame), so that an image or random bytes named .mp4 is skipped here
        with its reason rather than counted as a video."""
        folder = self.videos_folder(videos)
        notes = self.confine(annotations, "The annotations file") if annotations else None
        return probe_source(scan_source(folder, notes, allowed_roots=self.roots))

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
        server = target.server.describe() if target.server is not None else None
        BuildLock.for_store(target.db, output or self.output, server).refuse_if_held()

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
    ) -> BuildSummary:
        """Index the request's videos. A source with no usable video is refused with the reasons,
        before any collection is made."""
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
                            check_source=refuse_empty)  # fmt: skip
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
        results: dict[EvalSettings, Evaluation] = {}
        groups: dict[tuple[tuple[str, ...], str, str], list[EvalSettings]] = {}
        for item in settings:
            groups.setdefault((item.prompts, item.label_mode, item.classes), []).append(item)
        present = sorted({str(x) for x in contents.labels})
        prompt_sets = {key: resolve_prompts(list(key[0])) for key in groups}
        for (_prompts, _label_mode, classes), prompt_set in prompt_sets.items():  # every setting, before any work
            check_prompt_cost(len(prompt_set.templates), len(class_names_for(classes, present)[0]))
        for (prompts, label_mode, classes), members in groups.items():
            poolings = list(dict.fromkeys(m.pooling for m in members))
            evaluations = evaluate_grid(
                contents, model, [prompt_sets[(prompts, label_mode, classes)]], poolings, classes, label_mode
            )
            for member in members:
                evaluation = evaluations[poolings.index(member.pooling)]
                evaluation.settings.update({"index": index.name, "frames": index.frames, "request": member.to_json()})
                results[member] = evaluation
        ordered = [results[item] for item in settings]
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
            client = self.client(ref.store(), create=True)
            assert client is not None  # made on demand
            output = self.confine(self.output, "The output folder")
            return import_bundle(bundle, client, output, self.run_store(ref), ref.collection, pretrained)
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    # -- search --------------------------------------------------------------------------------
    def search(self, ref: IndexRef, query: SearchQuery, spec: ModelSpec | None = None) -> list[SearchHit]:
        """The frames most similar to the query, best first."""
        return self.find(ref, query, spec).hits

    def find(self, ref: IndexRef, query: SearchQuery, spec: ModelSpec | None = None) -> SearchResult:
        """The whole answer to a query: hits or moments, the cut-off, and every frame's score when needed."""
        if query.image:
            query = replace(query, image=str(self.confine(query.image, "The query image")))
        parts, options = query.parts(), query.options()
        check_request(parts, options)  # a query that cannot be answered fails before a model is loaded
        index, model = self.index_model(ref, spec)
        named = ref.with_collection(index.name)
        return run_query(model, index, parts, options, lambda: self.contents(named))

    def save_query_image(self, data: bytes, name: str) -> Path:
        """An uploaded query image, kept as ``<output>/queries/<sha1>/<its name>`` (checked as an image
        first): one copy per content, under the name the person knows, which the search header shows."""
        read_query_image(data, name)
        base = Path(name.replace("\\", "/")).name  # a browser may send a Windows path
        suffix = Path(base).suffix.lower() if Path(base).suffix.lower() in IMAGE_SUFFIXES else ".img"
        stem = safe_name(Path(base).stem, readable=True) or "image"
        folder = self.confine(self.output, "The output folder") / "queries" / hashlib.sha1(data).hexdigest()
        path = folder / f"{stem}{suffix}"
        if not path.exists():
            write_bytes_atomic(path, data)
        return path

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
        features = pooled_embeddings(contents, settings.pooling)
        # A sample's video decides its fold; with frame pooling several samples share one.
        videos = contents.video_ids if settings.pooling == "frame" else evaluation.samples.ids
        hits = evaluation.report.ranks == 1
        return linear_probe(features, evaluation.samples.labels, list(videos), hits, settings.pooling, seed)

    def uniform_gain(self, ref: IndexRef, evaluation: Evaluation) -> tuple[dict[str, float], list[str]]:
        """Per class, precision@1 of the same model's `uniform:K` collection (largest K) minus its
        `middle` one, when the store holds both; and a sentence saying what was compared."""
        request = evaluation.settings.get("request")
        name = evaluation.settings.get("index")
        listed = [ix for ix in self.indexes(ref.store()) if not ix.problem]
        this = next((ix for ix in listed if ix.info.name == name), None)
        if this is None or request is None:
            return {}, []
        same_model = [ix for ix in listed if ix.info.spec.identity() == this.info.spec.identity()]
        middle = next((ix for ix in same_model if ix.info.frames == "middle"), None)
        uniform = sorted(
            (ix for ix in same_model if ix.info.frames.startswith("uniform:")),
            key=lambda ix: int(ix.info.frames.split(":")[1]),
        )
        if middle is None or not uniform:
            return {}, []
        settings = EvalSettings.from_json(request)
        pooling = settings.pooling if settings.pooling in ("mean", "max") else "mean"
        wide = uniform[-1]
        a = self.evaluate(middle.ref, replace(settings, pooling="middle")).report.per_class
        b = self.evaluate(wide.ref, replace(settings, pooling=pooling)).report.per_class
        gains = {label: b[label] - a[label] for label in a if label in b}
        note = f"Motion by frames: {wide.info.frames} ({pooling} pooling) against middle, same model."
        return gains, [note]

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
        store_ref = request.target
        store = self.sweep_store(store_ref)
        for frames in chosen:
            summary = self.build(replace(request, frames=frames), progress=progress, on_stage=on_stage,
                                 lock_owner="python -m core sweep")  # fmt: skip
            if summary.cancelled:
                notes.append(f"Cancelled during {frames}: run the same command again to finish.")
                break
            ref = store_ref.with_collection(summary.index_name)
            n_frames = len(self.contents(ref))
            build_seconds: float | None
            frames_per_s: float | None
            if summary.videos_indexed and not summary.videos_already_indexed:
                build_seconds, frames_per_s = summary.seconds, summary.frames_per_s
            else:
                known = store.known_build(summary.index_name, n_frames)
                build_seconds, frames_per_s = known if known else (None, None)
                if known is None:
                    notes.append(f"{frames}: reused {summary.index_name}, whose build time is unknown (not built "
                                 "by a sweep, or resumed): its build seconds are left empty.")  # fmt: skip
            evaluations = self.grid(ref, [replace(settings, pooling=p) for p in POOLINGS], save=True)
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
                        collection=summary.index_name,
                        prompt_set=evaluation.prompts.name,
                        timestamp=now_iso(),
                    )
                )
        store.add(rows)
        return rows, notes

    def compare_models(self, ref: IndexRef, run_ids: Sequence[str]) -> RunComparison:
        """Two or more saved runs side by side with per-class gains over the first (different models
        on the same videos, typically)."""
        store = self.run_store(ref)
        runs = [store.get(run_id) for run_id in run_ids]
        missing = [run_id for run_id, run in zip(run_ids, runs, strict=True) if run is None]
        if missing or len(run_ids) < 2:
            what = (
                f"{plural(len(missing), 'unknown run id')}: {', '.join(missing)}"
                if missing
                else "Give at least two run ids"
            )
            raise UserError(f"{what}: see python -m core runs --db {ref.db}.")
        return compare_runs_side_by_side([run for run in runs if run is not None])


def check_query(query: SearchQuery) -> None:
    """Refuse a query that cannot be answered (nothing to look for, a bad k or margin, an unreadable
    image) before any model or index is loaded."""
    check_request(query.parts(), query.options())
    if query.image:
        read_query_image(query.image)


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


# -- share mode: the same app over a bundle, read-only -------------------------------------------
class SharedExplorer(Explorer):
    """An Explorer over a bundle unpacked into a private temporary folder (`home`): it answers searches
    and evaluations and refuses every write in one sentence. `ref` is the bundle's collection."""

    def __init__(self, bundle_name: str, home: Path, device: str = "auto", cache: ProcessCache | None = None) -> None:
        super().__init__(output=home / "output", device=device, roots=[home], cache=cache)
        self.home, self.shared_bundle = home, bundle_name
        self.ref = IndexRef(db=str(home / "db"))

    def offers(self, feature: str) -> bool:
        return False

    def _refuse(self, what: str) -> UserError:
        return UserError(
            f"This app shows the shared bundle {self.shared_bundle} read-only, so it cannot {what}: run the "
            "explorer on your own machine to do that."
        )

    def build(self, *args: Any, **kwargs: Any) -> BuildSummary:
        raise self._refuse("build an index")

    def sweep(self, *args: Any, **kwargs: Any) -> tuple[list[SweepRow], list[str]]:
        raise self._refuse("build an index")

    def save_upload(self, *args: Any, **kwargs: Any) -> Path:
        raise self._refuse("keep uploaded videos")

    def grid(self, ref: IndexRef, settings: Sequence[EvalSettings], save: bool = True) -> list[Evaluation]:
        if save:
            raise self._refuse("save runs")
        return super().grid(ref, settings, save=False)

    def record(self, ref: IndexRef, evaluation: Evaluation) -> bool:
        raise self._refuse("save runs")


def open_shared(
    source: str,
    device: str = "auto",
    cache: ProcessCache | None = None,
    progress: Callable[[int, int], None] | None = None,
    pretrained: str | None = None,
) -> SharedExplorer:
    """A read-only Explorer over the bundle at `source` (a folder, a .zip, or an http(s) URL of a .zip,
    downloaded with `progress(bytes, total)`). Everything it writes goes into a new private temporary
    folder, removed when the process ends; nothing is written anywhere else."""
    home = Path(tempfile.mkdtemp(prefix="clip-explorer-share-"))
    atexit.register(shutil.rmtree, home, True)
    try:
        if source.lower().startswith(("http://", "https://")):
            archive = fetch_bundle(source, home, progress)
            bundle = open_bundle(archive, home / "bundle", source)
            archive.unlink()
        else:
            path = Path(source).expanduser()
            bundle = open_bundle(path, home / "bundle" if path.is_file() else None, source)
        shared = SharedExplorer(Path(source.rstrip("/")).name or bundle.collection, home, device, cache)
        client = shared.client(shared.ref, create=True)
        assert client is not None  # made on demand
        import_bundle(bundle, client, shared.output, shared.run_store(shared.ref), pretrained=pretrained)
    except BaseException:
        shutil.rmtree(home, ignore_errors=True)
        raise
    return shared


# -- the Kinetics subset, downloads and sample clips (no index involved) -------------------------
def subset_classes(items: Sequence[str], csv_path: str | Path) -> list[str]:
    """Class names from 'reference' (the study's 50), 'all' (every class of the CSV), files with one
    class per line, or names; duplicates dropped, order kept."""
    classes: list[str] = []
    for item in items:
        if item == "reference":
            classes.extend(reference_classes())
        elif item == "all":
            classes.extend(sorted({" ".join(r["label"].split()) for r in read_kinetics_csv(csv_path)}))
        elif Path(item).is_file():
            classes.extend(line.strip() for line in Path(item).read_text(encoding="utf-8").splitlines() if line.strip())
        else:
            classes.append(" ".join(item.split()))
    return list(dict.fromkeys(classes))


def write_class_subset(
    csv_path: str | Path, classes: Sequence[str], per_class: int, candidates: int, out: str | Path
) -> tuple[Path, dict[str, Any]]:
    """The subset file: per class, the candidate clips to try in order."""
    subset = make_subset(csv_path, classes, per_class=per_class, candidates=candidates)
    return write_subset(subset, out), subset


def sample_videos(
    out: str | Path, classes: int = 10, per_class: int = 5, frames: int = 48
) -> tuple[list[Path], list[str]]:
    """Small synthetic clips of the first `classes` reference classes, one folder per label."""
    labels = reference_classes()[: max(1, classes)]
    return make_sample_videos(out, labels, per_class=max(1, per_class), n_frames=max(1, frames)), labels


def demo_model(
    out: str | Path, classes: int = 10, steps: int = DEMO_STEPS, progress: Callable[[int, int], None] | None = None
) -> ModelSpec:
    """Train the tiny offline demo model for the first `classes` reference classes (the labels
    `sample_videos` makes with the same number): meaningful on the sample clips only. `progress` is told
    (steps done, steps) as it trains."""
    return make_demo_model(out, reference_classes()[: max(1, classes)], steps=steps, progress=progress)


def download(
    candidates: dict[str, list[Candidate]],
    out: str | Path,
    per_class: int,
    jobs: int = 4,
    retries: int = 3,
    progress: Callable[[DownloadProgress], None] | None = None,
    cancel: threading.Event | None = None,
    retry_failed: bool = False,
) -> DownloadSummary:
    """Download `per_class` clips per class (see core/kinetics/download.py for the guarantees)."""
    return download_subset(
        candidates, out, per_class=per_class, jobs=max(1, jobs), retries=max(0, retries), progress=progress,
        cancel=cancel, retry_failed=retry_failed,
    )  # fmt: skip


# -- what the front doors may use besides the Explorer: record types, choices and renderers -----
__all__ = [
    "CLASS_SETS",
    "DEFAULT_CSV",
    "DEFAULT_MARGIN",
    "DEFAULT_MODEL",
    "DEFAULT_PRETRAINED",
    "DEFAULT_PROMPT",
    "DEFAULT_SCENES",
    "DEFAULT_SUBSET",
    "DEMO_MODEL_NAME",
    "DEMO_STEPS",
    "IMAGE_FORMATS",
    "IMAGE_SUFFIXES",
    "LABEL_MODES",
    "MAX_FPS",
    "MAX_FPS_FRAMES",
    "MAX_K",
    "MAX_SCENES",
    "MAX_UNIFORM_FRAMES",
    "POOLINGS",
    "PROMPT_SETS",
    "REFERENCE_RUN",
    "SWEEP_KEYS",
    "VIDEO_EXTENSIONS",
    "WRITES",
    "BuildProgress",
    "BuildRequest",
    "BuildSummary",
    "BundleSummary",
    "Candidate",
    "ChromaServer",
    "ClipModel",
    "DownloadProgress",
    "DownloadSummary",
    "EvalSettings",
    "Evaluation",
    "Explorer",
    "FailureAnalysis",
    "IndexInfo",
    "IndexLockedError",
    "IndexRef",
    "ListedIndex",
    "LoadReport",
    "ModelSpec",
    "Moment",
    "MotionFlag",
    "NoUsableVideoError",
    "ProbeResult",
    "ProcessCache",
    "QueryError",
    "Run",
    "RunComparison",
    "SearchHit",
    "SearchQuery",
    "SearchResult",
    "SharedExplorer",
    "SourceScan",
    "SweepRow",
    "UserError",
    "VideoMargin",
    "browser_playability",
    "check_k",
    "check_query",
    "check_weights_available",
    "configure_runtime",
    "confused_samples",
    "confusion_counts_heatmap",
    "demo_model",
    "describe_source",
    "download",
    "format_duration",
    "image_data_uri",
    "metrics_csv",
    "metrics_rows",
    "no_usable_video",
    "normalise_query",
    "open_shared",
    "per_class_csv",
    "per_video_csv",
    "plan_from",
    "plural",
    "printable",
    "printable_errors",
    "results_html",
    "runs_chart",
    "safe_report_name",
    "sample_videos",
    "score_histogram",
    "search_html",
    "shorten_query",
    "similarity_histogram",
    "store_exists",
    "subset_classes",
    "sweep_chart",
    "sweep_csv",
    "write_class_subset",
    "write_text_atomic",
]
