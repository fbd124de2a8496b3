"""Holes in evaluation qrels: judge the unjudged documents that runs retrieve, and measure how rankings change.

    from negclean.holes import fill_holes, holes_report
    data = load_beir_split("data/trec-dl-2019-passage", split="test")   # negclean.evaluate.retrieval
    filled = fill_holes(data, runs, cascade="screen", depth=10, workdir="holes/")  # runs: {system: run}
    report = holes_report(runs, original=data.qrels, filled=filled.qrels)
    print(report.to_markdown())

See README.md in this folder.
"""

from __future__ import annotations

from negclean.holes.fill import AddedJudgment, FilledQrels, fill_holes
from negclean.holes.measures import condensed_run, judged_at, kendall_tau, system_ranking
from negclean.holes.pool import PooledDoc, pool_unjudged
from negclean.holes.report import HolesReport, SystemHoles, holes_report

__all__ = [
    "AddedJudgment",
    "FilledQrels",
    "HolesReport",
    "PooledDoc",
    "SystemHoles",
    "condensed_run",
    "fill_holes",
    "holes_report",
    "judged_at",
    "kendall_tau",
    "pool_unjudged",
    "system_ranking",
]
