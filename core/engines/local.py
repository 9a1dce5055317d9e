"""The local build engine: worker processes prepare frames, this process encodes.

    videos ─▶ FramePool (N worker processes: decode, resize/crop to the model's input as uint8, thumbnails)
           ─▶ encoding loop (this thread: full batches, pinned and copied to the model's device)
           ─▶ complete videos, back to the build skeleton (`core.engines.build`), whose writer upserts them

Frames are prepared in processes because Python threads serialise on the GIL between native calls: on
a many-core machine a pool of threads keeps about three cores busy. The processes are started with
``forkserver`` (``spawn`` where it does not exist), never ``fork``: forking a process that runs threads
(the dashboard's server) can deadlock. Memory stays bounded: a fixed number of videos is in flight.

A video is handed back only when all its frames are encoded, and its thumbnails are on disk before that
(the worker wrote them).
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.engines.config import BuildConfig
from core.engines.prepare import PreparedVideo, init_worker, ping, prepare_video
from core.engines.records import BuildSummary, BuildTimeline, VideoResult
from core.media.frames import FrameStrategy, VideoReadError
from core.media.geometry import InputGeometry
from core.media.sources import VideoRecord
from core.model.embed import ClipModel
from core.runtime import START_METHOD, decode_threads_for, main_module_hidden, prepare_threads_for, torch_threads_for

if TYPE_CHECKING:
    import torch

FRAMES_IN_FLIGHT = 1024  # frames prepared or being prepared ahead of the encoder (bounded by videos too)
CRASH_REASON = "the decoder crashed on this file (its worker process died)"


class FramePool:
    """Prepares videos in worker processes and hands them back in order, a bounded number at a time.

    If a worker dies (a decoder crash on a malformed file, or the system killing it), the videos that
    were in flight are tried again one at a time in a fresh pool, so the file responsible is skipped
    with a reason and the others are kept.
    """

    def __init__(
        self, workers: int, strategy: FrameStrategy, output_dir: Path | str, task: Callable[..., Any] | None = None
    ) -> None:
        self.workers = max(1, int(workers))
        self.strategy = strategy
        self.output_dir = Path(output_dir)
        # `prepare_video`, or a stand-in with its signature (tests): a module-level function the workers import.
        self.task = task or prepare_video
        self.decode_threads = decode_threads_for(self.workers)
        self.helper_threads = prepare_threads_for(self.workers)
        self._executor: ProcessPoolExecutor | None = None
        self._early: dict[str, Future] = {}  # videos submitted by `prefetch`, by id, until `prepare` takes them

    def start(self, on_ready: Callable[[], None] | None = None) -> FramePool:
        """Start the worker processes now, so that they start while the caller loads the model; `on_ready`
        is called (from the pool's own thread) once the first of them runs."""
        executor = self._pool()
        pings = [executor.submit(ping) for _ in range(self.workers)]  # a process starts per submission
        if on_ready is not None:
            pings[0].add_done_callback(lambda _: on_ready())
        return self

    def prefetch(self, records: Iterable[VideoRecord], geometry: InputGeometry | None, count: int) -> None:
        """Submit the first `count` of `records` now, while the caller opens the index: `prepare` takes each
        one's work over when it reaches that video, and `drop_early` cancels the rest (videos the index has)."""
        for record in records:
            if len(self._early) >= count:
                return
            self._early[record.video_id] = self._submit(record, geometry)

    def drop_early(self, keep: set[str]) -> None:
        """Cancel the prefetched videos whose ids are not in `keep` (one already running finishes unseen)."""
        for video_id in [v for v in self._early if v not in keep]:
            self._early.pop(video_id).cancel()

    def _submit(self, record: VideoRecord, geometry: InputGeometry | None) -> Future:
        return self._pool().submit(
            self.task, record, self.strategy, geometry, self.output_dir, threads=self.decode_threads,
            helpers=self.helper_threads,
        )  # fmt: skip

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = worker_pool(self.workers)
        return self._executor

    def prepare(
        self, records: Iterable[VideoRecord], geometry: InputGeometry | None, in_flight: int
    ) -> Generator[tuple[VideoRecord, PreparedVideo | str], None, None]:
        """(record, prepared video or the reason it was skipped), in the order of `records`, with at most
        `in_flight` videos submitted ahead. A worker's `UserError` (the output folder cannot be written) is
        raised here. Stop iterating, then `close`, to stop early."""
        source = iter(records)
        window: deque[tuple[VideoRecord, Future]] = deque()

        def submit(record: VideoRecord) -> Future:
            early = self._early.pop(record.video_id, None)
            return early if early is not None else self._submit(record, geometry)

        def refill() -> None:
            while len(window) < max(1, in_flight):
                record = next(source, None)
                if record is None:
                    return
                window.append((record, submit(record)))

        refill()
        while window:
            record, future = window[0]
            try:
                outcome: PreparedVideo | str = future.result()
            except VideoReadError as exc:
                outcome = exc.reason
            except BrokenProcessPool:
                # Which video killed its worker is unknown: run those in flight again one at a time, in a
                # fresh pool (a fresh one again after each crash), so that a crash names its video.
                suspects = [r for r, _ in window]
                window.clear()
                self.close()
                for suspect in suspects:
                    try:
                        outcome = submit(suspect).result()
                    except VideoReadError as exc:
                        outcome = exc.reason
                    except BrokenProcessPool:
                        outcome = CRASH_REASON
                        self.close()
                    yield suspect, outcome
                refill()
                continue
            window.popleft()
            refill()
            yield record, outcome

    def close(self) -> None:
        """Cancel what has not started, let the running videos finish (one video each), stop the workers."""
        self._early.clear()  # futures of this executor: cancelled with it
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def _forkserver_preload() -> list[str]:
    """What the fork server imports once, so that each worker starts as a cheap fork of it (the setting
    applies when the server starts, once per process)."""
    return ["core.engines.prepare"]


class _WorkerPool(ProcessPoolExecutor):
    """A ProcessPoolExecutor whose workers start without the parent's `__main__` (`main_module_hidden`)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        # ProcessPoolExecutor starts a worker inside submit() while it has fewer processes than its maximum
        # (spawn and forkserver; `_processes` and `_max_workers` are private: checked against CPython 3.11.7).
        # Only then is __main__ hidden, so that other threads (a Streamlit rerun) see it changed as rarely
        # as possible.
        if len(self._processes) < self._max_workers:  # type: ignore[attr-defined]
            with main_module_hidden():
                return super().submit(fn, *args, **kwargs)
        return super().submit(fn, *args, **kwargs)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` frame-preparation processes (forkserver or spawn, never fork; see the module)."""
    context = multiprocessing.get_context(START_METHOD)
    if START_METHOD == "forkserver":
        context.set_forkserver_preload(_forkserver_preload())
    return _WorkerPool(max(1, int(workers)), mp_context=context, initializer=init_worker)


@dataclass
class VideoInProgress:
    """One video on its way through the encoder: its inputs, its embeddings so far, and what is left."""

    record: VideoRecord
    metadatas: list[dict[str, Any]]
    notes: list[str]
    inputs: torch.Tensor | None  # N×3×H×W model inputs (uint8, or float without a geometry); None once encoded
    vectors: np.ndarray  # N×D, filled batch by batch
    batched: int = 0  # frames handed to the encoder so far
    encoded: int = 0  # frames whose embeddings are in `vectors`

    @classmethod
    def start(cls, record: VideoRecord, prepared: PreparedVideo, model: ClipModel) -> VideoInProgress:
        import torch  # here, not at the top: importing the application layer does not load torch

        if prepared.pixels is not None:
            inputs = torch.from_numpy(prepared.pixels)
        else:  # a model whose transform does not split: its whole preprocessing, here
            inputs = torch.stack([model.preprocess_rgb(rgb) for rgb in prepared.frames])
        vectors = np.empty((len(prepared), model.embed_dim), dtype=np.float32)
        return cls(record, prepared.metadatas, prepared.notes, inputs, vectors)

    @property
    def size(self) -> int:
        return len(self.metadatas)

    def take(self, limit: int) -> tuple[int, int, torch.Tensor]:
        """The next at most `limit` frames for a batch: (start, stop, inputs)."""
        assert self.inputs is not None
        start = self.batched
        stop = min(self.size, start + limit)
        self.batched = stop
        return start, stop, self.inputs[start:stop]

    def receive(self, start: int, vectors: np.ndarray) -> bool:
        """Store embeddings for frames start.. ; True once every frame has its embedding."""
        self.vectors[start : start + len(vectors)] = vectors
        self.encoded += len(vectors)
        if self.encoded == self.size:
            self.inputs = None  # the pixels are no longer needed
            return True
        return False


class BatchEncoder:
    """Encodes batches of model inputs; on a GPU through one pinned buffer, copied asynchronously."""

    def __init__(self, model: ClipModel, batch_size: int) -> None:
        import torch

        self.model = model
        self.batch_size = batch_size
        self._buffer: torch.Tensor | None = None
        if model.device.type == "cuda" and model.geometry is not None:
            height, width = model.geometry.size
            self._buffer = torch.empty((batch_size, 3, height, width), dtype=torch.uint8).pin_memory()

    def encode(self, parts: list[torch.Tensor]) -> np.ndarray:
        import torch

        count = sum(len(p) for p in parts)
        if self._buffer is not None and parts[0].dtype == torch.uint8:
            # encode_images returns CPU results, so the previous copy from this buffer is complete.
            batch = torch.cat(parts, out=self._buffer[:count])
        else:
            batch = parts[0] if len(parts) == 1 else torch.cat(parts)
        return self.model.encode_images(batch)


class ThreadGovernor:
    """torch's intra-op threads during a build, so that this process does not starve the workers.

    On a GPU this process only feeds the model: it keeps one thread per core the workers leave. On a
    CPU it depends on which side is the bottleneck: when the model is (ViT-B/32: the workers wait for
    it) it gets every core; when the frames are (a cheap model, or costly decoding) its threads only
    steal time slices from the busy workers, and each parallel operation waits for a descheduled thread.
    So the share of time the encoding loop waits for frames decides, with hysteresis, over windows of a
    few batches. The setting is process-wide; the original is restored at the end.
    """

    WINDOW_S = 1.0
    STARVED, FED = 0.5, 0.2  # shares of time spent waiting for frames: leave the cores / take them back

    def __init__(self, device: torch.device, workers: int) -> None:
        import torch

        self.original = torch.get_num_threads()
        self.few = torch_threads_for(workers)
        self.adaptive = device.type != "cuda" and self.few < self.original
        self.current = self.original
        self._waited = self._worked = 0.0
        if device.type == "cuda":
            self._set(self.few)

    def _set(self, count: int) -> None:
        if count != self.current:
            import torch

            torch.set_num_threads(count)
            self.current = count

    def observe(self, waited: float, worked: float) -> None:
        """Time spent waiting for prepared frames, and encoding, since the last call."""
        if not self.adaptive:
            return
        self._waited += waited
        self._worked += worked
        total = self._waited + self._worked
        if total < self.WINDOW_S:
            return
        starved = self._waited / total
        self._waited = self._worked = 0.0
        if starved > self.STARVED:
            self._set(self.few)
        elif starved < self.FED:
            self._set(self.original)

    def restore(self) -> None:
        self._set(self.original)


def videos_in_flight(workers: int, frames_per_video: int, batch_size: int) -> int:
    """Videos submitted ahead of the encoder: two per worker, and enough for two full batches, within a
    budget of frames (a video's inputs are held until it is encoded)."""
    per_video = max(1, frames_per_video)
    wanted = max(2 * workers, -(-2 * batch_size // per_video))
    return max(1, min(wanted, max(2 * workers, FRAMES_IN_FLIGHT // per_video)))


def _next_batch(ready: deque[VideoInProgress], batch_size: int) -> list[tuple[VideoInProgress, int, torch.Tensor]]:
    """Up to `batch_size` frames from the videos in `ready`, in order: (video, first frame, inputs) per video."""
    spans = []
    room = batch_size
    while ready and room:
        video = ready[0]
        start, stop, inputs = video.take(room)
        spans.append((video, start, inputs))
        room -= stop - start
        if video.batched == video.size:
            ready.popleft()
    return spans


class LocalEngine:
    """The local engine: worker processes prepare frames (`FramePool`), this thread encodes full batches
    across videos and hands each video back once all its frames are encoded."""

    encodes_here = True

    def __init__(self, pool: FramePool | None = None) -> None:
        self.pool = pool
        self.timeline = BuildTimeline()

    def start(self, config: BuildConfig, timeline: BuildTimeline | None = None) -> None:
        if timeline is not None:
            self.timeline = timeline
        if self.pool is None:
            self.pool = FramePool(config.workers, config.strategy, config.output_dir)
        self.pool.start(on_ready=lambda: self.timeline.mark("first_worker_ready"))

    def prefetch(self, videos: Sequence[VideoRecord], model: ClipModel, config: BuildConfig) -> None:
        """Start preparing the first videos (as many as `run` keeps in flight) while the index opens."""
        assert self.pool is not None, "the skeleton starts the engine before it prefetches"
        in_flight = videos_in_flight(self.pool.workers, config.strategy.count, config.batch_for(model))
        self.pool.prefetch(videos, model.geometry, in_flight)

    def run(
        self, todo: Sequence[VideoRecord], model: ClipModel, config: BuildConfig, cancel: threading.Event
    ) -> Generator[VideoResult, None, None]:
        assert self.pool is not None, "the skeleton starts the engine before it runs it"
        self.pool.drop_early({record.video_id for record in todo})  # prefetched, but the index has them
        batch_size = config.batch_for(model)
        encoder = BatchEncoder(model, batch_size)
        threads = ThreadGovernor(model.device, self.pool.workers)
        ready: deque[VideoInProgress] = deque()  # videos with frames not yet handed to the encoder
        waiting = 0  # how many frames those are
        in_flight = videos_in_flight(self.pool.workers, config.strategy.count, batch_size)
        results = self.pool.prepare(todo, model.geometry, in_flight)
        try:
            while not cancel.is_set():
                # Gather a full batch (or what is left), then encode it; a video is handed back once whole.
                waiting_since = time.perf_counter()
                for record, outcome in results:
                    self.timeline.mark("first_frame")
                    if isinstance(outcome, str):
                        yield VideoResult(record, reason=outcome)
                    else:
                        ready.append(VideoInProgress.start(record, outcome, model))
                        waiting += len(outcome)
                    if waiting >= batch_size or cancel.is_set():
                        break
                if not ready or cancel.is_set():
                    break
                encoding_since = time.perf_counter()
                spans = _next_batch(ready, batch_size)
                vectors = encoder.encode([inputs for _, _, inputs in spans])
                self.timeline.mark("last_frame_encoded", again=True)
                threads.observe(encoding_since - waiting_since, time.perf_counter() - encoding_since)
                offset = 0
                for video, start, inputs in spans:
                    if video.receive(start, vectors[offset : offset + len(inputs)]):
                        yield VideoResult(video.record, video.metadatas, video.vectors, video.notes)
                    offset += len(inputs)
                waiting -= offset
        finally:
            results.close()
            threads.restore()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()

    def finish(self, summary: BuildSummary) -> BuildSummary:
        return summary
