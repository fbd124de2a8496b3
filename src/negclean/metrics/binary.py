"""Quality of flagged false negatives against a truth: precision, recall, F1, Cohen's kappa, AUC.

Predictions are 1 (flagged as a false negative), 0 (cleared) or None (undecided). Undecided items are
counted and, by default, scored as cleared (a run that cannot decide does not fix the pair); with
``undecided="drop"`` they are left out instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True, slots=True)
class BinaryScores:
    """Scores of one judge (or cascade) against the truth.

    Args:
        n: items scored. tp/fp/fn/tn: the confusion matrix (positive = a true false negative).
        undecided: items with no decision (scored as cleared, or dropped: see ``undecided_as``).
        precision/recall/f1/kappa: None where undefined (no flags, no positives, one label everywhere).
        auc: ROC AUC of the confidences, where the judge gives them for every scored item.
    """

    n: int
    tp: int
    fp: int
    fn: int
    tn: int
    undecided: int
    precision: float | None
    recall: float | None
    f1: float | None
    kappa: float | None
    auc: float | None = None
    undecided_as: str = "cleared"

    def as_dict(self) -> dict:
        return asdict(self)


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def binary_scores(
    truth: Sequence[bool],
    predicted: Sequence[int | None],
    *,
    confidence: Sequence[float | None] | None = None,
    undecided: Literal["cleared", "drop"] = "cleared",
) -> BinaryScores:
    """Score aligned truth / prediction lists (see the module docstring); scikit-learn does the arithmetic."""
    from sklearn.metrics import cohen_kappa_score, confusion_matrix, roc_auc_score

    if len(truth) != len(predicted) or (confidence is not None and len(confidence) != len(truth)):
        raise ValueError("truth, predicted and confidence must have the same length")
    y, p, c = [], [], []
    n_undecided = 0
    for i, (t, q) in enumerate(zip(truth, predicted)):
        if q is None:
            n_undecided += 1
            if undecided == "drop":
                continue
            q = 0
        y.append(int(bool(t)))
        p.append(int(q))
        c.append(None if confidence is None else confidence[i])
    if not y:
        return BinaryScores(0, 0, 0, 0, 0, n_undecided, None, None, None, None, None, undecided)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, p, labels=[0, 1]).ravel())
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall > 0
        else (0.0 if precision is not None and recall is not None else None)
    )
    kappa = None if len(set(y) | set(p)) == 1 else float(cohen_kappa_score(y, p, labels=[0, 1]))
    auc = None
    if confidence is not None and all(v is not None for v in c) and len(set(y)) == 2:
        auc = float(roc_auc_score(y, c))
    return BinaryScores(len(y), tp, fp, fn, tn, n_undecided, precision, recall, f1, kappa, auc, undecided)


def threshold_for_recall(
    scores: Sequence[float] | np.ndarray, truth: Sequence[bool] | np.ndarray, *, target: float
) -> tuple[float, float, float]:
    """The highest threshold t such that flagging ``score > t`` keeps recall >= ``target``.

    Returns (threshold, recall reached, share of items NOT flagged). Ties at the threshold go with
    the threshold (not flagged), so the rule is exactly ``score > t`` as the similarity judge applies it.
    """
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(truth, dtype=bool)
    if not y.any():
        raise ValueError("no truly relevant item: recall is undefined, no threshold can be chosen")
    if not 0 < target <= 1:
        raise ValueError(f"target recall must be in (0, 1], got {target}")
    pos = np.sort(s[y])[::-1]
    need = int(np.ceil(target * len(pos) - 1e-9))  # positives that must score above t
    kth = pos[need - 1]  # the need-th best positive score must be > t
    below = s[s < kth]
    # midway between the last item left out and the weakest positive kept: any t in between flags the same items
    t = float((below.max() + kth) / 2) if below.size else float(kth) - 1.0
    flagged = s > t
    return t, float((flagged & y).sum() / y.sum()), float((~flagged).mean())


def recall_at_budget(truth: Sequence[bool], confidence: Sequence[float | None], *, budget: float) -> float | None:
    """Recall when the ``round(budget x true count)`` candidates with the highest confidence are flagged.

    A flag budget is how a user sets a threshold that transfers between data sets whose share of false
    negatives differs. No confidence (None) ranks below every number. Candidates tied at the cut are
    shared out by expectation (the recall averaged over every order of the tie), so the result does not
    depend on input order. None when nothing is truly relevant.
    """
    import numpy as np

    if len(truth) != len(confidence):
        raise ValueError("truth and confidence must have the same length")
    if budget < 0:
        raise ValueError(f"flag budget must be >= 0, got {budget}")
    y = np.asarray(truth, dtype=bool)
    n_true = int(y.sum())
    if not n_true:
        return None
    c = np.asarray([-np.inf if v is None else float(v) for v in confidence], dtype=np.float64)
    k = min(len(y), int(round(budget * n_true)))
    values, inverse = np.unique(-c, return_inverse=True)  # groups of equal confidence, best first
    sizes = np.bincount(inverse, minlength=len(values))
    hits = np.bincount(inverse, weights=y.astype(np.float64), minlength=len(values))
    tp, taken = 0.0, 0
    for size, hit in zip(sizes, hits):
        if taken + size <= k:
            tp, taken = tp + hit, taken + size
        else:
            tp += (k - taken) / size * hit
            break
    return float(tp / n_true)
