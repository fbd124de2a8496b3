"""Run systems over several sparse-label benchmarks: per data set and pooled, with LODO fitting.

Per (system, data set): the usual ``SystemResult`` (P/R/F1/kappa at the system's own threshold, AUC, tokens,
cost, time, share sent to the last stage) plus recall at a flag budget of 1x and 2x the true count, the
flags/true ratio and where anything learned or calibrated was fitted (``lodo.py``). The pooled row of a
system scores the concatenation of its per-set predictions (for a LODO system: held-out predictions only);
its budgets are counted against the pooled true count.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from negclean.benchjudges.dataset import Benchmark
from negclean.benchjudges.lodo import LodoFitter, needs_lodo
from negclean.benchjudges.run import (
    MemoEmbedder,
    System,
    SystemResult,
    Timings,
    _cascade_config,
    _similarity_judges,
    candidate_rows,
    run_system,
)
from negclean.cascade.store import JudgmentStore
from negclean.errors import ConfigError
from negclean.metrics.binary import BinaryScores, binary_scores, recall_at_budget

BUDGETS = (1.0, 2.0)


@dataclass(frozen=True)
class SparseRow:
    """One system on one data set (or ``pooled``)."""

    system: str
    dataset: str
    scores: BinaryScores
    recall_at_budget: Mapping[str, float | None]  # "1x", "2x"
    flags_per_true: float | None
    share_to_last: float | None
    tokens: int
    cost: float
    sec_per_candidate: float | None
    fitted_on: str
    values: Mapping[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "system": self.system,
            "dataset": self.dataset,
            "scores": self.scores.as_dict(),
            "recall_at_budget": dict(self.recall_at_budget),
            "flags_per_true": self.flags_per_true,
            "share_to_last": self.share_to_last,
            "tokens": self.tokens,
            "cost": self.cost,
            "sec_per_candidate": self.sec_per_candidate,
            "fitted_on": self.fitted_on,
            "values": dict(self.values),
        }


def _row(
    system: str, dataset: str, truth, pred, conf, *, results: Sequence[SystemResult], fitted_on: str, values=None
) -> SparseRow:
    scores = binary_scores(truth, pred, confidence=conf)
    n_true = sum(1 for t in truth if t)
    flags = sum(1 for p in pred if p == 1)
    cands = sum(r.candidates for r in results)
    to_last = sum(r.share_to_last * r.candidates for r in results)
    est = [r.est_seconds for r in results]
    known = [e for e in est if e is not None]
    multi = any(len(r.stages) > 1 for r in results)
    return SparseRow(
        system,
        dataset,
        scores,
        {f"{b:g}x": recall_at_budget(truth, conf, budget=b) for b in BUDGETS},
        flags / n_true if n_true else None,
        to_last / cands if (cands and multi) else None,
        sum(r.tokens_in + r.tokens_out for r in results),
        sum(r.cost for r in results),
        None if len(known) < len(est) or not cands else sum(known) / cands,
        fitted_on,
        values or {},
    )


def run_sparse(
    benches: Mapping[str, Benchmark],
    systems: Sequence[System],
    *,
    output_dir: str | Path,
    store_path: str | Path | None = None,
    price_model: str = "gpt-4o-mini",
    target_recall: float | None = None,
    on_system=None,
) -> dict:
    """Run every system on every benchmark (LODO values resolved per held-out set); returns rows and fits."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    store_path = Path(store_path or output_dir / "judgments.sqlite")
    if any(needs_lodo(s) for s in systems) and len(benches) < 2:
        names = ", ".join(s.name for s in systems if needs_lodo(s))
        raise ConfigError(f"systems {names} fit on the other data sets ('lodo'): give at least two --beir")
    model = "all-MiniLM-L6-v2"
    embedders: dict = {model: MemoEmbedder(model)}
    fitter = LodoFitter(benches, output_dir=output_dir, embedder=embedders[model], target_recall=target_recall)
    timings = Timings(store_path.with_name(store_path.stem + ".timings.json"))
    per_set: dict[str, list[SparseRow]] = {}
    pooled_inputs: dict[str, dict[str, Any]] = {}
    with JudgmentStore(store_path) as store:
        for system in systems:
            acc: dict[str, Any] = {"truth": [], "pred": [], "conf": [], "results": [], "fitted": set()}
            for name, bench in benches.items():
                t0 = time.perf_counter()
                resolved = fitter.resolve(system, name)
                cfg = _cascade_config(resolved.system)
                res, outcomes = run_system(
                    bench,
                    resolved.system,
                    store=store,
                    timings=timings,
                    price_model=price_model,
                    judges=_similarity_judges(cfg, embedders),
                )
                truth, pred, conf = candidate_rows(bench, outcomes)
                fitted = ("fitted on " + "+".join(resolved.fitted_on)) if resolved.fitted_on else "-"
                row = _row(
                    system.name, name, truth, pred, conf, results=[res], fitted_on=fitted, values=resolved.values
                )
                per_set.setdefault(name, []).append(row)
                for k, v in (("truth", truth), ("pred", pred), ("conf", conf)):
                    acc[k].extend(v)
                acc["results"].append(res)
                acc["fitted"].add(bool(resolved.fitted_on))
                if on_system:
                    on_system(row, time.perf_counter() - t0)
            pooled_inputs[system.name] = acc
    pooled = [
        _row(
            name,
            "pooled",
            a["truth"],
            a["pred"],
            a["conf"],
            results=a["results"],
            fitted_on="each set held out (LODO)" if any(a["fitted"]) else "-",
        )
        for name, a in pooled_inputs.items()
    ]
    return {"per_set": per_set, "pooled": pooled, "fits": fitter.reports}
