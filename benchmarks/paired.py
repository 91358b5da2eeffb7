"""Paired A/B statistics for a noisy machine: the effect of one change, measured as the median
of per-pair differences with a bootstrap confidence interval.

Each pair is two short runs back to back (A then B, or B then A), so whatever else the machine
does at that moment weighs on both; the pair's difference is log(B / A), which cancels the
machine's speed of the moment, and the median over many pairs ignores the pairs another
developer's test run hit in the middle. The interval is the bootstrap percentile interval of
that median (pairs resampled with replacement, a fixed seed: the same data give the same
interval). Sans-IO: numbers in, numbers out.
"""
from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Effect:
    """How B differs from A, in percent (B/A - 1), over `pairs` pairs."""

    median_pct: float
    low_pct: float  # the confidence interval of the median
    high_pct: float
    confidence: float
    pairs: int

    def bound(self, limit_pct: float) -> str:
        """Whether B is worse than A by less than limit_pct ("shown"), by more ("exceeded"), or
        the interval straddles the limit ("not shown": more pairs would tell)."""
        if self.low_pct > -limit_pct:
            return "shown"
        if self.high_pct < -limit_pct:
            return "exceeded"
        return "not shown"

    def as_dict(self) -> dict[str, float | int]:
        return {"median_pct": round(self.median_pct, 3), "ci_low_pct": round(self.low_pct, 3),
                "ci_high_pct": round(self.high_pct, 3), "confidence": self.confidence, "pairs": self.pairs}


def log_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """log(b_i / a_i) for each pair with both values positive."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} A values but {len(b)} B values: the runs must pair up")
    return [math.log(y / x) for x, y in zip(a, b) if x and y and x > 0 and y > 0]


def paired_effect(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95,
                  resamples: int = 10000, seed: int = 7) -> Effect:
    """The median change from A to B over the pairs, with its bootstrap interval."""
    d = log_ratios(a, b)
    if not d:
        raise ValueError("no pair has both values")
    mid, low, high = median_interval(d, confidence=confidence, resamples=resamples, seed=seed)
    return Effect(_pct(mid), _pct(low), _pct(high), confidence, len(d))


def median_interval(values: Sequence[float], *, confidence: float = 0.95, resamples: int = 10000,
                    seed: int = 7) -> tuple[float, float, float]:
    """(median, low, high): the median of values and its bootstrap percentile interval."""
    if not values:
        raise ValueError("no values")
    rng = random.Random(seed)
    n = len(values)
    medians = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(resamples))
    tail = (1 - confidence) / 2
    low = medians[int(tail * resamples)]
    high = medians[min(resamples - 1, int((1 - tail) * resamples))]
    return statistics.median(values), low, high


def _pct(log_ratio: float) -> float:
    return (math.exp(log_ratio) - 1) * 100
