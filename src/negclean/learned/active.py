"""Active sampling: which candidates to send to the strong judge (or a person) next, and when to stop.

Uncertainty sampling: the unlabeled candidates whose calibrated P(false negative) lies closest to the
decision threshold are the ones a label teaches the model most about. Stopping rule: stop when the
held-out estimate (query-grouped cross-validated AUC on the labels so far) has not improved by more
than ``min_delta`` over the last ``patience`` rounds, or when no unlabeled candidate is uncertain
any more (all farther than ``margin`` from the threshold), or when the label budget is spent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from negclean.judge.learned_model import sigmoid
from negclean.learned.fit import _decision, _fit_lr, grouped_folds


def uncertainty_order(p: np.ndarray, *, threshold: float = 0.5) -> np.ndarray:
    """Indices of ``p`` from most to least uncertain (closest to ``threshold`` first; ties by index)."""
    d = np.abs(np.asarray(p, dtype=np.float64) - threshold)
    return np.lexsort((np.arange(len(d)), d))


@dataclass(frozen=True, slots=True)
class Round:
    labeled: int
    positives: int
    cv_auc: float | None
    test_auc: float | None
    max_uncertainty: float  # 1 - 2*|p - t| of the most uncertain unlabeled candidate (1: on the threshold)


@dataclass(frozen=True, slots=True)
class StopRule:
    patience: int = 3
    min_delta: float = 0.005
    margin: float = 0.1
    budget: int | None = None

    def reason(self, history: Sequence[Round], pool_left: int) -> str | None:
        last = history[-1]
        if self.budget is not None and last.labeled >= self.budget:
            return f"label budget {self.budget} spent"
        if pool_left == 0:
            return "nothing left to label"
        if last.max_uncertainty < 1 - 2 * self.margin:
            return f"no unlabeled candidate within {self.margin} of the threshold"
        aucs = [r.cv_auc for r in history if r.cv_auc is not None]
        if len(aucs) > self.patience and max(aucs[-self.patience :]) < max(aucs[: -self.patience]) + self.min_delta:
            return f"held-out AUC gained less than {self.min_delta} over the last {self.patience} rounds"
        return None


def _cv_auc(x, y, g, *, folds: int) -> float | None:
    from sklearn.metrics import roc_auc_score

    if len(set(y.tolist())) < 2 or len(set(g.tolist())) < 2:
        return None
    z = np.zeros(len(y))
    for tr, te in grouped_folds(g, folds=folds):
        if len(set(y[tr].tolist())) < 2:
            return None
        z[te] = _decision(_fit_lr(x[tr], y[tr], c=1.0), x[te])
    return float(roc_auc_score(y, z))


def active_loop(
    x: np.ndarray,
    groups: np.ndarray,
    oracle: Callable[[np.ndarray], np.ndarray],
    *,
    start: int = 40,
    batch: int = 20,
    strategy: str = "uncertainty",
    seed: int = 0,
    rule: StopRule = StopRule(),
    folds: int = 4,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    max_rounds: int = 100,
) -> tuple[list[Round], str, np.ndarray]:
    """Label ``start`` random candidates, then ``batch`` per round chosen by ``strategy`` (uncertainty or random),
    until the stop rule fires. ``oracle(indices)`` returns their labels (the strong judge or a person).
    ``test`` = (x, y) of held-out queries, scored each round when given (for simulations).

    Returns (rounds, why it stopped, labeled indices in labeling order)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    n = len(x)
    order = rng.permutation(n)
    labeled = list(order[:start])
    labels = dict(zip(labeled, oracle(np.asarray(labeled)).tolist()))
    history: list[Round] = []
    why = "max rounds reached"
    for _ in range(max_rounds):
        idx = np.asarray(labeled)
        y = np.asarray([labels[i] for i in labeled])
        pool = np.setdiff1d(np.arange(n), idx)
        p_pool, test_auc = np.full(len(pool), 0.5), None
        if len(set(y.tolist())) == 2:
            params = _fit_lr(x[idx], y, c=1.0)
            p_pool = sigmoid(_decision(params, x[pool]))
            if test is not None and len(set(test[1].tolist())) == 2:
                test_auc = float(roc_auc_score(test[1], _decision(params, test[0])))
        unc = float(1 - 2 * np.abs(p_pool - 0.5).min()) if len(pool) else 0.0
        history.append(Round(len(idx), int(y.sum()), _cv_auc(x[idx], y, groups[idx], folds=folds), test_auc, unc))
        stop = rule.reason(history, len(pool))
        if stop:
            why = stop
            break
        take = batch if rule.budget is None else min(batch, rule.budget - len(idx))
        chosen = (
            pool[uncertainty_order(p_pool)[:take]]
            if strategy == "uncertainty"
            else rng.choice(pool, size=min(take, len(pool)), replace=False)
        )
        labels.update(zip(chosen.tolist(), oracle(chosen).tolist()))
        labeled.extend(chosen.tolist())
    return history, why, np.asarray(labeled)
