"""Moved to ``negclean.judge.learned_features`` (the learned judge computes them at run time, and judges come
before this package); the old name still works."""

from negclean.judge.learned_features import (
    FEATURES,
    LEXICAL_CHARS,
    FeatureTable,
    Key,
    VerdictSource,
    bm25_scores,
    compute_features,
    prior_from_store,
    within_z,
)

__all__ = [
    "FEATURES",
    "LEXICAL_CHARS",
    "FeatureTable",
    "Key",
    "VerdictSource",
    "bm25_scores",
    "compute_features",
    "prior_from_store",
    "within_z",
]
