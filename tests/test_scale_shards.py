"""The Ray engine's machinery without Ray: shard plans and readers (every line read exactly as the whole-file
reader reads it), shard stores over the main store, and the sharded judge run with an in-process executor
(outputs byte-identical to the local engine, resume, stale plans, budget, errors, dry run)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("pyarrow")

from negclean.cascade.stages import CascadeConfig
from negclean.cascade.store import JudgmentStore, task_keys
from negclean.data.io import open_writer, read_instances
from negclean.errors import BudgetExceeded, InputError
from negclean.judge.base import JudgeTask, Label, TaskResult, Verdict
from negclean.pipeline import FixConfig, run_judge
from negclean.scale.ray_judge import run_judge_ray, sequential_executor
from negclean.scale.runtime import RayOptions
from negclean.scale.shards import ShardReader, detect, plan_shards
from negclean.scale.stores import ShardStore, merge_into, prepare_main

BAD = Path(__file__).parent / "data" / "bad_inputs"
READABLE = [
    "blank_lines.jsonl",
    "crlf.jsonl",
    "bom.jsonl",
    "invalid_json.jsonl",
    "mixed_formats.jsonl",
    "invalid_utf8.jsonl",
    "truncated_last_line.jsonl",
    "wrong_types_tevatron.jsonl",
    "duplicate_docids.jsonl",
    "huge_text.jsonl.gz",
    "bad_rows.parquet",
]


def _whole(path: Path, tmp: Path):
    reader = read_instances(path, on_error="skip", reject_path=tmp / "whole.rejects.jsonl")
    return list(reader), reader.stats, (tmp / "whole.rejects.jsonl").read_text()


def _sharded(path: Path, tmp: Path, size: int):
    fmt, detected_at = detect(path, None)
    insts, rejects, totals = [], "", [0, 0, 0]
    for shard in plan_shards(path, shard_size=size):
        rpath = tmp / f"s{size}-{shard.index}.rejects.jsonl"
        reader = ShardReader(path, shard=shard, fmt=fmt, on_error="skip", reject_path=rpath, detected_at=detected_at)
        insts.extend(reader)
        rejects += rpath.read_text()
        totals = [totals[0] + reader.stats.read, totals[1] + reader.stats.ok, totals[2] + reader.stats.rejected]
    return insts, totals, rejects


def _key(inst):
    return (inst.line, inst.query_id, inst.query, inst.positives, inst.negatives, inst.subset, dict(inst.meta))


@pytest.mark.parametrize("name", READABLE)
@pytest.mark.parametrize("size", [1, 2, 5])
def test_shards_read_every_line_as_the_whole_file_reader(name, size, tmp_path):
    whole, stats, rejects = _whole(BAD / name, tmp_path)
    insts, totals, shard_rejects = _sharded(BAD / name, tmp_path, size)
    assert [_key(i) for i in insts] == [_key(i) for i in whole]
    assert totals == [stats.read, stats.ok, stats.rejected]
    assert shard_rejects == rejects  # same lines, same reasons (incl. "detected from line N"), same raw text


def test_plans_cover_the_file(tmp_path, examples_dir):
    src = examples_dir / "msmarco_hn_scored.jsonl"
    plain = plan_shards(src, shard_size=3)
    assert [(s.first_line, s.last_line) for s in plain] == [(1, 3), (4, 6), (7, 9), (10, 10)]
    assert plain[0].byte_start == 0 and plain[-1].byte_end == src.stat().st_size
    gz = tmp_path / "x.jsonl.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    assert [(s.first_line, s.last_line, s.byte_start) for s in plan_shards(gz, shard_size=4)] == [
        (1, 4, None),
        (5, 8, None),
        (9, 10, None),
    ]
    pq = tmp_path / "x.parquet"
    with open_writer(pq, fmt="parquet", row_group_size=2) as w:
        for inst in read_instances(src):
            w.write(inst)
    shards = plan_shards(pq, shard_size=3)  # whole row groups of at least 3 rows
    assert [(s.first_line, s.last_line, s.row_groups) for s in shards] == [
        (1, 4, (0, 2)),
        (5, 8, (2, 4)),
        (9, 10, (4, 5)),
    ]


def _verdict(label=Label.RELEVANT):
    return Verdict(label, 0.9, "test-judge")


def test_shard_store_reads_the_main_store_and_merges_back(tmp_path, examples_dir):
    inst = next(iter(read_instances(examples_dir / "msmarco_hn_scored.jsonl")))
    first, second = JudgeTask(inst, (0, 1)), JudgeTask(inst, (2,))
    main = tmp_path / "main.sqlite"
    with JudgmentStore(main) as store:
        store.put("fp", first, TaskResult((_verdict(), _verdict(Label.NOT_RELEVANT)), raw="raw", call_id="c1"))
    prepare_main(main)
    with ShardStore(tmp_path / "shard.sqlite", base=main) as shard:
        assert len(shard.get("fp", task_keys(first))) == 2  # the main store's verdicts
        shard.put("fp", second, TaskResult((_verdict(),)))
        assert len(shard.get("fp", task_keys(first) + task_keys(second))) == 3
        assert shard.raw_output("c1") == "raw"
    with JudgmentStore(main) as store:
        assert store.count("fp") == 2  # nothing written to the main store by a shard
    assert merge_into(main, tmp_path / "shard.sqlite") == 1
    assert merge_into(main, tmp_path / "shard.sqlite") == 0  # first wins, nothing twice
    with JudgmentStore(main) as store:
        assert store.count("fp") == 3


# ---- the sharded judge run, in-process


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("aiohttp")
    pytest.importorskip("openai")
    from negclean.testing.openai_server import OpenAITestServer

    with OpenAITestServer() as srv:
        yield srv


def _cascade(srv, *, judge: dict | None = None, **extra) -> CascadeConfig:
    return CascadeConfig.model_validate(
        {
            "stages": [
                {"name": "dup", "judge": {"backend": "duplicate"}, "escalate": "cleared"},
                {
                    "name": "llm",
                    "judge": {
                        "backend": "openai",
                        "model": "gpt-4o-mini",
                        "base_url": srv.base_url,
                        "max_candidates": 10,
                        "concurrency": 4,
                        **(judge or {}),
                    },
                },
            ],
            "prices": {"gpt-4o-mini": {"input": 0.15, "output": 0.6}},
            "chunk_size": 1,
            **extra,
        }
    )


def _sharded_run(src, out, srv, *, size=3, **kw):
    kw.setdefault("fix", FixConfig())
    return run_judge_ray(
        input_path=str(src),
        cascade=kw.pop("cascade", None) or _cascade(srv),
        output_dir=out,
        ray_options=RayOptions(shard_size=size),
        executor=sequential_executor,
        **kw,
    )


def _inputs(tmp_path: Path, examples_dir: Path) -> dict[str, Path]:
    src = examples_dir / "msmarco_hn_scored.jsonl"
    gz = tmp_path / "in" / "data.jsonl.gz"
    gz.parent.mkdir()
    gz.write_bytes(gzip.compress(src.read_bytes()))
    pq = tmp_path / "in" / "data.parquet"
    with open_writer(pq, fmt="parquet", row_group_size=2) as w:
        for inst in read_instances(src):
            w.write(inst)
    return {"jsonl": src, "gz": gz, "parquet": pq}


@pytest.mark.parametrize("kind", ["jsonl", "gz", "parquet"])
def test_sharded_run_writes_what_the_local_engine_writes(kind, tmp_path, examples_dir, server):
    src = _inputs(tmp_path, examples_dir)[kind]
    local = run_judge(input_path=str(src), cascade=_cascade(server), output_dir=tmp_path / "local", fix=FixConfig())
    sharded = _sharded_run(src, tmp_path / "sharded", server)
    for name in ("verdicts.jsonl", "rejects.jsonl", f"fixed.{src.name}"):
        a, b = (tmp_path / d / name for d in ("local", "sharded"))
        if name.endswith(".parquet"):
            assert [_key(i) for i in read_instances(a)] == [_key(i) for i in read_instances(b)]
        else:  # JSON Lines, plain or gzip: the same bytes
            assert a.read_bytes() == b.read_bytes(), name
    assert sharded["engine"]["shards"] == len(plan_shards(src, shard_size=3)) >= 3
    chunked = _sharded_run(src, tmp_path / "chunked", server, cascade=_cascade(server, chunk_size=4))
    assert chunked["engine"]["shard_size"] == 4  # shards hold whole cascade chunks (3 rounded up to 4)
    assert (tmp_path / "chunked" / "verdicts.jsonl").read_bytes() == (
        tmp_path / "local" / "verdicts.jsonl"
    ).read_bytes()
    assert sharded["fix"] == {**local["fix"], "output": sharded["fix"]["output"]} and sharded["reconciled"]
    for a, b in zip(local["cascade"]["stages"], sharded["cascade"]["stages"]):
        assert {k: v for k, v in a.items() if k not in ("seconds", "backend", "from_store", "judged")} == {
            k: v for k, v in b.items() if k not in ("seconds", "backend", "from_store", "judged")
        }


def test_rerun_reuses_shards_and_a_new_plan_starts_afresh_without_paying(tmp_path, examples_dir, server):
    src = examples_dir / "msmarco_hn_scored.jsonl"
    first = _sharded_run(src, tmp_path / "run", server)
    before = server.requests.count
    again = _sharded_run(src, tmp_path / "run", server)
    assert server.requests.count == before and again["engine"]["shards_reused"] == 4
    shutil.copy(tmp_path / "run" / "verdicts.jsonl", tmp_path / "first.jsonl")
    (tmp_path / "run" / "shards" / "00002.done.json").unlink()
    redo = _sharded_run(src, tmp_path / "run", server)
    assert redo["engine"]["shards_run"] == 1 and server.requests.count == before  # from the store
    other = _sharded_run(src, tmp_path / "run", server, size=4)  # another plan: shards redone, store reused
    assert other["engine"]["shards_run"] == 3 and server.requests.count == before
    assert (tmp_path / "run" / "verdicts.jsonl").read_bytes() == (tmp_path / "first.jsonl").read_bytes()
    assert first["cascade"]["false_negatives"] == other["cascade"]["false_negatives"]
    assert not list((tmp_path / "run" / "shards").glob("*.store.sqlite"))  # merged into the main store


def test_budget_is_never_exceeded_and_the_rerun_pays_only_the_rest(tmp_path, examples_dir, server):
    src = examples_dir / "msmarco_hn_scored.jsonl"
    start = server.requests.count
    # each call reserves its worst case (max_tokens of output) before it is sent: keep max_tokens near what the
    # test server answers, so that a shard's share of the budget fits a few calls
    short = {"max_tokens": 200}
    local = run_judge(input_path=str(src), cascade=_cascade(server, judge=short), output_dir=tmp_path / "local")
    full_cost, calls = local["cascade"]["cost"], server.requests.count - start
    start = server.requests.count
    limit = 0.8 * full_cost  # split over 4 shards: each may spend a fifth of the whole, about two instances
    with pytest.raises(BudgetExceeded, match="--max-cost"):
        _sharded_run(src, tmp_path / "run", server, cascade=_cascade(server, judge=short, max_cost=limit))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["cascade"]["cost"] <= limit and summary["stopped"]
    assert not (tmp_path / "run" / "verdicts.jsonl").exists()
    paid = server.requests.count - start
    assert 0 < paid < calls
    final = _sharded_run(src, tmp_path / "run", server, cascade=_cascade(server, judge=short))
    assert server.requests.count - start == calls  # as many calls as the local run: nothing paid twice
    assert final["cascade"]["false_negatives"] == local["cascade"]["false_negatives"]


def test_a_bad_line_fails_as_in_the_local_engine(tmp_path, server):
    src = tmp_path / "bad.jsonl"
    shutil.copy(BAD / "invalid_json.jsonl", src)
    with pytest.raises(InputError) as local_err:
        run_judge(input_path=str(src), cascade=_cascade(server), output_dir=tmp_path / "local", on_error="fail")
    with pytest.raises(InputError) as sharded_err:
        _sharded_run(src, tmp_path / "sharded", server, size=1, on_error="fail")
    assert str(sharded_err.value) == str(local_err.value) and ":2:" in str(local_err.value)
    assert not (tmp_path / "sharded" / "verdicts.jsonl").exists()


def test_dry_run_estimates_add_up(tmp_path, examples_dir, server):
    src = examples_dir / "msmarco_hn_scored.jsonl"
    before = server.requests.count
    local = run_judge(input_path=str(src), cascade=_cascade(server), output_dir=tmp_path / "l", dry_run=True)
    sharded = _sharded_run(src, tmp_path / "s", server, dry_run=True, fix=None)
    assert server.requests.count == before
    a, b = local["cascade"]["stages"][1], sharded["cascade"]["stages"][1]
    assert (a["est_tokens_in"], a["est_tokens_out"]) == (b["est_tokens_in"], b["est_tokens_out"]) != (0, 0)
    assert b["est_cost"] == pytest.approx(a["est_cost"])
    assert not (tmp_path / "s" / "verdicts.jsonl").exists()
