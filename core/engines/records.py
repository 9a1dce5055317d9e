"""What a build reports: `BuildProgress` while it runs, `BuildSummary` when it ends (the same for every engine),
and `VideoResult`, what an engine hands back for each video."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from core.ground import format_duration, plural
from core.media.sources import SkippedItem, VideoRecord

if TYPE_CHECKING:
    import numpy as np


class BuildStage(Enum):
    """Where a build is: the phases a front door tells apart."""

    SCANNING = "scanning"  # reading the source
    STARTING = "starting"  # worker start-up, the index opening and the model loading, side by side
    INDEXING = "indexing"  # frames prepared, encoded and written
    FINISHED = "finished"  # the writer is closed; the counts are final


# A build's milestones, in the order they are reached (`BuildTimeline`, `BuildSummary.timings`).
MILESTONES = (
    "imports",  # the process had started and imported what the front door needs (the CLI: before the build)
    "workers_started",  # the engine's start was asked for (worker processes, a cluster connection)
    "first_worker_ready",  # the first worker process runs (the Ray engine: connected)
    "model_load",  # the model is loaded
    "index_open",  # the store is open and the index's collections are found or made
    "start_up",  # all of the above: the build can index
    "first_frame",  # the first prepared frames reached the encoder
    "last_frame_encoded",  # the last batch was encoded
    "writer_flush",  # every record is written and the writer has stopped
    "index_close",  # the index is closed (a sharded one's writer processes ended): the build is done
)


class BuildTimeline:
    """When a build reached each of its milestones (`MILESTONES`), in seconds since it began, so that a
    build says where its time went (`build --json`'s "timings"). Marked from any thread; `imports` is
    negative: how long before the build began the process started (a front door that knows it says so)."""

    def __init__(self, started: float | None = None) -> None:
        self.started = time.perf_counter() if started is None else started
        self._at: dict[str, float] = {}
        self._lock = threading.Lock()

    def mark(self, milestone: str, again: bool = False) -> None:
        """Now, for `milestone`: its first time, or with `again` its latest."""
        assert milestone in MILESTONES, milestone
        now = time.perf_counter() - self.started
        with self._lock:
            if again or milestone not in self._at:
                self._at[milestone] = now

    def process_started(self, seconds_before: float | None) -> None:
        """The process started `seconds_before` the build began (None: unknown, nothing is recorded)."""
        if seconds_before is not None:
            with self._lock:
                self._at["imports"] = -seconds_before

    def to_json(self) -> dict[str, float]:
        """The milestones reached, in order, rounded to the millisecond."""
        with self._lock:
            return {name: round(self._at[name], 3) for name in MILESTONES if name in self._at}


@dataclass
class BuildProgress:
    """A snapshot of a build, for progress bars and pages: its stage, and once it indexes, its counts."""

    videos_done: int = 0
    videos_total: int = 0
    videos_indexed: int = 0
    frames_done: int = 0
    elapsed_s: float = 0.0
    frames_per_s: float = 0.0
    eta_s: float | None = None
    skipped: list[SkippedItem] = field(default_factory=list)
    current: str = ""
    stage: BuildStage = BuildStage.INDEXING
    model: str = ""  # the model being loaded, in words (while STARTING)

    @property
    def counting(self) -> bool:
        """Whether the counts mean something: the build has reached its videos."""
        return self.stage in (BuildStage.INDEXING, BuildStage.FINISHED)

    def describe(self) -> str:
        """The stage in words, as the front doors say it when the build reaches it ("" once it has finished)."""
        if self.stage is BuildStage.SCANNING:
            return "scanning videos"
        if self.stage is BuildStage.STARTING:
            return f"loading the model {self.model}" if self.model else "starting"
        return "indexing" if self.stage is BuildStage.INDEXING else ""

    def eta(self) -> str:
        """The time left as every front door shows it ("–" before the first video is done)."""
        return format_duration(self.eta_s)

    def elapsed(self) -> str:
        return format_duration(self.elapsed_s)


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
    shards: int = 1  # collections the index is written as
    timings: dict[str, float] = field(default_factory=dict)  # `BuildTimeline.to_json`: milestone → seconds

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
        # Counted here, listed by the front doors: a note can matter (fps:R capped at 600 frames a video).
        noted = len({note.item for note in self.notes})
        notes = f", {plural(noted, 'video')} with notes" if noted else ""
        return (
            f"{state}indexed {plural(self.videos_indexed, 'video')} ({self.videos_already_indexed:,} already indexed), "
            f"{skipped}{notes}, {plural(self.frames, 'frame')} in {self.seconds:.1f} s, "
            f"{self.frames_per_s:.1f} frames/s"
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["frames_per_s"] = round(self.frames_per_s, 3)
        data["seconds"] = round(self.seconds, 3)
        data["skipped"] = [asdict(s) for s in self.skipped]
        data["notes"] = [asdict(s) for s in self.notes]
        return data


@dataclass
class VideoResult:
    """One video as an engine hands it back: its frames' metadata and vectors (in frame order, thumbnails on
    disk already), or the reason it was skipped. `notes` are the video's own remarks (a capped frame count)."""

    record: VideoRecord
    metadatas: list[dict[str, Any]] = field(default_factory=list)
    vectors: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    reason: str = ""  # why it was skipped; "" when it was encoded

    @property
    def frames(self) -> int:
        return len(self.metadatas)
