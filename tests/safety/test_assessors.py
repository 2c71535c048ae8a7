"""sol.safety.assessors: model assessors on synthetic streams with a regime change."""

from __future__ import annotations

import doctest
import math
from collections.abc import Callable

import numpy as np
import pytest
from river import drift

import sol.safety.assessors
from sol.safety.assessors import METRICS, DriftDetector, RollingError, UnderPredictionRate

CHANGE = 300  # index of the first sample of the second regime


def regime_change(seed: int = 7, before: float = 10.0, after: float = 20.0, n: int = 600) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(before, 1.0, CHANGE), rng.normal(after, 1.0, n - CHANGE)])


def ewma_predictions(stream: np.ndarray, alpha: float) -> np.ndarray:
    """One-step-ahead EWMA forecasts: the prediction for sample i uses samples < i."""
    out = np.empty_like(stream)
    mean = stream[0]
    for i, y in enumerate(stream):
        out[i] = mean
        mean = alpha * y + (1 - alpha) * mean
    return out


def first_failure(verdicts: list[bool], start: int = 0) -> int | None:
    return next((i for i, ok in enumerate(verdicts) if i >= start and not ok), None)


# -- RollingError ------------------------------------------------------------------------------

PRED = np.array([1.0, 2.0, 3.0, 4.0])
OBS = np.array([1.5, 1.0, 3.0, 6.0])


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        pytest.param("mae", np.mean(np.abs(OBS - PRED)), id="mae"),
        pytest.param("rmse", np.sqrt(np.mean((OBS - PRED) ** 2)), id="rmse"),
        pytest.param("mape", np.mean(np.abs(OBS - PRED) / np.abs(OBS)), id="mape"),
        pytest.param("bias", np.mean(OBS - PRED), id="bias"),
        pytest.param("under_rate", 0.5, id="under-rate"),
        pytest.param("mean_shortfall", np.mean(np.maximum(0, OBS - PRED)), id="mean-shortfall"),
    ],
)
def test_metrics_match_their_definitions(metric: str, expected: float) -> None:
    errors = RollingError(window=4, threshold=100.0, metric=metric)  # type: ignore[arg-type]
    for p, o in zip(PRED, OBS, strict=True):
        errors.update(p, o)
    assert errors.value == pytest.approx(expected)
    assert set(METRICS) == {"mae", "rmse", "mape", "bias", "under_rate", "mean_shortfall"}


def test_mape_measures_errors_on_a_zero_truth_in_units() -> None:
    errors = RollingError(window=2, threshold=1.0, metric="mape")
    errors.update(0.5, 0.0)
    errors.update(2.0, 1.0)
    assert errors.value == pytest.approx((0.5 + 1.0) / 2)


@pytest.mark.parametrize(
    ("min_count", "judged_from"),
    [pytest.param(None, 5, id="default-is-full-window"), pytest.param(2, 2, id="configured")],
)
def test_passes_during_warm_up(min_count: int | None, judged_from: int) -> None:
    errors = RollingError(window=5, threshold=0.5, min_count=min_count)
    verdicts = [bool(errors.update(0.0, 10.0)) for _ in range(6)]
    assert verdicts == [i + 1 < judged_from for i in range(6)]


def test_window_forgets_old_errors() -> None:
    errors = RollingError(window=3, threshold=1.0)
    for _ in range(3):
        errors.update(0.0, 10.0)
    assert not errors.verdict()
    for _ in range(3):
        errors.update(10.0, 10.0)
    assert errors.verdict() and errors.value == 0.0 and errors.count == 3


def test_reason_names_metric_window_and_threshold() -> None:
    errors = RollingError(window=2, threshold=0.5, metric="rmse")
    errors.update(1.0, 2.0)
    assert errors.update(1.0, 3.0).reason == "rmse 1.58 over the last 2 predictions exceeds 0.5"


def test_bad_truth_is_skipped_and_a_nan_prediction_fails() -> None:
    errors = RollingError(window=2, threshold=1.0, min_count=1)
    errors.update(1.0, math.nan)
    errors.update(1.0, math.inf)
    assert errors.count == 0
    errors.update(1.0, 1.0)
    assert errors.verdict()
    verdict = errors.update(math.nan, 1.0)
    assert not verdict and verdict.reason == "mae nan over the last 2 predictions exceeds 1"
    errors.update(1.0, 1.0)
    errors.update(1.0, 1.0)
    assert errors.verdict()  # the NaN left the window


def test_stale_model_fails_soon_after_a_regime_change() -> None:
    stream = regime_change()
    errors = RollingError(window=50, threshold=2.0)
    verdicts = [bool(errors.update(10.0, y)) for y in stream]  # a model stuck in regime 1
    assert all(verdicts[:CHANGE])
    failed_at = first_failure(verdicts)
    assert failed_at is not None and CHANGE <= failed_at < CHANGE + 15
    assert not any(verdicts[failed_at:])


def test_adaptive_model_fails_then_recovers_after_a_regime_change() -> None:
    stream = regime_change()
    predictions = ewma_predictions(stream, alpha=0.2)
    errors = RollingError(window=30, threshold=1.5)
    verdicts = [bool(errors.update(p, y)) for p, y in zip(predictions, stream, strict=True)]
    assert all(verdicts[:CHANGE])
    failed_at = first_failure(verdicts)
    assert failed_at is not None and CHANGE <= failed_at < CHANGE + 10
    recovered_at = next(i for i in range(failed_at, len(verdicts)) if verdicts[i])
    assert recovered_at < CHANGE + 60
    assert all(verdicts[recovered_at:])


# -- UnderPredictionRate -----------------------------------------------------------------------


def test_under_prediction_rate_catches_a_load_increase() -> None:
    stream = regime_change()
    # Sized for regime 1 with a 2-sigma headroom: covers ~98% of its windows.
    rate = UnderPredictionRate(window=50, max_rate=0.1)
    verdicts = [bool(rate.update(12.0, y)) for y in stream]
    assert all(verdicts[:CHANGE])
    failed_at = first_failure(verdicts)
    # More than 10% of 50 is 6 misses: the 6th window of the new regime trips it.
    assert failed_at == CHANGE + 5
    verdict = rate.verdict()
    assert verdict.reason == "under-predicted 50 of the last 50 windows (100%), more than 10%"


@pytest.mark.parametrize(
    ("margin", "passes"), [pytest.param(0.0, False, id="no-margin"), pytest.param(0.5, True, id="margin")]
)
def test_under_prediction_margin(margin: float, passes: bool) -> None:
    rate = UnderPredictionRate(window=4, max_rate=0.25, margin=margin)
    for observed in (10.4, 10.2, 9.0, 10.3):
        verdict = rate.update(10.0, observed)
    assert bool(verdict) is passes


def test_under_prediction_counts_a_nan_prediction_as_under() -> None:
    rate = UnderPredictionRate(window=2, max_rate=0.4)
    rate.update(5.0, 1.0)
    assert not rate.update(math.nan, 1.0)


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        pytest.param(lambda: RollingError(0, 1.0), "window", id="window-zero"),
        pytest.param(lambda: RollingError(5, 1.0, "r2"), "unknown metric", id="unknown-metric"),  # type: ignore[arg-type]
        pytest.param(lambda: RollingError(5, math.nan), "threshold", id="nan-threshold"),
        pytest.param(lambda: RollingError(5, 1.0, min_count=6), "min_count", id="min-count-above-window"),
        pytest.param(lambda: UnderPredictionRate(5, 1.5), "max_rate", id="rate-above-one"),
        pytest.param(lambda: UnderPredictionRate(5, 0.1, margin=-1), "margin", id="negative-margin"),
        pytest.param(lambda: DriftDetector(hold=-1), "hold", id="negative-hold"),
    ],
)
def test_nonsense_parameters_are_rejected(factory: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        factory()


# -- DriftDetector -----------------------------------------------------------------------------

DETECTORS = [
    pytest.param(lambda: None, id="default-adwin"),
    pytest.param(lambda: drift.ADWIN(delta=0.002), id="adwin"),
    pytest.param(lambda: drift.PageHinkley(), id="page-hinkley"),
    pytest.param(lambda: drift.KSWIN(seed=0), id="kswin"),
]


@pytest.mark.parametrize("make", DETECTORS)
def test_drift_is_detected_after_the_change_and_not_before(make: Callable[[], drift.ADWIN | None]) -> None:
    rng = np.random.default_rng(0)
    stream = np.concatenate([rng.normal(0.0, 1.0, 1000), rng.normal(3.0, 1.0, 300)])
    detector = DriftDetector(make(), hold=50)
    detected = [i for i, x in enumerate(stream) if detector.update(x)]
    assert detected, "no drift detected"
    assert 1000 <= detected[0] < 1100
    assert detector.n_drifts == len(detected)


def test_verdict_fails_for_hold_updates_after_a_drift() -> None:
    rng = np.random.default_rng(0)
    stream = np.concatenate([rng.normal(0.0, 1.0, 1000), rng.normal(5.0, 1.0, 300)])
    detector = DriftDetector(drift.PageHinkley(), hold=40, what="error")
    verdicts = []
    for x in stream:
        detector.update(x)
        verdicts.append(detector.verdict())
    assert detector.n_drifts == 1
    at = int(detector.last_drift or 0) - 1  # last_drift counts updates from 1
    assert all(verdicts[:at])
    assert not any(verdicts[at : at + 40])
    assert all(verdicts[at + 40 :])
    assert (
        verdicts[at].reason
        == f"drift in error detected at {at + 1} (PageHinkley); model held off for 40 more updates"
    )


def test_hold_in_clock_seconds_when_now_is_given() -> None:
    rng = np.random.default_rng(0)
    stream = np.concatenate([rng.normal(0.0, 1.0, 1000), rng.normal(5.0, 1.0, 500)])
    detector = DriftDetector(drift.PageHinkley(), hold=30.0)
    drift_time = None
    for i, x in enumerate(stream):
        now = i * 0.5  # one sample every 0.5 s
        if detector.update(x, now=now):
            drift_time = now
            break
    assert drift_time is not None
    assert not detector.verdict(now=drift_time + 29.9)
    assert detector.verdict(now=drift_time + 29.9).reason.endswith("held off for 0.1 more s")  # type: ignore[union-attr]
    assert detector.verdict(now=drift_time + 30.0)


def test_non_finite_values_are_ignored() -> None:
    detector = DriftDetector(hold=10)
    for _ in range(200):
        assert detector.update(1.0) is False
        assert detector.update(math.nan) is False
        assert detector.update(math.inf) is False
    assert detector.verdict() and detector.n_drifts == 0 and not detector.drift_detected


def test_reset_forgets_drifts_and_keeps_parameters() -> None:
    rng = np.random.default_rng(0)
    detector = DriftDetector(drift.ADWIN(delta=0.01), hold=1000)
    for x in np.concatenate([rng.normal(0, 1, 500), rng.normal(5, 1, 200)]):
        detector.update(x)
    assert not detector.verdict()
    detector.reset()
    assert detector.verdict() and detector.n_drifts == 0 and detector.last_drift is None
    assert isinstance(detector.detector, drift.ADWIN) and detector.detector.delta == 0.01


@pytest.mark.parametrize("module", [pytest.param(sol.safety.assessors, id="assessors")])
def test_doctests(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0
