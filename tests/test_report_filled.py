"""The HTML report shows evaluations under the original and the filled qrels side by side, and says what filled
qrels are; without matplotlib it still renders (tables, no charts, a note naming the extra).

Real data: CISI (shared data) ranked by BM25 and by BM25 reversed, scored under qrels thinned to one relevant
document per query (the "original") and under the thinned qrels filled by `negclean holes` (slow tier) or by the
full CISI judgments (the simulation's truth, fast tier).
"""

from __future__ import annotations

import html
import json
import math
import re
import sys
from pathlib import Path

import pytest

from browser.runs import copy_run, screen_run
from negclean.report.build import build_report
from negclean.report.filled import filled_comparisons


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return screen_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def cisi(shared_data: Path, tmp_path_factory) -> dict:
    from negclean.evaluate.measures import write_trec_run
    from negclean.evaluate.retrieval import bm25_run, load_beir_split
    from negclean.holes.files import write_qrels_tsv

    root = shared_data / "cisi"
    if not root.is_dir():
        pytest.skip(f"CISI not found at {root}")
    tmp = tmp_path_factory.mktemp("report-filled")
    data = load_beir_split(root, split="test")
    qids = [q for q in data.qrels if sum(g >= 1 for g in data.qrels[q].values()) >= 3][:6]
    run, _ = bm25_run(data, depth=20, cache_dir=str(tmp / "cache"))
    runs = {"bm25": {q: run[q] for q in qids}, "rev": {q: {d: -s for d, s in run[q].items()} for q in qids}}
    thin = {q: dict(sorted(data.qrels[q].items())[:1]) for q in qids}
    full = {q: dict(data.qrels[q]) for q in qids}
    for name, r in runs.items():
        write_trec_run(r, tmp / f"{name}.trec", tag=name)
    write_qrels_tsv(thin, tmp / "thin.tsv")
    return {"root": root, "tmp": tmp, "runs": runs, "thin": thin, "full": full}


def _comparison(runs: dict, qrels: dict):
    from negclean.evaluate.compare import compare
    from negclean.evaluate.measures import per_query

    return compare({n: per_query(r, qrels, ["nDCG@10", "R@100"]) for n, r in runs.items()}, resamples=200)


def _table_rows(page: str, measure: str) -> dict[str, list[str]]:
    """System -> cell texts of the side-by-side table of one measure (the first such table on the page)."""
    start = page.index(f'<table class="grid num filled">\n    <thead><tr><th>{measure}')
    body = page[start : page.index("</table>", start)]
    rows = re.findall(r"<tr><td>(.*?)</tr>", body, flags=re.S)
    cells = [re.findall(r"<td>(.*?)</td>", "<td>" + r, flags=re.S) for r in rows]
    return {c[0]: [html.unescape(x.strip()) for x in c[1:]] for c in cells}


def test_an_experiments_filled_set_is_shown_next_to_the_original(run_dir, cisi, tmp_path):
    """experiment.json with comparisons {SET, SET+filled}: one side-by-side table per measure, with the numbers
    of both comparisons, the ranks, and the line saying what filled qrels are."""
    original = _comparison(cisi["runs"], cisi["thin"])
    filled = _comparison(cisi["runs"], cisi["full"])
    run = copy_run(run_dir, tmp_path / "run")
    (run / "experiment.json").write_text(
        json.dumps(
            {
                "output_dir": str(tmp_path / "exp"),
                "config": {"eval": {"fill_holes": "screen"}},
                "comparisons": {"cisi": original.as_dict(), "cisi+filled": filled.as_dict()},
            }
        )
    )
    result = build_report(run, output=tmp_path / "r.html", max_examples=0, scores="none")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert result.sections[-3:] == ("filled-qrels", "experiment", "examples")
    assert '<section id="filled-qrels">' in page and "<h3>experiment.json: cisi</h3>" in page
    assert (
        "Filled qrels: the original judgments, unchanged, plus the unjudged documents in the systems&#39; top k "
        "(holes) judged by the cascade screen." in page
    )
    assert "holes.provenance.jsonl) was not found" in page  # no holes folder under output_dir
    for measure in ("nDCG@10", "R@100"):
        rows = _table_rows(page, measure)
        o, f = original.table(measure), filled.table(measure)
        assert set(rows) == {"bm25", "rev"}
        for ro, rf in zip(o.rows, f.rows, strict=True):
            cells = rows[ro.name]
            assert cells[0] == f"{ro.mean:.4f}" and cells[1] == f"{rf.mean:.4f}"
            assert cells[2] == f"{rf.mean - ro.mean:+.4f}"
    # the full judgments find relevant documents the thin qrels missed: bm25 gains under the filled qrels
    bm25 = {r.name: r.mean for r in filled.table("nDCG@10").rows}["bm25"]
    assert bm25 > {r.name: r.mean for r in original.table("nDCG@10").rows}["bm25"]
    assert page.count('<svg class="chart" role="img" aria-label="nDCG@10: original vs filled qrels"') == 1


def test_compare_and_holes_files_are_read_with_their_provenance(cisi, tmp_path):
    """comparison.json names its filled qrels; holes.json sits next to them with the fill counts and tau."""
    from negclean.holes.report import holes_report

    holes_dir = tmp_path / "holes"
    holes_dir.mkdir()
    (holes_dir / "qrels.filled.tsv").write_text("query-id\tcorpus-id\tscore\n")
    (holes_dir / "holes.provenance.jsonl").write_text("")
    report = holes_report(cisi["runs"], original=cisi["thin"], filled=cisi["full"])
    fill = {"pooled": 9, "relevant": 4, "not_relevant": 3, "undecided": 2, "depth": 10, "relevant_grade": 1}
    (holes_dir / "holes.json").write_text(
        json.dumps({"inputs": {"cascade": "screen"}, "fill": fill, "report": report.as_dict()})
    )
    doc = {
        **_comparison(cisi["runs"], cisi["thin"]).as_dict(),
        "filled": _comparison(cisi["runs"], cisi["full"]).as_dict(),
        "filled_qrels": str(holes_dir / "qrels.filled.tsv"),
    }
    [c] = filled_comparisons("comparison.json", doc, path=tmp_path / "comparison.json")
    assert c.provenance == str(holes_dir / "holes.provenance.jsonl") and c.cascade == "screen"
    tau = report.taus["original vs filled"]  # NaN where a scoring ties every system (then not shown)
    assert c.fill == fill and (c.tau is None if math.isnan(tau) else c.tau == pytest.approx(tau))
    [h] = filled_comparisons(
        "holes.json", json.loads((holes_dir / "holes.json").read_text()), path=holes_dir / "holes.json"
    )
    assert [m.measure for m in h.measures] == ["nDCG@10", "R@100", "Judged@10"]
    ndcg = {r.system: (r.original, r.filled) for r in h.measures[0].rows}
    assert ndcg == {s["name"]: (s["ndcg_original"], s["ndcg_filled"]) for s in report.as_dict()["systems"]}
    assert h.provenance == c.provenance
    # a file with no filled comparison gives none
    assert filled_comparisons("comparison.json", {k: v for k, v in doc.items() if k != "filled"}) == []


def test_without_matplotlib_the_report_has_every_table_and_says_which_extra_draws_charts(
    run_dir, cisi, tmp_path, monkeypatch
):
    run = copy_run(run_dir, tmp_path / "run")
    (run / "experiment.json").write_text(
        json.dumps(
            {
                "comparisons": {
                    "cisi": _comparison(cisi["runs"], cisi["thin"]).as_dict(),
                    "cisi+filled": _comparison(cisi["runs"], cisi["full"]).as_dict(),
                }
            }
        )
    )
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    build_report(run, output=tmp_path / "r.html", max_examples=0)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<svg" not in page and "pip install &#39;negclean[report]&#39;" in page
    assert "Every stage of this run was free" in page and '<section id="filled-qrels">' in page
    assert set(_table_rows(page, "nDCG@10")) == {"bm25", "rev"}


@pytest.mark.slow
def test_report_of_holes_and_compare_outputs_from_the_cli(run_dir, cisi, tmp_path):
    """`negclean holes` (free screen, depth 5) and `negclean compare --filled-qrels -o` on CISI; the report of
    both files shows each system under both qrels, the fill counts, tau and the provenance file."""
    from typer.testing import CliRunner

    from negclean.cli.main import app

    tmp = cisi["tmp"]
    out = tmp_path / "holes"
    res = CliRunner().invoke(
        app,
        [
            "holes",
            "--beir",
            str(cisi["root"]),
            "--qrels",
            str(tmp / "thin.tsv"),
            "--run",
            f"bm25={tmp / 'bm25.trec'}",
            "--run",
            f"rev={tmp / 'rev.trec'}",
            "--depth",
            "5",
            "-o",
            str(out),
            "--threads",
            "1",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    holes = json.loads(res.stdout)
    res = CliRunner().invoke(
        app,
        [
            "compare",
            f"bm25={tmp / 'bm25.trec'}",
            f"rev={tmp / 'rev.trec'}",
            "--qrels",
            str(tmp / "thin.tsv"),
            "--filled-qrels",
            str(out),
            "--resamples",
            "200",
            "-o",
            str(tmp_path / "cmp"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    build_report(
        run_dir,
        output=tmp_path / "r.html",
        max_examples=0,
        scores="none",
        extra=[out / "holes.json", tmp_path / "cmp" / "comparison.json"],
    )
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    fill = holes["fill"]
    about = (
        f"top {fill['depth']} (holes) judged by the cascade screen: {fill['relevant']:,} judged relevant "
        f"(added with grade 1), {fill['not_relevant']:,} not relevant (added with grade 0), "
        f"{fill['undecided']:,} undecided (left out)."
    )
    assert page.count(about) == 2  # holes.json and comparison.json, the latter through the holes folder
    assert page.count(f"<code>{out / 'holes.provenance.jsonl'}</code>") == 2
    tau = holes["report"]["taus"]["original vs filled"]
    if tau is not None:
        assert f"qrels: {tau:+.3f}." in page
    for s in holes["report"]["systems"]:  # both files give the same nDCG@10 under each qrels
        assert (
            page.count(f"<tr><td>{s['name']}</td><td>{s['ndcg_original']:.4f}</td><td>{s['ndcg_filled']:.4f}</td>") == 2
        )
