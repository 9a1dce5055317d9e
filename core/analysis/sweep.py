"""The sampling sweep: what more frames per video buy in precision, and what they cost in build time.

A sweep builds (or reuses) one collection per frame strategy and scores each with every pooling.
Its rows are kept in ``sweeps.jsonl`` next to the run store (next to an embedded index; in the output
folder with a Chroma server), so the Runs page can plot precision@1 against build seconds. A reused
collection keeps the build time a sweep measured for it earlier; a collection built by something
else (``python -m core build``) has no known build time, and its rows say so with ``null``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.ground import UserError
from core.media.frames import FrameStrategy
from core.store.locking import locked_append

SWEEPS_FILENAME = "sweeps.jsonl"
# The contract of ``sweep --json`` / ``--csv``: these keys first, in this order (more may follow).
SWEEP_KEYS = ("frames", "pooling", "precision_at_1", "precision_at_5", "mrr", "n_frames", "build_seconds",
              "frames_per_s")  # fmt: skip


class SweepError(UserError):
    """A sweep that cannot run as asked (no strategy, an unknown one)."""


def parse_strategies(text: str) -> list[str]:
    """``middle,uniform:4,...`` as canonical strategy names, duplicates dropped; one sentence on a typo."""
    items = [part.strip() for part in (text or "").split(",") if part.strip()]
    if not items:
        raise SweepError("No frame strategy to sweep: pass --frames middle,uniform:4 (comma-separated).")
    return list(dict.fromkeys(str(FrameStrategy.parse(item)) for item in items))


@dataclass
class SweepRow:
    """One strategy × pooling of a sweep."""

    frames: str
    pooling: str
    precision_at_1: float
    precision_at_5: float
    mrr: float
    n_frames: int
    build_seconds: float | None  # None: the collection was built outside a sweep and its time is unknown
    frames_per_s: float | None
    precision_at_1_ci95: list[float] = field(default_factory=list)
    n_videos: int = 0  # samples scored (frames with `frame` pooling)
    model: str = ""
    collection: str = ""
    prompt_set: str = ""
    timestamp: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> tuple[str, str, str, str]:
        """What a newer row replaces: the same collection, pooling and prompts."""
        return (self.collection, self.model, self.pooling, self.prompt_set)


def sweep_csv(rows: list[SweepRow]) -> str:
    """The rows as CSV, the contract's columns first (an unknown build time is an empty cell)."""
    buffer = io.StringIO()
    data = [row.to_json() for row in rows]
    columns = [*SWEEP_KEYS, *(k for k in (data[0] if data else {}) if k not in SWEEP_KEYS)]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for item in data:
        writer.writerow({k: ("-".join(f"{v:.4f}" for v in item[k]) if isinstance(item[k], list) else item[k])
                         for k in columns})  # fmt: skip
    return buffer.getvalue()


class SweepStore:
    """Append-only JSON lines of sweep rows; the newest row per collection, pooling and prompts wins."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @classmethod
    def beside(cls, runs_file: Path | str) -> SweepStore:
        """The sweep file in the run store's folder."""
        return cls(Path(runs_file).parent / SWEEPS_FILENAME)

    def load(self) -> list[SweepRow]:
        rows: dict[tuple[str, str, str, str], SweepRow] = {}
        if not self.path.is_file():
            return []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = SweepRow(**json.loads(line))
            except (ValueError, TypeError):
                continue  # a line written by a newer version, or cut short: skipped, not fatal
            rows.pop(row.key(), None)
            rows[row.key()] = row
        return list(rows.values())

    def add(self, rows: list[SweepRow]) -> None:
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        locked_append(self.path, "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in rows))

    def known_build(self, collection: str, n_frames: int) -> tuple[float, float] | None:
        """(build seconds, frames/s) a sweep measured for this collection at this size, if any."""
        for row in reversed(self.load()):
            if row.collection == collection and row.n_frames == n_frames and row.build_seconds is not None:
                return row.build_seconds, row.frames_per_s or 0.0
        return None
