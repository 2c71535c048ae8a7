"""Cost-sensitive classification over whole units (cores, say): pick the cheapest class.

SmartHarvest (Wang et al., EuroSys'21) predicts the cores a VM will need in the next window
as a *class* and trains a cost-sensitive multi-class learner, because running one core short
hurts the customer far more than leaving one idle. Here a river classifier estimates the
class distribution given the features and the decision minimises the expected cost under it:

    k* = argmin_k  sum_j p(j | x) * (under_cost * (j - k)+  +  over_cost * (k - j)+)

The cost is convex and piecewise linear in ``k``, so ``k*`` is the smallest class whose
cumulative probability reaches ``under_cost / (under_cost + over_cost)``: a quantile of the
predicted distribution, with no parametric shape assumed (the leaves of a Hoeffding tree are
class histograms of the data that reached them).

Targets are real numbers; ``step`` sets the width of a class (class ``k`` holds ``((k - 1) *
step, k * step]``) and ``lo``/``hi`` clip the class range. Predictions are ``k* * step``.

>>> import random
>>> rng = random.Random(3)
>>> model = CostSensitiveClassifier(under_cost=9.0, over_cost=1.0, lo=0, hi=10)
>>> for _ in range(3000):
...     busy = rng.random() < 0.5
...     need = rng.choice([4, 5, 6]) if busy else rng.choice([1, 2])
...     model.learn_one({"busy": float(busy)}, need)
>>> model.predict_one({"busy": 1.0}), model.predict_one({"busy": 0.0})
(6.0, 2.0)
"""

from __future__ import annotations

import math
from typing import Any

from .base import Features, Learner, check_target

__all__ = ["CostSensitiveClassifier"]


class CostSensitiveClassifier(Learner):
    """A river classifier's class distribution, decided on by expected cost.

    ``classifier`` is any river classifier with ``learn_one`` and ``predict_proba_one``;
    default a ``HoeffdingTreeClassifier`` predicting with the class counts of its leaves
    (``leaf_prediction="mc"``), which gives honest tail probabilities once leaves are full.
    Before the first update, and for an ``x`` the classifier has no distribution for, the
    prediction is ``initial``.
    """

    def __init__(
        self,
        classifier: Any = None,
        *,
        under_cost: float = 99.0,
        over_cost: float = 1.0,
        step: float = 1.0,
        lo: int = 0,
        hi: int = 1024,
        initial: float = 0.0,
    ) -> None:
        if not (under_cost > 0 and over_cost > 0 and math.isfinite(under_cost + over_cost)):
            raise ValueError(f"costs must be finite and > 0, got under={under_cost!r}, over={over_cost!r}")
        if not (step > 0 and math.isfinite(step)):
            raise ValueError(f"step must be a finite number > 0, got {step!r}")
        if not lo < hi:
            raise ValueError(f"need lo < hi, got lo={lo!r}, hi={hi!r}")
        if classifier is not None and not (
            callable(getattr(classifier, "learn_one", None))
            and callable(getattr(classifier, "predict_proba_one", None))
        ):
            raise TypeError(
                f"expected a river classifier with learn_one/predict_proba_one, got {classifier!r}"
            )
        self.classifier = classifier
        self.under_cost = under_cost
        self.over_cost = over_cost
        self.step = step
        self.lo = lo
        self.hi = hi
        self.initial = initial
        self.model = classifier if classifier is not None else self._default_classifier()
        self._ratio = under_cost / (under_cost + over_cost)
        self.n_seen = 0

    @staticmethod
    def _default_classifier() -> Any:
        # Few, large leaves: a leaf's class counts are the distribution we take a tail
        # quantile of, so a leaf must hold many observations before it splits.
        from river import tree  # lazily: river.tree pulls in SciPy and scikit-learn (~70 MiB)

        return tree.HoeffdingTreeClassifier(grace_period=2000, max_depth=6, leaf_prediction="mc", delta=1e-5)

    def clone(self) -> CostSensitiveClassifier:
        classifier = self.classifier.clone() if self.classifier is not None else None
        return CostSensitiveClassifier(
            classifier,
            under_cost=self.under_cost,
            over_cost=self.over_cost,
            step=self.step,
            lo=self.lo,
            hi=self.hi,
            initial=self.initial,
        )

    def to_class(self, y: float) -> int:
        """The class of a target: ``ceil(y / step)`` clipped to ``[lo, hi]``."""
        k = math.ceil(check_target(y) / self.step - 1e-9)
        return min(self.hi, max(self.lo, k))

    def learn_one(self, x: Features, y: float) -> None:
        self.model.learn_one(x, self.to_class(y))
        self.n_seen += 1

    def distribution(self, x: Features) -> dict[int, float]:
        """The predicted probability of each class (empty before any update)."""
        if self.n_seen == 0:
            return {}
        proba = self.model.predict_proba_one(x)
        return {int(k): float(p) for k, p in proba.items() if p > 0}

    def predict_one(self, x: Features) -> float:
        proba = self.distribution(x)
        total = math.fsum(proba.values())
        if not total > 0 or not math.isfinite(total):
            return self.initial
        # smallest k with P(class <= k) >= under / (under + over): the expected-cost minimiser
        target = self._ratio * total
        cumulative = 0.0
        classes = sorted(proba)
        for k in classes:
            cumulative += proba[k]
            if cumulative >= target - 1e-12:
                return k * self.step
        return classes[-1] * self.step

    def expected_cost(self, x: Features, k: int) -> float:
        """The expected cost of deciding class ``k`` for ``x`` (for tests and reports)."""
        proba = self.distribution(x)
        total = math.fsum(proba.values()) or 1.0
        return (
            math.fsum(
                p * (self.under_cost * max(0, j - k) + self.over_cost * max(0, k - j))
                for j, p in proba.items()
            )
            / total
        )
