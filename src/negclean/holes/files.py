"""What `negclean holes` writes: filled qrels (BEIR layout), one provenance line per added judgment, the report."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from negclean.data.atomic import atomic_open, atomic_write
from negclean.errors import InputError
from negclean.holes.fill import FilledQrels
from negclean.holes.report import HolesReport

QRELS_FILE = "qrels.filled.tsv"
PROVENANCE_FILE = "holes.provenance.jsonl"
REPORT_JSON = "holes.json"
REPORT_MD = "holes.md"


@dataclass(frozen=True, slots=True)
class HolesFiles:
    """The files one `negclean holes` run wrote."""

    qrels: Path
    provenance: Path
    report_json: Path
    report_md: Path


def write_qrels_tsv(qrels: Mapping[str, Mapping[str, int]], path: str | Path) -> Path:
    """BEIR qrels: a ``query-id corpus-id score`` header, then one tab-separated line per judgment."""
    path = Path(path)
    with atomic_open(path) as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for qid, docs in qrels.items():
            for docid, grade in docs.items():
                fh.write(f"{qid}\t{docid}\t{int(grade)}\n")
    return path


def write_holes(
    output_dir: str | Path, filled: FilledQrels, report: HolesReport, *, inputs: Mapping[str, Any]
) -> HolesFiles:
    """Write the filled qrels, the provenance, and the report as JSON (with the fill counts) and Markdown."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    qrels = write_qrels_tsv(filled.qrels, out / QRELS_FILE)
    provenance = out / PROVENANCE_FILE
    with atomic_open(provenance) as fh:
        for a in filled.added:
            fh.write(json.dumps(a.as_dict(), ensure_ascii=False) + "\n")
    doc = {"inputs": dict(inputs), "fill": filled.summary(), "report": report.as_dict()}
    report_json = atomic_write(out / REPORT_JSON, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    md = [
        f"# Holes filled with `{inputs.get('cascade', '?')}` (pool depth {filled.depth})",
        "",
        f"{filled.pooled} unjudged documents in the systems' top {filled.depth} over {filled.queries_pooled} "
        f"queries: {filled.relevant} judged relevant (added with grade {filled.relevant_grade}), "
        f"{filled.not_relevant} not relevant (added with grade 0), {filled.undecided} undecided (not added); "
        f"{filled.no_positive_queries} queries had no judged-relevant document to show. "
        f"{filled.judged_now} verdicts computed now, {filled.from_store} served from the store, "
        f"{filled.model_calls} model calls, ${filled.cost:.4f}.",
        "",
        report.to_markdown(),
    ]
    report_md = atomic_write(out / REPORT_MD, "\n".join(md))
    return HolesFiles(qrels, provenance, Path(report_json), Path(report_md))


def filled_qrels_path(path: str | Path) -> Path:
    """A filled-qrels file, or the output folder of `negclean holes` that holds one."""
    p = Path(path)
    if p.is_dir():
        p = p / QRELS_FILE
    if not p.is_file():
        raise InputError(
            f"no filled qrels here: give {QRELS_FILE} or the output folder of `negclean holes`", path=str(path)
        )
    return p
