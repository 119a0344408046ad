"""Confidence intervals for proportions and their difference (A/B comparisons).

* :func:`wilson` is the Wilson score interval of one proportion.
* :func:`newcombe` is Newcombe's hybrid score interval for the difference of two
  independent proportions (method 10 of Newcombe, *Statistics in Medicine* 17, 1998,
  873-890), built from the two Wilson intervals. Unlike the Wald interval it stays
  inside [-1, 1] and keeps its coverage for small counts and rates near 0 or 1.
"""

from __future__ import annotations

import math

#: The two-sided 95 % normal quantile.
Z95 = 1.959963984540054


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``successes / trials``; (0, 1) without trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = z * z
    centre = p + z2 / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    scale = 1 + z2 / trials
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


def newcombe(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int, z: float = Z95
) -> tuple[float, float] | None:
    """Interval of ``p_a - p_b`` (Newcombe's hybrid score); None when a side has no trials."""
    if trials_a <= 0 or trials_b <= 0:
        return None
    p_a, p_b = successes_a / trials_a, successes_b / trials_b
    low_a, high_a = wilson(successes_a, trials_a, z)
    low_b, high_b = wilson(successes_b, trials_b, z)
    difference = p_a - p_b
    low = difference - math.sqrt((p_a - low_a) ** 2 + (high_b - p_b) ** 2)
    high = difference + math.sqrt((high_a - p_a) ** 2 + (p_b - low_b) ** 2)
    return low, high
