"""Naive references shared by several test files: the definitions, written the slow, obvious way."""

from __future__ import annotations


def naive_wilson(successes: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson interval by its definition: the proportions p0 that a z-test at p0 does not reject,
    found by bisection rather than by the closed form under test."""
    p = successes / n

    def rejected(p0: float) -> bool:
        return (p - p0) ** 2 > z * z * p0 * (1 - p0) / n

    def boundary(inside: float, outside: float) -> float:
        for _ in range(200):
            mid = (inside + outside) / 2
            if rejected(mid):
                outside = mid
            else:
                inside = mid
        return (inside + outside) / 2

    low = boundary(p, 0.0) if rejected(0.0) else 0.0
    high = boundary(p, 1.0) if rejected(1.0) else 1.0
    return low, high
