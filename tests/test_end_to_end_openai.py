"""The RLHN cascade end to end through the `openai` backend, against the loopback OpenAI-compatible server.

The server plays GPT-4o-mini and GPT-4o by answering each prompt with the verdict the real models gave in the
RLHN reference outputs (../shared/data/rlhn-reference-msmarco). The run must reproduce the reference: stage 2
sees exactly the 19 instances stage 1 flagged, the false negatives are GPT-4o's "better" lists, a rerun makes no
request, and --max-cost stops cleanly and resumes without paying twice.
"""

from __future__ import annotations

import json

import pytest

from negclean.cascade.stages import CascadeConfig
from negclean.errors import BudgetExceeded
from negclean.judge.parse import parse_rlhn
from negclean.pipeline import run_judge
from negclean.testing.openai_server import OpenAITestServer
from negclean.testing.responders import Reply, parse_prompt


def _rows(path):
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


class ReferenceResponder:
    """Answers negclean's listwise prompt with the verdict the reference model gave for that question."""

    def __init__(self, ref_dir):
        self.by_model = {}
        for model, name in (("gpt-4o-mini", "stage_1.gpt-4o-mini.jsonl"), ("gpt-4o", "stage_2.gpt-4o.jsonl")):
            table = {}
            for row in _rows(ref_dir / name):
                v = parse_rlhn(row["response"], len(row["negative_passages"]))
                table[row["query"]] = (v, [p["text"] for p in row["negative_passages"]])
            self.by_model[model] = table

    def __call__(self, body):
        from negclean.judge.prompts import neutralize

        view = parse_prompt(body)
        verdict, texts = self.by_model[body["model"]][view.question]
        # map the shown candidates (possibly a subset, in any order) back to the reference numbering
        index = {neutralize(t).strip(): i + 1 for i, t in enumerate(texts)}
        shown = [index[c.strip()] for c in view.candidates]
        better = [k + 1 for k, n in enumerate(shown) if n in verdict.better]
        worse = [k + 1 for k, n in enumerate(shown) if n in verdict.worse]
        return Reply(
            "<reasoning>as the reference model said</reasoning>\n<verdict>"
            + json.dumps({"better": better, "worse": worse})
            + "</verdict>"
        )


@pytest.fixture(scope="module")
def reference(shared_data):
    return shared_data / "rlhn-reference-msmarco"


def rlhn_cascade(base_url, **extra):
    stage = {"backend": "openai", "mode": "listwise", "base_url": base_url, "concurrency": 4, "max_retries": 2}
    return CascadeConfig.model_validate(
        {
            "stages": [
                {
                    "name": "stage1",
                    "judge": {**stage, "model": "gpt-4o-mini"},
                    "escalate": "flagged",
                    "unit": "instance",
                },
                {"name": "stage2", "judge": {**stage, "model": "gpt-4o"}},
            ],
            "false_negative": "better",
            "max_false_negatives": 7,
            **extra,
        }
    )


def test_rlhn_cascade_reproduces_the_reference(reference, tmp_path):
    flagged = {line.strip() for line in open(reference / "stage_1.query_ids_flagged.txt") if line.strip()}
    golden = json.loads((__import__("pathlib").Path(__file__).parent / "data" / "rlhn_golden.json").read_text())
    with OpenAITestServer(responder=ReferenceResponder(reference)) as srv:
        summary = run_judge(
            input_path=str(reference / "stage_1.gpt-4o-mini.jsonl"),
            cascade=rlhn_cascade(srv.base_url),
            output_dir=tmp_path / "run",
            fmt="tevatron",
        )
        models = [r.body["model"] for r in srv.requests.records]
    s1, s2 = summary["cascade"]["stages"]
    assert s1["instances"] == 25 and s1["candidates"] == 625
    assert s2["instances"] == 19 and s2["candidates"] == 19 * 25  # whole lists of the flagged instances
    assert models.count("gpt-4o-mini") == 25 and models.count("gpt-4o") == 19
    rows = _rows(tmp_path / "run" / "verdicts.jsonl")
    for row in rows:
        expected = golden["stage2"][row["query_id"]]["better"] if row["query_id"] in flagged else []
        assert row["false_negatives"] == expected, row["query_id"]
    assert summary["cascade"]["false_negatives"] == 27
    assert all(s["tokens_in"] > 0 and s["tokens_out"] > 0 for s in (s1, s2))


def test_rerun_makes_no_request(reference, tmp_path):
    with OpenAITestServer(responder=ReferenceResponder(reference)) as srv:
        kw = dict(
            input_path=str(reference / "stage_1.gpt-4o-mini.jsonl"),
            cascade=rlhn_cascade(srv.base_url),
            output_dir=tmp_path / "run",
            fmt="tevatron",
        )
        first = run_judge(**kw)
        n = srv.requests.count
        second = run_judge(**kw)
        assert srv.requests.count == n == 44
    assert all(s["judged"] == 0 for s in second["cascade"]["stages"])
    assert (tmp_path / "run" / "verdicts.jsonl").read_text().count("\n") == 25
    assert first["cascade"]["false_negatives"] == second["cascade"]["false_negatives"]


def test_budget_stops_cleanly_and_resumes_without_paying_twice(reference, tmp_path):
    # priced as the real models; about $0.0015 per stage-1 instance: a budget of $0.01 stops early
    with OpenAITestServer(responder=ReferenceResponder(reference)) as srv:
        prices = {"gpt-4o-mini": {"input": 0.15, "output": 0.6}, "gpt-4o": {"input": 2.5, "output": 10.0}}
        kw = dict(input_path=str(reference / "stage_1.gpt-4o-mini.jsonl"), output_dir=tmp_path / "run", fmt="tevatron")
        with pytest.raises(BudgetExceeded, match="--max-cost"):
            run_judge(cascade=rlhn_cascade(srv.base_url, max_cost=0.01, prices=prices, chunk_size=5), **kw)
        spent_requests = srv.requests.count
        assert 0 < spent_requests < 44
        assert not (tmp_path / "run" / "verdicts.jsonl").exists()  # nothing half-written under the final name
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        assert summary["cascade"]["stopped_by_budget"] and summary["cascade"]["cost"] <= 0.01
        final = run_judge(cascade=rlhn_cascade(srv.base_url, prices=prices, chunk_size=5), **kw)
        assert srv.requests.count == 44  # the resumed run paid only for what the stopped one had not judged
    assert final["cascade"]["false_negatives"] == 27
    assert sum(s["from_store"] for s in final["cascade"]["stages"]) > 0


def test_dry_run_estimates_without_requests(reference, tmp_path):
    with OpenAITestServer(responder=ReferenceResponder(reference)) as srv:
        summary = run_judge(
            input_path=str(reference / "stage_1.gpt-4o-mini.jsonl"),
            cascade=rlhn_cascade(
                srv.base_url,
                prices={"gpt-4o-mini": {"input": 0.15, "output": 0.6}, "gpt-4o": {"input": 2.5, "output": 10.0}},
            ),
            output_dir=tmp_path / "run",
            fmt="tevatron",
            dry_run=True,
        )
        assert srv.requests.count == 0
    s1, s2 = summary["cascade"]["stages"]
    assert s1["est_tokens_in"] > 25 * 1000 and s1["est_cost"] > 0
    assert s2["est_cost"] > s1["est_cost"]  # upper bound: every instance re-judged by the dearer model
