"""Every fix operation on judged instances, with provenance and reconciled counts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from negclean.cascade.outcome import CandidateVerdict, InstanceOutcome, outcome_from_row, outcome_row
from negclean.data.records import Instance, Passage
from negclean.errors import InputError
from negclean.fix.operations import FixCounts, Operation, fix_instance
from negclean.judge.base import Grade, Label, Verdict


def judged(labels, *, ambiguous=False):
    """An instance with one negative per label: 'fn' (better), 'worse', 'no', 'und'."""
    negs = tuple(Passage(f"d{i}", f"text {i}") for i in range(len(labels)))
    inst = Instance("q", "query", (Passage("p", "positive"),), negs, line=3)
    cands, fns = [], []
    for i, lab in enumerate(labels):
        v = {
            "fn": Verdict(Label.RELEVANT, 0.9, "j", Grade.BETTER),
            "worse": Verdict(Label.RELEVANT, 0.6, "j", Grade.WORSE),
            "no": Verdict(Label.NOT_RELEVANT, 0.1, "j"),
            "und": Verdict(Label.UNDECIDED, None, "j", reason="truncated"),
        }[lab]
        cands.append(
            CandidateVerdict("llm", v, (("screen", Verdict(Label.RELEVANT, 0.8, "s", Grade.BETTER)), ("llm", v)))
        )
        if lab == "fn":
            fns.append(i)
    return InstanceOutcome(inst, tuple(cands), tuple(fns), ambiguous)


def test_none_keeps_everything():
    c = FixCounts()
    o = judged(["fn", "no"])
    assert fix_instance(o, Operation.NONE, counts=c) is o.instance
    assert c.written == 1 and c.reconciles()


def test_remove_drops_instances_with_false_negatives():
    c = FixCounts()
    assert fix_instance(judged(["fn", "no"]), Operation.REMOVE, counts=c) is None
    kept = fix_instance(judged(["no", "worse"]), Operation.REMOVE, counts=c)
    assert kept is not None and len(kept.negatives) == 2
    assert (c.instances_in, c.written, c.dropped_removed) == (2, 1, 1) and c.reconciles()


def test_hn_remove_drops_only_false_negatives():
    c = FixCounts()
    out = fix_instance(judged(["fn", "no", "worse", "fn"]), Operation.HN_REMOVE, counts=c)
    assert [p.docid for p in out.negatives] == ["d1", "d2"]
    assert [p.docid for p in out.positives] == ["p"]
    assert c.negatives_removed == 2 and c.changed == 1


def test_relabel_moves_false_negatives_with_provenance():
    c = FixCounts()
    out = fix_instance(judged(["no", "fn", "und"]), Operation.RELABEL, counts=c)
    assert [p.docid for p in out.positives] == ["p", "d1"]
    assert [p.docid for p in out.negatives] == ["d0", "d2"]
    prov = out.positives[1].meta["negclean"]
    assert prov["stage"] == "llm" and prov["grade"] == "better" and prov["relabeled_from"] == "negative"
    assert prov["trail"] == ["screen:relevant/better", "llm:relevant/better"]
    assert c.relabeled == 1 and c.undecided_kept == 1


def test_drop_undecided_option():
    c = FixCounts()
    out = fix_instance(judged(["no", "und"]), Operation.RELABEL, counts=c, drop_undecided=True)
    assert [p.docid for p in out.negatives] == ["d0"] and c.undecided_dropped == 1


def test_ambiguous_instances_are_dropped_by_every_fixing_operation():
    for op in (Operation.REMOVE, Operation.HN_REMOVE, Operation.RELABEL):
        c = FixCounts()
        assert fix_instance(judged(["fn"] * 3, ambiguous=True), op, counts=c) is None
        assert c.dropped_ambiguous == 1 and c.reconciles()
    c = FixCounts()
    assert fix_instance(judged(["fn"] * 3, ambiguous=True), Operation.NONE, counts=c) is not None


def test_verdict_rows_round_trip_and_mismatch_is_reported():
    o = judged(["fn", "worse", "no", "und"])
    back = outcome_from_row(o.instance, outcome_row(o))
    assert back.false_negatives == o.false_negatives
    assert [c.verdict for c in back.candidates] == [c.verdict for c in o.candidates]
    assert [c.trail for c in back.candidates] == [c.trail for c in o.candidates]
    other = o.instance.replace(query_id="other")
    with pytest.raises(InputError, match="does not match input line 3") as info:
        outcome_from_row(other, outcome_row(o), path="v.jsonl")
    # the input's line is in the text; "v.jsonl:3:" would point at a line of the verdicts file
    assert (info.value.path, info.value.line) == ("v.jsonl", None)
    assert str(info.value).startswith("v.jsonl: ")
    swapped = o.instance.replace(
        negatives=(o.instance.negatives[1], o.instance.negatives[0], *o.instance.negatives[2:])
    )
    with pytest.raises(InputError, match="names docid .* input line 3 has") as info:
        outcome_from_row(swapped, outcome_row(o), path="v.jsonl")
    assert info.value.line is None


@pytest.mark.parametrize("op", [Operation.RELABEL, Operation.HN_REMOVE])
def test_id_lists_kept_beside_the_passages_follow_the_fix(op):
    """RLHN rows list passage ids in their metadata too: a relabeled or removed negative leaves its list."""
    o = judged(["fn", "no", "worse"])
    meta = {"positive_passage_ids": ["p"], "negative_passage_ids": ["d0", "d1", "d2"], "response": "kept as is"}
    o = InstanceOutcome(o.instance.replace(meta=meta), o.candidates, o.false_negatives, o.ambiguous)
    fixed = fix_instance(o, op, counts=FixCounts())
    assert fixed.meta["negative_passage_ids"] == [n.docid for n in fixed.negatives] == ["d1", "d2"]
    assert fixed.meta["positive_passage_ids"] == [p.docid for p in fixed.positives]
    assert fixed.meta["positive_passage_ids"] == (["p", "d0"] if op is Operation.RELABEL else ["p"])
    assert fixed.meta["response"] == "kept as is" and o.instance.meta == meta  # the input is not changed


def test_fix_path_loads_no_numpy(tmp_path):
    """`negclean fix` on JSON Lines needs no numpy: importing numpy starts OpenBLAS threads that spin ~60 ms of CPU
    (benchmarks/RESULTS-io.md), which every fix would pay. Checked in a fresh interpreter after a real fix."""
    src = tmp_path / "in.jsonl"
    row = {"query_id": "q", "query": "a query", "positive_passages": [{"docid": "p", "title": "", "text": "yes"}]}
    row["negative_passages"] = [{"docid": "n", "title": "", "text": "no"}]
    src.write_text(json.dumps(row) + "\n")
    verdicts = tmp_path / "verdicts.jsonl"
    cand = {"docid": "n", "stage": "screen", "label": "relevant", "judge": "similarity", "confidence": 0.9}
    vrow = {"query_id": "q", "false_negative_index": [0], "ambiguous": False, "candidates": [cand | {"trail": []}]}
    verdicts.write_text(json.dumps(vrow) + "\n")
    code = (
        "import sys\n"
        "from negclean.api_files import fix_file\n"
        "from negclean.fix.operations import Operation\n"
        "from negclean.pipeline import run_fix\n"
        f"s = run_fix(input_path={str(src)!r}, verdicts_path={str(verdicts)!r},"
        f" output_path={str(tmp_path / 'out.jsonl')!r}, operation=Operation.RELABEL)\n"
        "assert s['fix']['relabeled'] == 1, s\n"
        "print(sorted(m for m in ('numpy', 'scipy', 'torch', 'pyarrow') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
