"""Round trips per format (plain, gzip, Parquet), cross-format conversion, and the real sample files."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from negclean.data.io import open_writer, read_instances
from negclean.data.records import Instance, Passage

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _shared_data() -> Path:
    env = os.environ.get("NEGCLEAN_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


SHARED = _shared_data()
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(),
    reason=f"shared sample data not found at {SHARED} (a fresh clone has no ../shared); "
    "set NEGCLEAN_SHARED_DATA to the shared data folder to run these tests",
)
FE_SAMPLES = ["msmarco_hn_scored.jsonl", "nq_hn_scored.jsonl", "toy_finetune_data.jsonl"]
RLHN_SAMPLES = ["stage_1.gpt-4o-mini.jsonl", "stage_2.gpt-4o.jsonl"]


def _rows(path: Path) -> list[dict]:
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _write(path: Path, instances, **options) -> int:
    with open_writer(path, **options) as w:
        for inst in instances:
            w.write(inst)
    return w.count


def _assert_same(a: list[Instance], b: list[Instance]) -> None:
    """Equal records, and equal extra fields (``meta`` is not part of record equality)."""
    assert a == b
    for x, y in zip(a, b, strict=True):
        assert dict(x.meta) == dict(y.meta)
        for p, q in zip(x.positives + x.negatives, y.positives + y.negatives, strict=True):
            assert dict(p.meta) == dict(q.meta)


def rich_instances() -> list[Instance]:
    """Everything the Tevatron layout can hold: titles, scores, ranks, extra fields at both levels."""
    prov = {"stage": 2, "judge": "gpt-4o", "verdict": "relevant", "grade": "better"}
    return [
        Instance(
            query_id="q1",
            query="what is a café? «ünïcode» 😀",
            positives=(
                Passage("d1", "A café serves coffee.", title="Café", score=0.91, rank=1),
                Passage("d7", "Moved from the negatives.", meta={"negclean": prov}),
            ),
            negatives=(
                Passage("d2", "Tea is a drink.", score=0.5, rank=2, meta={"source": "bm25", "tags": ["a", "b"]}),
                Passage("d3", "", title="empty text"),
            ),
            subset="msmarco_passage",
            meta={"response": "<verdict>...</verdict>", "finish_reason": "stop", "nested": {"k": [1, 2.5, None]}},
            line=1,
        ),
        Instance(query_id="q2", query="no negatives", positives=(Passage("d9", "x"),), negatives=(), line=2),
        Instance(
            query_id="3",
            query="ints and floats",
            positives=(Passage("10", "p", score=3.0),),
            negatives=(Passage("11", "n", score=-1.25, rank=100),),
            meta={"flag": True, "n": 0},
            line=3,
        ),
    ]


@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.gz", "out.parquet"])
def test_tevatron_layouts_round_trip_everything(tmp_path, name):
    src = rich_instances()
    fmt = "parquet" if name.endswith(".parquet") else "tevatron"
    assert _write(tmp_path / name, src, fmt=fmt) == 3
    reader = read_instances(tmp_path / name)
    assert reader.format == fmt
    _assert_same(list(reader), src)
    assert reader.stats.read == reader.stats.ok == 3


def test_tevatron_writes_passage_meta_as_passage_fields(tmp_path):
    _write(tmp_path / "out.jsonl", rich_instances(), fmt="tevatron")
    row = _rows(tmp_path / "out.jsonl")[0]
    moved = row["positive_passages"][1]
    assert moved == {"docid": "d7", "title": "", "text": "Moved from the negatives.", "negclean": moved["negclean"]}
    assert moved["negclean"]["judge"] == "gpt-4o"
    assert row["response"] == "<verdict>...</verdict>" and row["nested"] == {"k": [1, 2.5, None]}


def test_gzip_output_is_gzip_and_deterministic(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        _write(tmp_path / d / "out.jsonl.gz", rich_instances(), fmt="tevatron")
    a, b = (tmp_path / "a" / "out.jsonl.gz").read_bytes(), (tmp_path / "b" / "out.jsonl.gz").read_bytes()
    assert a[:2] == b"\x1f\x8b" and a == b  # no time stamp in the header
    _write(tmp_path / "plain.jsonl", rich_instances(), fmt="tevatron")
    assert gzip.decompress(a) == (tmp_path / "plain.jsonl").read_bytes()


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    _write(tmp_path / "data.jsonl.gz", rich_instances(), fmt="tevatron")
    os.rename(tmp_path / "data.jsonl.gz", tmp_path / "data.jsonl")
    _assert_same(list(read_instances(tmp_path / "data.jsonl")), rich_instances())


def test_parquet_is_written_in_row_groups(tmp_path):
    src = [rich_instances()[1].replace(query_id=f"q{i}", line=i) for i in range(1, 26)]
    _write(tmp_path / "out.parquet", src, fmt="parquet", row_group_size=7)
    meta = pq.ParquetFile(tmp_path / "out.parquet").metadata
    assert (meta.num_rows, meta.num_row_groups) == (25, 4)
    got = list(read_instances(tmp_path / "out.parquet"))
    assert [i.query_id for i in got] == [f"q{i}" for i in range(1, 26)]
    assert [i.line for i in got] == list(range(1, 26))


def test_foreign_parquet_columns_become_meta(tmp_path):
    passage = pa.struct([("docid", pa.string()), ("title", pa.string()), ("text", pa.string()), ("src", pa.string())])
    table = pa.table(
        {
            "query_id": ["1"],
            "query": ["q"],
            "positive_passages": [[{"docid": "p", "title": "t", "text": "x", "src": "wiki"}]],
            "negative_passages": [[{"docid": "n", "title": "", "text": "y", "src": None}]],
            "positive_passage_ids": [["p"]],
        },
        schema=pa.schema(
            [
                ("query_id", pa.string()),
                ("query", pa.string()),
                ("positive_passages", pa.list_(passage)),
                ("negative_passages", pa.list_(passage)),
                ("positive_passage_ids", pa.list_(pa.string())),
            ]
        ),
    )
    pq.write_table(table, tmp_path / "hf.parquet")
    (inst,) = read_instances(tmp_path / "hf.parquet")
    assert inst.subset == "" and dict(inst.meta) == {"positive_passage_ids": ["p"]}
    assert dict(inst.positives[0].meta) == {"src": "wiki"} and inst.positives[0].title == "t"
    _write(tmp_path / "again.parquet", [inst], like="parquet")
    _assert_same(list(read_instances(tmp_path / "again.parquet")), [inst])


def fe_rows() -> list[dict]:
    return [
        {
            "query": "q1",
            "pos": ["p1", "p1b"],
            "neg": ["n1", "n2"],
            "pos_scores": [0.9, 0.8],
            "neg_scores": [0.1, 0.95],
            "prompt": "Represent this: ",
            "type": "normal",
        },
        {"query": "q2", "pos": ["p2"], "neg": [], "subset": "nq", "negclean": {"fixed": True}},
    ]


@pytest.mark.parametrize("name", ["fe.jsonl", "fe.jsonl.gz"])
def test_flagembedding_round_trip_is_exact_at_row_level(tmp_path, name):
    src = tmp_path / "src.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in fe_rows()), encoding="utf-8")
    reader = read_instances(src)
    first = list(reader)
    assert reader.format == "flagembedding"
    assert first[0].positives[1].score == 0.8 and first[1].subset == "nq"
    assert dict(first[0].meta) == {"prompt": "Represent this: ", "type": "normal"}
    _write(tmp_path / name, first, like=reader)
    _assert_same(list(read_instances(tmp_path / name)), first)
    assert _rows(tmp_path / name) == fe_rows()


def st_rows() -> list[dict]:
    return [
        {"anchor": "a1", "positive": "p1", "negative_1": "n1", "negative_2": "n2", "negative_3": "n3", "label": 1},
        {"anchor": "a2", "positive": "p2", "negative": "n"},
        {"anchor": "a3", "positive": "p3"},
    ]


@pytest.mark.parametrize("name", ["st.jsonl", "st.jsonl.gz", "st.parquet"])
def test_st_round_trip(tmp_path, name):
    src = tmp_path / "src.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in st_rows()), encoding="utf-8")
    reader = read_instances(src)
    first = list(reader)
    assert reader.format == "st" and [len(i.negatives) for i in first] == [3, 1, 0]
    assert dict(first[0].meta) == {"label": 1}
    _write(tmp_path / name, first, like=reader)
    again = read_instances(tmp_path / name)
    assert again.format == "st"
    _assert_same(list(again), first)
    if name.endswith(".jsonl"):
        assert _rows(tmp_path / name) == st_rows()


def test_st_query_column_is_read_as_anchor(tmp_path):
    src = tmp_path / "q.jsonl"
    src.write_text(json.dumps({"query": "a", "positive": "p", "negative": "n"}) + "\n", encoding="utf-8")
    (inst,) = read_instances(src)
    assert inst.query == "a" and not inst.meta


def test_st_several_positives_expand_or_first(tmp_path):
    inst = rich_instances()[0]
    with open_writer(tmp_path / "expand.jsonl", fmt="st") as w:
        w.write(inst)
    assert (w.count, w.rows) == (1, 2)
    rows = _rows(tmp_path / "expand.jsonl")
    assert [r["positive"] for r in rows] == ["Café A café serves coffee.", "Moved from the negatives."]
    assert all(r["negative_1"] == "Tea is a drink." and r["negative_2"] == "empty text " for r in rows)
    with open_writer(tmp_path / "first.parquet", fmt="st", multi_positive="first") as w:
        w.write(inst)
    assert (w.count, w.rows) == (1, 1)
    (back,) = read_instances(tmp_path / "first.parquet")
    assert [p.text for p in back.positives] == ["Café A café serves coffee."]


def test_st_parquet_negative_columns_are_fixed(tmp_path):
    from negclean.errors import ConfigError

    few = Instance("a", "a", (Passage("p", "p"),), (Passage("n", "n"),))
    more = few.replace(negatives=(Passage("n1", "n1"), Passage("n2", "n2")))
    with pytest.raises(ConfigError, match="negatives="):
        _write(tmp_path / "x.parquet", [few, more], fmt="st", row_group_size=1)
    assert not list(tmp_path.iterdir())
    _write(tmp_path / "x.parquet", [few, more], fmt="st", row_group_size=1, negatives=2)
    assert [len(i.negatives) for i in read_instances(tmp_path / "x.parquet")] == [1, 2]


def test_flagembedding_to_tevatron_and_back_is_exact(tmp_path):
    src = tmp_path / "src.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in fe_rows()), encoding="utf-8")
    fe = list(read_instances(src))
    _write(tmp_path / "tev.jsonl", fe, fmt="tevatron")
    tev = list(read_instances(tmp_path / "tev.jsonl"))
    _assert_same(tev, fe)  # content ids and scores survive as Tevatron fields
    _write(tmp_path / "back.jsonl", tev, fmt="flagembedding")
    assert _rows(tmp_path / "back.jsonl") == fe_rows()


def test_tevatron_to_flagembedding_keeps_text_scores_and_meta(tmp_path):
    src = rich_instances()
    _write(tmp_path / "fe.jsonl", src, fmt="flagembedding")
    rows = _rows(tmp_path / "fe.jsonl")
    assert rows[0]["pos"] == ["Café A café serves coffee.", "Moved from the negatives."]  # title joined in front
    assert "pos_scores" not in rows[0]  # one positive has no score: the format needs all or none
    assert rows[0]["subset"] == "msmarco_passage" and rows[0]["response"] == "<verdict>...</verdict>"
    assert "negclean" not in json.dumps(rows[0])  # per-passage meta cannot be attached in this format
    assert rows[2]["pos_scores"] == [3.0] and rows[2]["neg_scores"] == [-1.25]
    back = list(read_instances(tmp_path / "fe.jsonl"))
    assert [i.query for i in back] == [i.query for i in src]
    assert back[2].negatives[0].score == -1.25


@needs_shared
@pytest.mark.parametrize("name", FE_SAMPLES)
@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_real_flagembedding_samples_round_trip(tmp_path, name, suffix):
    path = SHARED / "flagembedding-samples" / name
    reader = read_instances(path)
    first = list(reader)
    assert reader.format == "flagembedding" and reader.stats.ok == len(_rows(path)) == 10
    _write(tmp_path / f"out{suffix}", first, like=reader)
    _assert_same(list(read_instances(tmp_path / f"out{suffix}")), first)
    assert _rows(tmp_path / f"out{suffix}") == _rows(path)


@needs_shared
def test_real_nq_sample_has_duplicate_negatives():
    reader = read_instances(SHARED / "flagembedding-samples" / "nq_hn_scored.jsonl")
    list(reader)
    assert reader.stats.warnings["duplicate_docid"] >= 1  # identical negative texts get identical content ids


@needs_shared
@pytest.mark.parametrize("name", RLHN_SAMPLES)
@pytest.mark.parametrize("out", ["out.jsonl", "out.jsonl.gz", "out.parquet"])
def test_real_rlhn_samples_round_trip(tmp_path, name, out):
    path = SHARED / "rlhn-reference-msmarco" / name
    reader = read_instances(path)
    first = list(reader)
    assert reader.format == "tevatron" and len(first) == len(_rows(path))
    assert {"response", "finish_reason", "positive_passage_ids"} <= set(first[0].meta)
    _write(tmp_path / out, first, like=reader)
    _assert_same(list(read_instances(tmp_path / out)), first)
    if out.endswith(".parquet"):
        _write(tmp_path / "back.jsonl", read_instances(tmp_path / out), fmt="tevatron")
        out = "back.jsonl"
    assert _rows(tmp_path / out) == _rows(path)  # every field of every row, as it was


@needs_shared
def test_real_rlhn_to_flagembedding_and_st(tmp_path):
    path = SHARED / "rlhn-reference-msmarco" / RLHN_SAMPLES[0]
    src = list(read_instances(path))
    _write(tmp_path / "fe.jsonl.gz", src, fmt="flagembedding")
    _write(tmp_path / "st.parquet", src, fmt="st")
    fe, st = list(read_instances(tmp_path / "fe.jsonl.gz")), list(read_instances(tmp_path / "st.parquet"))
    for a, b, c in zip(src, fe, st, strict=True):
        assert a.query == b.query == c.query
        assert [p.text for p in a.negatives] == [p.text for p in b.negatives] == [p.text for p in c.negatives]
        assert [p.text for p in a.positives] == [p.text for p in b.positives]
        assert b.meta["response"] == a.meta["response"]
