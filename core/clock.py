"""Time for records and for people: timestamps written into indexes, runs and manifests (UTC, whole
seconds, ISO 8601), and the one way a duration (an ETA, the time elapsed) is shown."""

from __future__ import annotations

from datetime import datetime, timezone


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def format_duration(seconds: float | None) -> str:
    """A duration as the CLI, the app and the jobs show it: "45 s", "3 min 05 s", "1 h 02 min"; "–" unknown."""
    if seconds is None or seconds != seconds or seconds < 0:  # None, NaN or negative: not known
        return "–"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
