"""Gzip through ISA-L (negclean.data.gz): standard files at every level, errors that name the file."""

from __future__ import annotations

import gzip
import io
import random
import struct

import pytest

from negclean.data import gz
from negclean.data.io import open_writer, read_instances
from negclean.data.records import Instance, Passage
from negclean.errors import ConfigError, InputError
from negclean.progress import count_lines


def _instances(n: int) -> list[Instance]:
    return [
        Instance(
            f"q{i}",
            f"query {i} about café «{i % 7}»",
            (Passage(f"p{i}", f"the answer to {i} " * (1 + i % 5), title="t"),),
            tuple(Passage(f"n{i}-{k}", f"unrelated words {i} {k} " * 3) for k in range(4)),
        )
        for i in range(n)
    ]


def _write(path, instances, **options):
    with open_writer(path, fmt="tevatron", **options) as w:
        for inst in instances:
            w.write(inst)


@pytest.mark.parametrize("level", range(10))
def test_every_level_writes_standard_gzip_of_the_plain_lines(tmp_path, level):
    insts = _instances(300)
    _write(tmp_path / "plain.jsonl", insts)
    out = tmp_path / "out.jsonl.gz"
    _write(out, insts, compresslevel=level)
    data = out.read_bytes()
    assert gzip.decompress(data) == (tmp_path / "plain.jsonl").read_bytes()  # the standard library reads it
    # deterministic header: no timestamp, the file name without .gz
    assert data[:3] == b"\x1f\x8b\x08" and struct.unpack("<I", data[4:8])[0] == 0
    assert data[10:].startswith(b"out.jsonl\x00")
    assert [(i.query_id, i.query, i.positives, i.negatives) for i in read_instances(out)] == [
        (i.query_id, i.query, i.positives, i.negatives) for i in insts
    ]
    again = tmp_path / "again.jsonl.gz"
    _write(again, insts, compresslevel=level)
    assert again.read_bytes()[10:].replace(b"again", b"out") == data[10:].replace(b"again", b"out")


@pytest.mark.parametrize("level", [-1, 10])
def test_a_level_out_of_range_is_refused(tmp_path, level):
    with pytest.raises(ValueError, match="choose 0"):
        gz.writer(io.BytesIO(), level=level, name="x.jsonl")
    with pytest.raises(ConfigError, match=r"0\.\.9"):
        _write(tmp_path / "out.jsonl.gz", _instances(2), compresslevel=level)
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_corrupt_gzip_is_an_input_error_naming_the_file(tmp_path):
    """Corrupt deflate data fails as a CRC mismatch (OSError) or as ISA-L's own error (IsalError, not an OSError):
    both must become the reader's InputError, never a traceback. 60 seeded corruptions of 8 random bytes."""
    out = tmp_path / "data.jsonl.gz"
    _write(out, _instances(2000), compresslevel=1)
    good = out.read_bytes()
    rng = random.Random(0)
    messages = set()
    for _ in range(60):
        data = bytearray(good)
        at = rng.randrange(10, len(data) - 8)
        data[at : at + 8] = bytes(rng.randrange(256) for _ in range(8))
        out.write_bytes(bytes(data))
        with pytest.raises(InputError) as info:  # "corrupt or truncated", or a garbled line before the CRC check
            list(read_instances(out))
        assert info.value.path == str(out)
        messages.add(info.value.reason.split(" (")[0].split(" at ")[0])
        assert count_lines(str(out)) is None  # the progress bar's count gives up; the reader reports it
    assert any(m.startswith("the file is corrupt or truncated") for m in messages), messages


def test_concatenated_gzip_members_are_read_whole(tmp_path):
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    _write(a, _instances(3))
    _write(b, _instances(5)[3:])
    both = tmp_path / "both.jsonl.gz"
    both.write_bytes(a.read_bytes() + b.read_bytes())  # what `cat a.gz b.gz` gives
    assert [i.query_id for i in read_instances(both)] == [f"q{i}" for i in range(5)]
    assert count_lines(str(both)) == 5
