"""Every file of the bad-input corpus (tests/data/bad_inputs) against its expected outcome, in both modes."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from negclean.data.io import detect_format, read_instances
from negclean.errors import InputError

BAD = Path(__file__).resolve().parent / "data" / "bad_inputs"
EXPECTED = {k: v for k, v in json.loads((BAD / "expected.json").read_text()).items() if not k.startswith("_")}
CASES = sorted(EXPECTED)
READABLE = [name for name in CASES if "error" not in EXPECTED[name]]


def test_corpus_is_complete_and_documented():
    data_files = {p.name for p in BAD.iterdir() if p.suffix not in (".py", ".md") and p.name != "expected.json"}
    assert len(data_files) >= 20
    assert data_files == set(EXPECTED), "every file needs an entry in expected.json, and every entry a file"
    readme = (BAD / "README.md").read_text()
    missing = [name for name in data_files if f"`{name}`" not in readme]
    assert not missing, f"not listed in README.md: {missing}"


@pytest.mark.parametrize("name", CASES)
def test_detection(name):
    expected = EXPECTED[name]["detect"]
    if isinstance(expected, dict):
        with pytest.raises(InputError) as info:
            detect_format(BAD / name)
        assert expected["error"] in str(info.value)
        assert str(BAD / name) in str(info.value)
    else:
        assert detect_format(BAD / name) == expected


@pytest.mark.parametrize("name", [n for n in CASES if "error" in EXPECTED[n]])
@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_unreadable_files_raise_input_error_in_both_modes(name, on_error, tmp_path):
    exp = EXPECTED[name]
    with pytest.raises(InputError) as info:
        reader = read_instances(BAD / name, fmt=exp["fmt"], on_error=on_error, reject_path=tmp_path / "rej.jsonl")
        for _ in reader:
            pass
    assert exp["error"] in str(info.value)
    assert str(info.value).startswith(str(BAD / name))


@pytest.mark.parametrize("name", READABLE)
def test_skip_mode_counts_rejects_and_warnings(name, tmp_path):
    exp = EXPECTED[name]
    rejects = tmp_path / "rejects.jsonl"
    reader = read_instances(BAD / name, fmt=exp["fmt"], on_error="skip", reject_path=rejects)
    instances = list(reader)
    stats = reader.stats
    assert (stats.read, stats.ok, stats.rejected) == (exp["read"], exp["ok"], len(exp["rejected"]))
    assert stats.read == stats.ok + stats.rejected
    assert len(instances) == stats.ok
    assert stats.warnings == Counter(exp["warnings"])
    rows = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert {str(r["line"]): r["reason"] for r in rows}.keys() == exp["rejected"].keys()
    for r in rows:
        assert set(r) == {"path", "line", "reason", "raw"}
        assert r["path"] == str(BAD / name)
        assert exp["rejected"][str(r["line"])] in r["reason"]
    rejected_lines = {int(k) for k in exp["rejected"]}
    assert not rejected_lines & {inst.line for inst in instances}
    if "lines" in exp:
        assert [inst.line for inst in instances] == exp["lines"]


@pytest.mark.parametrize("name", READABLE)
def test_fail_mode_stops_at_first_bad_line(name):
    exp = EXPECTED[name]
    reader = read_instances(BAD / name, fmt=exp["fmt"], on_error="fail")
    got = []
    if not exp["rejected"]:
        got = list(reader)
        assert len(got) == exp["ok"]
        return
    first_bad = min(int(k) for k in exp["rejected"])
    with pytest.raises(InputError) as info:
        for inst in reader:
            got.append(inst)
    message = str(info.value)
    assert message.startswith(f"{BAD / name}:{first_bad}: ")
    assert exp["rejected"][str(first_bad)] in message
    assert "on_error='skip'" in message  # says what to do
    assert info.value.line == first_bad
    assert all(inst.line < first_bad for inst in got)
    assert reader.stats.read == reader.stats.ok + reader.stats.rejected
    assert reader.stats.rejected == 1


def test_invalid_utf8_raw_is_kept_with_escapes(tmp_path):
    rejects = tmp_path / "rejects.jsonl.gz"
    list(read_instances(BAD / "invalid_utf8.jsonl", on_error="skip", reject_path=rejects))
    with gzip.open(rejects, "rt", encoding="utf-8") as f:
        (row,) = [json.loads(line) for line in f]
    assert "th\\xe9ng\\xff" in row["raw"]
    assert row["raw"].startswith('{"query_id": "2"')


def test_tolerated_oddities_give_the_same_instances():
    clean = list(read_instances(BAD / "crlf.jsonl"))
    assert [i.query_id for i in clean] == ["1", "2", "3"]
    assert list(read_instances(BAD / "bom.jsonl")) == clean[:2]
    assert list(read_instances(BAD / "blank_lines.jsonl")) == [i.replace(line=n) for i, n in zip(clean, (2, 6, 8))]
    (tab,) = read_instances(BAD / "control_chars.jsonl")
    assert tab.positives[0].text == "Item 1 is a\tthing."


def test_huge_text_is_read_intact():
    big, small = read_instances(BAD / "huge_text.jsonl.gz")
    text = big.negatives[0].text
    assert len(text) > 4_000_000
    assert text.startswith("lorem ipsum") and text.endswith("sit amet")
    assert small.query_id == "2"


def test_warned_instances_pass_through_unchanged():
    first, _ = read_instances(BAD / "negative_equals_positive.jsonl")
    assert [n.docid for n in first.negatives] == ["d1", "d9", "d8"]
    (fe,) = read_instances(BAD / "negative_equals_positive_flagembedding.jsonl")
    assert fe.negatives[2].docid == fe.positives[0].docid
    dup, _ = read_instances(BAD / "duplicate_docids.jsonl")
    assert [n.text for n in dup.negatives] == ["a", "b"]


def test_tolerated_nulls_and_integer_ids():
    (inst,) = read_instances(BAD / "ids_as_integers.jsonl")
    assert inst.query_id == "1" and inst.positives[0].docid == "101"
    reader = read_instances(BAD / "null_fields.jsonl", on_error="skip")
    (first,) = reader
    assert first.positives[0].title == "" and first.subset == ""


def test_surrogate_pair_escapes_are_fine():
    reader = read_instances(BAD / "lone_surrogate.jsonl", on_error="skip")
    ok = {i.query_id: i for i in reader}
    assert ok["3"].positives[0].text.endswith("\U0001f600.")


def test_truncated_gzip_yields_what_came_before_the_cut():
    got = []
    with pytest.raises(InputError, match=r"truncated after line \d+"):
        for inst in read_instances(BAD / "truncated.jsonl.gz", on_error="skip"):
            got.append(inst)
    assert 0 < len(got) < 199
    assert [i.query_id for i in got] == [str(n) for n in range(1, len(got) + 1)]


def test_warnings_are_logged_with_file_and_line_up_to_the_limit(caplog):
    caplog.set_level("WARNING", logger="negclean.data.io")
    reader = read_instances(BAD / "duplicate_docids.jsonl", log_limit=1)
    list(reader)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith(f"{BAD / 'duplicate_docids.jsonl'}:1: docid 'n1' appears twice among the negatives")
    assert "1 more warnings and rejections not shown" in messages[1]
    assert len(messages) == 2
    assert reader.stats.warnings["duplicate_docid"] == 2  # counted even when not shown
    caplog.clear()
    quiet = read_instances(BAD / "duplicate_docids.jsonl", log_limit=0)  # a second pass over a logged file
    list(quiet)
    assert caplog.records == [] and quiet.stats.warnings["duplicate_docid"] == 2
