"""The index writer: complete videos in, large upserts out, off the encoding thread, from a bounded queue."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from core.ground import UserError
from core.store.build_target import PendingShardedIndex
from core.store.index import FrameIndex

UPSERT_BATCH = 512  # frames per Chroma upsert at least: large batches, far fewer round trips
FLUSH_SECONDS = 2.0  # ... but never hold finished videos longer than this
WRITER_QUEUE_FRAMES = 4 * UPSERT_BATCH  # encoded frames waiting for the writer before encoding waits


@dataclass
class _Finished:
    metadatas: list[dict[str, Any]]
    vectors: np.ndarray


def writer_failure(error: BaseException, what: str = "writing to the index failed") -> BaseException:
    """What the build raises when its index writer failed: the writer's own sentence when the user can fix the
    cause (a full disk, a damaged index), else a bug's exception chained to the writer's."""
    if isinstance(error, UserError):
        return error.with_traceback(None)
    failure = RuntimeError(what)
    failure.__cause__ = error
    return failure


class Upserts(Protocol):
    """What a writer writes to: a collection, or one shard of a sharded index."""

    def upsert(self, ids: list[str], embeddings: np.ndarray, metadatas: list[dict[str, Any]]) -> None: ...


class IndexWriter(threading.Thread):
    """Upserts complete videos in large batches, off the encoding thread, from a bounded queue.

    `put` waits while `max_queued` frames are waiting (backpressure: memory stays flat when Chroma is
    slower than the encoder) and raises if the writer has failed.
    """

    def __init__(self, index: Upserts, max_queued: int = WRITER_QUEUE_FRAMES, name: str = "index-writer") -> None:
        super().__init__(name=name, daemon=True)
        self.index = index
        self.max_queued = max_queued
        self.videos_written = 0
        self.frames_written = 0
        self.error: BaseException | None = None
        self._items: deque[_Finished] = deque()
        self._queued = 0
        self._closed = False
        self._cond = threading.Condition()

    def put(self, metadatas: list[dict[str, Any]], vectors: np.ndarray) -> None:
        with self._cond:
            # A video larger than the bound still goes in when the queue is empty.
            while self.error is None and self._queued and self._queued + len(metadatas) > self.max_queued:
                self._cond.wait()
            if self.error is not None:
                raise writer_failure(self.error, "the index writer failed")
            self._items.append(_Finished(metadatas, vectors))
            self._queued += len(metadatas)
            self._cond.notify_all()

    def finish(self) -> None:
        """Ask the writer to write everything queued and stop (without waiting for it)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def close(self) -> None:
        """Write everything queued, then stop."""
        self.finish()
        self.join()

    def run(self) -> None:
        batch: list[_Finished] = []
        frames, first_at = 0, 0.0
        try:
            while True:
                with self._cond:
                    while not self._items and not self._closed:
                        wait = None if not batch else FLUSH_SECONDS - (time.monotonic() - first_at)
                        if wait is not None and wait <= 0:
                            break
                        self._cond.wait(wait)
                    taken = list(self._items)
                    self._items.clear()
                    self._queued = 0
                    closing = self._closed
                    self._cond.notify_all()
                for item in taken:
                    if not batch:
                        first_at = time.monotonic()
                    batch.append(item)
                    frames += len(item.metadatas)
                if batch and (closing or frames >= UPSERT_BATCH or time.monotonic() - first_at >= FLUSH_SECONDS):
                    self._write(batch)
                    batch, frames = [], 0
                if closing:
                    return
        except BaseException as exc:  # reported to the encoding loop, which raises it there
            with self._cond:
                self.error = exc
                self._cond.notify_all()

    def _write(self, batch: list[_Finished]) -> None:
        metadatas = [m for item in batch for m in item.metadatas]
        ids = [f"{m['video_id']}:{m['frame_index']}" for m in metadatas]
        self.index.upsert(ids, np.concatenate([item.vectors for item in batch]), metadatas)
        self.videos_written += len(batch)
        self.frames_written += len(metadatas)


class ShardedWriter:
    """The writer of a sharded index: one `IndexWriter` per shard, each video put to its shard's, all running
    at once (each with its own bounded queue)."""

    def __init__(self, index: PendingShardedIndex, max_queued: int = WRITER_QUEUE_FRAMES) -> None:
        self.index = index
        self.writers = [IndexWriter(target, max_queued, f"index-writer-{i:02d}") for i, target in
                        enumerate(index.targets)]  # fmt: skip

    def start(self) -> None:
        for writer in self.writers:
            writer.start()

    @property
    def error(self) -> BaseException | None:
        return next((writer.error for writer in self.writers if writer.error is not None), None)

    @property
    def videos_written(self) -> int:
        return sum(writer.videos_written for writer in self.writers)

    @property
    def frames_written(self) -> int:
        return sum(writer.frames_written for writer in self.writers)

    def put(self, metadatas: list[dict[str, Any]], vectors: np.ndarray) -> None:
        error = self.error
        if error is not None:  # another shard's writer failed: stop feeding any of them
            raise writer_failure(error, "the index writer failed")
        self.index.create()
        self.writers[self.index.shard_of(str(metadatas[0]["video_id"]))].put(metadatas, vectors)

    def close(self) -> None:
        """Write everything queued to every shard, then stop."""
        for writer in self.writers:  # all at once: each flushes its last batch while the others do
            writer.finish()
        for writer in self.writers:
            writer.join()


Writer = IndexWriter | ShardedWriter


def writer_for(index: FrameIndex | PendingShardedIndex) -> Writer:
    """The writer of a build's index (made here: the engines never see the index)."""
    return ShardedWriter(index) if isinstance(index, PendingShardedIndex) else IndexWriter(index)
