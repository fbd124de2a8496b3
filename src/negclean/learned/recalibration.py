"""Recalibrate a fitted learned judge on a few of the user's own labels.

A learned screen ranks well on data it was not fitted on, but its calibration and its threshold carry the base
rate of the data it was fitted on (issue 15: the shipped screen flags 0.09x to 1.78x the true count on held-out
sets). This module keeps the model's feature weights (its ranking) and refits only what carries the base rate:

- the map from the model's logit ``z`` (its decision value) to a probability, ``p = sigmoid(a z + b)``: both
  ``a`` and ``b`` (``method="platt"``) or ``b`` alone (``method="shift"``, a prior shift). Fitted by maximum
  likelihood with Platt's smoothed targets ((k+1)/(k+2) for relevant, 1/(m+2) for not; Platt 1999), so a few
  labels that the score separates perfectly still give finite parameters;
- the threshold, by the model's own rule (the kappa-maximising one) on the recalibrated probabilities: on the
  labeled candidates (``threshold_rule="labels"``) or as the expected kappa over every candidate of the user's
  data with the recalibrated probabilities as soft truth (``threshold_rule="expected"``).

Which of these the product uses was chosen by measurement (benchmarks/RESULTS-sparse-judges.md, "Recalibrating
on a few labels"); see ``DEFAULT_METHOD`` and ``DEFAULT_THRESHOLD_RULE``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from negclean.errors import ConfigError
from negclean.judge.learned_model import LearnedModel, sigmoid
from negclean.learned.fit import best_kappa_threshold

Method = Literal["platt", "shift"]
ThresholdRule = Literal["labels", "expected"]
METHODS: tuple[Method, ...] = ("platt", "shift")
THRESHOLD_RULES: tuple[ThresholdRule, ...] = ("labels", "expected")
#: chosen leave-one-data-set-out on DL19 / CISI / Cranfield (benchmarks/RESULTS-sparse-judges.md): the shift ties
#: Platt on held-out kappa with one parameter fewer; the expected-count threshold has the higher and far steadier
#: held-out kappa (10th percentile .21-.24 against .16-.19 for the threshold on the labeled candidates)
DEFAULT_METHOD: Method = "shift"
DEFAULT_THRESHOLD_RULE: ThresholdRule = "expected"
#: below this many labels the command warns (it still recalibrates)
ADVISED_LABELS = 20


@dataclass(frozen=True, slots=True)
class Recalibration:
    """A recalibrated model and what it was recalibrated on."""

    model: LearnedModel
    method: Method
    threshold_rule: ThresholdRule
    labels: int
    relevant: int
    queries: int | None
    previous_threshold: float
    warnings: tuple[str, ...]

    @property
    def threshold(self) -> float:
        return self.model.threshold


def platt_parameters(
    z: np.ndarray, y: np.ndarray, *, start: tuple[float, float] = (1.0, 0.0), fixed_a: float | None = None
) -> tuple[float, float]:
    """Maximum-likelihood ``(a, b)`` of ``P(y=1) = sigmoid(a z + b)`` with Platt's smoothed targets (Newton's
    method with step halving). With ``fixed_a`` only ``b`` is fitted and ``a = fixed_a``."""
    z = np.asarray(z, dtype=np.float64)
    yy = np.asarray(y, dtype=np.int64)
    n_pos = int(yy.sum())
    n_neg = len(yy) - n_pos
    t = np.where(yy == 1, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    design = np.column_stack([z, np.ones_like(z)])
    free = [1] if fixed_a is not None else [0, 1]
    theta = np.asarray([fixed_a if fixed_a is not None else start[0], start[1]], dtype=np.float64)

    def loss(th: np.ndarray) -> float:
        s = design @ th
        # -sum t log sigmoid(s) + (1 - t) log(1 - sigmoid(s)), written with logaddexp so it cannot overflow
        return float(np.sum(np.logaddexp(0.0, s) - t * s))

    current = loss(theta)
    for _ in range(100):
        p = sigmoid(design @ theta)
        grad = design[:, free].T @ (p - t)
        hess = (design[:, free] * (p * (1 - p))[:, None]).T @ design[:, free] + 1e-12 * np.eye(len(free))
        step = np.linalg.solve(hess, grad)
        size = 1.0
        while size > 1e-10:
            trial = theta.copy()
            trial[free] -= size * step
            new = loss(trial)
            if new <= current:
                break
            size /= 2
        else:
            break
        theta, previous, current = trial, current, new
        if previous - current < 1e-12 * max(1.0, abs(previous)):
            break
    return float(theta[0]), float(theta[1])


def expected_kappa_threshold(p: np.ndarray) -> float:
    """The threshold (flag ``p >= t``) that maximises Cohen's kappa in expectation when each candidate is relevant
    with its own probability ``p`` (calibrated): the expected counts of the confusion table, cut by cut."""
    s = np.sort(np.asarray(p, dtype=np.float64)[~np.isnan(p)])[::-1]
    n = len(s)
    if n < 2 or s[0] == s[-1]:
        return float(s[0]) if n else 0.5
    positives = float(s.sum())
    flagged = np.arange(1, n, dtype=np.float64)  # flag the top k, k = 1 .. n-1
    tp = np.cumsum(s)[:-1]
    fp, fn = flagged - tp, positives - tp
    tn = n - tp - fp - fn
    po = (tp + tn) / n
    pe = (flagged * positives + (n - flagged) * (n - positives)) / n**2
    kappa = np.where(pe < 1, (po - pe) / np.where(pe < 1, 1 - pe, 1.0), 0.0)
    # only cuts between distinct values are thresholds
    kappa = np.where(s[:-1] > s[1:], kappa, -np.inf)
    k = int(np.argmax(kappa))
    return float((s[k] + s[k + 1]) / 2)


def recalibrate(
    model: LearnedModel,
    values: np.ndarray,
    labels: np.ndarray,
    *,
    method: Method = DEFAULT_METHOD,
    threshold_rule: ThresholdRule = DEFAULT_THRESHOLD_RULE,
    pool: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    recalibrated_from: str = "",
    label_source: str = "",
) -> Recalibration:
    """``model`` with its calibration and threshold refitted on ``labels`` (1 relevant, 0 not), one per row of
    ``values`` (the model's feature columns, in its order: ``model.columns_from``).

    ``pool``: feature rows of every candidate of the user's data (labeled or not), needed by
    ``threshold_rule="expected"``. ``groups``: query id per labeled row (only counted). Raises ConfigError when
    the labels hold one class only; warns (``Recalibration.warnings``) below ``ADVISED_LABELS`` labels and when
    the labels rank the model's score backwards.
    """
    if method not in METHODS:
        raise ConfigError(f"recalibration method {method!r}: choose one of {', '.join(METHODS)}")
    if threshold_rule not in THRESHOLD_RULES:
        raise ConfigError(f"threshold rule {threshold_rule!r}: choose one of {', '.join(THRESHOLD_RULES)}")
    y = np.asarray(labels, dtype=np.int64)
    if y.ndim != 1 or len(y) != len(np.asarray(values).reshape(-1, len(model.features))):
        raise ValueError("one label per feature row is needed")
    if set(y.tolist()) - {0, 1}:
        raise ValueError("labels must be 0 (not relevant) or 1 (relevant)")
    n, n_rel = len(y), int(y.sum())
    source = f" from {label_source}" if label_source else ""
    if n_rel == 0 or n_rel == n:
        missing = "relevant" if n_rel == 0 else "not-relevant"
        raise ConfigError(
            f"cannot recalibrate on {n} labels{source}: none is {missing}; the base rate needs both kinds. "
            f"Label more candidates (every candidate of a few more queries), then rerun"
        )
    warnings: list[str] = []
    if n < ADVISED_LABELS:
        warnings.append(
            f"only {n} labels ({n_rel} relevant){source}: the threshold will be noisy; "
            f"{ADVISED_LABELS} or more are advised (see benchmarks/RESULTS-sparse-judges.md)"
        )
    z = model.decision(values)
    start = (model.calib_a, model.calib_b)
    a, b = platt_parameters(z, y, start=start, fixed_a=model.calib_a if method == "shift" else None)
    if a <= 0:
        warnings.append(
            f"the {n} labels{source} rank the model's score backwards (fitted slope {a:.3g}); kept its slope and "
            "shifted only its intercept: the model may not fit this data"
        )
        method = "shift"
        a, b = platt_parameters(z, y, start=start, fixed_a=model.calib_a)
    if threshold_rule == "labels":
        threshold = best_kappa_threshold(sigmoid(a * z + b), y)
    else:
        if pool is None:
            raise ValueError('threshold_rule="expected" needs the pool of all candidates')
        threshold = expected_kappa_threshold(sigmoid(a * model.decision(pool) + b))
    queries = len(set(np.asarray(groups).tolist())) if groups is not None else None
    facts: dict[str, Any] = {
        "recalibrated_from": recalibrated_from,
        "recalibration": {
            "method": method,
            "threshold_rule": "kappa-maximising on "
            + ("the labeled candidates" if threshold_rule == "labels" else "the expected counts of every candidate"),
            "labels": n,
            "relevant": n_rel,
            "queries": queries,
            "label_source": label_source,
            "threshold": threshold,
            "previous_threshold": model.threshold,
            "calibration": [a, b],
            "previous_calibration": [model.calib_a, model.calib_b],
        },
        "fitted": dict(model.training),
    }
    new = replace(model, calib_a=a, calib_b=b, threshold=threshold, training=facts)
    return Recalibration(new, method, threshold_rule, n, n_rel, queries, model.threshold, tuple(warnings))


__all__ = [
    "ADVISED_LABELS",
    "DEFAULT_METHOD",
    "DEFAULT_THRESHOLD_RULE",
    "METHODS",
    "THRESHOLD_RULES",
    "Recalibration",
    "expected_kappa_threshold",
    "platt_parameters",
    "recalibrate",
]
