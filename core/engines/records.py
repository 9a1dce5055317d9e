"""What a build reports: `BuildProgress` while it runs, `BuildSummary` when it ends (the same for every engine)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from core.ground import format_duration, plural
from core.media.sources import SkippedItem


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
