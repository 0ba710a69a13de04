"""Small-sample statistics for the numbers mirg prints: a binomial interval for a rate and an exact paired test.

Evaluation sets in the CPU demo and the pretraining checks are a few hundred samples, where one sample moves a
percentage by a quarter of a point or more; these say how far a figure, or a difference between two models on the
same samples, can be trusted.
"""

from __future__ import annotations

from math import comb, sqrt


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (default 95 %) of a rate ``hits / n``, as fractions; (0, 1) when ``n`` is 0."""
    if not 0 <= hits <= n:
        raise ValueError(f"need 0 <= hits <= n, got {hits}/{n}")
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def hits_text(hits: int, n: int) -> str:
    """'hits/n (lo-hi)': the 95 % Wilson interval of the rate, in percent."""
    lo, hi = wilson_interval(hits, n)
    return f"{hits}/{n} ({100 * lo:.1f}-{100 * hi:.1f})"


def sign_test(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar (sign test) p-value: of the samples exactly one of two models gets right, ``only_a``
    went to the first and ``only_b`` to the second; how likely is a split at least this lopsided if neither model
    is better (each discordant sample a fair coin)."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2**n)
