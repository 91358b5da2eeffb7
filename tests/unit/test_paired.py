"""The paired A/B statistics the scrape-cost benchmark reports (benchmarks/paired.py)."""
import math
import random

import pytest

from virtserve.benchmarks.paired import log_ratios, median_interval, paired_effect

pytestmark = pytest.mark.timeout(30)


def _noisy_pairs(effect: float, n: int, seed: int = 1):
    """Pairs whose machine speed swings by +-30% from pair to pair (shared by both runs of a
    pair), with 0.5% noise of their own, B being `effect` times A."""
    rng = random.Random(seed)
    a, b = [], []
    for _ in range(n):
        speed = 20000 * rng.uniform(0.7, 1.3)
        a.append(speed * rng.gauss(1, 0.005))
        b.append(speed * effect * rng.gauss(1, 0.005))
    return a, b


def test_the_machine_swing_cancels_and_a_small_cost_is_found_within_its_interval():
    a, b = _noisy_pairs(0.99, 30)
    e = paired_effect(a, b)
    assert e.low_pct <= -1.0 <= e.high_pct and e.high_pct - e.low_pct < 1.0
    assert e.pairs == 30 and e.bound(3.0) == "shown"


def test_a_cost_over_the_limit_is_reported_exceeded():
    a, b = _noisy_pairs(0.90, 30)
    e = paired_effect(a, b)
    assert e.high_pct < -3.0 and e.bound(3.0) == "exceeded"


def test_too_few_noisy_pairs_do_not_show_the_bound():
    rng = random.Random(3)
    a = [20000.0] * 5
    b = [20000 * rng.uniform(0.9, 1.1) for _ in range(5)]  # noise within the pairs: +-10%
    e = paired_effect(a, b)
    assert e.low_pct < -3.0 and e.bound(3.0) == "not shown"


def test_outlier_pairs_do_not_move_the_median():
    a, b = _noisy_pairs(1.0, 21)
    b[0] *= 0.3  # someone's test suite hit the scraped run of two pairs
    b[1] *= 0.5
    e = paired_effect(a, b)
    assert abs(e.median_pct) < 0.5


def test_same_data_same_interval_and_pairs_must_match():
    a, b = _noisy_pairs(0.98, 10)
    assert paired_effect(a, b) == paired_effect(a, b)
    assert log_ratios([2.0, 0.0], [4.0, 1.0]) == [math.log(2)]  # a run without a value pairs with nothing
    with pytest.raises(ValueError, match="pair up"):
        log_ratios([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="no pair"):
        paired_effect([0.0], [1.0])


def test_median_interval_holds_the_median_of_values_spread_around_it():
    rng = random.Random(5)
    values = [0.8 + rng.gauss(0, 0.2) for _ in range(200)]
    mid, low, high = median_interval(values)
    assert low < mid < high and low < 0.8 < high and high - low < 0.1
    with pytest.raises(ValueError):
        median_interval([])
