"""Timestamps written into indexes, runs and manifests: UTC, whole seconds, ISO 8601."""

from __future__ import annotations

from datetime import datetime, timezone


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
