"""Fit the learned judge with query-grouped cross-validation and compare it with every single signal.

Protocol (GroupKFold over query ids, so no query is in both a training and a test fold):
- the learned model (StandardScaler + LogisticRegression, scikit-learn) is fitted on the training folds;
  its Platt calibration (p = sigmoid(a z + b)) and its decision threshold (the one maximising kappa)
  come from an inner grouped CV on the training folds only; the test fold is then scored;
- a single signal gets the same treatment: its direction and its kappa-maximising threshold are
  chosen on the training folds, then applied to the test fold;
- AUC and kappa are computed on the pooled out-of-fold predictions.
The final model is fitted on all rows, calibrated on their out-of-fold decision values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from negclean.errors import ConfigError
from negclean.judge.learned_features import FeatureTable
from negclean.judge.learned_model import LearnedModel, sigmoid
from negclean.metrics.binary import threshold_for_recall


@dataclass(frozen=True, slots=True)
class SignalScore:
    """Held-out quality of one predictor: AUC, kappa at its training-fold threshold, and what a screen on it
    would save at the target recall (share of candidates it would not send on)."""

    name: str
    auc: float | None
    kappa: float | None
    precision: float | None
    recall: float | None
    saved_at_target: float | None
    recall_at_target: float | None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FitReport:
    model: LearnedModel
    learned: SignalScore
    learned_at_half: SignalScore
    signals: tuple[SignalScore, ...]
    folds: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]  # (train rows, test rows) per fold
    n: int
    positives: int
    groups: int
    target_recall: float
    oof: np.ndarray  # held-out calibrated probabilities

    @property
    def best_signal(self) -> SignalScore:
        return max(self.signals, key=lambda s: s.auc or 0.0)

    def as_dict(self) -> dict:
        return {
            "n": self.n,
            "positives": self.positives,
            "groups": self.groups,
            "target_recall": self.target_recall,
            "learned": self.learned.as_dict(),
            "learned_at_0.5": self.learned_at_half.as_dict(),
            "signals": [s.as_dict() for s in self.signals],
            "best_signal": self.best_signal.name,
            "beats_best_auc": (self.learned.auc or 0) > (self.best_signal.auc or 0),
            "beats_best_kappa": (self.learned.kappa or 0) > max((s.kappa or 0) for s in self.signals),
        }


def grouped_folds(groups: np.ndarray, *, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """GroupKFold splits; raises a ConfigError naming the problem when there are too few groups."""
    from sklearn.model_selection import GroupKFold

    n_groups = len(set(groups.tolist()))
    if n_groups < 2:
        raise ConfigError(f"grouped cross-validation needs at least 2 queries, got {n_groups}")
    k = min(folds, n_groups)
    return [(tr, te) for tr, te in GroupKFold(n_splits=k).split(np.zeros(len(groups)), groups=groups)]


def _impute(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(x), mean, x)


def _fit_lr(x: np.ndarray, y: np.ndarray, *, c: float):
    """(mean, scale, coef, intercept) of a standardised logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    mean = np.nanmean(x, axis=0)
    mean = np.where(np.isnan(mean), 0.0, mean)
    xi = _impute(x, mean)
    scaler = StandardScaler().fit(xi)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    lr = LogisticRegression(C=c, max_iter=2000).fit((xi - scaler.mean_) / scale, y)
    return scaler.mean_, scale, lr.coef_[0], float(lr.intercept_[0])


def _decision(params, x: np.ndarray) -> np.ndarray:
    mean, scale, coef, b = params
    return ((_impute(x, mean) - mean) / scale) @ coef + b


def _platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    if len(set(y.tolist())) < 2:
        return 1.0, 0.0
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(z.reshape(-1, 1), y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def best_kappa_threshold(score: np.ndarray, y: np.ndarray) -> float:
    """The threshold t (flag score >= t) with the highest Cohen's kappa on (score, y), among midpoints between
    distinct values. Kappa for every candidate threshold at once from cumulative counts (the search runs many
    times inside cross-validation); the reported kappas are scikit-learn's."""
    ok = ~np.isnan(score)
    s, yy = score[ok], y[ok].astype(np.int64)
    vals = np.unique(s)
    if len(vals) < 2 or len(set(yy.tolist())) < 2:
        return float(vals[0]) if len(vals) else 0.5
    cands = (vals[:-1] + vals[1:]) / 2
    order = np.sort(s)
    pos_sorted = np.sort(s[yy == 1])
    n, n_pos = len(s), int(yy.sum())
    flagged = n - np.searchsorted(order, cands, side="left")  # count of s >= t
    tp = n_pos - np.searchsorted(pos_sorted, cands, side="left")
    fp = flagged - tp
    fn = n_pos - tp
    tn = n - tp - fp - fn
    po = (tp + tn) / n
    pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / n**2
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = np.where(pe < 1, (po - pe) / (1 - pe), 0.0)
    return float(cands[int(np.argmax(kappa))])


def _inner_calibration(x: np.ndarray, y: np.ndarray, g: np.ndarray, *, folds: int, c: float):
    """Platt (a, b) and the kappa threshold from an inner grouped CV on training rows only."""
    z = np.zeros(len(y))
    for tr, te in grouped_folds(g, folds=folds):
        if len(set(y[tr].tolist())) < 2:
            z[te] = 0.0
            continue
        z[te] = _decision(_fit_lr(x[tr], y[tr], c=c), x[te])
    a, b = _platt(z, y)
    return a, b, best_kappa_threshold(sigmoid(a * z + b), y)


def _score(name: str, score: np.ndarray, flagged: np.ndarray, y: np.ndarray, *, target: float) -> SignalScore:
    from sklearn.metrics import cohen_kappa_score, roc_auc_score

    ok = ~np.isnan(score)
    auc = float(roc_auc_score(y[ok], score[ok])) if len(set(y[ok].tolist())) == 2 else None
    kappa = float(cohen_kappa_score(y, flagged)) if len(set(y.tolist()) | set(flagged.tolist())) > 1 else None
    tp = int((flagged & (y == 1)).sum())
    prec = tp / flagged.sum() if flagged.sum() else None
    rec = tp / (y == 1).sum() if (y == 1).sum() else None
    saved = rec_t = None
    if ok.all() and (y == 1).any():
        _, rec_t, saved = threshold_for_recall(score, y.astype(bool), target=target)
    return SignalScore(name, auc, kappa, prec, rec, saved, rec_t)


def fit_learned(
    table: FeatureTable,
    labels: Sequence[int] | np.ndarray,
    *,
    folds: int = 5,
    c: float = 1.0,
    target_recall: float = 0.9,
    features: Sequence[str] | None = None,
    embedder: str = "all-MiniLM-L6-v2",
) -> FitReport:
    """Cross-validate, compare with single signals, and fit the final model (see the module docstring).

    Features that are missing (NaN) in every row are left out of the model.
    """
    import sklearn

    y = np.asarray(labels, dtype=np.int64)
    if len(y) != len(table.values):
        raise ValueError("one label per feature row is needed")
    if len(set(y.tolist())) < 2:
        raise ConfigError(f"labels are all {y[0] if len(y) else '?'}: a judge cannot be fitted from one class")
    names = [f for f in (features or table.names) if not np.isnan(table.column(f)).all()]
    x = table.values[:, [table.names.index(f) for f in names]]
    g = table.groups
    splits = grouped_folds(g, folds=folds)
    oof = np.full(len(y), np.nan)
    oof_flag = np.zeros(len(y), dtype=np.int64)
    sig_flag = {f: np.zeros(len(y), dtype=np.int64) for f in names}
    sig_score = {f: np.full(len(y), np.nan) for f in names}
    for tr, te in splits:
        params = _fit_lr(x[tr], y[tr], c=c)
        a, b, t = _inner_calibration(x[tr], y[tr], g[tr], folds=folds, c=c)
        oof[te] = sigmoid(a * _decision(params, x[te]) + b)
        oof_flag[te] = oof[te] >= t
        for j, f in enumerate(names):
            col_tr, col_te = x[tr, j], x[te, j]
            ok = ~np.isnan(col_tr)
            sign = 1.0
            if len(set(y[tr][ok].tolist())) == 2:
                from sklearn.metrics import roc_auc_score

                sign = 1.0 if roc_auc_score(y[tr][ok], col_tr[ok]) >= 0.5 else -1.0
            fill = np.nanmean(col_tr) if ok.any() else 0.0
            s_tr, s_te = sign * np.where(ok, col_tr, fill), sign * np.where(np.isnan(col_te), fill, col_te)
            sig_score[f][te] = s_te
            sig_flag[f][te] = s_te >= best_kappa_threshold(s_tr, y[tr])
    learned = _score("learned", oof, oof_flag, y, target=target_recall)
    at_half = _score("learned@0.5", oof, (oof >= 0.5).astype(np.int64), y, target=target_recall)
    signals = tuple(_score(f, sig_score[f], sig_flag[f], y, target=target_recall) for f in names)
    mean, scale, coef, b0 = _fit_lr(x, y, c=c)
    a, b, t = _inner_calibration(x, y, g, folds=folds, c=c)
    model = LearnedModel(
        tuple(names),
        tuple(map(float, mean)),
        tuple(map(float, scale)),
        tuple(map(float, coef)),
        b0,
        a,
        b,
        t,
        embedder,
        sklearn.__version__,
        {
            "rows": int(len(y)),
            "positives": int(y.sum()),
            "queries": int(len(set(g.tolist()))),
            "folds": len(splits),
            "C": c,
            "cv_auc": learned.auc,
            "cv_kappa": learned.kappa,
        },
    )
    return FitReport(
        model,
        learned,
        at_half,
        signals,
        tuple((tuple(map(int, tr)), tuple(map(int, te))) for tr, te in splits),
        len(y),
        int(y.sum()),
        len(set(g.tolist())),
        target_recall,
        oof,
    )
