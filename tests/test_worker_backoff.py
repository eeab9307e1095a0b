"""Unit tests for `tracekeeperd.worker.backoff`: the persisted delay between attempts of one job.

The jitter is random, so every assertion is a bound that holds for any draw; many draws
make a bound that is too loose (or a jitter that is ignored) show up.
"""

from __future__ import annotations

import pytest

from tracekeeperd.config import RetryPolicy
from tracekeeperd.worker import backoff

DRAWS = 200


def test_without_jitter_it_doubles_from_base_up_to_the_cap() -> None:
    policy = RetryPolicy(base=5.0, cap=900.0, jitter=0.0)
    assert [backoff(policy, n) for n in range(1, 10)] == [5, 10, 20, 40, 80, 160, 320, 640, 900]
    assert backoff(policy, 0) == backoff(policy, 1) == 5, "attempt 0 (never tried) waits like the first"
    assert backoff(policy, 10_000) == 900, "huge attempt counts do not overflow"


@pytest.mark.parametrize("attempts", [1, 2, 3, 5, 8])
def test_jitter_is_bounded(attempts: int) -> None:
    policy = RetryPolicy(base=5.0, cap=900.0, jitter=3.0)
    low = 5.0 * 2 ** (attempts - 1)
    draws = [backoff(policy, attempts) for _ in range(DRAWS)]
    assert all(low <= d <= min(low + 3.0, 900.0) for d in draws), (min(draws), max(draws))
    assert len(set(draws)) > 1, "jitter actually varies the delay"


def test_the_cap_holds_with_jitter() -> None:
    policy = RetryPolicy(base=5.0, cap=60.0, jitter=30.0)
    draws = [backoff(policy, 30) for _ in range(DRAWS)]
    assert max(draws) <= 60.0
    assert min(draws) == 60.0, "at the cap the jitter cannot pull the delay below it"


def test_grows_with_attempts() -> None:
    policy = RetryPolicy(base=1.0, cap=10_000.0, jitter=0.5)
    # Without overlap of the jitter windows the order is strict for every draw.
    for attempts in range(1, 12):
        assert backoff(policy, attempts) < backoff(policy, attempts + 1)


def test_retry_after_is_a_floor() -> None:
    policy = RetryPolicy(base=5.0, cap=900.0, jitter=0.0)
    assert backoff(policy, 1, retry_after=120.0) == 120.0
    assert backoff(policy, 6, retry_after=1.0) == 160.0, "a short Retry-After does not shorten our backoff"
    assert backoff(policy, 1, retry_after=3600.0) == 3600.0, "the server's word beats our cap"
    assert backoff(policy, 1, retry_after=0.0) == 5.0
    assert backoff(policy, 1, retry_after=None) == 5.0


def test_tiny_policies_used_by_the_tests_stay_tiny() -> None:
    policy = RetryPolicy(base=0.2, cap=1.0, jitter=0.1)
    assert all(0.2 <= backoff(policy, n) <= 1.0 for n in range(1, 50))
