"""Original vs filled qrels, side by side, from the result files the report is given.

Filled qrels are the original evaluation judgments, unchanged, plus the unjudged documents in the systems'
top k ("holes") judged by a cascade (`negclean holes`, `negclean compare --filled-qrels`, the experiment option
``eval.fill_holes``). Three result files carry both scorings; each becomes one or more ``FilledComparison``:

- ``comparison.json`` of ``negclean compare -o DIR --filled-qrels ...``: the original comparison at the top
  level and the filled one under ``filled`` (with ``filled_qrels``, the file used);
- an experiment's ``results.json`` (``experiment.json`` in a run folder): ``comparisons`` holds ``SET`` and
  ``SET+filled``; the holes files are in ``OUTPUT_DIR/holes/SET``;
- ``holes.json`` of ``negclean holes``: nDCG@10, R@100 and Judged@10 of each system under both qrels, and
  Kendall's tau between the system rankings.

Where the holes folder is found (next to the filled qrels, or the experiment's), its ``holes.json`` gives the
fill counts and tau, and ``holes.provenance.jsonl`` is named: one line per added judgment (judge, stage,
confidence). This module reads JSON only; it imports nothing from ``negclean.holes`` (a sibling layer).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

# the file names `negclean holes` writes (negclean/holes/files.py)
HOLES_JSON = "holes.json"
PROVENANCE_FILE = "holes.provenance.jsonl"
FILLED_SUFFIX = "+filled"  # the experiment's name for a set scored under filled qrels


@dataclass(frozen=True, slots=True)
class SideBySide:
    """One system on one measure under the original and the filled qrels.

    ``*_delta`` and ``*_p`` (Holm-adjusted randomisation p) compare with the baseline under the same qrels;
    None for the baseline itself and where the source has no tests (``holes.json``). Ranks are 1 = best.
    """

    system: str
    original: float
    filled: float
    rank_original: int
    rank_filled: int
    original_delta: float | None = None
    filled_delta: float | None = None
    original_p: float | None = None
    filled_p: float | None = None

    @property
    def change(self) -> float:
        """Filled minus original: what the judged holes add to (or take from) the system's score."""
        return self.filled - self.original


@dataclass(frozen=True, slots=True)
class MeasureSides:
    """One measure: every system's scores under both qrels."""

    measure: str
    queries: int
    baseline: str | None
    rows: tuple[SideBySide, ...]

    @property
    def ranking_changed(self) -> bool:
        return [r.system for r in sorted(self.rows, key=lambda r: r.rank_original)] != [
            r.system for r in sorted(self.rows, key=lambda r: r.rank_filled)
        ]


@dataclass(frozen=True, slots=True)
class FilledComparison:
    """The systems of one evaluation scored under the original and the filled qrels.

    Args:
        title: where it comes from (the file, and the eval set for an experiment).
        measures: one table per measure.
        tau: Kendall's tau between the nDCG@10 system rankings under the two qrels, where ``holes.json`` has it.
        fill: the fill counts of ``holes.json`` (pooled, relevant, not_relevant, undecided, depth, ...), or empty.
        cascade: the cascade that judged the holes, where recorded.
        filled_qrels: the filled qrels file, where known; ``provenance``: its provenance file, where it exists.
    """

    title: str
    measures: tuple[MeasureSides, ...]
    tau: float | None = None
    fill: Mapping[str, Any] | None = None
    cascade: str | None = None
    filled_qrels: str | None = None
    provenance: str | None = None


def _ranks(scores: Mapping[str, float]) -> dict[str, int]:
    """1 = best; ties share the better rank."""
    ordered = sorted(scores.values(), reverse=True)
    return {name: ordered.index(v) + 1 for name, v in scores.items()}


def _holm_p(row: Mapping[str, Any]) -> float | None:
    p = row.get("p_holm")
    return float(p) if isinstance(p, (int, float)) else None


def _delta(row: Mapping[str, Any]) -> float | None:
    d = row.get("delta")
    return float(d) if isinstance(d, (int, float)) else None


def _is_comparison(data: Any) -> TypeGuard[Mapping[str, Any]]:
    return (
        isinstance(data, Mapping)
        and isinstance(data.get("tables"), list)
        and all(isinstance(t, Mapping) and "measure" in t and isinstance(t.get("rows"), list) for t in data["tables"])
    )


def sides_of_comparisons(original: Mapping[str, Any], filled: Mapping[str, Any]) -> tuple[MeasureSides, ...]:
    """Pair two ``Comparison.as_dict()`` values measure by measure, system by system (those in both)."""
    out = []
    by_measure = {t["measure"]: t for t in filled["tables"]}
    for t in original["tables"]:
        f = by_measure.get(t["measure"])
        if f is None:
            continue
        orig_rows = {r["name"]: r for r in t["rows"]}
        fill_rows = {r["name"]: r for r in f["rows"]}
        names = [n for n in orig_rows if n in fill_rows]
        rank_o = _ranks({n: float(orig_rows[n]["mean"]) for n in names})
        rank_f = _ranks({n: float(fill_rows[n]["mean"]) for n in names})
        rows = tuple(
            SideBySide(
                n,
                float(orig_rows[n]["mean"]),
                float(fill_rows[n]["mean"]),
                rank_o[n],
                rank_f[n],
                _delta(orig_rows[n]),
                _delta(fill_rows[n]),
                _holm_p(orig_rows[n]),
                _holm_p(fill_rows[n]),
            )
            for n in names
        )
        out.append(MeasureSides(t["measure"], int(t.get("queries", 0)), t.get("baseline"), rows))
    return tuple(out)


def sides_of_holes(report: Mapping[str, Any]) -> tuple[MeasureSides, ...]:
    """nDCG@10, R@100 and Judged@10 of each system in a ``holes.json`` report, under both qrels."""
    systems = report.get("systems") or []
    out = []
    for measure, key in (("nDCG@10", "ndcg"), ("R@100", "recall"), ("Judged@10", "judged")):
        scores = [(s["name"], s.get(f"{key}_original"), s.get(f"{key}_filled")) for s in systems]
        scores = [
            (n, float(o), float(f)) for n, o, f in scores if isinstance(o, (int, float)) and isinstance(f, (int, float))
        ]
        if not scores:
            continue
        rank_o = _ranks({n: o for n, o, _ in scores})
        rank_f = _ranks({n: f for n, _, f in scores})
        out.append(
            MeasureSides(
                measure,
                int(report.get("queries", 0)),
                None,
                tuple(SideBySide(n, o, f, rank_o[n], rank_f[n]) for n, o, f in scores),
            )
        )
    return tuple(out)


def _tau(report: Mapping[str, Any] | None) -> float | None:
    if not report:
        return None
    tau = (report.get("taus") or {}).get("original vs filled")
    return float(tau) if isinstance(tau, (int, float)) and not math.isnan(tau) else None


def _read_holes(folder: Path | None) -> dict[str, Any] | None:
    """``holes.json`` of a holes folder, or None where there is none (or it does not parse)."""
    if folder is None or not (folder / HOLES_JSON).is_file():
        return None
    try:
        data = json.loads((folder / HOLES_JSON).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _with_holes(
    title: str,
    measures: tuple[MeasureSides, ...],
    folder: Path | None,
    *,
    filled_qrels: str | None = None,
    cascade: str | None = None,
) -> FilledComparison:
    holes = _read_holes(folder)
    provenance = folder / PROVENANCE_FILE if folder is not None else None
    inputs = (holes or {}).get("inputs") or {}
    return FilledComparison(
        title,
        measures,
        _tau((holes or {}).get("report")),
        (holes or {}).get("fill"),
        cascade or (str(inputs["cascade"]) if inputs.get("cascade") else None),
        filled_qrels or (str(folder / "qrels.filled.tsv") if holes is not None and folder is not None else None),
        str(provenance) if provenance is not None and provenance.is_file() else None,
    )


def _resolve(recorded: str, base: Path) -> Path:
    p = Path(recorded).expanduser()
    return p if p.is_absolute() or p.exists() else base / p


def filled_comparisons(name: str, data: Any, *, path: Path | None = None) -> list[FilledComparison]:
    """Every original-vs-filled comparison in one result file (see the module docstring); [] when none.

    Args:
        name: the file's name, for titles.
        data: its parsed JSON.
        path: where the file is, to find the holes folder next to it (relative paths recorded in the file are
            taken relative to its folder).
    """
    if not isinstance(data, Mapping):
        return []
    base = path.parent if path is not None else Path(".")
    # negclean compare -o DIR --filled-qrels QRELS
    if _is_comparison(data) and _is_comparison(data.get("filled")):
        recorded = data.get("filled_qrels")
        qrels = _resolve(str(recorded), base) if isinstance(recorded, str) else None
        folder = (qrels if qrels is not None and qrels.is_dir() else qrels.parent) if qrels is not None else None
        return [
            _with_holes(
                name,
                sides_of_comparisons(data, data["filled"]),
                folder,
                filled_qrels=str(qrels) if qrels is not None else None,
            )
        ]
    # negclean holes -o DIR
    report = data.get("report")
    if isinstance(report, Mapping) and isinstance(report.get("systems"), list) and "taus" in report:
        folder = path.parent if path is not None else None
        return [_with_holes(name, sides_of_holes(report), folder)]
    # negclean experiment: comparisons {SET: ..., SET+filled: ...}
    comps = data.get("comparisons")
    if isinstance(comps, Mapping):
        out = []
        out_dir = data.get("output_dir")
        cfg_eval = (data.get("config") or {}).get("eval") or {}
        cascade = cfg_eval.get("fill_holes") if isinstance(cfg_eval, Mapping) else None
        for set_name, comp in comps.items():
            filled = comps.get(f"{set_name}{FILLED_SUFFIX}")
            if str(set_name).endswith(FILLED_SUFFIX) or not (_is_comparison(comp) and _is_comparison(filled)):
                continue
            folder = _resolve(str(out_dir), base) / "holes" / str(set_name) if isinstance(out_dir, str) else None
            out.append(
                _with_holes(
                    f"{name}: {set_name}",
                    sides_of_comparisons(comp, filled),
                    folder,
                    cascade=str(cascade) if cascade else None,
                )
            )
        return out
    return []


def about_line(c: FilledComparison) -> str:
    """The sentence that says what this comparison's filled qrels are."""
    fill = c.fill or {}
    by = f" by the cascade {c.cascade}" if c.cascade else " by a cascade"
    depth = f"top {fill['depth']}" if "depth" in fill else "top k"
    text = (
        f"Filled qrels: the original judgments, unchanged, plus the unjudged documents in the systems' {depth} "
        f"(holes) judged{by}"
    )
    if {"relevant", "not_relevant", "undecided"} <= set(fill):
        text += (
            f": {fill['relevant']:,} judged relevant (added with grade {fill.get('relevant_grade', 1)}), "
            f"{fill['not_relevant']:,} not relevant (added with grade 0), {fill['undecided']:,} undecided "
            "(left out)"
        )
    return text + "."


def chart_series(m: MeasureSides) -> tuple[list[str], dict[str, Sequence[float | None]]]:
    """Systems and their original / filled means, for a grouped bar chart."""
    return [r.system for r in m.rows], {
        "original qrels": [r.original for r in m.rows],
        "filled qrels": [r.filled for r in m.rows],
    }


__all__ = [
    "FilledComparison",
    "MeasureSides",
    "SideBySide",
    "about_line",
    "chart_series",
    "filled_comparisons",
    "sides_of_comparisons",
    "sides_of_holes",
]
