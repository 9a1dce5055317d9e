"""A build's settings, checked once, and what an engine must offer: the vocabulary the build skeleton
(`core.engines.build`) and the engines (`local`, `ray_engine`) share, below all of them."""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from core.engines.records import BuildSummary, BuildTimeline, VideoResult
from core.limits import check_setting
from core.media.frames import FrameStrategy
from core.media.sources import VideoRecord
from core.runtime import usable_cores

if TYPE_CHECKING:
    from core.model.embed import ClipModel


@dataclass(frozen=True)
class BuildConfig:
    """What every stage of a build reads, decided once before any work: the frame strategy, where
    thumbnails go, how many frame workers, the batch (None: the model's default) and the precision."""

    strategy: FrameStrategy
    output_dir: Path
    workers: int = 2
    batch_size: int | None = None
    precision: str = "auto"

    def batch_for(self, model: ClipModel) -> int:
        """The encoding batch: the one asked for, else the model's default (`default_batch_size`)."""
        return max(1, int(self.batch_size or default_batch_size(model)))


class Engine(Protocol):
    """How a build turns videos into frames and vectors: the local process pipeline, or Ray.

    The skeleton calls `start` while the model loads and the index opens, `prefetch` once the model is
    loaded, then `run` once, then `close` (always), then `finish` on the summary. Everything else (checks,
    lock, scan, index, writer, progress, summary) is the skeleton's."""

    encodes_here: bool  # whether this process encodes (else the engine's workers load their own model)

    def start(self, config: BuildConfig, timeline: BuildTimeline | None = None) -> None:
        """Start what needs no model (worker processes, a cluster connection), so that it starts while the
        model loads. The engine marks on `timeline` when its first worker is ready, and in `run` when the
        first frames reach the encoder and when the last batch is encoded."""
        ...

    def prefetch(self, videos: Sequence[VideoRecord], model: ClipModel, config: BuildConfig) -> None:
        """Begin on the first of `videos` once the model is known, while the index opens; `run` then drops
        what the index already has."""
        ...

    def run(
        self, todo: Sequence[VideoRecord], model: ClipModel, config: BuildConfig, cancel: threading.Event
    ) -> Generator[VideoResult, None, None]:
        """Each video of `todo`, encoded (its thumbnails on disk) or skipped, as it is done; stops early once
        `cancel` is set. A video's frames come whole, in one result, or not at all."""
        ...

    def close(self) -> None:
        """Stop what `start` started (idempotent)."""
        ...

    def finish(self, summary: BuildSummary) -> BuildSummary:
        """The summary with what this engine adds to it (where it ran)."""
        ...


def default_batch_size(model: ClipModel) -> int:
    """The batch for `model`: see `batch_size_for`."""
    return batch_size_for(model.device.type, model.precision)


def batch_size_for(device_type: str, precision: str) -> int:
    """32 on a CPU (larger batches are no faster there); on a GPU 256 in fp16 and 128 in fp32, which keep
    it busy without holding many videos in flight. (The Ray engine sizes its actors' batches before they
    load the model, hence the device type and precision rather than a model.)"""
    if device_type != "cuda":
        return 32
    return 256 if precision == "fp16" else 128


def resolve_workers(workers: int | str | None) -> int:
    """Frame-preparation worker processes: a number, or "auto": one per core, less one for this process
    (which encodes and writes), at least one."""
    if workers in (None, "", "auto"):
        return max(1, usable_cores() - 1)
    return int(check_setting("workers", workers))
