"""`negclean report`: one self-contained HTML file about a run folder (inline CSS, SVG and JS; opens offline)."""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from negclean.cascade.store import JudgmentStore
from negclean.data.atomic import atomic_open
from negclean.metrics.agreement import agreement_summary
from negclean.report import charts
from negclean.report.collect import Collected, ScoreSource, as_arrays, collect
from negclean.report.filled import about_line, chart_series, filled_comparisons
from negclean.report.generic import tables_from_json
from negclean.report.rundata import RunFolder, open_run

_SCORE_LABEL = {
    "data": "score from the data (Passage.score)",
    "minilm": "MiniLM cosine similarity (all-MiniLM-L6-v2)",
    "rank": "retriever rank (1 = top)",
}


@dataclass(frozen=True)
class ReportResult:
    path: Path
    sections: tuple[str, ...]
    examples: int
    score_source: str
    human_labels: int

    def as_dict(self) -> dict:
        return {
            "report": str(self.path),
            "sections": list(self.sections),
            "examples": self.examples,
            "score_source": self.score_source,
            "human_labels": self.human_labels,
        }


def _pct(a: float, b: float) -> str:
    return f"{a / b:.1%}" if b else "–"


def funnel_chart(cas: dict) -> str:
    """Candidates -> each stage's judged and flagged -> final false negatives (needs matplotlib)."""
    total = cas.get("candidates", 0)
    rows: list[tuple[str, float, str]] = [("all candidates", total, f"{total:,}")]
    colors = [charts.PALETTE["kept"]]
    for s in cas.get("stages", []):
        rows.append((f"{s['name']}: judged", s["candidates"], f"{s['candidates']:,}"))
        colors.append(charts.PALETTE["bar"])
        note = f"{s['relevant']:,} ({_pct(s['relevant'], s['candidates'])})"
        if s.get("undecided"):
            note += f" · {s['undecided']:,} undecided"
        rows.append((f"{s['name']}: flagged", s["relevant"], note))
        colors.append(charts.PALETTE["stage_flagged"])
    fn = cas.get("false_negatives", 0)
    rows.append(
        (
            "false negatives (final)",
            fn,
            f"{fn:,} ({_pct(fn, total)}) in {cas.get('instances_with_fn', 0):,} "
            f"of {cas.get('instances', 0):,} instances",
        )
    )
    colors.append(charts.PALETTE["final"])
    return charts.hbars(rows, title="Cascade funnel", colors=colors, max_value=max(total, 1))


def _score_plots(col: Collected, *, draw: bool) -> dict[str, Any] | None:
    if col.scores is None:
        return None
    a = as_arrays(col.scores)
    label = _SCORE_LABEL.get(col.scores.source, col.scores.source)
    names = {"positives": "positives", "kept": "kept negatives", "flagged": "flagged (false negatives)"}
    colors = {
        names["positives"]: charts.PALETTE["positive"],
        names["kept"]: charts.PALETTE["kept"],
        names["flagged"]: charts.PALETTE["flagged"],
    }
    series = {names[k]: a[k] for k in ("positives", "kept", "flagged") if k != "positives" or a[k].size}
    plots: dict[str, Any] = {
        "source": label,
        "source_key": col.scores.source,
        "gap": "",
        "scores": charts.histogram(series, title="Scores", xlabel=label, colors=colors) if draw else "",
    }
    if draw and (a["gap_kept"].size or a["gap_flagged"].size):
        plots["gap"] = charts.histogram(
            {names["kept"]: a["gap_kept"], names["flagged"]: a["gap_flagged"]},
            title="Gap to the positive",
            colors=colors,
            xlabel="candidate score − lowest positive score of its query",
        )

    def stats(v: np.ndarray) -> str:
        return f"median {np.median(v):.4g} (n={v.size:,})" if v.size else "none"

    plots["medians"] = {names[k]: stats(a[k]) for k in ("positives", "kept", "flagged")}
    return plots


def _human_agreement(run: RunFolder, col: Collected, labels: list) -> dict | None:
    if not labels:
        return None
    return agreement_summary(col.pairs, labels, run.stage_names)


def _read_labels(run: RunFolder) -> list:
    if not run.store_path.is_file():
        return []

    with JudgmentStore(run.store_path) as store:
        return list(store.human_labels())


def _filled_qrels(
    run: RunFolder, results: dict[str, Any], extra: Sequence[str | Path], *, draw: bool
) -> list[dict[str, Any]]:
    """Original-vs-filled comparisons in the result files, each with its 'what filled qrels are' line and chart."""
    out: list[dict[str, Any]] = []
    for name, data in results.items():
        path = run.path / name  # extra_results takes the run folder's file first, then the --extra files
        if not path.is_file():
            path = next(Path(p) for p in extra if Path(p).name == name)
        for c in filled_comparisons(name, data, path=path):
            chart = ""
            if draw and c.measures and len(c.measures[0].rows) > 0:
                systems, series = chart_series(c.measures[0])
                chart = charts.grouped_bars(systems, series, title=f"{c.measures[0].measure}: original vs filled qrels")
            out.append({"comparison": c, "about": about_line(c), "chart": chart})
    return out


def build_context(
    run: RunFolder,
    *,
    scores: ScoreSource = "auto",
    max_examples: int = 60,
    seed: int = 0,
    extra: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Everything the template renders, computed in one pass over the run."""
    labels = _read_labels(run)
    col = collect(run, scores=scores, max_examples=max_examples, seed=seed, labeled={k for _, k, _ in labels})
    summary = run.summary
    cas = summary.get("cascade", {})
    stages = cas.get("stages", [])
    subsets = sorted(col.subsets.values(), key=lambda s: (-s.candidates, s.name))
    draw = charts.available()  # without the report extra: every table, no chart, and a note saying why
    subset_chart = (
        charts.hbars(
            [(s.name, s.rate, f"{s.rate:.1%} ({s.false_negatives:,} of {s.candidates:,})") for s in subsets],
            title="False-negative rate per subset",
            colors=[charts.PALETTE["flagged"]] * len(subsets),
            max_value=max([s.rate for s in subsets] + [1e-9]),
        )
        if subsets and draw
        else ""
    )
    cost_rows = [
        (
            s["name"],
            s["cost"] + s.get("est_cost", 0.0),
            f"${s['cost']:.4f}" + (f" (estimate ${s['est_cost']:.4f})" if s.get("est_cost") else ""),
        )
        for s in stages
    ]
    any_cost = any(r[1] > 0 for r in cost_rows)
    agreement = _human_agreement(run, col, labels)
    sections = ["overview", "configuration", "funnel", "subsets", "scores", "cost", "audit"]
    if agreement:
        sections.append("agreement")
    results = run.extra_results(extra)
    filled = _filled_qrels(run, results, extra, draw=draw)
    if filled:
        sections.append("filled-qrels")
    extras = []
    for name, data in results.items():
        stem = name.removesuffix(".json")
        slug = re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-") or "results"
        while slug in sections or slug == "examples":  # an anchor of its own, whatever the file is called
            slug = "x-" + slug
        sections.append(slug)
        extras.append({"name": name, "id": slug, "tables": tables_from_json(data, stem, charts=draw)})
    sections.append("examples")
    return {
        "title": f"negclean report: {run.path.name}",
        "generated": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "run_dir": str(run.path),
        "input": str(run.input_path),
        "store": str(run.store_path),
        "summary": summary,
        "cascade": cas,
        "stages": stages,
        "read": summary.get("read", {}),
        "fix": summary.get("fix"),
        "reconciled": summary.get("reconciled"),
        "stopped": summary.get("stopped"),
        "config_yaml": yaml.safe_dump(summary.get("config", {}), sort_keys=False, allow_unicode=True, width=100),
        "charts_note": "" if draw else charts.MISSING_NOTE,
        "funnel": funnel_chart(cas) if cas and draw else "",
        "subsets": subsets,
        "subset_chart": subset_chart,
        "plots": _score_plots(col, draw=draw),
        "cost_chart": charts.hbars(cost_rows, title="Cost per stage", colors=[charts.PALETTE["bar"]] * len(cost_rows))
        if any_cost and draw
        else "",
        "any_cost": any_cost,
        "misses": [s for s in stages if s.get("miss_estimate")],
        "agreement": agreement,
        "extras": extras,
        "filled_qrels": filled,
        "examples": col.examples,
        "instances": col.instances,
        "max_examples": max_examples,
        "sections": sections,
    }


def render(context: dict[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("negclean.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = lambda v: f"{v:,}" if isinstance(v, int) else (f"{v:,.4g}" if isinstance(v, float) else v)
    env.filters["pct"] = lambda v: f"{v:.1%}"
    env.filters["conf"] = lambda v: "" if v is None else f"{v:.2f}"
    return env.get_template("report.html.j2").render(**context)


def build_report(
    run_dir: str | Path,
    *,
    output: str | Path | None = None,
    input_path: str | Path | None = None,
    store_path: str | Path | None = None,
    scores: ScoreSource = "auto",
    max_examples: int = 60,
    seed: int = 0,
    extra: Sequence[str | Path] = (),
) -> ReportResult:
    """Write the HTML report of a run folder.

    Args:
        run_dir: the folder `negclean judge` wrote.
        output: the HTML file (default ``RUN_DIR/report.html``); written atomically.
        input_path: the judged file, when it moved since the run.
        store_path: the judgment store, when not the one the run names (human labels come from it).
        scores: what the score plots show (``auto``: the data's scores, else MiniLM similarity when
            cheap, else ranks; or ``data``, ``minilm``, ``rank``, ``none``).
        max_examples: instances to include for browsing.
        seed: which instances are included, reproducibly.
        extra: more JSON result files to render as tables (besides experiment.json / bench_judges.json
            found in the run folder).
    """
    run = open_run(run_dir, input_path=input_path, store_path=store_path)
    ctx = build_context(run, scores=scores, max_examples=max_examples, seed=seed, extra=extra)
    html = render(ctx)
    out = Path(output) if output else run.path / "report.html"
    with atomic_open(out) as fh:
        fh.write(html)
    os.chmod(out, 0o644)
    n_labels = sum(sum(c.values()) for c in ctx["agreement"]["label_counts"].values()) if ctx["agreement"] else 0
    return ReportResult(
        out,
        tuple(ctx["sections"]),
        len(ctx["examples"]),
        ctx["plots"]["source_key"] if ctx["plots"] else "none",
        n_labels,
    )
