"""Format detection from content, the fmt= override, and the reader's options and counts."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from negclean.data.io import FORMATS, ReadStats, detect_format, open_writer, read_instances
from negclean.data.records import Instance, Passage
from negclean.errors import ConfigError, InputError

pytest.importorskip("pyarrow")

ROWS = {
    "tevatron": {
        "query_id": "1",
        "query": "q",
        "positive_passages": [{"docid": "p", "title": "", "text": "p"}],
        "negative_passages": [],
    },
    "flagembedding": {"query": "q", "pos": ["p"], "neg": ["n"]},
    "st": {"anchor": "q", "positive": "p", "negative_1": "n"},
}


def write_jsonl(path, *rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_formats_registry():
    assert list(FORMATS) == ["tevatron", "flagembedding", "st", "parquet"]
    assert FORMATS["st"].containers == ("jsonl", "parquet")


@pytest.mark.parametrize("fmt", sorted(ROWS))
def test_detected_from_content_whatever_the_name(tmp_path, fmt):
    path = write_jsonl(tmp_path / "data.txt", ROWS[fmt])
    assert detect_format(path) == fmt
    reader = read_instances(path)
    assert reader.format == fmt and len(list(reader)) == 1


def test_parquet_layouts_are_detected(tmp_path):
    one = Instance("q", "q", (Passage("p", "p"),), (Passage("n", "n"),))
    with open_writer(tmp_path / "tev.parquet", fmt="parquet") as w:
        w.write(one)
    with open_writer(tmp_path / "st.parquet", fmt="st") as w:
        w.write(one)
    assert detect_format(tmp_path / "tev.parquet") == "parquet"
    assert detect_format(tmp_path / "st.parquet") == "st"
    assert read_instances(tmp_path / "tev.parquet", fmt="tevatron").format == "parquet"  # same columns
    with pytest.raises(InputError, match="flagembedding is read from JSON Lines only"):
        read_instances(tmp_path / "tev.parquet", fmt="flagembedding")


def test_flagembedding_columns_in_parquet_are_refused_clearly(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"query": ["q"], "pos": [["p"]], "neg": [["n"]]}), tmp_path / "fe.parquet")
    with pytest.raises(InputError, match="FlagEmbedding columns"):
        detect_format(tmp_path / "fe.parquet")


def test_override_reads_rows_as_the_given_format(tmp_path):
    path = write_jsonl(tmp_path / "fe.jsonl", ROWS["flagembedding"], ROWS["flagembedding"])
    reader = read_instances(path, fmt="tevatron", on_error="skip")
    assert list(reader) == []
    assert (reader.stats.read, reader.stats.rejected) == (2, 2)
    with pytest.raises(InputError, match="the row is flagembedding .* read as tevatron"):
        list(read_instances(path, fmt="tevatron"))


def test_detection_uses_the_first_record_that_parses(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n\n{broken\n" + json.dumps(ROWS["st"]) + "\n" + json.dumps(ROWS["tevatron"]) + "\n")
    assert detect_format(path) == "st"
    reader = read_instances(path, on_error="skip")
    assert [i.line for i in reader] == [4]
    assert reader.stats.rejected == 2  # the broken line and the Tevatron row in an st file


def test_mixed_row_message_names_the_detection_line(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", ROWS["tevatron"], ROWS["st"])
    with pytest.raises(InputError) as info:
        list(read_instances(path))
    assert str(info.value).startswith(f"{path}:2: the row is st")
    assert "detected from line 1" in str(info.value)


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"fmt": "jsonl"}, ConfigError, "unknown format 'jsonl'"),
        ({"on_error": "ignore"}, ConfigError, "--on-error"),
        ({"fmt": "parquet"}, InputError, "not a Parquet file"),
    ],
)
def test_bad_reader_options(tmp_path, kwargs, error, message):
    path = write_jsonl(tmp_path / "t.jsonl", ROWS["tevatron"])
    with pytest.raises(error, match=message):
        read_instances(path, **kwargs)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_instances(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match="not a file"):
        detect_format(tmp_path)


def test_reject_file_must_not_be_the_input(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", ROWS["tevatron"])
    with pytest.raises(ConfigError, match="reject file"):
        read_instances(path, reject_path=path)


def test_reject_file_is_created_even_when_empty(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", ROWS["tevatron"])
    rejects = tmp_path / "sub" / "rejects.jsonl"
    rejects.parent.mkdir()
    rejects.write_text("stale\n")
    list(read_instances(path, on_error="skip", reject_path=rejects))
    assert rejects.read_text() == ""


def test_each_pass_restarts_the_counts(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", ROWS["tevatron"], {"bad": 1}, ROWS["tevatron"])
    reader = read_instances(path, on_error="skip")
    assert len(list(reader)) == 2
    assert len(list(reader)) == 2
    stats = reader.stats
    assert isinstance(stats, ReadStats)
    assert (stats.read, stats.ok, stats.rejected, stats.format) == (3, 2, 1, "tevatron")
    assert stats.warnings == Counter({"empty_negatives": 2})
    assert "3 read, 2 ok, 1 rejected" in stats.summary()


def test_stats_are_consistent_while_iterating(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", *[ROWS["flagembedding"], {"query": 1}] * 5)
    reader = read_instances(path, on_error="skip")
    for n, inst in enumerate(reader, start=1):
        s = reader.stats
        assert s.ok == n and s.read == s.ok + s.rejected and s.read == inst.line


def test_early_stop_keeps_counts_consistent(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", *[ROWS["tevatron"]] * 10)
    reader = read_instances(path)
    for inst in reader:
        if inst.line == 3:
            break
    assert (reader.stats.read, reader.stats.ok) == (3, 3)
