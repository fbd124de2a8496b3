"""Fill the holes of qrels: judge the unjudged documents that runs put in their top k, keep the originals.

Each pooled query becomes one ``Instance``: the query text, its judged-relevant documents as positives (the
``max_positives`` highest graded), the unjudged pooled documents as candidates; the instances go through the
cascade runner with the judgment store, so a rerun with the same store makes no judge call. A final verdict
"relevant" (either grade, better or worse than the positive) adds the pair with ``relevant_grade``; "not relevant"
adds it with grade 0 (it is judged now, so Judged@k rises); "undecided" adds nothing and is counted.

A query with no judged-relevant document goes through the cascade with no positive: LLM judges read the query
alone; the free screens (similarity, learned) answer "undecided" for it, and their stage sends it on (or it stays
undecided). Such queries are counted in ``no_positive_queries``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from negclean.cascade.funnel import StageFunnel
from negclean.cascade.outcome import InstanceOutcome
from negclean.cascade.runner import Cascade
from negclean.cascade.stages import CascadeConfig
from negclean.cascade.store import JudgmentStore
from negclean.data.records import Instance, Passage
from negclean.errors import ConfigError
from negclean.evaluate.measures import Qrels
from negclean.evaluate.retrieval import BeirSplit, load_beir_split
from negclean.holes.pool import PooledDoc, Runs, pool_unjudged
from negclean.judge.base import Judge, Label
from negclean.mine.beir import Corpus
from negclean.pipeline import load_cascade

PathLike = Union[str, "os.PathLike[str]"]
CascadeSpec = Union[str, "os.PathLike[str]", CascadeConfig, Mapping[str, Any]]
STORE_FILE = "judgments.sqlite"


@dataclass(frozen=True, slots=True)
class AddedJudgment:
    """One judgment added to the qrels, with where it came from.

    Args:
        query_id, doc_id, grade: the qrels line added.
        label: the final verdict (``relevant`` or ``not_relevant``).
        stage, judge_id: the cascade stage that gave the final verdict and its judge.
        confidence: the judge's P(relevant) or score where it gives one.
        fingerprint: the key of the verdict in the judgment store (the stage judge's fingerprint).
        systems: the systems whose top k held the document; ``rank`` its best rank there.
        reason: the judge's short rationale, where it gives one.
    """

    query_id: str
    doc_id: str
    grade: int
    label: str
    stage: str
    judge_id: str
    confidence: float | None
    fingerprint: str
    systems: tuple[str, ...]
    rank: int
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "query_id": self.query_id,
            "doc_id": self.doc_id,
            "grade": self.grade,
            "label": self.label,
            "stage": self.stage,
            "judge_id": self.judge_id,
            "confidence": None if self.confidence is None else round(self.confidence, 6),
            "fingerprint": self.fingerprint,
            "systems": list(self.systems),
            "rank": self.rank,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class FilledQrels:
    """Qrels with their holes filled, and the counts of how.

    ``pooled == relevant + not_relevant + undecided`` always; ``judged == relevant + not_relevant == len(added)``.
    ``qrels`` holds every original judgment unchanged plus the added ones (a new dict; the input is not touched).

    Args:
        qrels: original plus added judgments, ``{query_id: {doc_id: grade}}``.
        added: the added judgments with provenance, by query then best rank.
        pooled: unjudged documents in some run's top ``depth`` (per query, each counted once).
        judged, relevant, not_relevant, undecided: what became of them.
        unjudgeable: pooled documents that could not be sent (not in the corpus, query without text), by reason;
            they are counted in ``undecided``.
        queries_pooled: queries with at least one hole; ``no_positive_queries``: of those, queries with no
            judged-relevant document (judged without a positive).
        cost: USD spent on model calls in this call; ``model_calls``: tasks sent to LLM stages now;
            ``judged_now``: candidate verdicts computed now by any judge; ``from_store``: verdicts served
            from the judgment store (a rerun with the same store has ``judged_now == 0``).
        stages: the per-stage funnel.
    """

    qrels: Mapping[str, Mapping[str, int]]
    added: tuple[AddedJudgment, ...]
    pooled: int
    judged: int
    relevant: int
    not_relevant: int
    undecided: int
    unjudgeable: Mapping[str, int]
    queries_pooled: int
    no_positive_queries: int
    depth: int
    relevant_grade: int
    cost: float
    model_calls: int
    judged_now: int
    from_store: int
    stages: tuple[StageFunnel, ...]
    seconds: float

    def summary(self) -> dict[str, Any]:
        """The counts (no qrels, no added list), for JSON."""
        return {
            "pooled": self.pooled,
            "judged": self.judged,
            "relevant": self.relevant,
            "not_relevant": self.not_relevant,
            "undecided": self.undecided,
            "unjudgeable": dict(self.unjudgeable),
            "queries_pooled": self.queries_pooled,
            "no_positive_queries": self.no_positive_queries,
            "depth": self.depth,
            "relevant_grade": self.relevant_grade,
            "cost": round(self.cost, 6),
            "model_calls": self.model_calls,
            "judged_now": self.judged_now,
            "from_store": self.from_store,
            "seconds": self.seconds,
            "stages": [{k: getattr(s, k) for k in s.__slots__} for s in self.stages],
        }


def _split(data: BeirSplit | PathLike, split: str) -> BeirSplit:
    if isinstance(data, BeirSplit):
        return data
    if isinstance(data, (str, os.PathLike)):
        return load_beir_split(os.fspath(data), split=split)
    raise ConfigError(
        f"data must be a BEIR folder path or a BeirSplit (negclean.evaluate.retrieval."
        f"load_beir_split), not {type(data).__name__}"
    )


def _positives(corpus: Corpus, judged: Mapping[str, int], *, min_grade: int, limit: int | None) -> tuple[Passage, ...]:
    """The judged-relevant documents found in the corpus, highest grade first (then doc id), at most ``limit``."""
    ranked = sorted(((g, d) for d, g in judged.items() if g >= min_grade), key=lambda gd: (-gd[0], gd[1]))
    out: list[Passage] = []
    for _grade, docid in ranked:
        pos = corpus.position(docid)
        if pos is not None:
            out.append(corpus.passage(pos))
            if limit is not None and len(out) >= limit:
                break
    return tuple(out)


class _Progress:
    def __init__(self, total: int):
        self.total, self.done = total, 0

    def __call__(self, n: int) -> None:
        self.done += n
        print(f"negclean holes: judged {self.done}/{self.total} queries", file=sys.stderr, flush=True)


def fill_holes(
    data: BeirSplit | PathLike,
    runs: Runs,
    *,
    cascade: CascadeSpec = "screen",
    depth: int = 10,
    qrels: Qrels | None = None,
    store: PathLike | JudgmentStore | None = None,
    workdir: PathLike | None = None,
    progress: bool = False,
    split: str = "test",
    relevant_grade: int = 1,
    min_grade: int = 1,
    max_positives: int | None = 5,
    judges: Mapping[str, Judge] | None = None,
) -> FilledQrels:
    """Judge the unjudged documents in the top ``depth`` of every run and add them to the qrels.

    Args:
        data: a BEIR folder (with ``split``) or a loaded ``BeirSplit``: the corpus and query texts.
        runs: system name -> ``{query_id: {doc_id: score}}`` (``read_trec_run`` reads a TREC file).
        cascade: a preset name, a YAML file, a ``CascadeConfig`` or its mapping.
        depth: pool depth k: the top k of each run are pooled.
        qrels: the judgments to fill (default: the split's); only its queries are pooled.
        store: the judgment store (a SQLite file or an open store); default ``workdir/judgments.sqlite``, or
            one in memory when neither is given.
        relevant_grade: grade of an added relevant judgment; ``min_grade``: the qrels grade that makes a
            judged document a positive shown to the judges (2 for TREC DL).
        max_positives: at most this many positives per query are shown (highest grade first); None: all.
        judges: prebuilt judges by stage name (tests, benchmarks), instead of building them from the cascade.
    """
    t0 = time.perf_counter()
    if relevant_grade < 1:
        raise ConfigError(f"relevant_grade must be >= 1 (grade 0 means not relevant), not {relevant_grade}")
    if max_positives is not None and max_positives < 1:
        raise ConfigError(f"max_positives must be >= 1 or None, not {max_positives}")
    split_data = _split(data, split)
    original: Qrels = split_data.qrels if qrels is None else qrels
    config = load_cascade(cascade)
    corpus = split_data.corpus
    if not isinstance(corpus, Corpus):
        raise ConfigError(f"{split_data.root}: the split's corpus is a {type(corpus).__name__}, not a Corpus")
    pool = pool_unjudged(runs, original, depth=depth)
    instances: list[Instance] = []
    sent: list[tuple[PooledDoc, ...]] = []
    unjudgeable: dict[str, int] = {}
    no_positive = 0
    for qid, docs in pool.items():
        text = split_data.queries.get(qid)
        if text is None:
            unjudgeable["query has no text"] = unjudgeable.get("query has no text", 0) + len(docs)
            continue
        found = tuple(d for d in docs if corpus.position(d.doc_id) is not None)
        if len(found) < len(docs):
            unjudgeable["document not in corpus"] = (
                unjudgeable.get("document not in corpus", 0) + len(docs) - len(found)
            )
        if not found:
            continue
        positives = _positives(corpus, original[qid], min_grade=min_grade, limit=max_positives)
        no_positive += not positives
        negatives = tuple(corpus.passage(corpus.position(d.doc_id), rank=d.rank) for d in found)  # type: ignore[arg-type]
        instances.append(Instance(qid, text, positives, negatives, line=len(instances) + 1))
        sent.append(found)
    own = not isinstance(store, JudgmentStore)
    if own:
        if store is None and workdir is not None:
            Path(workdir).mkdir(parents=True, exist_ok=True)
            store = Path(workdir) / STORE_FILE
        db = JudgmentStore(":memory:" if store is None else os.fspath(store))  # type: ignore[arg-type]
    else:
        db = store  # type: ignore[assignment]
    try:
        on_progress = _Progress(len(instances)) if progress and instances else None
        with Cascade(config, store=db, judges=dict(judges or {}), on_progress=on_progress) as runner:
            outcomes = list(runner.run(instances))
            fingerprints = {s.name: runner.stage_fingerprint(s.name) for s in config.stages}
        stats = runner.stats
    finally:
        if own:
            db.close()
    added = _added(outcomes, sent, fingerprints, relevant_grade=relevant_grade)
    filled = {q: dict(docs) for q, docs in original.items()}
    for a in added:
        filled[a.query_id][a.doc_id] = a.grade
    pooled = sum(len(docs) for docs in pool.values())
    relevant = sum(a.label == Label.RELEVANT.value for a in added)
    stages = tuple(StageFunnel.of(s) for s in stats.stages)
    model_calls = sum(s.tasks_sent for s, c in zip(stats.stages, config.stages) if c.judge.calls_model)
    return FilledQrels(
        qrels=filled,
        added=added,
        pooled=pooled,
        judged=len(added),
        relevant=relevant,
        not_relevant=len(added) - relevant,
        undecided=pooled - len(added),
        unjudgeable=unjudgeable,
        queries_pooled=len(pool),
        no_positive_queries=no_positive,
        depth=depth,
        relevant_grade=relevant_grade,
        cost=stats.cost,
        model_calls=model_calls,
        judged_now=sum(s.judged for s in stats.stages),
        from_store=sum(s.from_store for s in stats.stages),
        stages=stages,
        seconds=round(time.perf_counter() - t0, 3),
    )


def _added(
    outcomes: list[InstanceOutcome],
    sent: list[tuple[PooledDoc, ...]],
    fingerprints: Mapping[str, str],
    *,
    relevant_grade: int,
) -> tuple[AddedJudgment, ...]:
    out: list[AddedJudgment] = []
    for outcome, docs in zip(outcomes, sent):
        for doc, cand in zip(docs, outcome.candidates):
            v = cand.verdict
            if v.label is Label.UNDECIDED:
                continue
            grade = relevant_grade if v.label is Label.RELEVANT else 0
            out.append(
                AddedJudgment(
                    doc.query_id,
                    doc.doc_id,
                    grade,
                    v.label.value,
                    cand.stage,
                    v.judge_id,
                    v.confidence,
                    fingerprints.get(cand.stage, ""),
                    doc.systems,
                    doc.rank,
                    v.reason or "",
                )
            )
    return tuple(out)
