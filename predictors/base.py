"""The protocol every reusable learner follows: river's ``learn_one`` / ``predict_one`` on dicts.

Features are a ``dict`` of name -> value; the target is one float. Learners are online: one
observation at a time, constant memory. Constructor arguments are the parameters and nothing
else (no I/O, no data), so ``clone()`` gives a fresh, untrained learner with the same
parameters -- what an agent does after a drift, or a test to compare learners from scratch.

>>> class Mean(Learner):
...     def __init__(self, prior: float = 0.0) -> None:
...         self.prior = prior
...         self._sum, self._n = 0.0, 0
...     def learn_one(self, x: Features, y: float) -> None:
...         self._sum, self._n = self._sum + check_target(y), self._n + 1
...     def predict_one(self, x: Features) -> float:
...         return self._sum / self._n if self._n else self.prior
>>> m = Mean(prior=1.0)
>>> m.learn_one({}, 4.0); m.learn_one({}, 6.0)
>>> m.predict_one({}), m.clone().predict_one({}), m
(5.0, 1.0, Mean(prior=1.0))
>>> isinstance(m, Predictor)
True
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Protocol, Self, runtime_checkable

__all__ = ["Features", "Learner", "Predictor", "check_target"]

#: One observation's features, river style.
Features = dict[str, Any]


@runtime_checkable
class Predictor(Protocol):
    """What an agent needs from a learner (any river regressor fits too)."""

    def learn_one(self, x: Features, y: float) -> None:
        """Update the model with one observation ``x`` and its target ``y``."""
        ...

    def predict_one(self, x: Features) -> float:
        """The prediction for ``x``; defined (a float) even before any ``learn_one``."""
        ...


def check_target(y: float) -> float:
    """``y`` as a float; raises ``ValueError`` for NaN/inf instead of corrupting the model.

    Validators keep bad data away from ``learn()``; this is the last line, so one NaN that
    slipped through is an error the runtime sees, not a model that predicts NaN forever.

    >>> check_target(3)
    3.0
    >>> check_target(float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: target must be a finite number, got nan
    """
    value = float(y)
    if not math.isfinite(value):
        raise ValueError(f"target must be a finite number, got {y!r}")
    return value


class Learner:
    """Optional base class: ``clone()`` and a ``repr`` of the parameters, river style.

    Subclasses store each ``__init__`` argument under an attribute of the same name.
    """

    def learn_one(self, x: Features, y: float) -> None:
        raise NotImplementedError(f"{type(self).__name__}.learn_one")

    def predict_one(self, x: Features) -> float:
        raise NotImplementedError(f"{type(self).__name__}.predict_one")

    def _get_params(self) -> dict[str, Any]:
        names = [
            name
            for name, p in inspect.signature(type(self).__init__).parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        return {name: getattr(self, name) for name in names}

    def clone(self) -> Self:
        """A new, untrained learner with the same parameters."""
        params = {}
        for name, value in self._get_params().items():
            # Nested learners (a river model inside an adapter) are cloned too.
            clone = getattr(value, "clone", None)
            params[name] = clone() if callable(clone) else value
        return type(self)(**params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._get_params().items())
        return f"{type(self).__name__}({args})"
