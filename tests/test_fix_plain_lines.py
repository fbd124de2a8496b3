"""The record-free paths for Tevatron JSON Lines: ``convert`` and ``fix`` on plain lines (``InstanceReader.plain``,
``negclean.fix.plain_lines``) give what the record path gives: bytes, counts, warnings, rejects and errors."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from negclean.data.formats import _fastjson
from negclean.data.io import convert, open_writer, read_instances
from negclean.errors import ConfigError
from negclean.fix import plain_lines
from negclean.fix.operations import Operation
from negclean.pipeline import run_fix

LABELS = ["relevant", "not_relevant", "undecided"]


def _passage(rng: random.Random, docid: str) -> dict:
    words = ["alpha", "beta", 'quote " and \\ back', "x", "Grüße" if rng.random() < 0.05 else "gamma"]
    text = " ".join(rng.choices(words, k=rng.randint(1, 6))) if rng.random() > 0.03 else ""  # "": a warning
    p: dict = {"docid": docid, "title": rng.choice(["", "T"]), "text": text}
    r = rng.random()
    if r < 0.15:
        p["score"] = rng.choice([0.5, 12.25, 1e-05, 1e20, -0.0, 7.0])
    if r < 0.1:
        p["rank"] = rng.randint(1, 50)
    return p


def _input(path: Path, n: int, *, seed: int = 1) -> list[dict]:
    """n plain Tevatron lines as negclean writes them (some with warnings: empty texts, a repeated docid)."""
    rng = random.Random(seed)
    rows = []
    for q in range(n):
        negs = [_passage(rng, f"n{q}.{k}") for k in range(rng.randint(0, 6))]
        if negs and rng.random() < 0.05:
            negs[-1]["docid"] = negs[0]["docid"]
        row = {
            "query_id": f"q{q}",
            "query": f"query {q}?",
            "positive_passages": [_passage(rng, f"p{q}.{k}") for k in range(rng.randint(1, 2))],
            "negative_passages": negs,
            "subset": "s",
        }
        rows.append(row)
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    lines.insert(3, '{"query_id": "bad", "query": "q", "positive_passages": [], "negative_passages": []}')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return rows


def _verdicts(rows: list[dict], path: Path, *, seed: int, odd: float) -> None:
    """One verdicts row per readable input row; with probability ``odd`` a row is perturbed in a way the typed
    decoding or the plain checks refuse (then the per-row code decides, errors included)."""
    rng = random.Random(seed)
    out = []
    for row in rows:
        cands = []
        for p in row["negative_passages"]:
            label = rng.choices(LABELS, weights=[2, 6, 1])[0]
            v: dict = {"stage": rng.choice(["screen", "llm"]), "label": label, "judge": "j"}
            if rng.random() < 0.7:
                v["confidence"] = rng.choice([0.5, 0.123456, 1e-05, 1, None])
            if rng.random() < 0.3:
                v["grade"] = rng.choice(["better", "worse", "", None])
            trail = [dict(v), {"stage": "audit", "label": rng.choice(LABELS), "judge": "k"}]
            cands.append({"docid": p["docid"], **v, "audited": False, "trail": trail})
        fns = [i for i, c in enumerate(cands) if c["label"] == "relevant"]
        vrow = {
            "line": 0,
            "query_id": row["query_id"],
            "false_negatives": [cands[i]["docid"] for i in fns],
            "false_negative_index": fns,
            "ambiguous": len(fns) > 3,
            "candidates": cands,
        }
        if rng.random() < odd and cands:
            kind = rng.randrange(6)
            c = rng.choice(cands)
            if kind == 0:
                c["stage"] = 3  # not a string: the typed decoding refuses, the per-row code copies it
            elif kind == 1:
                c["grade"] = "nonsense"  # not a Grade: the per-row code raises for a relabeled one
            elif kind == 2:
                c["trail"][0]["label"] = "maybe"
            elif kind == 3:
                c["confidence"] = rng.choice([3.5e-7, 1e20])  # tiny (rounds to 0.0); one msgspec writes otherwise
            elif kind == 4:
                c["label"] = "relevant"
                vrow["false_negative_index"] = sorted({*fns, cands.index(c)})
            else:
                c["judge"] = 1.5
        out.append(vrow)
    path.write_text("".join(json.dumps(r) + "\n" for r in out))


def _fix(tmp: Path, src: Path, verdicts: Path, op: Operation, **kw) -> tuple:
    out = tmp / f"out_{_fastjson.ENABLED}_{op.value}.jsonl"
    try:
        summary = run_fix(input_path=str(src), verdicts_path=str(verdicts), output_path=str(out), operation=op, **kw)
    except Exception as exc:  # the same error either way, whatever it is
        return ("error", type(exc).__name__, str(exc))
    return (out.read_bytes(), summary["fix"], summary["read"], summary["reconciled"])


@pytest.mark.parametrize("operation", list(Operation))
@pytest.mark.parametrize(("drop_undecided", "max_fns", "odd"), [(False, None, 0.0), (True, None, 0.0), (False, 2, 0.0)])
def test_fix_on_plain_lines_equals_the_record_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operation: Operation, drop_undecided: bool, max_fns, odd: float
) -> None:
    rows = _input(tmp_path / "in.jsonl", 300)
    _verdicts(rows, tmp_path / "v.jsonl", seed=2, odd=odd)
    taken = []
    line_fixer = plain_lines._line_fixer

    def counting_fixer(*args):
        fix_line = line_fixer(*args)

        def counting(line, verdicts):
            got = fix_line(line, verdicts)
            taken.append(got)
            return got

        return counting

    monkeypatch.setattr(plain_lines, "_line_fixer", counting_fixer)
    kw = {"drop_undecided": drop_undecided, "max_false_negatives": max_fns, "on_error": "skip", "log_limit": 0}
    monkeypatch.setattr(_fastjson, "ENABLED", False)  # the record path
    old = _fix(tmp_path, tmp_path / "in.jsonl", tmp_path / "v.jsonl", operation, **kw)
    assert not taken
    monkeypatch.setattr(_fastjson, "ENABLED", True)
    new = _fix(tmp_path, tmp_path / "in.jsonl", tmp_path / "v.jsonl", operation, **kw)
    assert new == old
    assert new[0] != "error" and new[2]["rejected"] == 1
    assert sum(taken) > 200, "the plain path was not taken"


@pytest.mark.parametrize("seed", range(6))
def test_verdict_rows_the_plain_path_refuses_go_the_record_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Odd verdict rows (types msgspec refuses, labels and grades that are not negclean's, floats written
    differently): the same output, counts or error as the record path."""
    rows = _input(tmp_path / "in.jsonl", 120, seed=seed)
    _verdicts(rows, tmp_path / "v.jsonl", seed=seed, odd=0.1)
    results = []
    for on in (False, True):
        monkeypatch.setattr(_fastjson, "ENABLED", on)
        results.append(_fix(tmp_path, tmp_path / "in.jsonl", tmp_path / "v.jsonl", Operation.RELABEL, on_error="skip"))
    assert results[0] == results[1]
    if results[1][0] == "error":  # a label or grade negclean does not know: a message naming file and instance
        assert results[1][1] == "InputError" and "is malformed" in results[1][2] and "v.jsonl" in results[1][2]


def test_fix_errors_name_the_same_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A verdicts row for another instance, a corrupt verdicts line, a verdicts file that ends early."""
    rows = _input(tmp_path / "in.jsonl", 40)
    _verdicts(rows, tmp_path / "v.jsonl", seed=3, odd=0.0)
    good = (tmp_path / "v.jsonl").read_text().splitlines()
    cases = {
        "other": good[:10] + [good[11]] + good[11:],
        "corrupt": good[:10] + ['{"query_id": "q'] + good[11:],
        "short": good[:20],
        "long": good + [good[0]],
    }
    for name, lines in cases.items():
        path = tmp_path / f"v_{name}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        results = []
        for on in (False, True):
            monkeypatch.setattr(_fastjson, "ENABLED", on)
            results.append(_fix(tmp_path, tmp_path / "in.jsonl", path, Operation.RELABEL, on_error="skip"))
        assert results[0] == results[1], name
        assert results[1][0] == "error", name


def _record_loop(src: Path, dst: Path, to: str | None, *, log_limit: int, reject: Path) -> tuple:
    reader = read_instances(src, on_error="skip", reject_path=reject, log_limit=log_limit, check=log_limit > 0)
    with open_writer(dst, fmt=to, like=reader) as w:
        for inst in reader:
            w.write(inst)
    return reader.stats, w.count


@pytest.mark.parametrize("out", ["o.jsonl", "o.jsonl.gz", "fe.jsonl", "st.jsonl", "o.parquet"])
@pytest.mark.parametrize("log_limit", [20, 0])
def test_convert_equals_the_record_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str, log_limit: int):
    if out.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    _input(tmp_path / "in.jsonl", 200)
    to = {"fe.jsonl": "flagembedding", "st.jsonl": "st"}.get(out)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    old = _record_loop(
        tmp_path / "in.jsonl", tmp_path / "a" / out, to, log_limit=log_limit, reject=tmp_path / "a" / "r"
    )
    copied = []
    write_plain = type(open_writer(tmp_path / "x.jsonl", fmt="tevatron")).write_plain
    monkeypatch.setattr(
        "negclean.data.formats._writer.InstanceWriter.write_plain",
        lambda self, line: (copied.append(line), write_plain(self, line))[1],
    )
    new = convert(
        tmp_path / "in.jsonl",
        tmp_path / "b" / out,
        to=to,
        on_error="skip",
        reject_path=tmp_path / "b" / "r",
        log_limit=log_limit,
    )
    assert (new[0].read, new[0].ok, new[0].rejected, new[0].warnings, new[1]) == (
        old[0].read,
        old[0].ok,
        old[0].rejected,
        old[0].warnings,
        old[1],
    )
    assert old[0].rejected == 1 and (log_limit == 0 or sum(old[0].warnings.values()) > 10)
    assert (tmp_path / "a" / out).read_bytes() == (tmp_path / "b" / out).read_bytes()
    assert (tmp_path / "a" / "r").read_bytes() == (tmp_path / "b" / "r").read_bytes()
    if not out.endswith(".parquet"):
        assert len(copied) > 100, "the plain path was not taken"
    if out.endswith(".gz"):
        assert gzip.decompress((tmp_path / "b" / out).read_bytes()).count(b"\n") == new[1]


def test_convert_refuses_to_write_its_input(tmp_path: Path) -> None:
    _input(tmp_path / "in.jsonl", 5)
    with pytest.raises(ConfigError, match="is the input file"):
        convert(tmp_path / "in.jsonl", tmp_path / "in.jsonl")


def test_convert_command(tmp_path: Path) -> None:
    """`negclean convert`: counts that reconcile (read = written + rejected), the reject file beside the output,
    JSON Lines to Parquet and back to the same bytes, and a refusal (exit 2) to overwrite the input."""
    pytest.importorskip("pyarrow")
    from typer.testing import CliRunner

    from negclean.cli.main import app

    _input(tmp_path / "in.jsonl", 50)
    runner = CliRunner()
    res = runner.invoke(app, ["convert", str(tmp_path / "in.jsonl"), str(tmp_path / "o.parquet"), "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert (got["read"], got["written"], got["rejected"]) == (51, 50, 1)
    assert (tmp_path / "o.parquet.rejects.jsonl").read_text().count("\n") == 1
    res = runner.invoke(app, ["convert", str(tmp_path / "o.parquet"), str(tmp_path / "back.jsonl"), "--to", "tevatron"])
    assert res.exit_code == 0 and "50 read, 50 written" in res.stdout, res.output
    lines = (tmp_path / "in.jsonl").read_bytes().splitlines()
    assert (tmp_path / "back.jsonl").read_bytes().splitlines() == lines[:3] + lines[4:]
    res = runner.invoke(app, ["convert", str(tmp_path / "in.jsonl"), str(tmp_path / "in.jsonl")])
    assert res.exit_code == 2 and "is the input file" in res.output


def test_convert_file_from_python(tmp_path: Path) -> None:
    """``negclean.convert_file``: a frozen report that reconciles, the format written, rejects beside the output
    with on_error="skip", and an InputError naming the line with on_error="fail"."""
    import dataclasses

    import negclean
    from negclean.errors import InputError

    _input(tmp_path / "in.jsonl", 30)
    report = negclean.convert_file(tmp_path / "in.jsonl", tmp_path / "fe.jsonl.gz", to="flagembedding", on_error="skip")
    assert report.reconciled and (report.records_read, report.written, report.rejected) == (31, 30, 1)
    assert (report.format, report.to) == ("tevatron", "flagembedding")
    assert report.rejects == str(tmp_path / "fe.jsonl.gz") + ".rejects.jsonl"
    assert report.as_dict()["read"] == 31
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.written = 0  # type: ignore[misc]
    with pytest.raises(InputError, match=r"in\.jsonl:4"):
        negclean.convert_file(tmp_path / "in.jsonl", tmp_path / "o.jsonl")
    assert not (tmp_path / "o.jsonl").exists()  # nothing half-written


@pytest.mark.parametrize("confidence", [0.87654, 1, None, 3.5e-7, 1e20, -2.5e17])
@pytest.mark.parametrize("grade", [None, "", "better"])
def test_provenance_json_is_what_the_record_path_writes(confidence, grade) -> None:
    """The provenance member the plain path writes is ``json.dumps`` of what ``provenance_from_row`` gives,
    including the confidences that msgspec would write otherwise (from 1e16 on)."""
    import msgspec

    from negclean.fix.operations import provenance_from_row

    row = {"docid": "d", "stage": "llm", "label": "relevant", "judge": "j", "grade": grade, "confidence": confidence}
    row["trail"] = [
        {"stage": "s", "label": "undecided", "judge": "k"},
        {k: row[k] for k in ("stage", "label", "judge")},
    ]
    candidate = msgspec.json.decode(json.dumps(row), type=plain_lines._Candidate)
    want = json.dumps({"relabeled_from": "negative", **provenance_from_row(row)}, ensure_ascii=False).encode()
    assert plain_lines._provenance(candidate) == want
