"""The score cut-offs (core/analysis/cutoff.py) against a naive reference written from the rule's definition."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from core.analysis.cutoff import MAD_TO_SIGMA, adaptive_cutoff, combined_cutoff, z_threshold


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def _naive_z(n_frames: int) -> float:
    """max(3.5, Φ⁻¹(1 − 0.05 / N)), with Φ from math.erf and its inverse by bisection."""
    target = 1 - 0.05 / max(1, n_frames)
    low, high = 0.0, 40.0
    for _ in range(200):
        mid = (low + high) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < target:
            low = mid
        else:
            high = mid
    return max(3.5, (low + high) / 2)


def _naive_cutoff(scores: list[float]) -> float | None:
    """The adaptive floor by its definition: median + z* × 1.4826 × MAD; with no spread, just above the median."""
    if len(scores) < 3:
        return None
    median = _median(scores)
    sigma = 1.4826 * _median([abs(s - median) for s in scores])
    if sigma <= 0:
        return math.nextafter(median, math.inf)
    return median + _naive_z(len(scores)) * sigma


@pytest.mark.parametrize("n", [1, 3, 10, 100, 1_000, 20_000, 10**6])
def test_z_threshold_against_the_naive_inverse(n: int) -> None:
    assert z_threshold(n) == pytest.approx(_naive_z(n), abs=1e-9)


@pytest.mark.parametrize("seed", range(8))
def test_adaptive_cutoff_against_the_naive_rule(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.choice([3, 4, 7, 50, 501, 2_000])
    scores = [rng.gauss(0.2, rng.choice([0.001, 0.02, 0.1])) for _ in range(n)]
    scores += [rng.uniform(0.4, 0.6) for _ in range(rng.randint(0, 3))]  # a few planted matches
    cut = adaptive_cutoff(np.array(scores))
    expected = _naive_cutoff(scores)
    assert cut.value is not None and expected is not None
    assert cut.value == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert cut.median == pytest.approx(_median(scores)) and cut.z == pytest.approx(_naive_z(len(scores)))
    kept = [s for s in scores if s >= cut.value]
    assert kept == [s for s in scores if s >= expected]
    assert f"over {len(scores)} frames" in cut.rule and cut.rule.startswith("adaptive: similarity ≥ ")


def test_adaptive_cutoff_without_spread_or_without_frames() -> None:
    flat = [0.3] * 9 + [0.31]  # more than half the frames score the same: anything above them stands out
    cut = adaptive_cutoff(np.array(flat))
    assert cut.value == _naive_cutoff(flat) == math.nextafter(0.3, math.inf) and cut.sigma == 0
    assert [s for s in flat if s >= cut.value] == [0.31]
    for few in ([], [0.1], [0.1, 0.2]):
        short = adaptive_cutoff(np.array(few))
        assert short.value is None and _naive_cutoff(few) is None
        assert "adaptive cut-off not applied: the index holds only" in short.rule


def test_combined_cutoff_keeps_the_stricter_floor() -> None:
    rng = np.random.default_rng(3)
    scores = np.concatenate([rng.normal(0.2, 0.02, 500), [0.5, 0.45]])
    auto = _naive_cutoff(scores.tolist())
    assert auto is not None
    for floor in (None, -1.0, 0.1, auto - 1e-3, auto + 1e-3, 0.48, 1.0):
        for adaptive in (False, True):
            cut = combined_cutoff(scores, floor, adaptive)
            candidates = [v for v in (floor, auto if adaptive else None) if v is not None]
            expected = max(candidates) if candidates else None
            assert (cut.value is None) == (expected is None)
            if expected is not None:
                assert cut.value == pytest.approx(expected, rel=1e-9)
    assert combined_cutoff(None, None, adaptive=False).rule == "no cut-off: the k most similar"
    assert combined_cutoff(scores, 0.25, adaptive=False).rule == "similarity ≥ 0.2500"
    # Adaptive asked for on too few frames: its sentence says so, and the floor, when given, still applies.
    assert "not applied" in combined_cutoff(np.array([0.1]), None, adaptive=True).rule
    assert combined_cutoff(np.array([0.1]), 0.05, adaptive=True).value == 0.05


def test_adaptive_cutoff_against_a_naive_robust_z_score() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0.20, 0.02, 10_000)
    planted = np.array([0.45, 0.42, 0.40, 0.39, 0.38])
    scores = np.concatenate([noise, planted])
    cut = adaptive_cutoff(scores)
    median = np.median(scores)
    sigma = MAD_TO_SIGMA * np.median(np.abs(scores - median))
    assert cut.value == pytest.approx(median + z_threshold(scores.size) * sigma)
    assert z_threshold(100) == 3.5 and z_threshold(10_000) == pytest.approx(4.4172, abs=1e-3)
    assert int((scores >= cut.value).sum()) == 5  # the planted matches, nothing of the noise
    assert int((noise >= adaptive_cutoff(noise).value).sum()) == 0  # "are there any real matches?": no
    assert adaptive_cutoff(np.array([0.1, 0.2])).value is None
    assert combined_cutoff(scores, 0.41, adaptive=True).value == pytest.approx(0.41)  # the stricter one
    assert combined_cutoff(scores, 0.10, adaptive=True).value == pytest.approx(cut.value)
    assert combined_cutoff(None, None, adaptive=False).value is None
