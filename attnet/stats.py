"""Statistics for results over seeds: 95 % t-intervals, paired differences, binomial errors.

Seeds are few (3 to 5), so intervals use Student's t, not the normal 1.96. A paired
difference compares two configurations seed by seed (same seed, same data order and the
same initial draws where the models share parameters), which removes the seed-to-seed
variation the two have in common. The t quantile is SciPy's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.stats


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p for Student's t with df degrees of freedom."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    return float(scipy.stats.t.ppf(p, df))


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided confidence interval; half-width NaN below two values."""
    mean: float
    low: float
    high: float
    n: int
    sd: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def __str__(self) -> str:
        return mean_text(self)


def t_interval(values, level: float = 0.95) -> Interval:
    """Mean and the Student t interval mean ± t_{(1+level)/2, n-1} sd / sqrt(n); NaNs are dropped."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1, math.nan)
    sd = float(x.std(ddof=1))
    half = t_quantile((1 + level) / 2, n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, sd)


def bootstrap_interval(values, level: float = 0.95, resamples: int = 10_000, seed: int = 0) -> Interval:
    """Mean and the percentile bootstrap interval (resampling the values with replacement).
    With 3-5 seeds it is too narrow (it ignores that sd itself is uncertain): t_interval is the default."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) < 2:
        return t_interval(x, level)
    means = np.random.default_rng(seed).choice(x, size=(resamples, len(x)), replace=True).mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(x.mean()), float(low), float(high), len(x), float(x.std(ddof=1)))


def call(interval: Interval) -> str:
    """"better" / "worse" where the interval of a difference excludes 0, else "no difference";
    "n < 2" where there is no interval."""
    if math.isnan(interval.low):
        return "n < 2"
    if interval.low > 0:
        return "better"
    if interval.high < 0:
        return "worse"
    return "no difference"


def paired_difference(values: pd.Series, reference: pd.Series, level: float = 0.95) -> Interval:
    """Interval of the mean of values - reference over the keys (seeds) present in both."""
    common = values.dropna().index.intersection(reference.dropna().index)
    return t_interval((values[common] - reference[common]).to_numpy(), level)


def paired_differences(runs: pd.DataFrame, reference: str, value: str = "test.top1", key: str = "seed",
                       group: str = "config", level: float = 0.95) -> pd.DataFrame:
    """Per configuration (rows of `runs` with status done): the paired difference to the
    reference configuration, seed by seed over the seeds both finished, and its call."""
    done = runs[runs["status"] == "done"] if "status" in runs else runs
    ref = done[done[group] == reference].set_index(key)[value]
    rows = []
    for name, rows_of in done.groupby(group, sort=False):
        interval = paired_difference(rows_of.set_index(key)[value], ref, level)
        rows.append({group: name, "pairs": interval.n, "diff": interval.mean, "low": interval.low,
                     "high": interval.high, "call": call(interval) if name != reference else "reference"})
    return pd.DataFrame(rows, columns=[group, "pairs", "diff", "low", "high", "call"])


def binomial_se(top1: float, n: int) -> float:
    """Standard error (percentage points) of a top-1 of `top1` % measured on n test videos."""
    p = top1 / 100.0
    return 100.0 * math.sqrt(p * (1 - p) / n)


def videos_for_se(top1: float = 50.0, se: float = 2.0) -> int:
    """Test videos needed for a binomial standard error <= se points at accuracy top1 % (50 % is the worst case)."""
    p = top1 / 100.0
    return math.ceil(p * (1 - p) / (se / 100.0) ** 2 - 1e-9)


def mean_text(interval: Interval, digits: int = 1, signed: bool = False) -> str:
    """"65.4 [57.1, 73.7]" (just the mean below two values, "" for none)."""
    if interval.n == 0:
        return ""
    sign = "+" if signed else ""
    if math.isnan(interval.low):
        return f"{interval.mean:{sign}.{digits}f}"
    return f"{interval.mean:{sign}.{digits}f} [{interval.low:{sign}.{digits}f}, {interval.high:{sign}.{digits}f}]"


def difference_text(row) -> str:
    """A row of paired_differences as "+1.2 [-0.3, +2.7]"."""
    return mean_text(Interval(row["diff"], row["low"], row["high"], int(row["pairs"]), float("nan")), signed=True)
