"""Agreement between human labels and the judges: Cohen's kappa per stage, for the whole cascade, and
between annotators.

Human labels are ``relevant``, ``not_relevant`` or ``unsure``; a judge's verdict is relevant, not
relevant or undecided. Unsure labels and undecided verdicts are left out of every comparison (they
are counted, not guessed). Relevant means "a false negative": for a stage, any relevant verdict;
for the cascade, the candidate is in the run's final false negatives.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from negclean.errors import require

Key = tuple[str, str, str]
HUMAN_LABELS = ("relevant", "not_relevant", "unsure")
CASCADE = "cascade"
CONSENSUS = "consensus"


@dataclass(frozen=True)
class JudgedPair:
    """What the run decided about one (query, positives, candidate) pair.

    Args:
        key: the store key.
        occurrences: (query_id, docid) of every place the pair appears in the run (qrels export).
        stages: each stage's label on it ("relevant" / "not_relevant" / "undecided"), stages that saw it only.
        cascade: True if it is a final false negative, False if cleared, None if undecided at the end.
    """

    key: Key
    occurrences: tuple[tuple[str, str], ...]
    stages: dict[str, str] = field(default_factory=dict)
    cascade: bool | None = None


@dataclass(frozen=True)
class Kappa:
    """Cohen's kappa of two raters over the items both labeled decisively."""

    a: str
    b: str
    n: int
    kappa: float | None
    observed: float | None
    note: str = ""

    def as_dict(self) -> dict:
        # unrounded: the page rounds once for display (rounding twice can move the last digit)
        return {
            "a": self.a,
            "b": self.b,
            "n": self.n,
            "kappa": self.kappa,
            "observed": self.observed,
            "note": self.note,
        }


def human_value(label: str) -> int | None:
    """1 for relevant, 0 for not relevant, None for unsure (left out)."""
    return {"relevant": 1, "not_relevant": 0}.get(label)


def judge_value(label: str) -> int | None:
    return {"relevant": 1, "not_relevant": 0}.get(label)


def kappa(a: str, b: str, x: Sequence[int], y: Sequence[int]) -> Kappa:
    """Cohen's kappa (scikit-learn's) of two aligned 0/1 label lists, with the cases where it is undefined named."""
    n = len(x)
    if n == 0:
        return Kappa(a, b, 0, None, None, "no items labeled by both")
    observed = sum(1 for u, v in zip(x, y) if u == v) / n
    if len(set(x) | set(y)) == 1:  # expected agreement is 1: kappa is 0/0
        return Kappa(a, b, n, None, observed, "both gave one and the same label to every item: kappa undefined")

    metrics = require("sklearn.metrics", extra="report", purpose="Cohen's kappa")
    return Kappa(a, b, n, float(metrics.cohen_kappa_score(list(x), list(y), labels=[0, 1])), observed)


def labels_by_annotator(labels: Iterable[tuple[str, Key, str]]) -> dict[str, dict[Key, str]]:
    out: dict[str, dict[Key, str]] = {}
    for annotator, key, label in labels:
        out.setdefault(annotator, {})[key] = label
    return dict(sorted(out.items()))


def consensus(by_annotator: dict[str, dict[Key, str]]) -> dict[Key, str]:
    """Majority label per item over the annotators' decisive labels; ties and unsure-only items are left out."""
    votes: dict[Key, list[int]] = {}
    for labels in by_annotator.values():
        for key, label in labels.items():
            v = human_value(label)
            if v is not None:
                votes.setdefault(key, []).append(v)
    out = {}
    for key, vs in votes.items():
        yes = sum(vs)
        if yes * 2 != len(vs):
            out[key] = "relevant" if yes * 2 > len(vs) else "not_relevant"
    return out


def _judge_labels(pair: JudgedPair, judge: str) -> int | None:
    if judge == CASCADE:
        return None if pair.cascade is None else int(pair.cascade)
    label = pair.stages.get(judge)
    return None if label is None else judge_value(label)


def judge_agreement(
    pairs: dict[Key, JudgedPair], by_annotator: dict[str, dict[Key, str]], stages: Sequence[str]
) -> list[Kappa]:
    """Kappa of every stage and of the cascade with every annotator (and their consensus when several)."""
    raters = dict(by_annotator)
    if len(by_annotator) > 1:
        raters[CONSENSUS] = consensus(by_annotator)
    out = []
    for judge in [*stages, CASCADE]:
        for name, labels in raters.items():
            x, y = [], []
            for key, label in labels.items():
                h = human_value(label)
                pair = pairs.get(key)
                j = None if pair is None else _judge_labels(pair, judge)
                if h is not None and j is not None:
                    x.append(j)
                    y.append(h)
            out.append(kappa(judge, name, x, y))
    return out


def annotator_agreement(by_annotator: dict[str, dict[Key, str]]) -> list[Kappa]:
    """Kappa of every pair of annotators over the items both labeled decisively."""
    out = []
    for (na, la), (nb, lb) in itertools.combinations(by_annotator.items(), 2):
        x, y = [], []
        for key in la.keys() & lb.keys():
            u, v = human_value(la[key]), human_value(lb[key])
            if u is not None and v is not None:
                x.append(u)
                y.append(v)
        out.append(kappa(na, nb, x, y))
    return out


def agreement_summary(
    pairs: dict[Key, JudgedPair], labels: Iterable[tuple[str, Key, str]], stages: Sequence[str]
) -> dict:
    """Everything the app's agreement view and the report show, as JSON-ready data.

    Only labels of pairs in this run count (the store may hold labels of other runs).
    """
    by_annotator = labels_by_annotator((a, k, lab) for a, k, lab in labels if k in pairs)
    counts = {
        name: {lab: sum(1 for v in labels_.values() if v == lab) for lab in HUMAN_LABELS}
        for name, labels_ in by_annotator.items()
    }
    return {
        "stages": list(stages),
        "annotators": list(by_annotator),
        "label_counts": counts,
        "judges": [k.as_dict() for k in judge_agreement(pairs, by_annotator, stages)],
        "between_annotators": [k.as_dict() for k in annotator_agreement(by_annotator)],
    }


def qrels_lines(
    pairs: dict[Key, JudgedPair], labels: Iterable[tuple[str, Key, str]], *, annotator: str | None = None
) -> list[str]:
    """TREC qrels lines ``query_id<TAB>0<TAB>docid<TAB>relevance`` (1 relevant, 0 not) for labeled pairs of this run.

    With ``annotator`` that annotator's labels; otherwise the consensus of all annotators. Unsure labels
    and ties are not written.
    """
    by_annotator = labels_by_annotator((a, k, lab) for a, k, lab in labels if k in pairs)
    if annotator is not None:
        chosen = by_annotator.get(annotator, {})
    else:
        chosen = consensus(by_annotator)
    lines = set()
    for key, label in chosen.items():
        v = human_value(label)
        if v is None:
            continue
        for qid, docid in pairs[key].occurrences:
            lines.add(f"{qid}\t0\t{docid}\t{v}")
    return sorted(lines)
