"""The sampling sweep: what more frames per video buy in precision, and what they cost in build time.

Its rows (`SweepRow`, kept by `SweepStore` in core.store.runs) have ``null`` build seconds for a collection
built outside a sweep.
"""

from __future__ import annotations

import csv
import io

from core.ground import UserError
from core.media.frames import FrameStrategy
from core.store.runs import SWEEPS_FILENAME, SweepRow, SweepStore

__all__ = ["SWEEPS_FILENAME", "SWEEP_KEYS", "SweepError", "SweepRow", "SweepStore", "parse_strategies", "sweep_csv"]

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
