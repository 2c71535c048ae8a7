"""The fault catalogue covers the issue's list, every fault has a working mechanism."""

from __future__ import annotations

import doctest
import importlib

import pytest

from sol.fault_injection.faults import (
    CATEGORIES,
    FAULTS,
    REDUCED_FAULTS,
    Timeline,
    UnknownFault,
    get_fault,
)

#: What the issue asks for, by category: each must be a named fault.
REQUIRED = {
    "data": {"missing", "nan", "inf", "out_of_range", "stale", "frozen", "frozen_idle", "noise", "garbage"},
    "model": {"learn_error", "predict_error", "learn_hang", "adversarial", "drift"},
    "scheduling": {"model_stall", "actuator_delay"},
    "actuation": {"eperm", "eio", "write_hang", "not_applied", "partial"},
    "process": {"sigkill", "crash_loop", "thread_escape", "memory_leak"},
    "environment": {"load_spike", "memory_pressure", "power_emergency"},
}


def test_every_failure_of_the_issue_is_a_named_fault() -> None:
    have: dict[str, set[str]] = {}
    for f in FAULTS.values():
        have.setdefault(f.category, set()).add(f.mechanism)
    assert have == REQUIRED


def test_faults_are_well_formed() -> None:
    for name, f in FAULTS.items():
        assert name == f.name
        assert f.category in CATEGORIES
        assert f.summary
        assert name.split(".")[0] in ("data", "model", "sched", "act", "proc", "env")
        if f.boundary == "node":
            assert f.facility is not None


def test_reduced_matrix_covers_every_category_and_failpoint() -> None:
    reduced = [FAULTS[n] for n in REDUCED_FAULTS]
    assert {f.category for f in reduced} == set(CATEGORIES)
    assert {f.boundary for f in reduced} >= {
        "sensor",
        "predictor",
        "scheduler",
        "actuator",
        "process",
        "node",
    }


def test_unknown_fault_lists_the_known_ones() -> None:
    with pytest.raises(UnknownFault, match=r"known faults: data\.missing"):
        get_fault("data.nope")


@pytest.mark.parametrize(
    ("overrides", "error"),
    [({"nope": 1.0}, "has no parameter"), ({}, None)],
    ids=["unknown-param", "no-override"],
)
def test_with_params(overrides: dict[str, float], error: str | None) -> None:
    f = get_fault("act.eio")
    if error:
        with pytest.raises(ValueError, match=error):
            f.with_params(**overrides)
    else:
        assert f.with_params(**overrides).params == f.params


def test_with_params_keeps_the_catalogue_unchanged() -> None:
    f = get_fault("act.eio").with_params(p=0.1)
    assert f.params["p"] == 0.1
    assert FAULTS["act.eio"].params["p"] == 0.5


@pytest.mark.parametrize(
    "kw",
    [{"onset": 0.0}, {"onset": 50.0, "length": 300.0}, {"surge": 0.0}],
    ids=["onset-zero", "past-the-end", "surge-zero"],
)
def test_timeline_rejects_impossible_windows(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Timeline(**kw)


@pytest.mark.parametrize(
    "module",
    [
        "sol.fault_injection.faults",
        "sol.fault_injection.profiles",
        "sol.fault_injection.environment",
        "sol.fault_injection.baseline",
    ],
)
def test_doctests(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
