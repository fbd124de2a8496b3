"""Whole judge runs against a server that fails in every way it can (seeded), through `run_judge`.

Each request the server saw is mapped back to the judge's call (same messages, same call id), so every
verdict is checked against the faults its call met: a call whose last attempt was answered gives the
same verdict as a fault-free run (or `undecided` when the answer was truncated, malformed or carried a
forged verdict), a call that ran out of attempts is `undecided` with the reason, and nothing a fault
touched is ever silently `not_relevant`. Retries are bounded and reported in the summary; a rerun asks
again only for the calls that failed (their verdicts are not stored), never for a stored one.
"""

from __future__ import annotations

from collections import Counter

import pytest

pytest.importorskip("openai")
pytest.importorskip("aiohttp")

from negclean.cascade.stages import CascadeConfig
from negclean.pipeline import run_judge
from negclean.testing.openai_server import FAULTS, FaultPlan, OpenAITestServer
from reliability.common import (
    cascade_dict,
    faults_by_call,
    make_instances,
    read_rows,
    request_call_ids,
    verdict_map,
    write_jsonl,
)

RETRIED = {"rate_limit", "server_error", "unavailable", "reset", "timeout", "bad_json"}  # transport: retried
ANSWERED = {"ok", "slow"}
MAX_RETRIES = 2
# every fault kind, 47% of requests in all; timeouts hang past the client's 2 s limit
MIXED = FaultPlan(
    seed=11,
    rate_limit=0.08,
    server_error=0.05,
    unavailable=0.04,
    reset=0.04,
    timeout=0.02,
    slow=0.04,
    truncated=0.04,
    malformed=0.06,
    forged=0.04,
    bad_json=0.04,
    bad_request=0.02,
    retry_after=0.01,
    hang_s=2.5,
    slow_s=0.05,
)
# the judge's error kinds (OpenAIStats.errors) for the server's faults
ERROR_KIND = {
    "rate_limit": "rate_limited",
    "server_error": "server_error",
    "unavailable": "server_error",
    "reset": "connection",
    "timeout": "timeout",
    "bad_json": "bad_response",
    "bad_request": "bad_request",
}


def expected_outcome(faults: list[str], mode: str) -> str:
    """What a call whose attempts met ``faults`` must end as: ``failed`` (undecided, not stored, asked again by
    a rerun), ``stored_undecided`` (the model's answer was unusable: kept) or ``answer`` (the reference verdict)."""
    *earlier, last = faults
    assert all(f in RETRIED for f in earlier), f"an attempt after a non-retryable outcome: {faults}"
    if last in RETRIED:
        assert len(faults) == MAX_RETRIES + 1, f"gave up before using every attempt: {faults}"
        return "failed"
    if last == "bad_request":
        return "failed"
    if last in ANSWERED:
        return "answer"
    if mode == "pointwise" and last in ("truncated", "forged"):
        return "answer"  # one-token answers: P(yes) comes from the log-probs, which the fault leaves intact
    return "stored_undecided"  # malformed; listwise truncated or holding two verdict blocks


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    return {
        "pointwise": write_jsonl(root / "point.jsonl", make_instances(8, 20, seed=1)),
        "listwise": write_jsonl(root / "list.jsonl", make_instances(20, 20, seed=2)),
    }


def _cascade(base_url: str, mode: str) -> CascadeConfig:
    extra = {"max_candidates": 5} if mode == "listwise" else {}
    return CascadeConfig.model_validate(
        cascade_dict(base_url, mode=mode, max_retries=MAX_RETRIES, timeout=2.0, **extra)
    )


@pytest.mark.parametrize("mode", ["pointwise", "listwise"])
def test_faulty_run_completes_and_every_verdict_matches_its_faults(data, tmp_path, mode):
    path = data[mode]
    with OpenAITestServer(usage="approx") as clean_srv:  # the reference: same judge, no faults
        run_judge(input_path=str(path), cascade=_cascade(clean_srv.base_url, mode), output_dir=tmp_path / "ref")
    reference = verdict_map(read_rows(tmp_path / "ref" / "verdicts.jsonl"))

    with OpenAITestServer(usage="approx", faults=MIXED) as srv:
        cascade = _cascade(srv.base_url, mode)
        summary = run_judge(input_path=str(path), cascade=cascade, output_dir=tmp_path / "run")
        records = srv.requests.records
    fingerprint = cascade.stages[0].judge.fingerprint()
    by_call = faults_by_call(records, fingerprint)
    outcome = {cid: expected_outcome(faults, mode) for cid, faults in by_call.items()}

    rows = read_rows(tmp_path / "run" / "verdicts.jsonl")
    got = verdict_map(rows)
    assert got.keys() == reference.keys()
    seen: Counter = Counter()
    for key, v in got.items():
        ref = reference[key]
        assert v["call_id"] == ref["call_id"] and v["call_id"] in outcome, key
        kind = outcome[v["call_id"]]
        seen[kind] += 1
        if kind == "answer":
            assert (v["label"], v.get("grade")) == (ref["label"], ref.get("grade")), (key, by_call[v["call_id"]])
        else:
            assert v["label"] == "undecided" and v["reason"], (key, by_call[v["call_id"]], v)
            if kind == "failed":
                assert v["reason"].startswith("call failed after"), v["reason"]
        # the property that matters: a fault never turns into a verdict the fault-free judge did not give
        if v["label"] != "undecided":
            assert (v["label"], v.get("grade")) == (ref["label"], ref.get("grade")), key

    # the run met every kind of fault, and each kind of outcome happened
    faults = Counter(r.fault for r in records)
    assert set(FAULTS) <= set(faults) if mode == "pointwise" else {"truncated", "malformed", "forged"} <= set(faults)
    assert seen["answer"] and seen["failed"] and seen["stored_undecided"], seen
    assert any(len(f) > 1 and outcome[c] == "answer" for c, f in by_call.items())  # recovered by a retry

    # retries are bounded, and the summary reports them exactly
    assert max(len(f) for f in by_call.values()) <= MAX_RETRIES + 1
    stage = summary["cascade"]["stages"][0]
    backend = stage["backend"]
    assert backend["requests"] == len(records) and backend["calls"] == len(by_call)
    assert backend["retries"] == len(records) - len(by_call)
    assert backend["failed"] == sum(o == "failed" for o in outcome.values())
    expected_errors = Counter()
    for f in faults.elements():
        if f in ERROR_KIND:
            expected_errors[ERROR_KIND[f]] += 1
    assert backend["errors"] == dict(expected_errors)
    assert stage["undecided"] == sum(v["label"] == "undecided" for v in got.values())
    assert stage["undecided"] == summary["cascade"]["undecided_final"]
    assert sum(stage["undecided_reasons"].values()) == stage["undecided"]

    print(
        f"{mode}: {len(by_call)} calls, {len(records)} requests ({backend['retries']} retries) meeting "
        f"{sum(f != 'ok' for f in faults.elements())} faults {dict(faults)}; candidates: {dict(seen)}"
    )

    # a rerun (the server has recovered) asks again for exactly the failed calls, and for nothing stored
    failed = {c for c, o in outcome.items() if o == "failed"}
    with OpenAITestServer(usage="approx") as srv2:
        again = run_judge(input_path=str(path), cascade=_cascade(srv2.base_url, mode), output_dir=tmp_path / "run")
        asked = request_call_ids(srv2.requests.records, fingerprint)
    assert sorted(asked) == sorted(failed)
    print(f"{mode} rerun: asked again for {len(asked)} calls (all failed ones), none of the stored")
    after = verdict_map(read_rows(tmp_path / "run" / "verdicts.jsonl"))
    for key, v in after.items():
        kind = outcome[v["call_id"]]
        if kind == "stored_undecided":
            assert v == got[key]  # the stored answer, not asked again
        else:
            assert (v["label"], v.get("grade")) == (reference[key]["label"], reference[key].get("grade")), key
    failed_candidates = sum(outcome[v["call_id"]] == "failed" for v in got.values())
    assert again["cascade"]["stages"][0]["from_store"] == len(got) - failed_candidates
    assert again["cascade"]["stages"][0]["judged"] == failed_candidates
