"""The statistics the tables report, written once: finite values, a mean with its confidence
interval (Student's t), and a ratio of two paired means with its paired-bootstrap interval.

One rule for missing numbers: nan and inf are left out (for a ratio, the pair is), and a statistic
of no values is nan."""

from __future__ import annotations

import numpy as np
from scipy import stats

BOOTSTRAP = 2000  # resamples of a ratio's paired bootstrap interval


def finite_values(values: list) -> np.ndarray:
    """The finite floats among CSV values (blank cells and text are left out): (n,) float64."""
    return np.asarray([x for x in values if isinstance(x, float) and np.isfinite(x)], dtype=np.float64)


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its confidence interval (Student's t), over the finite values.

    Args:
        values: (n,) numbers; nan and inf are left out.
        confidence: e.g. 0.95.

    Returns:
        (mean, half-width): (nan, nan) without values; the half-width is nan for one value.
    """
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan"), float("nan")
    if len(v) < 2:
        return float(v[0]), float("nan")
    half = stats.t.ppf((1 + confidence) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(half)


def ratio_ci(values, reference, seed: int = 0, resamples: int = BOOTSTRAP) -> tuple[float, float, float]:
    """mean(values) / mean(reference) over paired items (e.g. sounds), with the 95% percentile
    interval of a paired bootstrap (items resampled with replacement, seeded).

    Args:
        values, reference: (n,) numbers, paired by position; a pair with a nan or inf is left out.
        seed: the resampling's seed.
        resamples: how many bootstrap resamples.

    Returns:
        (ratio, low, high): nan without pairs or where the reference's mean is not above 0.
    """
    values, reference = np.asarray(values, np.float64), np.asarray(reference, np.float64)
    ok = np.isfinite(values) & np.isfinite(reference)
    values, reference = values[ok], reference[ok]
    if not len(values) or reference.mean() <= 0:
        return float("nan"), float("nan"), float("nan")
    pick = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    ratios = values[pick].mean(axis=1) / np.maximum(reference[pick].mean(axis=1), 1e-300)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(values.mean() / reference.mean()), float(low), float(high)


__all__ = ["BOOTSTRAP", "finite_values", "mean_ci", "ratio_ci"]
