"""How small a change a suite can see: minimum detectable effect (MDE) and items needed, for paired comparisons.

Binary items (pass/fail, judged by exact McNemar): a drop of `delta` shows up only as discordant items (base
passes, candidate fails), so the power depends on the number of items `n` and the discordance `p_d` (the share
of items whose outcome differs). Connor (1987), normal approximation of McNemar's test:

    power(delta) = Phi((delta * sqrt(n) - z(1 - alpha/2) * sqrt(p_d)) / sqrt(p_d - delta^2))

with p_d at least delta (a drop of delta needs at least delta * n flips), so even two identical runs cannot
claim to resolve a drop smaller than about (z_a + z_b)^2 / n: 7.85 / n at alpha 0.05 and 80% power.
Continuous scores (NLL, sampled pass rates): MDE = (z(1 - alpha/2) + z(power)) * SE of the mean difference.
Paraphrase clusters shrink the effective number of items by the design effect (clustered variance over
independent variance), Miller (2024), "Adding Error Bars to Evals".
"""

from __future__ import annotations

import math
from statistics import NormalDist

_N = NormalDist()


def z(p: float) -> float:
    return _N.inv_cdf(p)


def binary_power(delta: float, n: float, discordance: float, *, alpha: float = 0.05) -> float:
    """Power of a two-sided paired test at `alpha` to detect a drop of `delta` in a pass rate over `n` items."""
    if n <= 0 or delta <= 0:
        return 0.0
    pd = min(1.0, max(discordance, delta))
    var = pd - delta * delta
    if var <= 0:
        return 1.0
    return _N.cdf((delta * math.sqrt(n) - z(1 - alpha / 2) * math.sqrt(pd)) / math.sqrt(var))


def mde_binary(n: float, discordance: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest drop in a pass rate that `n` paired items detect with `power` (bisection on Connor's
    formula; infinite with no items)."""
    if n <= 0:
        return math.inf
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if binary_power(mid, n, discordance, alpha=alpha) >= power else (mid, hi)
    return hi


def items_binary(delta: float, discordance: float, *, alpha: float = 0.05, power: float = 0.8) -> int:
    """Paired items needed to detect a drop of `delta` in a pass rate at this discordance."""
    if delta <= 0:
        raise ValueError(f"a drop to detect must be > 0, got {delta}")
    pd = min(1.0, max(discordance, delta))
    root = z(1 - alpha / 2) * math.sqrt(pd) + z(power) * math.sqrt(max(pd - delta * delta, 0.0))
    return math.ceil((root / delta) ** 2)


def mde_continuous(se: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest shift of a mean paired difference detected with `power`, given its standard error."""
    return (z(1 - alpha / 2) + z(power)) * se


def items_continuous(delta: float, sd: float, *, alpha: float = 0.05, power: float = 0.8) -> int:
    """Paired items needed to detect a shift of `delta` when per-item differences have standard deviation `sd`."""
    if delta <= 0:
        raise ValueError(f"a shift to detect must be > 0, got {delta}")
    return max(2, math.ceil(((z(1 - alpha / 2) + z(power)) * sd / delta) ** 2))


def expected_discordance(base_rate: float, delta: float) -> float:
    """Discordance of a candidate `delta` below a base pass rate when their errors are independent (an upper
    bound; a fine-tune that keeps most answers is far more concordant). For planning without data."""
    cand = max(0.0, base_rate - delta)
    return base_rate * (1 - cand) + cand * (1 - base_rate)


def design_effect(cluster_size: float, icc: float) -> float:
    """Variance inflation of a mean over clusters of `cluster_size` items with intra-cluster correlation `icc`."""
    return 1.0 + max(cluster_size - 1.0, 0.0) * icc
