"""Reusable online learners for agents: river's ``learn_one(x, y)`` / ``predict_one(x)`` on dicts.

Every learner an agent author needs is importable from here::

    from sol.predictors import EWMA, RollingQuantile, RiverRegressor

- ``EWMA``: an exponentially weighted mean of the series (ignores ``x``);
- ``RollingQuantile``: a quantile of the last ``window`` values (ignores ``x``);
- ``LastValue``: the last value, the naive baseline;
- ``RiverRegressor``: any river regressor or pipeline, with the same guarantees;
- ``QuantileRegressor``: a high quantile of the target given the features (pinball-loss SGD);
- ``CostSensitiveClassifier``: whole units (cores) at the least expected cost of running short;
- ``TimeOfDayProfile``: what the target usually reaches at this time of the day;
- ``AdaptiveMargin``: a margin that keeps the long-run miss rate at a target;
- ``P2Quantile``: a running quantile in constant memory (a building block, not a learner).

``Predictor`` is the protocol (any river regressor fits it too), ``Learner`` an optional base
class with ``clone()``. Importing this package is cheap: no module here imports numpy, river or
SciPy at import time (those that wrap river import it when a learner is built), so an agent
that imports a learner adds nothing to the daemon's start (``sol restore`` imports none).

>>> from sol.predictors import EWMA
>>> model = EWMA(alpha=0.5)
>>> model.learn_one({}, 10.0); model.learn_one({}, 20.0)
>>> model.predict_one({})
15.0
"""

from sol.predictors.base import Features, Learner, Predictor, check_target
from sol.predictors.conformal import AdaptiveMargin
from sol.predictors.cost_sensitive import CostSensitiveClassifier
from sol.predictors.online import EWMA, LastValue, RiverRegressor, RollingQuantile
from sol.predictors.p2 import P2Quantile
from sol.predictors.quantile import QuantileRegressor, cost_quantile
from sol.predictors.seasonal import TimeOfDayProfile

__all__ = [
    "EWMA",
    "AdaptiveMargin",
    "CostSensitiveClassifier",
    "Features",
    "LastValue",
    "Learner",
    "P2Quantile",
    "Predictor",
    "QuantileRegressor",
    "RiverRegressor",
    "RollingQuantile",
    "TimeOfDayProfile",
    "check_target",
    "cost_quantile",
]
