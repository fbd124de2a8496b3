"""Moved to ``negclean.metrics.agreement`` (report, learned and annotate share it); the old name still works."""

from negclean.metrics.agreement import (
    CASCADE,
    CONSENSUS,
    HUMAN_LABELS,
    JudgedPair,
    Kappa,
    Key,
    agreement_summary,
    annotator_agreement,
    consensus,
    human_value,
    judge_agreement,
    judge_value,
    kappa,
    labels_by_annotator,
    qrels_lines,
)

__all__ = [
    "CASCADE",
    "CONSENSUS",
    "HUMAN_LABELS",
    "JudgedPair",
    "Kappa",
    "Key",
    "agreement_summary",
    "annotator_agreement",
    "consensus",
    "human_value",
    "judge_agreement",
    "judge_value",
    "kappa",
    "labels_by_annotator",
    "qrels_lines",
]
