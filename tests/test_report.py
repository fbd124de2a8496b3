"""`negclean report`: built from a real run of the free `screen` cascade, checked for content and self-containment."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from browser.runs import copy_run, screen_run
from negclean.errors import ConfigError, InputError
from negclean.report import charts
from negclean.report.build import build_report
from negclean.report.generic import tables_from_json


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return screen_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = build_report(run_dir, output=out)
    return result, out.read_text(encoding="utf-8"), json.loads((run_dir / "summary.json").read_text())


def test_report_has_every_section_and_the_runs_numbers(report):
    result, page, summary = report
    cas = summary["cascade"]
    for section in ("overview", "configuration", "funnel", "subsets", "scores", "cost", "audit", "examples"):
        assert f'<section id="{section}">' in page
    assert result.sections[:7] == ("overview", "configuration", "funnel", "subsets", "scores", "cost", "audit")
    screen = next(s for s in cas["stages"] if s["name"] == "screen")
    # funnel: candidates -> flagged per stage -> final, with the counts of summary.json
    assert f">{cas['candidates']}<" in page
    assert f"{screen['relevant']} ({screen['relevant'] / screen['candidates']:.1%})" in page
    assert (
        f"{cas['false_negatives']} ({cas['false_negatives'] / cas['candidates']:.1%}) in "
        f"{cas['instances_with_fn']} of {cas['instances']} instances" in page
    )
    # the judge of each stage and the configuration
    assert "learned:default-screen.json" in page and "backend: learned" in page
    # per-subset false-negative rate: the example file has no subset field
    assert "(no subset)" in page and f"{cas['false_negatives'] / cas['candidates']:.1%}" in page
    assert "No stage audited what it cleared" in page  # screen preset has no audit_rate
    assert "Every stage of this run was free" in page


def test_report_examples_show_each_stages_verdict_and_reason(report, run_dir):
    result, page, summary = report
    queries = [json.loads(line)["query"] for line in Path(summary["input"]).read_text(encoding="utf-8").splitlines()]
    assert result.examples == len(queries) == page.count('<details class="example"')
    for q in queries:
        assert html.escape(q) in page
    rows = [json.loads(line) for line in (run_dir / "verdicts.jsonl").read_text().splitlines()]
    flagged = [c for r in rows for c in r["candidates"] if c["label"] == "relevant"]
    assert (
        page.count('<span class="badge fn">false negative</span>')
        == len(flagged)
        == summary["cascade"]["false_negatives"]
    )
    # every flagged candidate's screen reason (similarities) is on the page
    for c in flagged:
        assert html.escape(c["reason"]) in page
    assert "not a duplicate of any positive" in page


def test_report_is_self_contained(report):
    _, page, _ = report
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(http" not in page
    assert page.count("<svg") >= 3  # funnel, subsets, score histograms
    assert "<script src" not in page and '<link rel="stylesheet"' not in page


def test_score_plots_use_the_datas_scores_or_what_is_asked(run_dir, tmp_path):
    auto = build_report(run_dir, output=tmp_path / "a.html")
    assert auto.score_source == "data"  # the example file carries reranker scores
    page = (tmp_path / "a.html").read_text()
    assert "Gap to the positive" in page and "positives (n=10)" in page
    rank = build_report(run_dir, output=tmp_path / "r.html", scores="rank", max_examples=0)
    page = (tmp_path / "r.html").read_text()
    assert rank.score_source == "rank" and "retriever rank" in page and "Gap to the positive" not in page
    assert rank.examples == 0
    mini = build_report(run_dir, output=tmp_path / "m.html", scores="minilm", max_examples=0)
    page = (tmp_path / "m.html").read_text()
    assert mini.score_source == "minilm" and "MiniLM cosine similarity" in page
    none = build_report(run_dir, output=tmp_path / "n.html", scores="none")
    assert none.score_source == "none" and "No scores plotted" in (tmp_path / "n.html").read_text()


def test_experiment_and_benchmark_files_become_tables(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path / "run")
    (run / "experiment.json").write_text(
        json.dumps(
            {
                "name": "rlhn-vs-default",
                "results": {"default": {"ndcg@10": 0.412, "n": 300}, "rlhn": {"ndcg@10": 0.427, "n": 300}},
            }
        )
    )
    (run / "bench_judges.json").write_text(
        json.dumps(
            [
                {"judge": "screen", "precision": 0.41, "recall": 0.55, "kappa": 0.21},
                {"judge": "llm", "precision": 0.52, "recall": 0.61, "kappa": 0.33},
            ]
        )
    )
    result = build_report(run, output=tmp_path / "x.html")
    page = (tmp_path / "x.html").read_text()
    assert "experiment" in result.sections and "bench_judges" in result.sections
    assert "rlhn-vs-default" in page and "0.427" in page and "0.33" in page
    assert page.count('<svg class="chart"') >= 5  # + one bar chart per table of records
    # more result files by option; a file named like a built-in section gets an anchor of its own
    (tmp_path / "results.json").write_text(json.dumps({"ndcg@10": {"default": 0.41, "rlhn": 0.43}}))
    (tmp_path / "examples.json").write_text(json.dumps([{"name": "x", "value": 1}]))
    more = build_report(run, output=tmp_path / "m.html", extra=[tmp_path / "results.json", tmp_path / "examples.json"])
    assert more.sections[-4:] == ("bench_judges", "results", "x-examples", "examples")
    page = (tmp_path / "m.html").read_text()
    assert page.count('<section id="examples">') == 1 and '<section id="x-examples">' in page
    with pytest.raises(InputError, match="no such result file"):
        build_report(run, output=tmp_path / "m.html", extra=[tmp_path / "missing.json"])
    (run / "bench_judges.json").write_text("{not json")
    with pytest.raises(InputError, match="bench_judges.json"):
        build_report(run, output=tmp_path / "y.html")


def test_a_moved_input_is_named_with_the_option_to_fix_it(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    original = summary["input"]
    summary["input"] = str(tmp_path / "gone.jsonl")
    (run / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(InputError, match="--input"):
        build_report(run, output=tmp_path / "r.html")
    assert build_report(run, output=tmp_path / "r.html", input_path=original).examples == 10
    with pytest.raises(InputError, match="not a finished run folder"):
        build_report(tmp_path, output=tmp_path / "r.html")


def test_cli_report_json(run_dir, tmp_path):
    from typer.testing import CliRunner

    from negclean.cli.main import app

    out = tmp_path / "cli.html"
    res = CliRunner().invoke(app, ["report", str(run_dir), "-o", str(out), "--json", "--examples", "3"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["report"] == str(out) and data["examples"] == 3 and out.is_file()
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nope"), "--json"])
    assert res.exit_code == 3 and "no such run folder" in json.loads(res.stdout)["message"]
    res = CliRunner().invoke(app, ["report", str(run_dir), "--scores", "bogus"])
    assert res.exit_code == 2


# -- pieces --------------------------------------------------------------------------------------------
def test_auto_scores_prefer_the_data_then_cheap_minilm_then_rank(monkeypatch):
    from negclean.cascade.outcome import InstanceOutcome
    from negclean.data.records import Instance, Passage
    from negclean.report import collect

    def outcome(score):
        inst = Instance("q", "query", (Passage("p", "pos", score=score),), (Passage("n", "neg", score=score),))
        return InstanceOutcome(inst, (), (), False)

    monkeypatch.setattr(collect, "_minilm_available", lambda: True)
    assert collect.choose_source("auto", outcome(1.0), passages_estimate=10**9) == "data"
    assert collect.choose_source("auto", outcome(None), passages_estimate=100) == "minilm"
    assert collect.choose_source("auto", outcome(None), passages_estimate=collect.MINILM_AUTO_LIMIT + 1) == "rank"
    assert collect.choose_source("auto", None, passages_estimate=0) == "none"
    monkeypatch.setattr(collect, "_minilm_available", lambda: False)
    assert collect.choose_source("auto", outcome(None), passages_estimate=100) == "rank"
    with pytest.raises(ConfigError, match="negclean\\[embed\\]"):
        collect.choose_source("minilm", outcome(None), passages_estimate=100)


def test_histogram_normalises_each_group_and_survives_empty_ones():
    small = np.array([1.0, 2.0, 2.0, 3.0])
    edges, shares = charts.histogram_shares([np.repeat(small, 25), small, np.zeros(0), np.array([np.nan, 2.0])], bins=4)
    assert edges[0] == 1.0 and edges[-1] == 3.0
    assert np.array_equal(shares[0], shares[1])  # 100 and 4 values, same distribution: same shape
    assert shares[0].sum() == pytest.approx(1.0) and not shares[2].any() and shares[3].sum() == 1.0
    out = charts.histogram({"kept negatives": np.repeat(small, 25), "flagged": small}, title="t")
    assert "kept negatives (n=100)" in out and "flagged (n=4)" in out
    out = charts.histogram({"kept negatives": small, "flagged": np.zeros(0)}, title="t")
    assert "flagged (n=0)" in out
    assert "no data" in charts.histogram({"a": np.zeros(0)})


def test_charts_are_inline_svg_with_labels_and_the_same_bytes_every_time():
    rows = [("all candidates", 250.0, "250"), ("cost <paid>", 3.0, "$0.0012 (estimate $0.0300)")]
    out = charts.hbars(rows, title="Funnel & cost", colors=["#8d99ae", "#457b9d"])
    assert out.startswith('<svg class="chart" role="img" aria-label="Funnel &amp; cost"')
    assert "<title>Funnel &amp; cost</title>" in out and "<?xml" not in out and "<!DOCTYPE" not in out
    assert "<metadata>" not in out and 'width="' not in out.split(">", 1)[0]  # sized by CSS through its viewBox
    # text stays text, escaped, with dollar signs as written (no mathtext)
    assert ">cost &lt;paid&gt;<" in out and ">$0.0012 (estimate $0.0300)<" in out
    assert charts.hbars(rows, title="Funnel & cost", colors=["#8d99ae", "#457b9d"]) == out  # reproducible
    # every id is prefixed per chart, and every reference points at an id of the same chart
    other = charts.grouped_bars(["a", "b"], {"x": [0.1, 0.2]}, title="other")
    for svg in (out, other):
        ids = set(re.findall(r'\bid="([^"]+)"', svg))
        refs = set(re.findall(r'(?:href="#|url\(#)([^")]+)', svg))
        assert ids and refs <= ids
    assert not set(re.findall(r'\bid="([^"]+)"', out)) & set(re.findall(r'\bid="([^"]+)"', other))


def test_generic_tables_read_records_mappings_and_scalars():
    tables = tables_from_json(
        {
            "model": "m",
            "runs": [{"variant": "a", "ndcg": 0.5}, {"variant": "b", "ndcg": 0.6}],
            "by": {"x": {"p": 1}, "y": {"p": 2}},
        },
        "exp",
    )
    titles = [t.title for t in tables]
    assert titles == ["exp", "exp › runs", "exp › by"]
    assert tables[0].rows == (("model", "m"),)
    assert tables[1].rows == (("a", "0.5"), ("b", "0.6")) and "<svg" in tables[1].chart
    assert tables[2].headers == ("name", "p") and tables[2].rows == (("x", "1"), ("y", "2"))


def test_a_paid_stage_with_undecided_verdicts_and_an_audit(tmp_path):
    """A three-stage run whose last stage is a scripted stand-in for a paid LLM: the report shows its tokens and
    cost, its undecided reasons, and the screen's audit estimate."""
    from negclean.cascade.stages import CascadeConfig
    from negclean.judge.base import Grade, JudgeBase, Label, TaskResult, Verdict
    from negclean.pipeline import run_judge
    from negclean.presets import load_cascade_dict

    class ScriptedLLM(JudgeBase):
        judge_id, fingerprint, listwise = "openai:gpt-4o-mini", "scripted-llm-v1", True

        def estimate_tokens(self, task):
            return 100 * len(task.candidates), 20

        def judge(self, tasks):
            out = []
            for t in tasks:
                vs = tuple(
                    Verdict(Label.UNDECIDED, None, self.judge_id, reason="output cut off (max_tokens)")
                    if c % 5 == 0
                    else Verdict(
                        Label.RELEVANT if c % 2 else Label.NOT_RELEVANT,
                        None,
                        self.judge_id,
                        Grade.BETTER if c % 2 else None,
                    )
                    for c in t.candidates
                )
                out.append(
                    TaskResult(vs, raw="{}", tokens_in=100 * len(vs), tokens_out=20, call_id=f"c{t.instance.line}")
                )
            return out

    data = load_cascade_dict("screen")
    data["stages"][1] = {**data["stages"][1], "escalate": "flagged", "audit_rate": 0.3}
    data["stages"].append({"name": "llm", "judge": {"backend": "openai", "model": "gpt-4o-mini"}})
    from browser.runs import EXAMPLE

    run_judge(
        input_path=str(EXAMPLE),
        cascade=CascadeConfig.model_validate(data),
        output_dir=tmp_path / "run",
        judges={"llm": ScriptedLLM()},
    )
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    llm = summary["cascade"]["stages"][2]
    assert llm["cost"] > 0 and llm["undecided"] > 0 and summary["cascade"]["stages"][1]["audited"] > 0
    build_report(tmp_path / "run", output=tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert f"{llm['undecided']}× output cut off (max_tokens)" in page
    assert f"${llm['cost']:.4f}" in page and f"{llm['tokens_in']:,}" in page
    assert "Every stage of this run was free" not in page
    m = summary["cascade"]["stages"][1]["miss_estimate"]
    assert f"~{m['missed']:.0f} ({m['low']:.0f}–{m['high']:.0f})" in page
    assert '<span class="v undecided">undecided</span>' in page
