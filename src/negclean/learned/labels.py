"""Where the learned judge's training labels come from: qrels (a benchmark's truth), people (the annotation
app's labels in a judgment store) or a strong judge's stored verdicts (distillation)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from negclean.errors import ConfigError
from negclean.judge.learned_features import FeatureTable
from negclean.metrics.agreement import consensus, human_value, labels_by_annotator

Key = tuple[str, str, str]


def labels_from_truth(table: FeatureTable, truth: Mapping[tuple[str, str], bool]) -> np.ndarray:
    """1/0 by (query_id, docid); -1 where the truth has no entry."""
    return np.asarray([-1 if i not in truth else int(truth[i]) for i in table.ids], dtype=np.int64)


def labels_from_humans(table: FeatureTable, store, *, annotator: str | None = None) -> np.ndarray:
    """1/0 from the annotation app's labels (one annotator, or the majority of all); -1 where unlabeled,
    unsure or tied."""
    by = labels_by_annotator(store.human_labels(annotator))
    chosen = by.get(annotator, {}) if annotator else consensus(by)
    return np.asarray([-1 if (v := human_value(chosen.get(k, ""))) is None else v for k in table.keys], dtype=np.int64)


def labels_from_judge(table: FeatureTable, store, judge: str) -> np.ndarray:
    """1/0 from a judge's stored verdicts (relevant at any grade / not relevant); -1 where it has none or
    was undecided. ``judge``: its id or fingerprint in the store."""
    fps = [fp for fp, jid, _ in store.judges() if judge in (fp, jid)]
    if not fps:
        have = ", ".join(sorted({jid for _, jid, _ in store.judges()})) or "none"
        raise ConfigError(f"judge {judge!r} is not in the store (judges there: {have})")
    verdicts: dict = {}
    for fp in fps:
        verdicts.update(store.verdicts_of(fp))
    out = []
    for k in table.keys:
        v = verdicts.get(k)
        out.append(-1 if v is None or v.label.value == "undecided" else int(v.label.value == "relevant"))
    return np.asarray(out, dtype=np.int64)
