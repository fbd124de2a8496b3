"""The fast JSON Lines path (msgspec, typed Tevatron rows, unchanged instances written from their parsed row)
gives byte for byte what the old path gives: same outputs, same reject files, same messages, same counts.

"Old" is the same code with ``_fastjson.ENABLED`` off, which is how the code read and wrote before the fast path
(``benchmarks/bench_io.py --compare --baseline`` also checks it against a copy of the earlier commit).
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import msgspec
import pytest

from negclean.cascade.outcome import InstanceOutcome, candidate_from_row, outcome_from_row
from negclean.data.formats import _fastjson, _tevatron_fast, tevatron
from negclean.data.io import InstanceReader, open_writer, read_instances
from negclean.data.records import Instance, Passage
from negclean.errors import InputError
from negclean.fix.operations import (
    FixCounts,
    Operation,
    fix_instance,
    fix_row,
    provenance,
    provenance_from_row,
)
from negclean.pipeline import run_fix


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch):
    """A switch between the old (False) and the fast (True) path."""

    def switch(on: bool) -> None:
        monkeypatch.setattr(_fastjson, "ENABLED", on)

    return switch


def _passage(rng: random.Random, i: int) -> dict:
    words = [
        "alpha",
        "Grüße",
        "naïve café",
        "日本語のテキスト",
        "emoji 😀",
        'quote "x"',
        "back\\slash",
        "tab\there",
        "line\nbreak",
        "ctrl \x01",
        "\u2028sep",
        "a: b, c",
        "e+5 e-7",
        "0.00001",
        "true false null",
    ]
    text = " ".join(rng.choice(words) for _ in range(rng.randint(0, 12)))
    p: dict = {"docid": f"d{i}", "title": rng.choice(["", "Title", "Τίτλος"]), "text": text}
    kind = rng.random()
    if kind < 0.15:
        p["score"] = rng.choice([0.5, 12.25, 1e-05, 3.5e-7, 1e20, -0.0, 7, 0.0001])
    if kind < 0.1:
        p["rank"] = rng.randint(1, 100)
    if 0.15 <= kind < 0.2:
        p["negclean"] = {"stage": "x", "confidence": 0.25}
    if 0.2 <= kind < 0.25:
        p = {"text": p["text"], "docid": p["docid"], "title": p["title"]}  # another key order (as RLHN writes)
    if 0.25 <= kind < 0.28:
        p["title"] = None
    if 0.28 <= kind < 0.3:
        del p["title"]
    if 0.3 <= kind < 0.32:
        p["docid"] = rng.randint(1, 10**6)
    return p


def _tevatron_line(rng: random.Random, q: int) -> str:
    row: dict = {
        "query_id": str(q),
        "query": f"query {q} ünïcode?",
        "positive_passages": [_passage(rng, 100 * q + k) for k in range(rng.randint(1, 2))],
        "negative_passages": [_passage(rng, 100 * q + 10 + k) for k in range(rng.randint(0, 6))],
        "subset": "synthetic",
    }
    kind = rng.random()
    if kind < 0.1:
        del row["subset"]
    elif kind < 0.15:
        row["response"] = {"judge": "gpt", "ids": [1, 2]}
    elif kind < 0.2:
        row["query_id"] = q
    elif kind < 0.25:
        row = {"query": row["query"], **{k: v for k, v in row.items() if k != "query"}}
    elif kind < 0.3:
        del row["query_id"]
    style = rng.random()
    if style < 0.3:
        return json.dumps(row)  # ensure_ascii: \u escapes
    if style < 0.4:
        return json.dumps(row, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(row, ensure_ascii=False)


BAD_LINES = [
    b'{"query_id": "b1", "query": "q", "positive_passages": [{"docid": "1", "title": "", "text": "x", "text": "y"}],'
    b' "negative_passages": [], "subset": ""}',  # repeated key
    b'{"query_id": "b2", "query": "q\x01raw control", "positive_passages": [{"docid": "1", "title": "", "text": "x"}],'
    b' "negative_passages": [], "subset": ""}',  # tolerated raw control character
    b'{"query_id": "b3", "query": "q", "positive_passages": [{"docid": "1", "title": "", "text": "x", "score": NaN}],'
    b' "negative_passages": []}',
    b'{"query_id": "b4", "query": "\xff\xfe", "positive_passages": [], "negative_passages": []}',  # bad UTF-8
    b'{"query_id": "b5", "query": "q", "positive_passages": [], "negative_passages": []}',  # no positives
    b'{"query_id": "", "query": "q", "positive_passages": [{"docid": "1", "title": "", "text": "x"}],'
    b' "negative_passages": []}',  # empty id
    b'{"query_id": "b7", "query": "q", "positive_passages": [{"docid": "", "title": "", "text": "x"}],'
    b' "negative_passages": []}',
    b'{"query_id": "b8", "query": "\\ud800", "positive_passages": [{"docid": "1", "title": "", "text": "x"}],'
    b' "negative_passages": []}',  # lone surrogate
    b'{"query_id": "b9", "query": "q", "positive_passages": [{"docid": "1", "title": "", "text": "x"}],'
    b' "negative_passages": [], "big": 123456789012345678901234567890}',
    b'{"query_id": "b10", "query": "q", "positive_passages": [{"docid": "1", "title": "", "text": "x", "rank": 2.0,'
    b' "score": 1e400}], "negative_passages": null}',
    b'{"query_id": "b11", "query": "q", "positive_passages": [{"docid": "1", "title": "", "text": "x"}],'
    b' "negative_passages": []} trailing',
    b'{"a": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    b'["a", "list"]',
    b'{"query_id": "b14", "query": "q", "positive_passages": [{"docid": "1", "title": "", "text": "x"}],'
    b' "negative_passages": [], "query": "again"}',
    b'{"query_id": "b15", "query": "q", "positive_passages": [{"docid": "1", "title": "", "text": "x", "rank": true}],'
    b' "negative_passages": []}',
    # repeated keys that the plain count of " alone does not show: beside escaped quotes, beside score keys
    b'{"query_id": "b16", "query": "say \\"hi\\"", "positive_passages": [{"docid": "1", "title": "", "text": "x",'
    b' "title": "again"}], "negative_passages": []}',
    b'{"query_id": "b17", "query": "q", "positive_passages": [{"docid": "1", "title": "", "text": "x", "score": 1.5,'
    b' "score": 2.5}], "negative_passages": [{"docid": "2", "title": "", "text": "y", "rank": 1}]}',
]
TOLERATED = {1, 8}  # read, not rejected: a raw control character, an integer beyond 64 bits


def _make_input(path: Path, n: int, *, seed: int = 3, bad: bool = True) -> Path:
    rng = random.Random(seed)
    lines = [_tevatron_line(rng, q).encode() for q in range(n)]
    if bad:
        for i, line in enumerate(BAD_LINES):
            lines.insert(1 + i * 7, line)
    path.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\r\n\n")
    return path


def _convert(src: Path, dst: Path, fmt: str | None, reject: Path) -> tuple[bytes, bytes, tuple]:
    reader = read_instances(src, fmt="tevatron", on_error="skip", reject_path=reject, log_limit=0)
    with open_writer(dst, fmt=fmt, like=reader) as w:
        for inst in reader:
            w.write(inst)
    s = reader.stats
    return dst.read_bytes(), reject.read_bytes(), (s.read, s.ok, s.rejected, dict(s.warnings), w.count)


@pytest.mark.parametrize("out", ["out.jsonl", "out.jsonl.gz", "fe.jsonl", "st.jsonl", "out.parquet"])
def test_convert_is_byte_identical_to_the_old_path(tmp_path: Path, fast, out: str) -> None:
    src = _make_input(tmp_path / "in.jsonl", 300)
    fmt = {"fe.jsonl": "flagembedding", "st.jsonl": "st"}.get(out)
    if out.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    fast(False)  # same file names: gzip keeps the name in its header
    old = _convert(src, tmp_path / "old" / out, fmt, tmp_path / "old" / "rejects.jsonl")
    fast(True)
    new = _convert(src, tmp_path / "new" / out, fmt, tmp_path / "new" / "rejects.jsonl")
    assert old[2] == new[2]
    assert old[2][2] == len(BAD_LINES) - len(TOLERATED)
    assert old[1] == new[1], "reject files differ"
    if fmt is None and not out.endswith(".parquet"):  # Tevatron JSON Lines: unchanged lines keep their bytes
        _assert_same_or_kept(src, old[0], new[0], gz=out.endswith(".gz"))
    else:
        assert old[0] == new[0], "outputs differ"


def _lines(data: bytes, *, gz: bool = False) -> list[bytes]:
    return (gzip.decompress(data) if gz else data).splitlines()


def _records(lines: list[bytes]) -> list[dict]:
    """What each Tevatron line reads as, extra fields included (``Instance ==`` leaves out ``meta``)."""
    return [tevatron.to_rows(tevatron.parse(json.loads(line), line=0))[0] for line in lines]


def _assert_same_or_kept(src: Path, old: bytes, new: bytes, *, gz: bool) -> None:
    """Tevatron JSON Lines out: every line of the new output is the old output's line or, where they differ,
    the input's own line (an unchanged instance keeps the user's bytes), which reads as the same record."""
    old_lines, new_lines = _lines(old, gz=gz), _lines(new, gz=gz)
    assert len(old_lines) == len(new_lines)
    inputs = set(_lines(src.read_bytes().replace(b"\xef\xbb\xbf", b"")))
    kept = [(o, n) for o, n in zip(old_lines, new_lines) if o != n]
    assert all(n in inputs for _, n in kept), "a differing line is not an input line"
    assert _records([o for o, _ in kept]) == _records([n for _, n in kept])
    assert 0 < len(kept) < len(new_lines)  # some lines were not canonical, most were


def _assert_same_records(src: Path, old: bytes, new: bytes) -> None:
    """A fix's Tevatron JSON Lines out, on input that is not as negclean writes it: every line reads as the old
    output's line; where the bytes differ, the new line is the input's own line (an unchanged instance) or a
    changed instance (its record is no input line's) that keeps the bytes of its passages."""
    old_lines, new_lines = _lines(old), _lines(new)
    assert len(old_lines) == len(new_lines)
    input_lines = _lines(src.read_bytes().replace(b"\xef\xbb\xbf", b""))
    inputs = set(input_lines)
    input_records = {json.dumps(r) for r in _records([x for x in input_lines if _reads(x)])}
    kept = [(o, n) for o, n in zip(old_lines, new_lines) if o != n]
    assert _records([o for o, _ in kept]) == _records([n for _, n in kept])
    changed = [n for _, n in kept if n not in inputs]
    assert all(json.dumps(r) not in input_records for r in _records(changed))
    assert 0 < len(kept) < len(new_lines)


def _reads(line: bytes) -> bool:
    try:
        _records([line])
    except Exception:
        return False
    return True


def test_fix_keeps_the_passage_bytes_of_a_changed_line(tmp_path: Path) -> None:
    """Relabel on a line that is not as negclean writes it (compact separators, a \\u escape, fields in another
    order): the kept passages keep their bytes, the relabeled one gets its provenance at its end, and the line
    reads as the record the per-row fix gives."""
    neg = [{"text": f"n\u00e9g {i}", "docid": f"n{i}", "title": ""} for i in range(3)]
    row = {
        "query_id": "q1",
        "query": "caf\u00e9 ?",
        "positive_passages": [{"docid": "p", "title": "", "text": "p"}],
        "negative_passages": neg,
    }
    raw = json.dumps(row, separators=(",", ":"))  # ensure_ascii: \u00e9 escapes
    src = tmp_path / "in.jsonl"
    src.write_text(raw + "\n")
    cands = [
        {
            "docid": n["docid"],
            "stage": "llm",
            "label": "relevant" if i == 1 else "not_relevant",
            "judge": "local",
            "confidence": 0.87654,
            "audited": False,
            "trail": [{"stage": "llm", "label": "relevant", "judge": "local"}],
        }
        for i, n in enumerate(neg)
    ]
    verdicts = tmp_path / "v.jsonl"
    verdicts.write_text(
        json.dumps(
            {
                "line": 1,
                "query_id": "q1",
                "false_negatives": ["n1"],
                "false_negative_index": [1],
                "ambiguous": False,
                "candidates": cands,
            }
        )
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    summary = run_fix(
        input_path=str(src), verdicts_path=str(verdicts), output_path=str(out), operation=Operation.RELABEL, log_limit=0
    )
    assert summary["fix"]["relabeled"] == 1 and summary["reconciled"]
    line = out.read_bytes().rstrip(b"\n")
    for i in (0, 2):  # kept negatives: their input bytes
        assert json.dumps(neg[i], separators=(",", ":")).encode() in line
    moved = json.dumps(neg[1], separators=(",", ":")).encode()[:-1] + b', "negclean": '
    assert moved in line
    got = json.loads(line)
    assert got["positive_passages"][1]["negclean"] == {
        "relabeled_from": "negative",
        "stage": "llm",
        "judge": "local",
        "label": "relevant",
        "trail": ["llm:relevant"],
        "confidence": 0.8765,
    }
    assert [p["docid"] for p in got["negative_passages"]] == ["n0", "n2"]
    assert got["query"] == "caf\u00e9 ?"


@pytest.mark.parametrize("fmt", ["flagembedding", "st"])
def test_other_formats_round_trip_identically(tmp_path: Path, fast, fmt: str) -> None:
    """flagembedding and st JSON Lines in, the same format out (general fast decoder and encoder)."""
    src = _make_input(tmp_path / "in.jsonl", 200, bad=False)
    mid = tmp_path / f"mid.{fmt}.jsonl"
    _convert(src, mid, fmt, tmp_path / "r0.jsonl")
    outs = []
    for on in (False, True):
        fast(on)
        reader = read_instances(mid, on_error="skip", reject_path=tmp_path / f"r{on}.jsonl", log_limit=0)
        with open_writer(tmp_path / f"o{on}.jsonl", like=reader) as w:
            for inst in reader:
                w.write(inst)
        outs.append((w.path.read_bytes(), reader.stats.ok))
    assert outs[0] == outs[1] and outs[1][1] > 0


def test_fast_paths_are_taken(tmp_path: Path, fast, monkeypatch: pytest.MonkeyPatch) -> None:
    """Most lines of a plain file go the typed way and are written from their parsed row (else the identity
    tests above would compare the old path with itself)."""
    src = _make_input(tmp_path / "in.jsonl", 200, bad=False)
    calls = {"typed": 0, "passthrough": 0, "raw": 0}
    decode_plain, passthrough = _tevatron_fast.decode_plain, InstanceReader.passthrough

    def counting_decode(raw: bytes):
        got = decode_plain(raw)
        calls["typed"] += got is not None
        return got

    def counting_passthrough(self: InstanceReader, inst: Instance, fmt: str) -> bytes | None:
        line = passthrough(self, inst, fmt)
        calls["passthrough"] += line is not None
        calls["raw"] += line is not None and line in source_lines
        return line

    source_lines = set(_lines(src.read_bytes()))
    monkeypatch.setattr(_tevatron_fast, "decode_plain", counting_decode)
    monkeypatch.setattr(InstanceReader, "passthrough", counting_passthrough)
    fast(True)
    _convert(src, tmp_path / "o.jsonl", None, tmp_path / "r.jsonl")
    assert calls["typed"] > 80 and calls["passthrough"] > 100 and calls["raw"] >= calls["typed"], calls


@pytest.mark.parametrize("gz", [False, True])
def test_unchanged_lines_are_copied_byte_for_byte(tmp_path: Path, fast, gz: bool) -> None:
    """Tevatron -> Tevatron: a line of plain Tevatron fields keeps its own bytes. On canonical input (as negclean
    writes it) that is exactly what re-encoding gives; on other input (compact separators, \\u escapes, another
    field order) the user's line is kept and reads back as the same record; CRLF endings become LF."""
    ext = ".jsonl.gz" if gz else ".jsonl"
    canonical = tmp_path / f"canonical{ext}"
    fast(False)  # negclean's own encoding of every record: the canonical form
    _convert(_make_input(tmp_path / "in.jsonl", 200, bad=False), canonical, None, tmp_path / "r0.jsonl")
    outs = {}
    for on in (False, True):
        fast(on)
        outs[on] = _convert(canonical, tmp_path / str(on) / f"out{ext}", None, tmp_path / f"r{on}.jsonl")[0]
    assert outs[True] == outs[False] and len(_lines(outs[True], gz=gz)) == 200

    row = {
        "query": "caf\u00e9 ?",
        "query_id": "q1",
        "negative_passages": [{"text": "n\u00e9g", "docid": "n1", "title": ""}],
        "positive_passages": [{"docid": "p1", "title": "T", "text": "pos", "score": 1e-05, "rank": 3}],
    }
    odd = [json.dumps(row).encode(), json.dumps(row, separators=(",", ":")).encode(), b"  " + json.dumps(row).encode()]
    src = tmp_path / f"odd{ext}"
    data = b"\r\n".join(odd) + b"\r\n"
    src.write_bytes(gzip.compress(data) if gz else data)
    new = _convert(src, tmp_path / f"odd_new{ext}", None, tmp_path / "r2.jsonl")[0]
    fast(False)
    old = _convert(src, tmp_path / f"odd_old{ext}", None, tmp_path / "r3.jsonl")[0]
    assert _lines(new, gz=gz) == odd and b"\r" not in (gzip.decompress(new) if gz else new)
    assert _lines(old, gz=gz) != odd  # the old code normalised these lines
    assert _records(_lines(new, gz=gz)) == _records(_lines(old, gz=gz))


def test_failure_messages_are_unchanged(tmp_path: Path, fast) -> None:
    for i, line in enumerate(BAD_LINES):
        if i in TOLERATED:
            continue
        path = tmp_path / f"bad{i}.jsonl"
        good = (
            b'{"query_id": "g", "query": "q", "positive_passages": [{"docid": "1", "title": "", "text": "x"}], '
            b'"negative_passages": []}'
        )
        path.write_bytes(good + b"\n" + line + b"\n")
        messages = []
        for on in (False, True):
            fast(on)
            with pytest.raises(InputError) as err:
                list(read_instances(path, fmt="tevatron"))
            messages.append(str(err.value))
        assert messages[0] == messages[1], line
        assert ":2" in messages[1] or "line 2" in messages[1]


def _verdicts(src: Path, path: Path, rate: float, seed: int = 5) -> None:
    rng = random.Random(seed)
    rows = []
    for inst in read_instances(src, fmt="tevatron", on_error="skip", log_limit=0):
        cands, fns = [], []
        for j, p in enumerate(inst.negatives):
            r = rng.random()
            label = "relevant" if r < rate else ("undecided" if r < rate + 0.1 else "not_relevant")
            if label == "relevant":
                fns.append(j)
            v = {"stage": "s", "label": label, "judge": "j", "confidence": 0.5}
            cands.append({"docid": p.docid, **v, "audited": False, "trail": [v]})
        rows.append(
            {
                "line": inst.line,
                "query_id": inst.query_id,
                "false_negatives": [cands[j]["docid"] for j in fns],
                "false_negative_index": fns,
                "ambiguous": len(fns) > 2,
                "candidates": cands,
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _full_fix_row(
    inst: Instance,
    row: dict,
    operation: Operation,
    *,
    counts: FixCounts,
    drop_undecided: bool = False,
    max_false_negatives: int | None = None,
    path: str = "verdicts",
) -> Instance | None:
    """How run_fix treated every row before ``fix_row``: all verdict objects built by outcome_from_row."""
    outcome = outcome_from_row(inst, row, path=path)
    if max_false_negatives is not None:
        outcome = InstanceOutcome(
            outcome.instance,
            outcome.candidates,
            outcome.false_negatives,
            len(outcome.false_negatives) > max_false_negatives,
        )
    return fix_instance(outcome, operation, counts=counts, drop_undecided=drop_undecided)


@pytest.mark.parametrize("operation", list(Operation))
@pytest.mark.parametrize(("drop_undecided", "max_fns"), [(False, None), (True, None), (False, 1)])
def test_fix_row_equals_the_full_path(operation: Operation, drop_undecided: bool, max_fns: int | None) -> None:
    """fix_row builds verdict objects for the false negatives only; results and counts are fix_instance's, and
    rows that do not match their instance fail with outcome_from_row's message."""
    rng = random.Random(7)
    labels = ["relevant", "not_relevant", "undecided"]
    fast_counts, full_counts = FixCounts(), FixCounts()
    for q in range(400):
        negs = tuple(
            Passage(f"n{q}.{k}", f"text {k}", meta={"x": 1} if k == 0 else {}) for k in range(rng.randint(0, 5))
        )
        inst = Instance(str(q), "query", (Passage(f"p{q}", "pos"),), negs, "", {"negative_passage_ids": []}, q + 1)
        cands = []
        for p in negs:
            v = {"stage": "s", "label": rng.choice(labels), "judge": "j", "confidence": rng.random()}
            cands.append({"docid": p.docid, **v, "audited": False, "trail": [v]})
        fns = [i for i, c in enumerate(cands) if c["label"] == "relevant"]
        row = {
            "query_id": inst.query_id,
            "false_negative_index": fns,
            "ambiguous": rng.random() < 0.2,
            "candidates": cands,
        }
        kind = rng.random()
        if kind < 0.05 and cands:
            cands[0]["docid"] = "other"
        elif kind < 0.1:
            row["query_id"] = "other"
        results = []
        for fn, counts in ((fix_row, fast_counts), (_full_fix_row, full_counts)):
            try:
                results.append(
                    fn(
                        inst,
                        row,
                        operation,
                        counts=counts,
                        drop_undecided=drop_undecided,
                        max_false_negatives=max_fns,
                        path="v.jsonl",
                    )
                )
            except InputError as exc:
                results.append(str(exc))
        assert results[0] == results[1]
        if isinstance(results[0], Instance):
            assert [p.meta for p in results[0].positives] == [p.meta for p in results[1].positives]
            assert results[0].meta == results[1].meta
    assert fast_counts == full_counts
    assert full_counts.written > 100 and (
        full_counts.changed + full_counts.dropped_removed > 0 or operation is Operation.NONE
    )


def test_encode_instance_gives_json_dumps_bytes(tmp_path: Path) -> None:
    """The writer's struct encoder for Tevatron instances (what a fix uses for every changed instance) writes
    what ``json.dumps(to_rows(inst))`` writes, or declines; it covers most instances, with and without
    provenance, scores and ranks."""
    src = _make_input(tmp_path / "in.jsonl", 300)
    covered = 0
    for inst in read_instances(src, on_error="skip", log_limit=0):
        moved = inst.replace(positives=inst.positives + inst.negatives[:1], negatives=inst.negatives[1:])
        for variant in (inst, moved):
            got = _tevatron_fast.encode_instance(variant)
            if got is not None:
                covered += 1
                assert got == json.dumps(tevatron.to_rows(variant)[0], ensure_ascii=False).encode()
    odd = Instance("q", "x", (Passage("d", "t", score=1e-05), Passage("e", "\ud800")), ())
    assert _tevatron_fast.encode_instance(odd) is None
    assert covered > 400


def test_provenance_from_row_equals_building_the_verdicts() -> None:
    """What a relabeled passage carries, read straight from its verdicts row, equals ``provenance`` of the
    verdict objects, and a wrong label, grade or missing field fails alike."""
    rng = random.Random(13)
    seen_grades = set()
    for _ in range(2000):
        trail = []
        for stage in rng.sample(["screen", "llm", "audit"], rng.randint(0, 3)):
            t = {"stage": stage, "label": rng.choice(["relevant", "not_relevant", "undecided"]), "judge": "j"}
            if rng.random() < 0.5:
                t["grade"] = rng.choice(["better", "worse", None, ""])
            if rng.random() < 0.7:
                t["confidence"] = rng.random()
            trail.append(t)
        c = {"docid": "d", "stage": "llm", "label": "relevant", "judge": "local", "audited": rng.random() < 0.5}
        if rng.random() < 0.6:
            c["grade"] = rng.choice(["better", "worse", None])
        if rng.random() < 0.7:
            c["confidence"] = rng.choice([rng.random(), 1, 0.123456789])
        if rng.random() < 0.9:
            c["trail"] = trail
        broken = rng.random()
        if broken < 0.03:
            c["label"] = "maybe"
        elif broken < 0.06 and trail:
            trail[-1]["grade"] = "best"
        elif broken < 0.09 and trail:
            del trail[0]["judge"]
        elif broken < 0.1:
            del c["stage"]
        try:
            expected: object = provenance(candidate_from_row(c))
        except (KeyError, ValueError) as exc:
            expected = type(exc)
        try:
            got: object = provenance_from_row(c)
        except (KeyError, ValueError) as exc:
            got = type(exc)
        assert got == expected, c
        seen_grades.add(expected.get("grade") if isinstance(expected, dict) else expected)
    assert {"better", "worse", None, KeyError, ValueError} <= seen_grades


@pytest.mark.parametrize("canonical", [True, False])
@pytest.mark.parametrize("operation", [Operation.RELABEL, Operation.HN_REMOVE, Operation.REMOVE, Operation.NONE])
def test_fix_is_byte_identical_and_reconciles(
    tmp_path: Path, fast, monkeypatch: pytest.MonkeyPatch, operation: Operation, canonical: bool
) -> None:
    """Same output as the old fix, byte for byte on input as negclean writes it; on other input the unchanged
    lines keep the user's bytes (same records). Same rejects and counts either way."""
    src = _make_input(tmp_path / "in.jsonl", 300)
    rejected = len(BAD_LINES) - len(TOLERATED)
    if canonical:
        fast(False)
        _convert(src, tmp_path / "canonical.jsonl", None, tmp_path / "rej_canonical.jsonl")
        src, rejected = tmp_path / "canonical.jsonl", 0
    verdicts = tmp_path / "verdicts.jsonl"
    _verdicts(src, verdicts, 0.1)
    results = []
    for on in (False, True):
        fast(on)
        with monkeypatch.context() as m:
            if not on:  # the old fix: every instance through outcome_from_row
                m.setattr("negclean.pipeline.fix_row", _full_fix_row)
            out = tmp_path / f"fixed_{on}.jsonl"
            summary = run_fix(
                input_path=str(src),
                verdicts_path=str(verdicts),
                output_path=str(out),
                operation=operation,
                reject_path=str(tmp_path / f"rej_{on}.jsonl"),
                log_limit=0,
            )
        results.append((out.read_bytes(), (tmp_path / f"rej_{on}.jsonl").read_bytes(), summary["fix"], summary["read"]))
        fix, read = summary["fix"], summary["read"]
        written = out.read_bytes().count(b"\n")
        assert summary["reconciled"]
        assert read["read"] == written + fix["dropped_removed"] + fix["dropped_ambiguous"] + read["rejected"]
        assert fix["written"] == written and read["rejected"] == rejected
    old, new = results
    assert old[1:] == new[1:]
    if canonical:
        assert old[0] == new[0]
    else:
        _assert_same_records(src, old[0], new[0])
    if operation is not Operation.NONE:
        assert results[1][2]["changed"] + results[1][2]["dropped_removed"] > 0  # the verdicts did flag some


def test_real_rlhn_file_identical(tmp_path: Path, fast, shared_data: Path) -> None:
    src = shared_data / "rlhn-reference-msmarco" / "stage_1.gpt-4o-mini.jsonl"
    if not src.exists():
        pytest.skip(f"{src} not found")
    outs = []
    for on in (False, True):
        fast(on)
        outs.append(_convert(src, tmp_path / f"o{on}.jsonl", None, tmp_path / f"r{on}.jsonl"))
    assert outs[0] == outs[1] and outs[1][2][1] > 10


def test_strings_escape_like_json_dumps() -> None:
    """msgspec and json.dumps(ensure_ascii=False) write every code point alike (what expand relies on)."""
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    text = "".join(chars)
    assert msgspec.json.encode(text) == json.dumps(text, ensure_ascii=False).encode()
    sample = chars[:300] + ['"', "\\", "\\\\", '\\"', ",", ":", ", ", ": "]
    row = {c: [c, {"k" + c: c * 3}] for c in sample}
    assert _fastjson.encode(row) == json.dumps(row, ensure_ascii=False).encode()


def test_floats_either_match_or_fall_back() -> None:
    rng = random.Random(11)
    fell_back = 0
    for _ in range(20000):
        f = (
            10 ** rng.uniform(-330, 308) * rng.choice([1, -1])
            if rng.random() < 0.5
            else round(rng.uniform(-1e3, 1e3), 6)
        )
        row = {"score": f, "x": [True, False, None, 1]}
        assert _fastjson.encode(row) == json.dumps(row, ensure_ascii=False).encode(), f
        fell_back += not _fastjson.plain_numbers(row)
    assert 0 < fell_back < 20000
    nan = {"score": float("nan")}
    assert _fastjson.encode(nan) == b'{"score": NaN}'
    with pytest.raises(ValueError, match="lone UTF-16 surrogate"):
        _fastjson.encode({"q": "\ud800"})


def test_reader_without_checks_yields_the_same_instances(tmp_path: Path) -> None:
    """check=False (run_fix with log_limit=0) skips only the warnings: same instances, counts, rejects."""
    src = _make_input(tmp_path / "in.jsonl", 200)
    with_checks = read_instances(src, on_error="skip", log_limit=0)
    without = read_instances(src, on_error="skip", log_limit=0, check=False)
    assert list(with_checks) == list(without)
    a, b = with_checks.stats, without.stats
    assert (a.read, a.ok, a.rejected) == (b.read, b.ok, b.rejected)
    assert sum(a.warnings.values()) > 0 and not b.warnings  # the input does draw warnings; skipped, not lost
