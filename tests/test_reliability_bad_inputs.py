"""Bad input through the command line: every file of the bad-input corpus (tests/data/bad_inputs, whose
expected.json this reuses), bad qrels files for the qrels judge, empty and missing files.

`negclean judge ... --on-error fail` must exit 3 with the file and line of the first bad line and no
traceback, and leave no verdicts file; `negclean run` with `on_error: skip` must put every bad line in
rejects.jsonl (file, line, reason) and reconcile: read = written + dropped + rejected. The commands run
in-process (typer's CliRunner) to keep this fast; tests/test_cli.py covers the real subprocess.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from negclean.cli.main import app

BAD = Path(__file__).resolve().parent / "data" / "bad_inputs"
EXPECTED = {k: v for k, v in json.loads((BAD / "expected.json").read_text()).items() if not k.startswith("_")}
WITH_BAD_LINES = sorted(n for n, e in EXPECTED.items() if e.get("rejected"))
UNREADABLE = sorted(n for n, e in EXPECTED.items() if "error" in e)  # the whole file: both modes stop
UNDETECTABLE = sorted(n for n, e in EXPECTED.items() if isinstance(e["detect"], dict) and "error" not in e)
DUPLICATE = {"stages": [{"name": "dup", "judge": {"backend": "duplicate"}}]}


def invoke(*args) -> tuple[int, str, str, BaseException | None]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    exc = result.exception if not isinstance(result.exception, SystemExit) else None
    return result.exit_code, result.stdout, result.stderr, exc


def squeezed(text: str) -> str:
    """Text without white space: rich wraps long terminal lines (and may fold a long path)."""
    return re.sub(r"\s+", "", text)


@pytest.fixture(scope="module")
def cascade_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cascade") / "dup.yaml"
    path.write_text(yaml.safe_dump(DUPLICATE))
    return path


def fmt_args(name: str) -> list[str]:
    fmt = EXPECTED[name]["fmt"]
    return ["--format", fmt] if fmt else []


def test_the_corpus_is_big_enough():
    assert len(WITH_BAD_LINES) + len(UNREADABLE) + len(UNDETECTABLE) >= 20


@pytest.mark.parametrize("name", WITH_BAD_LINES)
def test_fail_mode_exits_3_naming_file_and_line(name, cascade_file, tmp_path):
    exp = EXPECTED[name]
    first = min(int(k) for k in exp["rejected"])
    code, out, err, exc = invoke(
        "judge", BAD / name, "--cascade", cascade_file, "-o", tmp_path / "run", "--on-error", "fail", *fmt_args(name)
    )
    assert exc is None and code == 3, (code, out, err)
    text = squeezed(err)
    assert squeezed(f"{BAD / name}:{first}:") in text and squeezed(exp["rejected"][str(first)]) in text
    assert "Traceback" not in out + err
    assert not (tmp_path / "run" / "verdicts.jsonl").exists()
    # the same error as JSON, for machines
    code, out, _, _ = invoke(
        "judge",
        BAD / name,
        "--cascade",
        cascade_file,
        "-o",
        tmp_path / "run2",
        "--on-error",
        "fail",
        "--json",
        *fmt_args(name),
    )
    error = json.loads(out)
    assert code == 3 and error["exit_code"] == 3 and error["error"] == "InputError"
    assert error["message"].startswith(f"{BAD / name}:{first}: ")


@pytest.mark.parametrize("name", WITH_BAD_LINES)
def test_skip_mode_rejects_and_reconciles(name, cascade_file, tmp_path):
    exp = EXPECTED[name]
    out_dir = tmp_path / "run"
    pipe = tmp_path / "pipe.yaml"
    pipe.write_text(
        yaml.safe_dump(
            {
                "input": str(BAD / name),
                "format": exp["fmt"],
                "on_error": "skip",
                "output_dir": str(out_dir),
                "cascade": DUPLICATE,
                "fix": {"operation": "relabel"},
            }
        )
    )
    code, out, err, exc = invoke("run", pipe, "--json")
    if exp["ok"] == 0:  # every line rejected: nothing was read, which is an error (exit 3), not an empty run
        assert exc is None and code == 3 and "nothing was read" in json.loads(out)["message"], (code, out, err)
        rejects = [json.loads(line) for line in (out_dir / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
        assert {str(r["line"]) for r in rejects} == set(exp["rejected"])
        assert not (out_dir / "verdicts.jsonl").exists()
        return
    assert exc is None and code == 0, (code, out, err)
    summary = json.loads(out)
    read, fix = summary["read"], summary["fix"]
    assert (read["read"], read["ok"], read["rejected"]) == (exp["read"], exp["ok"], len(exp["rejected"]))
    assert read["read"] == fix["written"] + fix["dropped_removed"] + fix["dropped_ambiguous"] + read["rejected"]
    assert summary["reconciled"] is True
    rejects = [json.loads(line) for line in (out_dir / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {str(r["line"]) for r in rejects} == set(exp["rejected"])
    for r in rejects:
        assert r["path"] == str(BAD / name) and exp["rejected"][str(r["line"])] in r["reason"]
    verdict_lines = [json.loads(x)["line"] for x in (out_dir / "verdicts.jsonl").read_text().splitlines()]
    assert len(verdict_lines) == exp["ok"] and not set(verdict_lines) & {int(k) for k in exp["rejected"]}


@pytest.mark.parametrize("name", UNREADABLE)
@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_unreadable_file_exits_3_naming_it(name, on_error, cascade_file, tmp_path):
    code, out, err, exc = invoke(
        "judge",
        BAD / name,
        "--cascade",
        cascade_file,
        "-o",
        tmp_path / "run",
        "--on-error",
        on_error,
        "--json",
        *fmt_args(name),
    )
    error = json.loads(out)
    assert exc is None and code == 3 and error["exit_code"] == 3, (code, out, err)
    assert error["message"].startswith(str(BAD / name)) and EXPECTED[name]["error"] in error["message"]
    assert not (tmp_path / "run" / "verdicts.jsonl").exists()


@pytest.mark.parametrize("name", UNDETECTABLE)
def test_undetectable_format_exits_3_saying_why(name, cascade_file, tmp_path):
    code, out, err, exc = invoke("judge", BAD / name, "--cascade", cascade_file, "-o", tmp_path / "run", "--json")
    error = json.loads(out)
    assert exc is None and code == 3, (code, out, err)
    assert error["message"].startswith(str(BAD / name)) and EXPECTED[name]["detect"]["error"] in error["message"]


def test_empty_file_with_a_format_exits_3_as_nothing_was_read(cascade_file, tmp_path):
    pipe = tmp_path / "pipe.yaml"
    pipe.write_text(
        yaml.safe_dump(
            {
                "input": str(BAD / "empty.jsonl"),
                "format": "tevatron",
                "output_dir": str(tmp_path / "run"),
                "cascade": DUPLICATE,
            }
        )
    )
    code, out, err, exc = invoke("run", pipe, "--json")
    assert exc is None and code == 3, (code, out, err)
    assert "nothing was read" in json.loads(out)["message"]
    assert not (tmp_path / "run" / "verdicts.jsonl").exists()


def test_missing_input_exits_3(cascade_file, tmp_path):
    missing = tmp_path / "nope.jsonl"
    code, out, err, exc = invoke("judge", missing, "--cascade", cascade_file, "-o", tmp_path / "run", "--json")
    assert exc is None and code == 3 and str(missing) in json.loads(out)["message"], (code, out, err)


# -- the qrels judge reads qrels files: bad ones are bad input too -------------------------------------------

INSTANCES = [
    {
        "query_id": "q1",
        "query": "what is a river",
        "positive_passages": [{"docid": "p1", "text": "A river flows."}],
        "negative_passages": [{"docid": "d1", "text": "Rivers are streams."}, {"docid": "d2", "text": "Cats purr."}],
    },
    {
        "query_id": "q2",
        "query": "what is a cat",
        "positive_passages": [{"docid": "p2", "text": "A cat is a pet."}],
        "negative_passages": [{"docid": "d3", "text": "Felines meow."}],
    },
]


def qrels_run(tmp_path: Path, qrels_text: str, *extra: str) -> tuple[int, dict, Path]:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in INSTANCES))
    qrels = tmp_path / "qrels.txt"
    qrels.write_text(qrels_text)
    cascade = tmp_path / "qrels.yaml"
    cascade.write_text(
        yaml.safe_dump(
            {
                "stages": [
                    {
                        "name": "oracle",
                        "judge": {"backend": "qrels", "path": str(qrels), "min_grade": 2, "unjudged": "undecided"},
                    }
                ]
            }
        )
    )
    code, out, err, exc = invoke("judge", data, "--cascade", cascade, "-o", tmp_path / "run", "--json", *extra)
    assert exc is None, err
    return code, json.loads(out), qrels


def test_qrels_naming_unknown_documents_and_queries_are_tolerated(tmp_path):
    # qrels cover a whole corpus: lines about documents (or queries) the training file lacks are normal
    code, summary, _ = qrels_run(tmp_path, "q1 0 d1 2\nq1 0 not-in-the-data 3\nq404 0 d3 3\nq2 0 d3 0\n")
    assert code == 0, summary
    rows = [json.loads(x) for x in (tmp_path / "run" / "verdicts.jsonl").read_text().splitlines()]
    got = {c["docid"]: (c["label"], c.get("reason")) for r in rows for c in r["candidates"]}
    assert got == {
        "d1": ("relevant", "qrels grade 2"),
        "d2": ("undecided", "pair not judged in qrels"),
        "d3": ("not_relevant", "qrels grade 0"),
    }
    assert rows[0]["false_negatives"] == ["d1"]


def test_empty_qrels_leaves_everything_undecided_with_the_reason(tmp_path):
    code, summary, _ = qrels_run(tmp_path, "")
    assert code == 0
    assert summary["cascade"]["stages"][0]["undecided_reasons"] == {"query not in qrels": 3}


@pytest.mark.parametrize(
    "text,line,fragment",
    [
        ("q1 0 d1 2\nq1 d2\n", 2, "expected 3 fields (BEIR) or 4 fields (TREC), found 2"),
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\thigh\n", 3, "relevance grade 'high' is not a number"),
        ("q1 0 d1 2\n\nq1 0 d2 1.5\n", 3, "is not a whole number"),
    ],
)
def test_bad_qrels_line_exits_3_naming_file_and_line(tmp_path, text, line, fragment):
    code, error, qrels = qrels_run(tmp_path, text)
    assert code == 3 and error["message"].startswith(f"{qrels}:{line}: ") and fragment in error["message"]
    assert not (tmp_path / "run" / "verdicts.jsonl").exists()


def test_missing_qrels_file_exits_3(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in INSTANCES))
    cascade = tmp_path / "c.yaml"
    cascade.write_text(
        yaml.safe_dump({"stages": [{"name": "o", "judge": {"backend": "qrels", "path": str(tmp_path / "gone.txt")}}]})
    )
    code, out, err, exc = invoke("judge", data, "--cascade", cascade, "-o", tmp_path / "run", "--json")
    assert exc is None and code == 3 and "gone.txt: qrels file not found" in json.loads(out)["message"]
