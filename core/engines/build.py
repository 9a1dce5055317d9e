"""Building an index: one skeleton for every engine.

    check (once) → scan the source → lock the index
    → start up: the engine's workers ‖ the index opening ‖ the model loading
    → index: the engine's videos → the writer (complete videos only), with progress
    → finish: the summary

An engine (`core.engines.local`, `core.engines.ray_engine`) supplies only "videos in, frames and vectors
out" (`Engine`); the checks, the lock, the scan, the index, the writer, progress and the summary are here,
each stage a plain function of the request and one `BuildConfig`. `run_build` is the one entry point (the
application layer, the benchmark and the tests use it). Progress goes to a callback as `BuildProgress`
events and cancellation comes from a `threading.Event`; nothing here knows about the terminal or Streamlit.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core.engines.config import BuildConfig, Engine, default_batch_size, resolve_workers
from core.engines.local import FramePool, LocalEngine
from core.engines.records import BuildProgress, BuildStage, BuildSummary, BuildTimeline, VideoResult
from core.ground import UserError
from core.limits import check_setting
from core.media.frames import FrameStrategy
from core.media.sources import SkippedItem, SourceScan, VideoRecord, scan_source
from core.media.thumbnails import remove_stale_temporaries
from core.model.embed import ClipModel, check_weights_available, load_model, resolve_device, resolve_precision
from core.requests import BuildRequest
from core.store.build_target import BuildIndex, ShardProcess, open_build_index, start_shard_writers
from core.store.catalog import Store
from core.store.locking import StoreLock
from core.store.writer import Writer, writer_failure, writer_for

__all__ = [
    "BuildConfig",
    "BuildProgress",
    "BuildStage",
    "BuildSummary",
    "BuildTimeline",
    "build_index",
    "check_build",
    "check_engine",
    "default_batch_size",
    "resolve_workers",
    "run_build",
]

ENGINES = ("local", "ray")
ModelSource = ClipModel | Callable[[], ClipModel] | None
Progress = Callable[[BuildProgress], None] | None


# -- check -----------------------------------------------------------------------------------------------


def check_engine(request: BuildRequest) -> None:
    """Refuse, before any work (a model to load, a source to read), an engine this build cannot use: an unknown
    one, or the Ray engine without Ray installed or with an embedded index on a cluster. One sentence each."""
    if request.engine not in ENGINES:
        raise UserError(f"Unknown engine {request.engine!r}: use local or ray.")
    if request.engine == "ray":
        from core.engines.ray_engine import check_ray_request  # Ray is optional: imported only when asked for

        check_ray_request(request)


def check_build(request: BuildRequest) -> BuildConfig:
    """Every check of the request a build makes before any work, each once, with one sentence per refusal;
    the settings every stage then reads. The Ray engine's device and precision are resolved per cluster,
    so only their values are checked here."""
    check_engine(request)
    if request.batch_size is not None:
        check_setting("batch_size", request.batch_size)  # 0 or -5 refused, not taken for the default
    if request.shards is not None:
        check_setting("shards", request.shards)
    strategy = FrameStrategy.parse(request.frames)
    if request.engine == "ray":
        import torch

        resolve_precision(request.precision, torch.device("cpu"))
    else:
        resolve_precision(request.precision, resolve_device(request.device))
    return BuildConfig(
        strategy=strategy,
        output_dir=Path(request.output).expanduser().resolve(),
        workers=resolve_workers(request.workers) if request.engine == "local" else 1,
        batch_size=request.batch_size,
        precision=request.precision,
    )


def engine_for(request: BuildRequest) -> Engine:
    """The engine the request names (checked by `check_engine`)."""
    if request.engine == "ray":
        from core.engines.ray_engine import RayEngine

        return RayEngine(request)
    return LocalEngine()


# -- scan ------------------------------------------------------------------------------------------------


def read_source(request: BuildRequest, progress: Progress = None) -> SourceScan:
    """The request's videos and what was skipped on the way."""
    _say(progress, BuildProgress(stage=BuildStage.SCANNING))
    return scan_source(request.videos, request.annotations, allowed_roots=request.allowed_roots)


# -- start up --------------------------------------------------------------------------------------------


def start_up(
    request: BuildRequest,
    config: BuildConfig,
    engine: Engine,
    model: ModelSource,
    progress: Progress = None,
    lock_owner: str = "",
    timeline: BuildTimeline | None = None,
    videos: Sequence[VideoRecord] = (),
    cancel: threading.Event | None = None,
) -> tuple[ClipModel, BuildIndex]:
    """The engine's start (worker processes, a cluster), the store's opening and the model's loading, side
    by side: the model (`model` None: the request's; a function: called here) and the index to write to
    (its collections made with its first records; a sharded one's writers started). Once the model is
    loaded, the engine begins on the first of `videos` while the store is still opening (`Engine.prefetch`),
    unless `cancel` is set by then."""
    timeline = timeline or BuildTimeline()
    if not isinstance(model, ClipModel):
        _say(progress, BuildProgress(stage=BuildStage.STARTING, model=request.spec.describe()))
    failure: BaseException | None = None
    with ThreadPoolExecutor(2, thread_name_prefix="build-start-up") as side:  # left when both have ended
        loading = side.submit(_marked, timeline, "model_load", load_build_model, request, config, engine, model)
        opening = side.submit(_open_store, request, lock_owner)
        try:
            engine.start(config, timeline)  # here: a process pool is best started from the caller's thread
            timeline.mark("workers_started")
            # The workers need the model's input geometry, not the index: they start on the first videos now
            # (opening a store imports Chroma, half a second), and the build drops those the index has.
            if videos and loading.exception() is None and not (cancel is not None and cancel.is_set()):
                engine.prefetch(videos, loading.result(), config)
        except BaseException as exc:
            failure = exc
    started = opening.result()[1] if opening.exception() is None else []
    try:
        if failure is not None:
            raise failure
        clip, (store, _) = loading.result(), opening.result()
        index = open_build_index(store, clip.spec, clip.embed_dim, str(config.strategy), request.source(),
                                 request.shards, lock_owner, started)  # fmt: skip
        timeline.mark("index_open")
    except BaseException:
        for process in started:  # whatever failed (the engine, the model, the index): no writer outlives it
            process.close()
        raise
    timeline.mark("start_up")
    return clip, index


def _marked(timeline: BuildTimeline, milestone: str, fn: Callable[..., ClipModel], *args: object) -> ClipModel:
    """`fn(*args)`, then `milestone` marked on `timeline`."""
    result = fn(*args)
    timeline.mark(milestone)
    return result


def _open_store(request: BuildRequest, lock_owner: str) -> tuple[Store, list[ShardProcess]]:
    """The request's store, its places opened (a folder's database, the servers' connections), and an embedded
    sharded build's writer processes started."""
    store = Store(request.db, request.servers)
    store.places()
    return store, start_shard_writers(store, request.shards, lock_owner)


def load_build_model(request: BuildRequest, config: BuildConfig, engine: Engine, model: ModelSource) -> ClipModel:
    """The model this process encodes with, in the request's precision; or, for an engine whose workers
    load their own (`encodes_here` False), the one that gives the input geometry and embedding size."""
    here = engine.encodes_here
    if model is None:
        model = load_model(request.spec, request.device, config.precision) if here else _driver_model(request)
    elif not isinstance(model, ClipModel):
        model = model()
    return model.with_precision(config.precision) if here else model


# -- index -----------------------------------------------------------------------------------------------


class ProgressCounter:
    """A build's counts while it indexes, and the one progress and ETA formula every engine shows."""

    def __init__(self, videos: Sequence[VideoRecord], todo: Sequence[VideoRecord], skipped: Sequence[SkippedItem],
                 writer: Writer, progress: Progress) -> None:  # fmt: skip
        self.found, self.todo, self.writer, self.progress = len(videos), len(todo), writer, progress
        self.skipped = list(skipped)
        self.notes: list[SkippedItem] = []
        self.done = self.frames_done = 0
        self.started = time.perf_counter()

    def count(self, result: VideoResult) -> None:
        path = str(result.record.path)
        if result.reason:
            self.skipped.append(SkippedItem(path, result.reason))
        else:
            self.notes.extend(SkippedItem(path, note) for note in result.notes)
            self.frames_done += result.frames
        self.done += 1

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def report(self, current: str = "", stage: BuildStage = BuildStage.INDEXING) -> None:
        if self.progress is None:
            return
        elapsed = self.elapsed_s
        rate = self.done / elapsed if elapsed > 0 else 0.0
        self.progress(
            BuildProgress(  # a resumed build counts the videos indexed before: "35 / 38", not "0 / 3"
                videos_done=self.found - self.todo + self.done,
                videos_total=self.found,
                videos_indexed=self.writer.videos_written,
                frames_done=self.frames_done,
                elapsed_s=elapsed,
                frames_per_s=self.frames_done / elapsed if elapsed > 0 else 0.0,
                eta_s=(self.todo - self.done) / rate if rate > 0 else None,
                skipped=list(self.skipped),
                current=current,
                stage=stage,
            )
        )


def index_videos(
    videos: Sequence[VideoRecord],
    model: ClipModel,
    index: BuildIndex,
    engine: Engine,
    config: BuildConfig,
    progress: Progress = None,
    cancel: threading.Event | None = None,
    skipped: Sequence[SkippedItem] = (),
    timeline: BuildTimeline | None = None,
) -> BuildSummary:
    """Index every video of `videos` not yet complete in `index` with `engine`; returns what was done.

    Ctrl-C (KeyboardInterrupt) and `cancel` stop the build cleanly: what was fully encoded is written, and
    the summary says it was cancelled. The engine is closed here either way."""
    cancel = cancel or threading.Event()
    complete = index.complete_videos()
    todo = [v for v in videos if v.video_id not in complete]
    writer = writer_for(index)  # made here: the engines never see the index
    writer.start()
    counter = ProgressCounter(videos, todo, skipped, writer, progress)
    cancelled = False
    counter.report()
    try:
        if todo and not cancel.is_set():  # a cancel during start-up: no engine work at all
            with contextlib.closing(engine.run(todo, model, config, cancel)) as results:
                for result in results:
                    if not result.reason:
                        assert result.vectors is not None
                        writer.put(result.metadatas, result.vectors)
                    counter.count(result)
                    counter.report(result.record.video_id)
        cancelled = cancel.is_set()
    except KeyboardInterrupt:
        cancelled = True
    finally:
        engine.close()
        writer.close()
    if writer.error is not None:
        raise writer_failure(writer.error)
    if writer.frames_written:
        index.mark_built()
    if timeline is not None:
        timeline.mark("writer_flush")
    summary = BuildSummary(
        index_name=index.name,
        frames_strategy=str(config.strategy),
        videos_found=len(videos),
        videos_indexed=writer.videos_written,
        videos_already_indexed=len(videos) - len(todo),
        frames=writer.frames_written,
        seconds=counter.elapsed_s,
        skipped=counter.skipped,
        notes=counter.notes,
        cancelled=cancelled,
        shards=index.shard_count,
    )
    counter.report(stage=BuildStage.FINISHED)
    return engine.finish(summary)


# -- the build -------------------------------------------------------------------------------------------


def run_build(
    request: BuildRequest,
    model: ModelSource = None,
    progress: Progress = None,
    cancel: threading.Event | None = None,
    lock_owner: str = "",
    scan: SourceScan | None = None,
    engine: Engine | None = None,
    check_source: Callable[[SourceScan], None] | None = None,
    timeline: BuildTimeline | None = None,
) -> BuildSummary:
    """Everything `python -m core build` does: check, read the source, lock the index, start up, index.

    `model`: None loads the request's model; a loaded `ClipModel` is used as is, in the request's precision
    (the app keeps one per process); a function returning one (the app's loader, which reuses its cache) is
    called while the engine's workers start and the index opens. With a Chroma server, the lock lives in
    the output folder (one build per server from this machine). `scan`: the source as the caller read it
    (read here otherwise); `check_source` may refuse it before anything loads. `engine`: the request's
    (`request.engine`) unless given (the benchmark's tuned Ray engine). `timeline`: where the build marks its
    milestones (a front door's, which may know when its process started), returned in `summary.timings`."""
    timeline = timeline or BuildTimeline()
    config = check_build(request)
    engine = engine or engine_for(request)
    scan = scan or read_source(request, progress)
    if check_source is not None:
        check_source(scan)
    if not isinstance(model, ClipModel):  # after the source's own sentence, which comes first when both apply
        check_weights_available(request.spec)  # offline without the weights: said now, not after a minute
    servers = [server.describe() for server in request.servers]
    with StoreLock.for_store(request.db, config.output_dir, servers, owner=lock_owner):
        index: BuildIndex | None = None
        # Before any worker writes (they begin during start-up): a killed build's half-written thumbnails.
        remove_stale_temporaries(config.output_dir)
        try:
            clip, index = start_up(request, config, engine, model, progress, lock_owner, timeline, scan.videos, cancel)
            summary = index_videos(scan.videos, clip, index, engine, config, progress, cancel, scan.skipped,
                                   timeline)  # fmt: skip
        finally:
            engine.close()  # also when start-up or the index's first reads fail (idempotent)
            if index is not None:
                index.close()  # a sharded index's writers
    timeline.mark("index_close")
    summary.timings = timeline.to_json()
    return summary


def build_index(
    videos: Sequence[VideoRecord],
    model: ClipModel,
    index: BuildIndex,
    strategy: FrameStrategy,
    output_dir: Path | str,
    batch_size: int = 32,
    progress: Progress = None,
    cancel: threading.Event | None = None,
    workers: int = 2,
    skipped: Sequence[SkippedItem] = (),
    pool: FramePool | None = None,
) -> BuildSummary:
    """`index_videos` with the local engine, for a caller that holds the model and the index already;
    `pool`: a `FramePool` to prepare the frames with (closed here)."""
    output = Path(output_dir).expanduser().resolve()
    config = BuildConfig(strategy, output, max(1, int(workers)), max(1, int(batch_size)))
    engine = LocalEngine(pool)
    remove_stale_temporaries(output)
    engine.start(config)
    return index_videos(videos, model, index, engine, config, progress, cancel, skipped)


def _driver_model(request: BuildRequest) -> ClipModel:
    # An engine whose workers encode needs here only the geometry, the embedding size and the collection: a
    # CPU copy (and a bad spec fails here, early).
    return load_model(request.spec, "cpu", "fp32")


def _say(progress: Progress, event: BuildProgress) -> None:
    if progress is not None:
        progress(event)
