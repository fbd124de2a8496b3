"""Regenerate the bad-input corpus (run from anywhere: python tests/data/bad_inputs/make_bad_inputs.py).

The files are committed; this script documents exactly how each was made (several hold bytes that an editor
would "fix": invalid UTF-8, BOMs, CRLF, UTF-16, truncated gzip). Expected outcomes: expected.json and README.md.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def tev(qid: str, *, pos=None, neg=None, **extra) -> dict:
    row = {
        "query_id": qid,
        "query": f"what is item {qid}",
        "positive_passages": pos
        if pos is not None
        else [{"docid": f"p{qid}", "title": "", "text": f"Item {qid} is a thing."}],
        "negative_passages": neg
        if neg is not None
        else [
            {"docid": f"n{qid}a", "title": "", "text": "Unrelated text one."},
            {"docid": f"n{qid}b", "title": "", "text": "Unrelated text two."},
        ],
        "subset": "toy",
    }
    row.update(extra)
    return row


def fe(query: str, pos, neg, **extra) -> dict:
    return {"query": query, "pos": pos, "neg": neg, **extra}


def line(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def write(name: str, lines: list[bytes], *, sep: bytes = b"\n", head: bytes = b"") -> None:
    (HERE / name).write_bytes(head + sep.join(lines) + sep)


def gz(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as f:
        f.write(data)
    return buf.getvalue()


def main() -> None:
    ok1, ok2, ok3 = line(tev("1")), line(tev("2")), line(tev("3"))
    write("invalid_json.jsonl", [ok1, line(tev("2"))[:-1].replace(b'"query":', b'"query"', 1) + b"}", ok3])
    write("truncated_last_line.jsonl", [ok1, ok2, ok3[: len(ok3) // 2]])
    write(
        "wrong_types_tevatron.jsonl",
        [
            ok1,
            line({**tev("2"), "query": 42}),
            line({**tev("3"), "positive_passages": "Item 3 is a thing."}),
            line(tev("4", pos=[{"docid": "p4", "title": "", "text": ["Item 4"]}])),
            line(tev("5", neg=[{"docid": "n5", "title": "", "text": "x", "score": "0.9"}])),
            line(tev("6", neg=[{"docid": "n6", "title": "", "text": "x", "rank": 2.5}])),
            line(tev("7", pos=[{"docid": True, "title": "", "text": "Item 7"}])),
            line(tev("8", pos=["Item 8 is a thing."])),
            line({**tev("9"), "query_id": 9.5}),
            line({**tev("10"), "subset": ["toy"]}),
        ],
    )
    write(
        "wrong_types_flagembedding.jsonl",
        [
            line(fe("q1", ["a positive"], ["a negative"])),
            line(fe("q2", "a positive", ["a negative"])),
            line(fe("q3", ["a positive"], ["a negative", 7])),
            line(fe("q4", ["a positive"], ["n1", "n2"], pos_scores=[0.9], neg_scores=[0.1])),
            line(fe("q5", ["a positive"], ["n1"], pos_scores=["high"], neg_scores=[0.1])),
            line(fe(["q6"], ["a positive"], ["n1"])),
        ],
    )
    write(
        "missing_fields.jsonl",
        [
            ok1,
            line({k: v for k, v in tev("2").items() if k != "query"}),
            line({k: v for k, v in tev("3").items() if k != "positive_passages"}),
            line({k: v for k, v in tev("4").items() if k != "negative_passages"}),
            line(tev("5", pos=[{"title": "", "text": "Item 5 is a thing."}])),
            line(tev("6", neg=[{"docid": "n6", "title": ""}])),
        ],
    )
    write("no_positives.jsonl", [ok1, line(tev("2", pos=[])), line({**tev("3"), "positive_passages": None})])
    write("no_positives_flagembedding.jsonl", [line(fe("q1", ["p"], ["n"])), line(fe("q2", [], ["n"]))])
    write("empty_negatives.jsonl", [line(fe("q1", ["p1"], [])), line(fe("q2", ["p2"], ["n2"]))])
    write(
        "duplicate_docids.jsonl",
        [
            line(tev("1", neg=[{"docid": "n1", "title": "", "text": "a"}, {"docid": "n1", "title": "", "text": "b"}])),
            line(tev("2", pos=[{"docid": "p2", "title": "", "text": "x"}, {"docid": "p2", "title": "", "text": "y"}])),
        ],
    )
    write(
        "negative_equals_positive.jsonl",
        [
            line(
                tev(
                    "1",
                    pos=[{"docid": "d1", "title": "", "text": "The Positive  Text."}],
                    neg=[
                        {"docid": "d1", "title": "", "text": "other"},
                        {"docid": "d9", "title": "", "text": "  the positive text. "},
                        {"docid": "d8", "title": "", "text": "something else"},
                    ],
                )
            ),
            ok2,
        ],
    )
    write(
        "negative_equals_positive_flagembedding.jsonl",
        [line(fe("q1", ["Ｃafé au lait"], ["café  AU\tlait", "tea", "Ｃafé au lait"]))],
    )
    write(
        "empty_text.jsonl",
        [
            line(
                tev(
                    "1",
                    pos=[{"docid": "p1", "title": "", "text": "   "}],
                    neg=[{"docid": "n1", "title": "", "text": ""}, {"docid": "n2", "title": "", "text": "ok"}],
                )
            )
        ],
    )
    write("invalid_utf8.jsonl", [ok1, line(tev("2")).replace(b"thing", b"th\xe9ng\xff", 1), ok3])
    write("bom.jsonl", [ok1, ok2], head=b"\xef\xbb\xbf")
    write("crlf.jsonl", [ok1, ok2, ok3], sep=b"\r\n")
    (HERE / "blank_lines.jsonl").write_bytes(b"\n" + ok1 + b"\n\n   \n\t\n" + ok2 + b"\n\r\n" + ok3 + b"\n\n")
    write(
        "mixed_formats.jsonl",
        [ok1, line(fe("q2", ["p"], ["n"])), ok3, line({"anchor": "q4", "positive": "p", "negative": "n"})],
    )
    (HERE / "empty.jsonl").write_bytes(b"")
    (HERE / "only_blank_lines.jsonl").write_bytes(b"\n\n  \n\r\n")
    huge = ("lorem ipsum dolor sit amet " * 160_000).strip()  # ~4.3 MB of text in one passage
    (HERE / "huge_text.jsonl.gz").write_bytes(
        gz(line(tev("1", neg=[{"docid": "big", "title": "", "text": huge}])) + b"\n" + ok2 + b"\n")
    )
    (HERE / "json_array.json").write_bytes(b"[\n" + b",\n".join([ok1, ok2]) + b"\n]\n")
    write("not_an_object.jsonl", [ok1, b'"just a string"', b"42", b"null", b"[1, 2]", ok2])
    (HERE / "utf16.jsonl").write_bytes((ok1.decode() + "\n").encode("utf-16"))
    (HERE / "utf16_no_bom.jsonl").write_bytes((ok1.decode() + "\n").encode("utf-16-le"))
    full = gz(b"\n".join(line(tev(str(i))) for i in range(1, 200)) + b"\n")
    (HERE / "truncated.jsonl.gz").write_bytes(full[: len(full) * 2 // 3])
    write(
        "lone_surrogate.jsonl",
        [
            ok1,
            line(tev("2")).replace(b"a thing", b"a thing \\ud800", 1),
            line(tev("3")).replace(b"a thing", b"a thing \\ud83d\\ude00", 1),
        ],
    )
    (HERE / "deep_nesting.jsonl.gz").write_bytes(
        gz(ok1 + b"\n" + line(tev("2"))[:-1] + b', "deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n")
    )
    write(
        "nan_score.jsonl",
        [ok1, line(tev("2")).replace(b'"text": "Unrelated text one."', b'"text": "x", "score": NaN', 1)],
    )
    write("huge_integer.jsonl", [ok1, line(tev("2"))[:-1] + b', "n": ' + b"9" * 5000 + b"}"])
    write("undetectable.jsonl", [line({"question": "q", "answer": "a"}), line({"question": "q2", "answer": "b"})])
    write(
        "null_fields.jsonl",
        [
            line(tev("1", pos=[{"docid": "p1", "title": None, "text": "Item 1."}], subset=None)),
            line({**tev("2"), "negative_passages": None}),
            line(tev("3", pos=[{"docid": "p3", "title": "", "text": None}])),
        ],
    )
    write("control_chars.jsonl", [line(tev("1")).replace(b"a thing", b"a\tthing", 1)])
    write(
        "duplicate_keys.jsonl",
        [
            ok1,
            line(tev("2"))[:-1] + b', "query": "a second query"}',
            line(tev("3")).replace(b'"text": "Unrelated text one."', b'"text": "one", "text": "two"', 1),
        ],
    )
    write("garbage_first_line.jsonl", [b"this is not json", ok1, ok2])
    write(
        "st_bad_rows.jsonl",
        [
            line({"anchor": "q1", "positive": "p1", "negative_1": "n1", "negative_2": "n2"}),
            line({"anchor": "q2", "positive": ["p2"], "negative": "n2"}),
            line({"anchor": "q3", "positive": "p3", "negative_1": "n1", "negative_2": 5}),
            line({"anchor": "q4", "negative": "n4"}),
            line({"anchor": "q5", "positive": "", "negative": "n5"}),
        ],
    )
    write(
        "ids_as_integers.jsonl",
        [line(tev("1", pos=[{"docid": 101, "title": "", "text": "Item 1."}]) | {"query_id": 1})],
    )
    (HERE / "not_parquet.parquet").write_text('{"query": "this is JSON under a Parquet name"}\n')
    _parquet_cases()


def _parquet_cases() -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    passage = pa.struct([("docid", pa.string()), ("title", pa.string()), ("text", pa.string())])
    rows = [tev(str(i)) for i in range(1, 41)]
    for r in rows:
        del r["subset"]
    table = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("query_id", pa.string()),
                ("query", pa.string()),
                ("positive_passages", pa.list_(passage)),
                ("negative_passages", pa.list_(passage)),
            ]
        ),
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=10)
    data = buf.getvalue()
    (HERE / "truncated.parquet").write_bytes(data[: len(data) // 2])
    bad = pa.table(
        {
            "query_id": ["1", "2", "3"],
            "query": ["q1", "q2", "q3"],
            "positive_passages": [
                [{"docid": "p1", "title": "", "text": "t"}],
                [],
                [{"docid": "p3", "title": "", "text": None}],
            ],
            "negative_passages": [[], [], []],
        },
        schema=pa.schema(
            [
                ("query_id", pa.string()),
                ("query", pa.string()),
                ("positive_passages", pa.list_(passage)),
                ("negative_passages", pa.list_(passage)),
            ]
        ),
    )
    pq.write_table(bad, HERE / "bad_rows.parquet")


if __name__ == "__main__":
    main()
