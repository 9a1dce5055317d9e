"""Score cut-offs: an absolute floor, and an adaptive one that asks "are there any real matches?".

The adaptive rule looks at the query's similarity to every frame in the index. Most frames do not match
any given query, so the bulk of that distribution is what "no match" looks like for this query; a
match stands out above it. The bulk is measured robustly (median and MAD, which the few matches cannot
drag), and a frame is kept when its robust z-score, (s − median) / (1.4826 · MAD), is at least

    z* = max(3.5, Φ⁻¹(1 − 0.05 / N))

for an index of N frames: 3.5 is Iglewicz and Hoaglin's outlier level for the modified z-score, and the
second term keeps the chance that pure noise in a bulk of N frames passes anywhere at about 5%. A query
with no real matches in the index then returns nothing, instead of its k least bad frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from core.ground import plural

MIN_Z = 3.5
FAMILY_ALPHA = 0.05
MAD_TO_SIGMA = 1.4826  # the MAD of a normal distribution is 0.6745 σ
MIN_FRAMES = 3  # fewer frames than this have no distribution to stand out from


@dataclass(frozen=True)
class Cutoff:
    """The score below which hits are dropped, and why."""

    value: float | None  # None: nothing is dropped
    rule: str  # one sentence, for the CLI header and the app
    median: float | None = None
    sigma: float | None = None
    z: float | None = None


def z_threshold(n_frames: int) -> float:
    """z* for an index of `n_frames` frames (see the module's docstring)."""
    return max(MIN_Z, NormalDist().inv_cdf(1 - FAMILY_ALPHA / max(1, n_frames)))


def adaptive_cutoff(scores: np.ndarray) -> Cutoff:
    """The adaptive cut-off over `scores`, the query's similarity to every frame of the index."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size < MIN_FRAMES:
        return Cutoff(None, f"adaptive cut-off not applied: the index holds only {plural(scores.size, 'frame')}")
    median = float(np.median(scores))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(scores - median)))
    z = z_threshold(scores.size)
    if sigma <= 0:  # more than half the frames score the same: anything above them stands out
        value = float(np.nextafter(median, np.inf))
    else:
        value = median + z * sigma
    rule = (
        f"adaptive: similarity ≥ {value:.4f} (median {median:.4f} + {z:.2f} × robust σ {sigma:.4f} "
        f"over {plural(scores.size, 'frame')})"
    )
    return Cutoff(value, rule, median, sigma, z)


def combined_cutoff(scores: np.ndarray | None, min_similarity: float | None, adaptive: bool) -> Cutoff:
    """The stricter of the absolute floor and, when asked for, the adaptive cut-off."""
    floor = Cutoff(min_similarity, f"similarity ≥ {min_similarity:.4f}") if min_similarity is not None else None
    auto = adaptive_cutoff(scores if scores is not None else np.zeros(0)) if adaptive else None
    candidates = [c for c in (floor, auto) if c is not None and c.value is not None]
    if not candidates:
        return auto or Cutoff(None, "no cut-off: the k most similar")
    return max(candidates, key=lambda c: float(c.value))  # type: ignore[arg-type]  # None filtered out above
