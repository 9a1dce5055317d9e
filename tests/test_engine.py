"""What every engine shares: the index writer's bounded queue and its failures, and the build's settings.

Nothing waits for time to pass: threads and processes meet on events, barriers or files, and every wait
has a bound only so that a bug fails the test instead of hanging it.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from core.engines.config import resolve_workers
from core.ground import StoreError, UserError
from core.runtime import decode_threads_for, usable_cores
from core.store.writer import UPSERT_BATCH, IndexWriter

WAIT_S = 120


class SlowIndex:
    """An index whose upserts wait for `release`, then record what they were given (or fail with `error`)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.error = error
        self.ids: list[str] = []

    def upsert(self, ids: list[str], embeddings: np.ndarray, metadatas: list[dict[str, Any]]) -> None:
        self.entered.set()
        if not self.release.wait(WAIT_S):
            raise RuntimeError("the test never released the index")
        if self.error is not None:
            raise self.error
        assert len(embeddings) == len(ids) == len(metadatas)
        self.ids.extend(ids)


def _video(name: str, frames: int = 2) -> tuple[list[dict[str, Any]], np.ndarray]:
    metas = [{"video_id": name, "frame_index": i} for i in range(frames)]
    return metas, np.zeros((frames, 4), np.float32)


def _writer_stuck_in_an_upsert(
    index: SlowIndex,
) -> tuple[IndexWriter, threading.Thread, threading.Event, list[BaseException]]:
    """A writer (room for 4 queued frames) inside a slow upsert, its queue full, and a thread waiting to put
    one more video: (writer, that thread, set when its put returned, what its put raised)."""
    writer = IndexWriter(index, max_queued=4)  # type: ignore[arg-type]
    writer.start()
    writer.put(*_video("a", frames=UPSERT_BATCH))  # a full upsert: the writer starts it at once...
    assert index.entered.wait(WAIT_S)
    writer.put(*_video("b"))  # ... and while it waits, these two fill the queue
    writer.put(*_video("c"))
    returned = threading.Event()
    errors: list[BaseException] = []

    def put_one_more() -> None:
        try:
            writer.put(*_video("d"))
        except BaseException as exc:
            errors.append(exc)
        returned.set()

    extra = threading.Thread(target=put_one_more)
    extra.start()
    # The fourth video waits for room: memory stays bounded while the index is slow. (A bug that lets it
    # through fails here; a slow machine cannot.)
    assert not returned.wait(0.5)
    return writer, extra, returned, errors


def test_the_writer_queue_is_bounded_and_applies_backpressure() -> None:
    index = SlowIndex()
    writer, extra, returned, errors = _writer_stuck_in_an_upsert(index)
    index.release.set()
    assert returned.wait(WAIT_S) and not errors
    extra.join(WAIT_S)
    writer.close()
    assert writer.error is None and writer.videos_written == 4 and writer.frames_written == UPSERT_BATCH + 6
    assert index.ids == [f"a:{i}" for i in range(UPSERT_BATCH)] + [f"{v}:{i}" for v in "bcd" for i in range(2)]


def test_a_failing_writer_wakes_the_encoder_with_its_error() -> None:
    index = SlowIndex(error=OSError("disk full"))
    writer, extra, returned, errors = _writer_stuck_in_an_upsert(index)
    index.release.set()  # the upsert fails: the waiting put must raise, not wait forever
    assert returned.wait(WAIT_S)
    extra.join(WAIT_S)
    [error] = errors
    assert isinstance(error, RuntimeError) and "the index writer failed" in str(error)
    assert isinstance(error.__cause__, OSError)
    with pytest.raises(RuntimeError, match="the index writer failed"):
        writer.put(*_video("e"))
    writer.close()


def test_a_writer_failing_on_a_full_disk_passes_its_sentence_on() -> None:
    full = StoreError.disk_full("the index folder /x")
    index = SlowIndex(error=full)
    writer, extra, returned, errors = _writer_stuck_in_an_upsert(index)
    index.release.set()
    assert returned.wait(WAIT_S)
    extra.join(WAIT_S)
    assert errors == [full]  # the user's sentence, not a RuntimeError with a chained traceback
    writer.close()


def test_workers_auto_and_checked() -> None:
    assert resolve_workers("auto") == max(1, usable_cores() - 1)
    # One FFmpeg thread per worker when the workers take the cores; FFmpeg's own threads when cores are left.
    assert decode_threads_for(15, cores=16) == decode_threads_for(16, cores=16) == decode_threads_for(1, cores=2) == 1
    assert decode_threads_for(1, cores=16) == decode_threads_for(2, cores=4) == 0
    assert resolve_workers("3") == 3
    for bad in ("0", "many", -2):
        with pytest.raises(UserError):
            resolve_workers(bad)
