"""Moved to ``negclean.metrics.binary`` (the learned judge's fitting uses it too); the old name still works."""

from negclean.metrics.binary import BinaryScores, binary_scores, recall_at_budget, threshold_for_recall

__all__ = ["BinaryScores", "binary_scores", "recall_at_budget", "threshold_for_recall"]
