"""The range of every number a user can give (a command-line flag, a form field, a request), and the one
check that refuses a value outside it in one sentence.

Each range is written once, here: the command line checks its flags with `check_setting` while it
parses them, before it imports anything heavy, and the build checks the request's batch size and
workers with the same ranges whichever front door made it. This module imports nothing heavy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.ground import UserError
from core.runtime import usable_cores

MAX_K = 1000  # results of one search: more is a listing, not a search
WORKERS_PER_CORE = 4  # decoding workers beyond a few per core only compete for the same cores


@dataclass(frozen=True)
class Range:
    """The values one numeric setting accepts: `low` to `high` (inclusive), whole numbers or finite
    decimals, and perhaps some words (``auto``). With `per_core`, `high` counts per usable core."""

    label: str  # how the user names the setting, for the sentence: the flag (the app may pass its own)
    low: float
    high: float
    whole: bool = True
    words: tuple[str, ...] = ()
    per_core: bool = False

    def upper(self) -> float:
        return self.high * usable_cores() if self.per_core else self.high

    def describe(self) -> str:
        """The accepted values in words, e.g. 'a whole number from 1 to 4096, or auto'."""
        kind = "a whole number" if self.whole else "a number"
        high = self.upper()
        bounds = f"from {_show(self.low)} to {_show(high)}"
        if self.per_core:
            bounds += f" ({_show(self.high)} per core, {usable_cores()} cores here)"
        words = f", or {' or '.join(self.words)}" if self.words else ""
        return f"{kind} {bounds}{words}"

    def check(self, value: object, label: str | None = None) -> int | float | str:
        """`value` (a number, or text as typed) as an int, a float or one of the words; anything else is
        refused in one sentence that names the setting and its range."""
        if isinstance(value, str) and value.strip().lower() in self.words:
            return value.strip().lower()
        number = _number(value, self.whole)
        if number is None or not (self.low <= number <= self.upper()):
            shown = (value.strip() or repr(value)) if isinstance(value, str) else value
            raise UserError(f"{label or self.label} must be {self.describe()}, not {shown}.")
        return number


def _show(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _number(value: object, whole: bool) -> int | float | None:
    """`value` as a finite number (an int when `whole`), or None when it is not one."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(number):
        return None
    if whole:
        if not number.is_integer():
            return None
        if isinstance(value, str) and not value.strip().lstrip("+-").isdigit():
            return None  # "1e3" or "5.0" typed where a count is asked for
        return int(number)
    return number


# Collections of one sharded index: more than the cores of a large machine gains no write rate.
MAX_SHARDS = 64

RANGES: dict[str, Range] = {
    # build and sweep
    "batch_size": Range("--batch-size", 1, 4096),
    "workers": Range("--workers", 1, WORKERS_PER_CORE, words=("auto",), per_core=True),
    "shards": Range("--shards", 1, MAX_SHARDS),
    # search and loadtest
    "k": Range("--k", 1, MAX_K),
    "min_similarity": Range("--min-similarity", -1.0, 1.0, whole=False),
    "margin": Range("--margin", 0.0, 2.0, whole=False),
    "threads": Range("--threads", 1, 256),
    "requests": Range("--requests", 1, 1_000_000),
    "seconds": Range("--seconds", 0.001, 86_400.0, whole=False),
    # Kinetics subsets and downloads
    "per_class": Range("--per-class", 1, 1000),
    "candidates": Range("--candidates", 1, 1000),
    "jobs": Range("--jobs", 1, 32),
    "retries": Range("--retries", 0, 20),
    # sample clips and the demo model (the reference subset has 50 classes)
    "sample_classes": Range("--classes", 1, 50),
    "sample_per_class": Range("--per-class", 1, 100),
    "sample_frames": Range("--frames", 1, 1000),
    "demo_steps": Range("--steps", 1, 10_000),
    # a Chroma server
    "chroma_port": Range("--chroma-port", 1, 65_535),
}


def check_setting(name: str, value: object, label: str | None = None) -> int | float | str:
    """`value` of the setting `name` (a key of RANGES), checked; refused in one sentence outside its range.
    `label` names the setting in that sentence (default: its command-line flag)."""
    return RANGES[name].check(value, label)
