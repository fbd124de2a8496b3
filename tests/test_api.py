"""The Python API on every kind of data (Dataset, DataFrame, row dicts, Instance lists, files): what comes back has
the input's kind and columns, and the counts reconcile. The judge is the real duplicate stage (free, no model):
a negative that repeats its row's positive is a false negative."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import negclean
from negclean.data.records import Instance, Passage
from negclean.errors import ConfigError, InputError

DUPLICATE = {"stages": [{"name": "duplicate", "judge": {"backend": "duplicate"}}], "max_false_negatives": 7}
REPO = Path(__file__).resolve().parents[1]


def ntuple_rows():
    """sentence-transformers n-tuple rows with the dataset's own column names (first two columns) and an extra."""
    return [
        {
            "question": "what is a cat",
            "answer": "a cat is a small feline",
            "negative_1": "dogs bark",
            "negative_2": "A cat is a small feline",
            "negative_3": "fish swim",
            "source": "a",
        },
        {
            "question": "what is rain",
            "answer": "water falling from clouds",
            "negative_1": "sunshine",
            "negative_2": "snow",
            "negative_3": "wind",
            "source": "b",
        },
    ]


def test_rows_relabel_keeps_columns_and_repeats_short_rows():
    rows = ntuple_rows()
    verdicts = negclean.judge(rows, DUPLICATE, progress=False)
    assert verdicts.false_negatives == 1 and verdicts.source == "rows"
    assert verdicts.layout.shape == "n-tuple" and verdicts.layout.anchor == "question"
    out = negclean.fix(rows, verdicts, op="relabel", report=True)
    assert [list(r) for r in out.data] == [list(rows[0])] * 3
    first, second = out.data[0], out.data[1]
    # the relabeled negative is now a positive: one row per positive, each with the two true negatives
    assert first["answer"] == "a cat is a small feline" and second["answer"] == "A cat is a small feline"
    assert first["negative_1"] == "dogs bark" and first["negative_2"] == "fish swim"
    assert first["negative_3"] == "dogs bark"  # repeated from the row's own negatives, not invented
    assert out.data[2] == rows[1]
    r = out.report
    assert (r.records_in, r.instances_in, r.instances_out, r.records_out, r.relabeled) == (2, 2, 2, 3, 1)
    assert r.negatives_repeated == 1 and r.reconciled


def test_ragged_truncate_and_drop_and_hn_remove():
    rows = ntuple_rows()
    verdicts = negclean.judge(rows, DUPLICATE, progress=False)
    cut = negclean.fix(rows, verdicts, op="hn_remove", ragged="truncate", report=True)
    assert [sorted(k for k in r if k.startswith("negative")) for r in cut.data] == [["negative_1", "negative_2"]] * 2
    assert cut.report.negatives_cut == 1 and cut.report.reconciled
    dropped = negclean.fix(rows, verdicts, op="hn_remove", ragged="drop", report=True)
    assert dropped.data == [rows[1]] and dropped.report.dropped_short == 1 and dropped.report.reconciled


def test_dataframe_in_dataframe_out():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(ntuple_rows())
    verdicts = negclean.judge(df, DUPLICATE, progress=False)
    fixed = negclean.fix(df, verdicts)
    assert isinstance(fixed, pd.DataFrame) and list(fixed.columns) == list(df.columns)
    assert len(fixed) == 3 and fixed["negative_2"].tolist()[:2] == ["fish swim", "fish swim"]
    table = verdicts.to_pandas()
    assert len(table) == 6 and table["false_negative"].sum() == 1
    assert table.loc[table["false_negative"], "docid"].item() == verdicts.verdicts[0].instance.negatives[1].docid


def test_dataset_triplets_are_grouped_per_query():
    datasets = pytest.importorskip("datasets")
    rows = [
        {"anchor": "what is a cat", "positive": "a cat is a feline", "negative": n}
        for n in ("dogs bark", "A cat is a feline", "fish swim")
    ]
    rows.append({"anchor": "what is rain", "positive": "water from clouds", "negative": "sunshine"})
    ds = datasets.Dataset.from_list(rows)
    verdicts = negclean.judge(ds, DUPLICATE, progress=False)
    assert verdicts.instances == 2 and verdicts.records == 4
    assert [len(o.candidates) for o in verdicts.verdicts] == [3, 1]
    out = negclean.fix(ds, verdicts, report=True)
    assert isinstance(out.data, datasets.Dataset) and out.data.column_names == ds.column_names
    # two positives x two true negatives, then the untouched query
    assert out.data["negative"] == ["dogs bark", "fish swim", "dogs bark", "fish swim", "sunshine"]
    assert out.report.records_used == 4 and out.report.records_out == 5 and out.report.reconciled


def test_dataset_labeled_list_and_tevatron():
    datasets = pytest.importorskip("datasets")
    ll = datasets.Dataset.from_dict(
        {
            "anchor": ["what is a cat"],
            "docs": [["a cat is a feline", "dogs bark", "A cat is a feline"]],
            "labels": [[1, 0, 0]],
        }
    )
    fixed = negclean.fix(ll, negclean.judge(ll, DUPLICATE, progress=False))
    assert fixed.column_names == ["anchor", "docs", "labels"]
    assert fixed[0]["labels"] == [1, 1, 0] and fixed[0]["docs"][2] == "dogs bark"

    passage = {"docid": "d1", "title": "", "text": "a cat is a feline"}
    tev = datasets.Dataset.from_list(
        [
            {
                "query_id": "q1",
                "query": "what is a cat",
                "positive_passages": [passage],
                "negative_passages": [dict(passage, docid="d2", text="dogs bark"), dict(passage, docid="d1")],
                "subset": "toy",
            }
        ]
    )
    out = negclean.fix(tev, negclean.judge(tev, DUPLICATE, progress=False), op="hn_remove")
    assert out.column_names == tev.column_names
    assert [p["docid"] for p in out[0]["negative_passages"]] == ["d2"] and out[0]["subset"] == "toy"


def test_instances_and_files(tmp_path):
    inst = Instance(
        "q1",
        "what is a cat",
        (Passage("p", "a cat is a feline"),),
        (Passage("n1", "dogs bark"), Passage("n2", "a cat is a feline")),
        line=1,
    )
    verdicts = negclean.judge([inst], DUPLICATE, progress=False)
    [fixed] = negclean.fix([inst], verdicts)
    assert [p.docid for p in fixed.positives] == ["p", "n2"] and fixed.positives[1].meta["negclean"]["stage"]

    path = negclean.write([inst], tmp_path / "train.jsonl", fmt="tevatron")
    assert negclean.read(path) == [inst]
    store = tmp_path / "judgments.sqlite"
    first = negclean.judge(path, DUPLICATE, store=store, progress=False)
    again = negclean.judge(path, DUPLICATE, store=store, progress=False)
    assert first.funnel[0].judged == 2 and again.funnel[0].from_store == 2 and again.funnel[0].judged == 0
    out = tmp_path / "fixed.jsonl"
    result = negclean.fix(path, again, output=out, report=True)
    assert result.data == negclean.read(out) and result.report.relabeled == 1
    assert json.loads(out.read_text())["positive_passages"][1]["docid"] == "n2"


def test_verdicts_of_other_data_are_refused():
    rows = ntuple_rows()
    verdicts = negclean.judge(rows, DUPLICATE, progress=False)
    other = [dict(rows[0]), dict(rows[1], negative_3="hail")]
    with pytest.raises(InputError, match=r"<data>:2: record 2 .* is not the instance that was judged"):
        negclean.fix(other, verdicts)
    with pytest.raises(InputError, match="verdicts hold 2 instances, the data 1"):
        negclean.fix(rows[:1], verdicts)


def test_bad_rows_fail_or_are_counted():
    rows = ntuple_rows() + [{"question": 5, "answer": "x", "negative_1": "y", "negative_2": "z", "negative_3": "w"}]
    with pytest.raises(InputError, match=r":3: anchor must be a string.*on_error='skip'"):
        negclean.judge(rows, DUPLICATE, progress=False)
    verdicts = negclean.judge(rows, DUPLICATE, progress=False, on_error="skip")
    assert (verdicts.records, verdicts.rejected, verdicts.instances) == (3, 1, 2)
    assert verdicts.rejects[0].line == 3
    report = negclean.fix(rows, verdicts, on_error="skip", report=True).report
    assert (report.records_in, report.rejected, report.records_used) == (3, 1, 2) and report.reconciled


def test_unusable_inputs_say_what_to_do():
    with pytest.raises(ConfigError, match="labeled-pair"):
        negclean.judge([{"anchor": "q", "positive": "p", "label": 1}], DUPLICATE, progress=False)
    with pytest.raises(ConfigError, match="not int"):
        negclean.judge(5, DUPLICATE, progress=False)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="op must be one of"):
        negclean.fix(ntuple_rows(), negclean.judge(ntuple_rows(), DUPLICATE, progress=False), op="drop")  # type: ignore[arg-type]


def test_import_is_cheap_and_help_shows_a_typed_signature():
    code = (
        "import sys, negclean; assert 'negclean.api' not in sys.modules and 'pydantic' not in sys.modules; "
        "help(negclean.judge); assert 'torch' not in sys.modules; "
        "import negclean.judge.duplicate as d; from negclean.judge import base; print(d.__name__, base.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "negclean.judge(data: 'Data', cascade:" in out and "-> 'JudgeResult'" in out
    assert "negclean.judge.duplicate negclean.judge.base" in out
    assert (REPO / "src" / "negclean" / "py.typed").is_file()
    assert '"py.typed"' in (REPO / "pyproject.toml").read_text()


def test_mine_in_memory_matches_the_file_run(shared_data, tmp_path):
    pytest.importorskip("bm25s")
    from negclean.mine.mine import mine as mine_to_file

    options = dict(split="train", retriever="bm25", num_negatives=3, rank_range=(0, 30), max_queries=5)
    result = negclean.mine(shared_data / "scifact", **options)
    mine_to_file(beir=str(shared_data / "scifact"), output=tmp_path / "mined.jsonl", **options)
    assert len(result.instances) == 5 and result.summary.queries_written == 5
    expected = negclean.read(tmp_path / "mined.jsonl")
    assert [[p.docid for p in i.negatives] for i in result.instances] == [
        [p.docid for p in i.negatives] for i in expected
    ]
    assert sum(len(i.negatives) for i in result.instances) == result.summary.negatives_written > 0
    assert all(len(i.negatives) <= 3 for i in result.instances)
