"""The indexing pipeline: videos → frames → embeddings → ChromaDB, at the speed of the model.

Decoding, thumbnail writing and preprocessing run in worker threads (OpenCV, Pillow and torch
release the GIL) while the main thread encodes full batches; a writer thread upserts finished videos
into Chroma in large batches. A video is handed to the writer only once all its frames are encoded,
and its thumbnails are on disk before its records are, so an interrupted build (cancel, Ctrl-C or
a killed process) leaves an index a later build completes: videos already complete are skipped,
half-written ones are written again under the same ids.

Progress goes to a callback and cancellation comes from a `threading.Event`; nothing here knows
about the terminal or Streamlit.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.embed import ClipModel, load_model
from core.errors import UserError
from core.frames import FrameStrategy, VideoReadError, read_video_frames
from core.index import FrameIndex, connect, open_for_build
from core.locking import BuildLock
from core.requests import BuildRequest
from core.sources import SkippedItem, VideoRecord, scan_source
from core.thumbnails import remove_stale_temporaries, safe_name, thumbnail_path, write_thumbnail

UPSERT_BATCH = 512  # records per Chroma upsert: large batches, far fewer round trips
FLUSH_SECONDS = 2.0  # ... but never hold finished videos longer than this
RESERVED_KEYS = {
    "video_id",
    "label",
    "frame_index",
    "timestamp_s",
    "video_path",
    "frame_path",
    "frames_in_video",
    "video_frames",
    "fps",
}


@dataclass
class BuildProgress:
    """A snapshot of a running build, for progress bars and pages."""

    videos_done: int
    videos_total: int
    videos_indexed: int
    frames_done: int
    elapsed_s: float
    frames_per_s: float
    eta_s: float | None
    skipped: list[SkippedItem]
    current: str = ""


@dataclass
class BuildSummary:
    """What a build did."""

    index_name: str
    frames_strategy: str
    videos_found: int
    videos_indexed: int
    videos_already_indexed: int
    frames: int
    seconds: float
    skipped: list[SkippedItem] = field(default_factory=list)
    notes: list[SkippedItem] = field(default_factory=list)
    cancelled: bool = False

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        skipped = f"skipped {len(self.skipped)}"
        if self.skipped:
            shown = "; ".join(str(s) for s in self.skipped[:5])
            more = f"; and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
            skipped += f" ({shown}{more})"
        state = "Cancelled: " if self.cancelled else ""
        return (
            f"{state}indexed {self.videos_indexed} videos ({self.videos_already_indexed} already indexed), "
            f"{skipped}, {self.frames} frames in {self.seconds:.1f} s, {self.frames_per_s:.1f} frames/s"
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["frames_per_s"] = round(self.frames_per_s, 3)
        data["seconds"] = round(self.seconds, 3)
        data["skipped"] = [asdict(s) for s in self.skipped]
        data["notes"] = [asdict(s) for s in self.notes]
        return data


@dataclass
class _Prepared:
    """A decoded video, ready to encode: per-frame metadata and model inputs (no pixels kept)."""

    record: VideoRecord
    metadatas: list[dict[str, Any]]
    tensors: list[torch.Tensor]
    notes: list[str]


def _frame_metadata(record: VideoRecord, frame: Any, frame_path: Path, n_in_video: int, vf: Any) -> dict:
    meta: dict[str, Any] = {
        "video_id": record.video_id,
        "label": record.label,
        "frame_index": int(frame.frame_index),
        "timestamp_s": float(frame.timestamp_s),
        "video_path": str(record.path),
        "frame_path": str(frame_path),
        "frames_in_video": int(n_in_video),
        "video_frames": int(vf.n_frames),
        "fps": float(vf.fps or 0.0),
    }
    for key, value in record.meta.items():
        meta[key if key not in RESERVED_KEYS else f"meta_{key}"] = value
    return meta


def prepare_video(record: VideoRecord, strategy: FrameStrategy, model: ClipModel, output_dir: Path) -> _Prepared:
    """Decode, write thumbnails and preprocess one video (runs in a worker thread)."""
    vf = read_video_frames(record, strategy)
    if not vf.frames:
        raise VideoReadError("no frames could be read")
    metadatas, tensors = [], []
    for frame in vf.frames:
        path = thumbnail_path(output_dir, record.video_id, frame.frame_index)
        try:
            write_thumbnail(frame.rgb, path)
        except OSError as exc:
            raise UserError(
                f"Cannot write thumbnails under {output_dir} ({exc.strerror or exc}): check that the output "
                "folder is writable and the disk is not full."
            ) from None
        tensors.append(model.prepare_rgb(frame.rgb))
        metadatas.append(_frame_metadata(record, frame, path.resolve(), len(vf.frames), vf))
    return _Prepared(record, metadatas, tensors, vf.notes)


class _Writer(threading.Thread):
    """Upserts finished videos in large batches, off the encoding thread."""

    def __init__(self, index: FrameIndex) -> None:
        super().__init__(name="index-writer", daemon=True)
        self.index = index
        self.inbox: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.videos_written = 0
        self.frames_written = 0

    def put(self, metadatas: list[dict[str, Any]], embeddings: np.ndarray) -> None:
        if self.error is not None:
            raise RuntimeError("the index writer failed") from self.error
        self.inbox.put((metadatas, embeddings))

    def close(self) -> None:
        self.inbox.put(None)
        self.join()

    def run(self) -> None:
        metas: list[dict[str, Any]] = []
        vectors: list[np.ndarray] = []
        videos = 0
        first_at = 0.0

        def flush() -> None:
            nonlocal metas, vectors, videos
            if metas:
                ids = [f"{m['video_id']}:{m['frame_index']}" for m in metas]
                self.index.upsert(ids, np.concatenate(vectors), metas)
                self.videos_written += videos
                self.frames_written += len(metas)
            metas, vectors, videos = [], [], 0

        try:
            while True:
                timeout = None if not metas else max(0.0, FLUSH_SECONDS - (time.monotonic() - first_at))
                try:
                    item = self.inbox.get(timeout=timeout)
                except queue.Empty:
                    flush()
                    continue
                if item is None:
                    flush()
                    return
                if not metas:
                    first_at = time.monotonic()
                metas.extend(item[0])
                vectors.append(item[1])
                videos += 1
                if len(metas) >= UPSERT_BATCH:
                    flush()
        except BaseException as exc:  # reported to the build loop, which raises it there
            self.error = exc


def build_index(
    videos: Sequence[VideoRecord],
    model: ClipModel,
    index: FrameIndex,
    strategy: FrameStrategy,
    output_dir: Path | str,
    batch_size: int = 32,
    progress: Callable[[BuildProgress], None] | None = None,
    cancel: threading.Event | None = None,
    workers: int = 2,
    skipped: Sequence[SkippedItem] = (),
) -> BuildSummary:
    """Index every video of `videos` not yet complete in `index`; returns what was done.

    Ctrl-C (KeyboardInterrupt) and `cancel` stop the build cleanly: what was fully encoded is
    written, and the summary says it was cancelled.
    """
    started = time.perf_counter()
    output_dir = Path(output_dir)
    batch_size = max(1, int(batch_size))
    cancel = cancel or threading.Event()
    remove_stale_temporaries(output_dir)
    complete = index.complete_videos()
    todo = [v for v in videos if v.video_id not in complete]
    skipped_items = list(skipped)
    notes: list[SkippedItem] = []
    done = frames_done = 0
    cancelled = False

    writer = _Writer(index)
    writer.start()
    # Enough videos in flight to keep a full batch ready while the current one encodes.
    in_flight = max(4, 2 * batch_size // max(1, strategy.count))
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode")
    window: deque[tuple[VideoRecord, Future]] = deque()
    source = iter(todo)

    def refill() -> None:
        while len(window) < in_flight and not (cancel.is_set() or stop.is_set()):
            record = next(source, None)
            if record is None:
                return
            window.append((record, pool.submit(prepare_video, record, strategy, model, output_dir)))

    def report(current: str = "") -> None:
        if progress is None:
            return
        elapsed = time.perf_counter() - started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (len(todo) - done) / rate if rate > 0 else None
        progress(
            BuildProgress(
                videos_done=done,
                videos_total=len(todo),
                videos_indexed=writer.videos_written,
                frames_done=frames_done,
                elapsed_s=elapsed,
                frames_per_s=frames_done / elapsed if elapsed > 0 else 0.0,
                eta_s=eta,
                skipped=list(skipped_items),
                current=current,
            )
        )

    # Frames waiting for a batch: (video slot, position in video, tensor); a slot collects a
    # video's embeddings and goes to the writer once complete.
    pending: deque[tuple[dict, int, torch.Tensor]] = deque()
    report()
    try:
        refill()
        while window or pending:
            if cancel.is_set():
                cancelled = True
                break
            while len(pending) < batch_size and window:
                record, future = window.popleft()
                refill()
                try:
                    prepared = future.result()
                except VideoReadError as exc:
                    skipped_items.append(SkippedItem(str(record.path), exc.reason))
                    done += 1
                    report(record.video_id)
                    continue
                notes.extend(SkippedItem(str(record.path), n) for n in prepared.notes)
                slot = {
                    "metas": prepared.metadatas,
                    "vectors": [None] * len(prepared.tensors),
                    "left": len(prepared.tensors),
                }
                pending.extend((slot, i, t) for i, t in enumerate(prepared.tensors))
            if not pending:
                continue
            take = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
            embeddings = model.encode_images(torch.stack([t for _, _, t in take]))
            for (slot, i, _), vector in zip(take, embeddings, strict=True):
                slot["vectors"][i] = vector
                slot["left"] -= 1
                if slot["left"] == 0:
                    writer.put(slot["metas"], np.stack(slot["vectors"]))
                    done += 1
                    frames_done += len(slot["metas"])
            report(take[-1][0]["metas"][0]["video_id"])
    except KeyboardInterrupt:
        cancelled = True
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        writer.close()
    if writer.error is not None:
        raise RuntimeError("writing to the index failed") from writer.error
    if writer.frames_written:
        index.mark_built()
    summary = BuildSummary(
        index_name=index.name,
        frames_strategy=str(strategy),
        videos_found=len(videos),
        videos_indexed=writer.videos_written,
        videos_already_indexed=len(videos) - len(todo),
        frames=writer.frames_written,
        seconds=time.perf_counter() - started,
        skipped=skipped_items,
        notes=notes,
        cancelled=cancelled,
    )
    report()
    return summary


def default_batch_size(model: ClipModel) -> int:
    """32 on a CPU (larger batches are no faster there), 128 on a GPU (keeps it busy)."""
    return 128 if model.device.type == "cuda" else 32


def resolve_workers(workers: int | str | None) -> int:
    """Decoding workers: a number, or "auto" (one per core)."""
    if workers in (None, "", "auto"):
        return max(1, os.cpu_count() or 1)
    try:
        count = int(workers)
    except (TypeError, ValueError):
        raise UserError(f"--workers must be a number or 'auto', not {workers!r}.") from None
    if count < 1:
        raise UserError(f"--workers must be at least 1 (got {count}).")
    return count


def run_build(
    request: BuildRequest,
    model: ClipModel | None = None,
    progress: Callable[[BuildProgress], None] | None = None,
    cancel: threading.Event | None = None,
    lock_owner: str = "",
) -> BuildSummary:
    """Everything `python -m core build` does: read the source, lock the index, load the model, build.

    A `model` already loaded by the caller is used as is (the app keeps one per process). With a
    Chroma server, the lock lives in the output folder (one build per server from this machine).
    """
    strategy = FrameStrategy.parse(request.frames)
    workers = resolve_workers(request.workers)
    scan = scan_source(request.videos, request.annotations, allowed_roots=request.allowed_roots)
    server = request.server
    output_dir = Path(request.output)
    lock_dir = Path(request.db) if server is None else output_dir / ".locks" / safe_name(server.describe())
    with BuildLock(lock_dir, owner=lock_owner):
        clip = model if model is not None else load_model(request.spec, request.device)
        client = connect(request.db, server)
        index = open_for_build(client, clip.spec, clip.embed_dim, str(strategy))
        return build_index(
            scan.videos,
            clip,
            index,
            strategy,
            output_dir,
            batch_size=request.batch_size or default_batch_size(clip),
            progress=progress,
            cancel=cancel,
            workers=workers,
            skipped=scan.skipped,
        )
