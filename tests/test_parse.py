"""Strict parsing: every malformed output is a ParseFailure (-> undecided), never an empty verdict."""

from __future__ import annotations

import json

import pytest

from negclean.judge.parse import ParseFailure, p_yes_from_logprobs, parse_listwise, parse_rlhn, parse_yes_no


def test_listwise_clean_verdict():
    out = '<reasoning>doc 2 answers it</reasoning>\n<verdict>{"better": [2], "worse": [3, 1]}</verdict>'
    v = parse_listwise(out, 3)
    assert v.better == (2,) and v.worse == (3, 1)


def test_listwise_empty_lists_are_a_real_verdict():
    v = parse_listwise('<verdict>{"better": [], "worse": []}</verdict>', 5)
    assert v.better == () and v.worse == ()


@pytest.mark.parametrize(
    "text,n,fragment",
    [
        ("", 3, "empty"),
        ("I think doc 2 is relevant.", 3, "no <verdict>"),
        ('<verdict>{"better": [2], "worse": [', 3, "not closed"),
        ('<verdict>{"better": [4], "worse": []}</verdict>', 3, "outside 1..3"),
        ('<verdict>{"better": [0], "worse": []}</verdict>', 3, "outside 1..3"),
        ('<verdict>{"better": [2, 2], "worse": []}</verdict>', 3, "twice"),
        ('<verdict>{"better": [2], "worse": [2]}</verdict>', 3, "both"),
        ('<verdict>{"better": ["2"], "worse": []}</verdict>', 3, "not a candidate number"),
        ('<verdict>{"better": [true], "worse": []}</verdict>', 3, "not a candidate number"),
        ('<verdict>{"better": [1]}</verdict>', 3, "lacks"),
        ('<verdict>{"better": [1], "worse": [], "maybe": [2]}</verdict>', 3, "unexpected keys"),
        ("<verdict>better: 1</verdict>", 3, "not valid JSON"),
        ("<verdict>[1, 2]</verdict>", 3, "not a JSON object"),
        (
            '<verdict>{"better": [1], "worse": []}</verdict> <verdict>{"better": [], "worse": []}</verdict>',
            3,
            "2 verdict blocks",
        ),
    ],
)
def test_listwise_failures(text, n, fragment):
    with pytest.raises(ParseFailure) as exc:
        parse_listwise(text, n)
    assert fragment in str(exc.value)


def test_truncated_output_is_never_a_verdict():
    complete = '<verdict>{"better": [], "worse": []}</verdict>'
    with pytest.raises(ParseFailure, match="truncated"):
        parse_listwise(complete, 3, finish_reason="length")


def test_yes_no():
    assert parse_yes_no("Yes") is True
    assert parse_yes_no(" no.") is False
    assert parse_yes_no("yes, because it says so") is True
    with pytest.raises(ParseFailure):
        parse_yes_no("maybe")
    with pytest.raises(ParseFailure):
        parse_yes_no("")


def test_p_yes_renormalises_over_yes_and_no_variants():
    import math

    top = [("Yes", math.log(0.5)), (" yes", math.log(0.1)), ("No", math.log(0.2)), ("Maybe", math.log(0.2))]
    assert p_yes_from_logprobs(top) == pytest.approx(0.6 / 0.8)
    with pytest.raises(ParseFailure):
        p_yes_from_logprobs({"Maybe": -0.1})


def test_rlhn_format():
    out = (
        "<verdict> \n<better> Preferred over ground truth: [Doc (21)] </better>, \n"
        "<worse> Relevant but not preferred over ground truth: [Doc (18), Doc (22)] </worse>\n</verdict>"
    )
    v = parse_rlhn(out, 25)
    assert v.better == (21,) and v.worse == (18, 22)
    with pytest.raises(ParseFailure, match="outside"):
        parse_rlhn(out, 20)
    with pytest.raises(ParseFailure):
        parse_rlhn(out.replace("Doc (18)", "the 18th"), 25)
    empty = "<verdict><better> x: [] </better><worse> y: [] </worse></verdict>"
    assert parse_rlhn(empty, 25).better == ()


def _rows(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_golden_rlhn_reference_outputs(shared_data):
    """Parsing the real RLHN outputs reproduces what each stage listed and the 19 flagged query ids."""
    ref = shared_data / "rlhn-reference-msmarco"
    stage1 = _rows(ref / "stage_1.gpt-4o-mini.jsonl")
    stage2 = _rows(ref / "stage_2.gpt-4o.jsonl")
    flagged_expected = [line.strip() for line in open(ref / "stage_1.query_ids_flagged.txt") if line.strip()]
    assert len(stage1) == 25 and len(stage2) == 19 and len(flagged_expected) == 19

    flagged = []
    for row in stage1:
        v = parse_rlhn(row["response"], len(row["negative_passages"]), finish_reason=row["finish_reason"])
        if v.better or v.worse:  # RLHN passes an instance on when stage 1 lists any document
            flagged.append(row["query_id"])
    assert sorted(flagged) == sorted(flagged_expected)

    # stage 2 ran on exactly the flagged instances; every response parses; the lists name real documents
    assert sorted(r["query_id"] for r in stage2) == sorted(flagged_expected)
    for row in stage2:
        v = parse_rlhn(row["response"], len(row["negative_passages"]), finish_reason=row["finish_reason"])
        ids = [row["negative_passages"][i - 1]["docid"] for i in v.better]
        assert all(d in row["negative_passage_ids"] for d in ids)
        # the parsed numbers are the 'Doc (i)' references inside the verdict's <better> block, nothing else
        block = row["response"].rsplit("<verdict>", 1)[1].split("</better>")[0]
        assert [f"Doc ({i})" in block for i in v.better] == [True] * len(v.better)


def test_golden_rlhn_lists_match_fixture(shared_data):
    """Each stage's better/worse lists, as docids, equal the golden fixture (extracted by hand-checked regex)."""
    from pathlib import Path

    golden = json.loads((Path(__file__).parent / "data" / "rlhn_golden.json").read_text())
    ref = shared_data / "rlhn-reference-msmarco"
    for stage, name in (("stage1", "stage_1.gpt-4o-mini.jsonl"), ("stage2", "stage_2.gpt-4o.jsonl")):
        rows = _rows(ref / name)
        assert len(rows) == len(golden[stage])
        for row in rows:
            v = parse_rlhn(row["response"], len(row["negative_passages"]))
            docs = row["negative_passages"]
            want = golden[stage][row["query_id"]]
            assert [docs[i - 1]["docid"] for i in v.better] == want["better"], row["query_id"]
            assert [docs[i - 1]["docid"] for i in v.worse] == want["worse"], row["query_id"]
    assert sum(len(x["better"]) for x in golden["stage2"].values()) == 27


def test_golden_rlhn_known_instance(shared_data):
    """Spot check against the text: the first stage-1 row lists Doc (21) as better, Doc (18) and (22) as worse."""
    row = _rows(shared_data / "rlhn-reference-msmarco" / "stage_1.gpt-4o-mini.jsonl")[0]
    assert row["query_id"] == "e61a5737af172e3cf100e433b3dd3ca2"
    v = parse_rlhn(row["response"], 25)
    assert (v.better, v.worse) == ((21,), (18, 22))
