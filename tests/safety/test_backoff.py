"""``safety.backoff.Backoff``: doubling capped at ``maximum``, whatever the failure count."""

from __future__ import annotations

import pytest

from sol.safety.backoff import Backoff


@pytest.mark.parametrize(
    ("initial", "maximum", "failures"),
    [
        pytest.param(1.0, 60.0, 1_025, id="just-past-float-exponent-range"),
        pytest.param(1.0, 60.0, 5_000, id="a-day-of-harm-verdicts"),
        pytest.param(0.001, 3600.0, 100_000, id="tiny-initial-huge-count"),
    ],
)
def test_a_long_run_of_harm_verdicts_stays_at_the_maximum_instead_of_overflowing(
    initial: float, maximum: float, failures: int
) -> None:
    # sol sim --scenario cpu-stress --duration 1d failed here: 2.0 ** 1024 overflows before the cap.
    b = Backoff(initial=initial, maximum=maximum)
    now = 0.0
    for _ in range(failures):
        length = b.fail(now)
        now += length
    assert length == maximum
    assert b.failures == failures
    assert b.current() == maximum
    assert b.until == pytest.approx(now)


@pytest.mark.parametrize(
    ("failures", "expected"),
    [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (5, 10.0), (5_000, 10.0)],
    ids=["none", "one", "two", "three", "capped", "far-past-float-range"],
)
def test_current_is_the_next_failures_length(failures: int, expected: float) -> None:
    b = Backoff(initial=1.0, maximum=10.0)
    b.failures = failures
    assert b.current() == expected
    assert b.fail(now=0.0) == expected
