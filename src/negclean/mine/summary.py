"""What a mining run did: counts per filter, shortfalls, score distributions; frozen and printable.

Score distributions are kept in fixed-size reservoirs, so memory does not grow with the number of queries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from negclean.mine.select import CODE, FILTERS, KEPT, OUTSIDE, REASONS, SURVIVOR, ChunkSelection

_EMPTY: Mapping[int, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ScoreStats:
    """Distribution of one group of scores (quantiles from a uniform sample when the group is large)."""

    count: int
    mean: float | None = None
    min: float | None = None
    p05: float | None = None
    p25: float | None = None
    p50: float | None = None
    p75: float | None = None
    p95: float | None = None
    max: float | None = None


class ScoreSketch:
    """Exact count/mean/min/max plus a seeded reservoir sample (Algorithm R) for quantiles."""

    def __init__(self, capacity: int = 65536, *, seed: int = 0):
        self.capacity = capacity
        self.sample = np.empty(capacity, dtype=np.float32)
        self.count = 0
        self.total = 0.0
        self.lo = np.inf
        self.hi = -np.inf
        self.rng = np.random.default_rng(seed)

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float32).ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            return
        self.total += float(values.sum(dtype=np.float64))
        self.lo = min(self.lo, float(values.min()))
        self.hi = max(self.hi, float(values.max()))
        room = self.capacity - min(self.count, self.capacity)
        head, tail = values[:room], values[room:]
        self.sample[self.count : self.count + head.size] = head
        self.count += head.size
        if tail.size:
            seen = self.count + np.arange(1, tail.size + 1)  # 1-based position of each new value
            slots = (self.rng.random(tail.size) * seen).astype(np.int64)
            hit = slots < self.capacity
            self.sample[slots[hit]] = tail[hit]  # later values overwrite earlier ones, as in sequential order
            self.count += tail.size

    def stats(self) -> ScoreStats:
        if self.count == 0:
            return ScoreStats(0)
        data = self.sample[: min(self.count, self.capacity)]
        q = np.quantile(data, [0.05, 0.25, 0.5, 0.75, 0.95])
        r = lambda x: round(float(x), 4)  # noqa: E731
        p05, p25, p50, p75, p95 = (r(x) for x in q)
        return ScoreStats(self.count, r(self.total / self.count), r(self.lo), p05, p25, p50, p75, p95, r(self.hi))


@dataclass(frozen=True, slots=True)
class Shortfall:
    """Queries that got fewer negatives than asked for."""

    queries_short: int = 0
    negatives_missing: int = 0
    queries_without_negatives: int = 0
    by_missing: Mapping[int, int] = field(default_factory=lambda: _EMPTY)  # missing -> number of queries
    dropped_queries: int = 0  # left out of the output because of on_shortfall="drop"


@dataclass(frozen=True, slots=True)
class MineSummary:
    output: str
    format: str
    params: Mapping[str, Any]
    params_hash: str
    retriever: Mapping[str, Any]
    queries_total: int
    queries_mined: int
    queries_written: int
    queries_skipped: Mapping[str, int]
    negatives_written: int
    num_negatives: int
    candidates: int
    dropped: Mapping[str, int]
    not_sampled: int
    duplicates_examined: int
    shortfall: Shortfall
    scores: Mapping[str, ScoreStats]
    score_name: str
    filter_score_name: str
    queries_with_candidate_above_lowest_positive: int
    queries_with_candidate_above_all_positives: int
    positives: int
    positives_missing_from_corpus: int
    positives_outside_depth: int
    seconds: Mapping[str, float]

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""

        def plain(x: Any) -> Any:
            if isinstance(x, Mapping):
                return {str(k): plain(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [plain(v) for v in x]
            return x

        out = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "shortfall":
                value = {k: plain(v) for k, v in asdict_shallow(value).items()}
            elif name == "scores":
                value = {k: asdict(v) for k, v in value.items()}
            out[name] = plain(value)
        return out

    def lines(self) -> list[str]:
        """A readable report (the verbose summary of `negclean mine`)."""
        out = [
            f"mined {self.queries_mined} of {self.queries_total} queries with {self.retriever.get('retriever')} "
            f"({self.score_name} scores; filters on {self.filter_score_name}), range {self.params.get('rank_range')}, "
            f"sampling {self.params.get('sampling')}",
            f"wrote {self.queries_written} instances, {self.negatives_written} negatives -> {self.output} ({self.format})",
        ]
        if self.queries_skipped:
            out.append("skipped queries: " + ", ".join(f"{k} {v}" for k, v in sorted(self.queries_skipped.items())))
        out.append(
            f"candidates in the rank window: {self.candidates}; removed: "
            + ", ".join(f"{k} {v}" for k, v in self.dropped.items())
            + f"; not sampled {self.not_sampled}"
        )
        if self.params.get("exclude_duplicates"):
            out.append(
                f"duplicate checks: {self.duplicates_examined} candidates examined (the ones that passed "
                "every other filter; with top sampling only down to the last one kept)"
            )
        sf = self.shortfall
        if sf.queries_short:
            worst = ", ".join(f"{n} short by {m}" for m, n in sorted(sf.by_missing.items(), reverse=True)[:5])
            out.append(
                f"SHORTFALL: {sf.queries_short} of {self.queries_mined} queries got fewer than "
                f"{self.num_negatives} negatives ({sf.negatives_missing} missing in all; {worst}); "
                f"{sf.queries_without_negatives} got none"
                + (f"; {sf.dropped_queries} dropped (on_shortfall=drop)" if sf.dropped_queries else "")
                + ". Widen the range or relax the filters to get more."
            )
        else:
            out.append(f"every mined query got {self.num_negatives} negatives")
        out.append(
            f"queries with an unlabeled candidate scoring above their lowest positive: "
            f"{self.queries_with_candidate_above_lowest_positive}; above all their positives: "
            f"{self.queries_with_candidate_above_all_positives} (ranks 1..END, before filters)"
        )
        if self.positives_outside_depth or self.positives_missing_from_corpus:
            out.append(
                f"positives: {self.positives}; ranked below END: {self.positives_outside_depth}; "
                f"not in the corpus (skipped): {self.positives_missing_from_corpus}"
            )
        out.append(
            f"{self.filter_score_name + ' scores':<14}{'count':>9}{'mean':>9}{'min':>9}{'p05':>9}{'p25':>9}{'p50':>9}{'p75':>9}"
            f"{'p95':>9}{'max':>9}"
        )
        for name, st in self.scores.items():
            cells = [st.mean, st.min, st.p05, st.p25, st.p50, st.p75, st.p95, st.max]
            out.append(
                f"{name:<14}{st.count:>9}" + "".join(f"{c:>9.4f}" if c is not None else f"{'-':>9}" for c in cells)
            )
        out.append("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()))
        return out


def asdict_shallow(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


class MineStats:
    """Mutable tally during a run; ``freeze`` gives the MineSummary."""

    GROUPS = ("positives", "kept", "filtered", "not_sampled")

    def __init__(self, num_negatives: int):
        self.num_negatives = num_negatives
        self.queries_total = 0
        self.queries_mined = 0
        self.queries_written = 0
        self.skipped: Counter[str] = Counter()
        self.negatives_written = 0
        self.candidates = 0
        self.dropped: Counter[str] = Counter({r: 0 for r in REASONS})
        self.not_sampled = 0
        self.examined = 0
        self.short_by: Counter[int] = Counter()
        self.without_negatives = 0
        self.dropped_short = 0
        self.above_lowest = 0
        self.above_all = 0
        self.positives = 0
        self.positives_missing = 0
        self.positives_outside = 0
        self.sketches = {g: ScoreSketch(seed=i) for i, g in enumerate(self.GROUPS)}
        self._pending: dict[str, list[np.ndarray]] = {g: [] for g in self.GROUPS}

    def flush(self) -> None:
        """Move the scores gathered since the last call into the sketches (once per chunk of queries)."""
        for group, parts in self._pending.items():
            if parts:
                self.sketches[group].add(np.concatenate(parts))
                parts.clear()

    def add_chunk(
        self, sel: ChunkSelection, window_scores: np.ndarray, pos_scores: list[np.ndarray], top_unlabeled: np.ndarray
    ) -> None:
        """Tally a chunk of mined queries: their selection, window scores, each query's positive scores,
        and per query the best filter score of a retrieved candidate that is not labeled (-inf: none),
        for "a candidate above the positive"."""
        codes = sel.codes
        self.queries_mined += codes.shape[0]
        self.candidates += int((codes != OUTSIDE).sum())
        counts = np.bincount(codes[codes > SURVIVOR], minlength=KEPT + 1)
        for reason in REASONS:
            self.dropped[reason] += int(counts[CODE[reason]])
        self.not_sampled += int((codes == SURVIVOR).sum())
        self.examined += int(sel.examined.sum())
        short = sel.shortfall > 0
        self.short_by.update(dict(zip(*(v.tolist() for v in np.unique(sel.shortfall[short], return_counts=True)))))
        self.without_negatives += int((short & ~(codes == KEPT).any(axis=1)).sum())
        pending = self._pending
        pending["positives"].extend(pos_scores)
        pending["kept"].append(window_scores[codes == KEPT])
        # REASONS after the exclusions (score filters, duplicates) have the codes from CODE[FILTERS[0]] up to KEPT
        pending["filtered"].append(window_scores[(codes >= CODE[FILTERS[0]]) & (codes < KEPT)])
        pending["not_sampled"].append(window_scores[codes == SURVIVOR])
        # a query without positive scores compares with +inf: never "above"
        lo = np.array([p.min() if p.size else np.inf for p in pos_scores])
        hi = np.array([p.max() if p.size else np.inf for p in pos_scores])
        self.above_lowest += int((top_unlabeled > lo).sum())
        self.above_all += int((top_unlabeled > hi).sum())

    def freeze(
        self,
        *,
        output: str,
        fmt: str,
        params: dict,
        params_hash: str,
        retriever: dict,
        score_name: str,
        filter_score_name: str,
        seconds: dict[str, float],
    ) -> MineSummary:
        self.flush()
        short = Shortfall(
            sum(self.short_by.values()),
            sum(m * n for m, n in self.short_by.items()),
            self.without_negatives,
            MappingProxyType(dict(sorted(self.short_by.items()))),
            self.dropped_short,
        )
        return MineSummary(
            output=output,
            format=fmt,
            params=MappingProxyType(params),
            params_hash=params_hash,
            retriever=MappingProxyType(retriever),
            queries_total=self.queries_total,
            queries_mined=self.queries_mined,
            queries_written=self.queries_written,
            queries_skipped=MappingProxyType(dict(self.skipped)),
            negatives_written=self.negatives_written,
            num_negatives=self.num_negatives,
            candidates=self.candidates,
            dropped=MappingProxyType(dict(self.dropped)),
            not_sampled=self.not_sampled,
            duplicates_examined=self.examined,
            shortfall=short,
            scores=MappingProxyType({g: s.stats() for g, s in self.sketches.items()}),
            score_name=score_name,
            filter_score_name=filter_score_name,
            queries_with_candidate_above_lowest_positive=self.above_lowest,
            queries_with_candidate_above_all_positives=self.above_all,
            positives=self.positives,
            positives_missing_from_corpus=self.positives_missing,
            positives_outside_depth=self.positives_outside,
            seconds=MappingProxyType({k: round(v, 3) for k, v in seconds.items()}),
        )
