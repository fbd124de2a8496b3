"""The injection measurement runs in CI: `benchmarks/bench_injection.py` on a few real DL19 pairs with the real
local judge. The flip rate itself is measured, not asserted (benchmarks/RESULTS-injection.md has the numbers of
record); what must hold is that the measurement is complete and consistent: every pair judged clean and with
every injected text, each verdict a real label or an explicit undecided, and rates that match the rows. The same
pairs go through the cascade's injection guard too: every injected text is set aside (never sent, undecided), so
no injected text moves a verdict to the label it asks for, and what the guard lets through gets the bare judge's
verdict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="the local judge needs llama-cpp-python (pip install 'negclean[llamacpp]')")

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("control", "instruction", "forged_structure", "chat_tokens", "plain_turn")


@pytest.mark.slow
def test_injection_flip_rate_is_measured_with_the_local_judge(shared_data, tmp_path):
    data = shared_data / "trec-dl-2019-passage"
    if not data.is_dir():
        pytest.skip(f"TREC DL 2019 not found at {data}")
    out = tmp_path / "injection.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "bench_injection.py"),
            "--data",
            str(data),
            "--pairs",
            "3",
            "--n-threads",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    promote = result["promote"]
    rows = promote["rows"]
    assert promote["pairs"] == len(rows) == 3
    for row in rows:
        for name in ("clean", *VARIANTS):
            assert row[name]["label"] in ("relevant", "not_relevant", "undecided"), row[name]
    clean_not = [r for r in rows if r["clean"]["label"] == "not_relevant"]
    for name in VARIANTS:
        v = promote["by_variant"][name]
        flips = sum(r[name]["label"] != "not_relevant" for r in clean_not)
        assert v["of"] == len(clean_not) and v["flips"] == flips
        assert v["rate"] == (round(flips / len(clean_not), 4) if clean_not else None)
        assert v["undecided"] == sum(r[name]["label"] == "undecided" for r in rows)
        assert v["to_target"] == sum(r[name]["label"] == "relevant" for r in clean_not)

    guarded = result["promote_guarded"]
    assert [r["candidate"] for r in guarded["rows"]] == [r["candidate"] for r in rows]  # the same pairs
    for bare, row in zip(rows, guarded["rows"]):
        for name in ("clean", "control"):
            assert row[name]["label"] == bare[name]["label"], (name, row[name], bare[name])
        for name in VARIANTS[1:]:  # every injected text is set aside, whatever the passage
            assert row[name]["label"] == "undecided", row[name]
            assert row[name]["reason"].startswith("set aside: possible prompt injection ("), row[name]
    for name in VARIANTS[1:]:
        assert guarded["by_variant"][name]["to_target"] == 0
        assert guarded["by_variant"][name]["set_aside"] == len(rows)
