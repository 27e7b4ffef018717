"""The soak benchmark's arithmetic: quantiles from Prometheus histogram bucket deltas, the mix, the goals."""

import math

import pytest

from tools.bench.soak import (
    Minute,
    Mix,
    add,
    delta,
    exact_quantile,
    fill_minute,
    goals,
    growth,
    histogram,
    quantile,
)

EXPOSITION = """\
# HELP fairlane_claim_seconds Time one claim call takes
# TYPE fairlane_claim_seconds histogram
fairlane_claim_seconds_bucket{destination="A",le="0.001"} 2.0
fairlane_claim_seconds_bucket{destination="A",le="0.01"} 6.0
fairlane_claim_seconds_bucket{destination="A",le="+Inf"} 7.0
fairlane_claim_seconds_count{destination="A"} 7.0
fairlane_claim_seconds_sum{destination="A"} 0.05
fairlane_claim_seconds_bucket{destination="B",le="0.001"} 1.0
fairlane_claim_seconds_bucket{destination="B",le="0.01"} 1.0
fairlane_claim_seconds_bucket{destination="B",le="+Inf"} 1.0
fairlane_claim_seconds_count{destination="B"} 1.0
fairlane_claim_seconds_sum{destination="B"} 0.0005
# HELP fairlane_queue_wait_seconds Time from acceptance to claim
# TYPE fairlane_queue_wait_seconds histogram
fairlane_queue_wait_seconds_bucket{destination="A",le="+Inf"} 99.0
"""


def test_a_histogram_is_summed_over_its_label_sets():
    assert histogram(EXPOSITION, "fairlane_claim_seconds") == {0.001: 3.0, 0.01: 7.0, math.inf: 8.0}
    assert histogram(EXPOSITION, "fairlane_gateway_seconds") == {}


def test_a_minute_counts_the_observations_since_the_last_reading():
    before = {0.1: 5.0, 1.0: 8.0, math.inf: 9.0}
    assert delta({0.1: 7.0, 1.0: 12.0, math.inf: 13.0}, before) == {0.1: 2.0, 1.0: 4.0, math.inf: 4.0}
    assert delta({0.1: 1.0, 1.0: 1.0, math.inf: 2.0}, before) == {0.1: 1.0, 1.0: 1.0, math.inf: 2.0}  # restarted
    assert delta({0.1: 1.0, math.inf: 1.0}, {}) == {0.1: 1.0, math.inf: 1.0}
    assert add({0.1: 1.0, math.inf: 2.0}, {0.1: 3.0, math.inf: 3.0}) == {0.1: 4.0, math.inf: 5.0}


def test_a_quantile_is_linear_within_its_bucket():
    buckets = {0.1: 50.0, 0.2: 90.0, 0.4: 100.0, math.inf: 100.0}
    assert quantile(buckets, 0.5) == pytest.approx(0.1)
    assert quantile(buckets, 0.25) == pytest.approx(0.05)  # the first bucket starts at 0
    assert quantile(buckets, 0.7) == pytest.approx(0.15)
    assert quantile(buckets, 0.99) == pytest.approx(0.38)
    assert quantile({0.1: 0.0, 0.2: 10.0, math.inf: 10.0}, 0.5) == pytest.approx(0.15)  # empty buckets skipped


def test_a_quantile_in_the_open_bucket_is_the_highest_bound_and_none_without_observations():
    assert quantile({0.1: 1.0, 1.0: 2.0, math.inf: 10.0}, 0.99) == 1.0
    assert quantile({0.1: 0.0, math.inf: 0.0}, 0.5) is None
    assert quantile({}, 0.5) is None


def test_exact_quantiles_take_the_nearest_rank():
    values = [float(n) for n in range(100, 0, -1)]
    assert exact_quantile(values, 0.99) == 99.0
    assert exact_quantile(values, 0.5) == 50.0
    assert exact_quantile([3.0], 0.99) == 3.0
    assert exact_quantile([], 0.5) is None


def test_the_mix_keeps_each_way_to_its_share_as_it_goes():
    mix = Mix({"single": 0.5, "batch": 0.3, "sql": 0.2})
    ways = [mix.next() for _ in range(1000)]
    for n in (10, 100, 1000):
        assert ways[:n].count("single") == n // 2
        assert abs(ways[:n].count("batch") - 0.3 * n) <= 1
        assert abs(ways[:n].count("sql") - 0.2 * n) <= 1


def _minute(size: int, claim_p99_bucket: float = 0.01) -> Minute:
    claim = {0.001: 0.0, claim_p99_bucket: 100.0, math.inf: 100.0}
    return Minute(3000, 0, 3000, claim, claim, [0.02] * 100, {"fairlane.messages_live": size}, 0, 10)


def test_the_goals_compare_the_last_minutes_with_the_first_and_the_size_once_retention_has_filled():
    assert fill_minute(300) == 7  # five minutes, a one-minute partition, a minute of slack
    minutes = [_minute(100_000_000 + n * 1_000_000) for n in range(10)] + [_minute(110_000_000, 0.02)] * 5
    report = "\n".join(goals(minutes, 300))
    assert "p99 of the last 5 minutes' against the first 5 minutes'" in report
    assert "claim              9.9 ms →     19.8 ms: 2.00×" in report
    assert "callback lag      20.0 ms →     20.0 ms: 1.00×" in report
    assert "106.0 MB at minute 7, 110.0 MB now: 1.04× (range 1.00–1.04×)" in report
    assert "grew most since minute 1: fairlane.messages_live +10.0 MB" in report


def test_the_size_goal_is_not_judged_without_retention_or_before_the_window_fills():
    assert "total size: not judged, retention is not available" in "\n".join(goals([_minute(1)] * 20, None))
    assert "fills by minute 7: soak longer" in "\n".join(goals([_minute(1)] * 7, 300))
    assert goals([_minute(1)], 300)[0].startswith("total size")  # one minute: no halves to compare, no growth


def test_the_relations_that_grew_most_are_named():
    before = {"fairlane.a": 1_000_000, "fairlane.b": 5_000_000, "fairlane.gone": 1}
    now = {"fairlane.a": 4_000_000, "fairlane.b": 5_000_000, "fairlane.new": 2_000_000}
    assert growth(before, now) == "fairlane.a +3.0 MB, fairlane.new +2.0 MB"
    assert growth(now, now) == "none"
