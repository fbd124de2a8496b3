"""Writers: atomic replacement, cleanup on failure, choice of output format, contract checks."""

from __future__ import annotations

import gc
import json
import os
import stat

import pytest

from negclean.data.io import open_writer, read_instances
from negclean.data.records import Instance, Passage
from negclean.errors import ConfigError

pytest.importorskip("pyarrow")


def inst(i: int, **meta) -> Instance:
    return Instance(
        f"q{i}", f"query {i}", (Passage(f"p{i}", "positive"),), (Passage(f"n{i}", "negative"),), meta=meta, line=i
    )


class Boom(Exception):
    pass


@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.gz", "out.parquet", "st.parquet"])
def test_exception_leaves_nothing_behind(tmp_path, name):
    fmt = "st" if name.startswith("st") else ("parquet" if name.endswith(".parquet") else "tevatron")
    with pytest.raises(Boom):
        with open_writer(tmp_path / name, fmt=fmt, row_group_size=2) as w:
            for i in range(5):  # several row groups / flushes already on disk in the temp file
                w.write(inst(i))
            raise Boom
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file_and_names_the_instance(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("old content\n")
    with pytest.raises(TypeError, match=r"cannot write instance 'q2' \(input line 2\)"):
        with open_writer(out, fmt="tevatron") as w:
            w.write(inst(1))
            w.write(inst(2, bad=object()))  # not JSON-serialisable
    assert out.read_text() == "old content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_output_appears_only_on_close(tmp_path):
    out = tmp_path / "out.jsonl.gz"
    w = open_writer(out, fmt="tevatron")
    w.write(inst(1))
    assert not out.exists()
    (tmp,) = tmp_path.iterdir()
    assert tmp.name.startswith(".out.jsonl.gz.") and tmp.name.endswith(".tmp")
    w.close()
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl.gz"]
    assert w.count == 1 and [i.query_id for i in read_instances(out)] == ["q1"]
    w.close()  # closing twice is harmless
    with pytest.raises(ValueError, match="closed"):
        w.write(inst(2))


def test_output_mode_follows_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with open_writer(tmp_path / "out.jsonl", fmt="tevatron") as w:
            w.write(inst(1))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.jsonl").stat().st_mode) == 0o640


def test_abandoned_writer_removes_its_temp_file(tmp_path):
    w = open_writer(tmp_path / "out.jsonl", fmt="tevatron")
    w.write(inst(1))
    del w
    gc.collect()
    assert list(tmp_path.iterdir()) == []


def test_abort_drops_everything(tmp_path):
    w = open_writer(tmp_path / "out.parquet")
    w.write(inst(1))
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_rewriting_the_input_in_place_is_safe(tmp_path):
    path = tmp_path / "data.jsonl"
    with open_writer(path, fmt="tevatron") as w:
        for i in range(1, 4):
            w.write(inst(i))
    reader = read_instances(path)
    with open_writer(path, like=reader) as w:
        for i in reader:
            w.write(i.replace(query=i.query.upper()))
    assert [i.query for i in read_instances(path)] == ["QUERY 1", "QUERY 2", "QUERY 3"]


def test_parent_directories_are_created(tmp_path):
    with open_writer(tmp_path / "a" / "b" / "out.jsonl", fmt="flagembedding") as w:
        w.write(inst(1))
    assert (tmp_path / "a" / "b" / "out.jsonl").is_file()


@pytest.mark.parametrize(
    "name,fmt",
    [
        ("e.jsonl", "tevatron"),
        ("e.jsonl.gz", "flagembedding"),
        ("e.parquet", "parquet"),
        ("e.parquet", "st"),
        ("e.jsonl", "st"),
    ],
)
def test_empty_output_is_a_valid_empty_file(tmp_path, name, fmt):
    with open_writer(tmp_path / name, fmt=fmt):
        pass
    reader = read_instances(tmp_path / name, fmt=fmt)
    assert list(reader) == [] and reader.stats.read == 0


def test_instance_without_positives_is_refused(tmp_path):
    with pytest.raises(ValueError, match="has no positives"):
        with open_writer(tmp_path / "out.jsonl", fmt="tevatron") as w:
            w.write(inst(1).replace(positives=()))
    assert list(tmp_path.iterdir()) == []


def test_meta_never_shadows_record_fields(tmp_path):
    odd = inst(1).replace(meta={"query": "from meta", "extra": 1})
    odd = odd.replace(positives=(Passage("p1", "real text", meta={"text": "meta text", "k": "v"}),))
    for name in ("o.jsonl", "o.parquet"):
        with open_writer(tmp_path / name, like="tevatron") as w:
            w.write(odd)
        (back,) = read_instances(tmp_path / name)
        assert back.query == "query 1" and back.positives[0].text == "real text"
        assert dict(back.meta) == {"extra": 1} and dict(back.positives[0].meta) == {"k": "v"}


@pytest.mark.parametrize(
    "name,options,expected",
    [
        ("o.jsonl", {"like": "tevatron"}, "tevatron"),
        ("o.parquet", {"like": "tevatron"}, "parquet"),
        ("o.jsonl.gz", {"like": "parquet"}, "tevatron"),
        ("o.parquet", {}, "parquet"),
        ("o.parquet", {"like": "st"}, "st"),
        ("o.jsonl", {"like": "flagembedding"}, "flagembedding"),
        ("o.jsonl", {"fmt": "st", "like": "tevatron"}, "st"),  # fmt wins
    ],
)
def test_output_format_resolution(tmp_path, name, options, expected):
    with open_writer(tmp_path / name, **options) as w:
        w.write(inst(1))
    assert w.format == expected
    assert read_instances(tmp_path / name).format == expected


def test_like_accepts_a_reader_or_its_stats(tmp_path):
    with open_writer(tmp_path / "in.jsonl", fmt="flagembedding") as w:
        w.write(inst(1))
    reader = read_instances(tmp_path / "in.jsonl")
    assert open_writer(tmp_path / "a.jsonl", like=reader).format == "flagembedding"
    assert open_writer(tmp_path / "b.jsonl", like=reader.stats).format == "flagembedding"


@pytest.mark.parametrize(
    "name,options,message",
    [
        ("o.jsonl", {}, "say which format"),
        ("o.jsonl", {"fmt": "parquet"}, "name it \\*.parquet"),
        ("o.parquet", {"fmt": "tevatron"}, "use --to parquet"),
        ("o.parquet", {"fmt": "flagembedding"}, "writes JSON Lines"),
        ("o.jsonl", {"fmt": "csv"}, "unknown format 'csv'"),
        ("o.jsonl", {"like": 42}, "like= must be"),
        ("o.jsonl", {"fmt": "st", "multi_positive": "all"}, "multi_positive"),
        ("o.parquet", {"row_group_size": 0}, "row_group_size"),
        ("o.jsonl.gz", {"fmt": "tevatron", "compresslevel": 11}, "compresslevel"),
    ],
)
def test_bad_writer_options_are_config_errors(tmp_path, name, options, message):
    with pytest.raises(ConfigError, match=message):
        open_writer(tmp_path / name, **options)
    assert list(tmp_path.iterdir()) == []


def test_lines_are_one_json_object_each_and_utf8(tmp_path):
    with open_writer(tmp_path / "o.jsonl", fmt="tevatron") as w:
        w.write(inst(1).replace(query="naïve\nquery\u2028x"))
    raw = (tmp_path / "o.jsonl").read_bytes()
    assert raw.count(b"\n") == 1 and "naïve".encode() in raw
    assert json.loads(raw)["query"] == "naïve\nquery\u2028x"


def test_lone_surrogate_cannot_be_written(tmp_path):
    with pytest.raises(ValueError, match="lone UTF-16 surrogate"):
        with open_writer(tmp_path / "o.jsonl", fmt="tevatron") as w:
            w.write(inst(1).replace(query="bad \ud800"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_unwritable_location_is_a_config_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="cannot create the output"):
            open_writer(locked / "out.jsonl", fmt="tevatron")
    finally:
        locked.chmod(0o700)


def test_output_under_a_file_is_a_config_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot create the output"):
        open_writer(tmp_path / "file" / "out.jsonl", fmt="tevatron")
