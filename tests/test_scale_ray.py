"""The Ray engine on a real local Ray instance (``ray.init(num_cpus=2)``), against the local engine.

Judging: duplicate screen -> MiniLM similarity screen -> listwise LLM (loopback OpenAI server) -> relabel,
and a Batch-API stage; mining: hybrid retrieval (MiniLM + FAISS and BM25). Outputs must be byte-identical.
Models compute with one thread per Ray worker (Ray gives each actor its CPUs as threads), so the local
engine runs with one thread too: PyTorch's kernels, and so the last bits of an embedding, depend on the
thread count (docs/scale.md).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("sentence_transformers")
pytest.importorskip("aiohttp")

from negclean.cascade.stages import CascadeConfig  # noqa: E402
from negclean.pipeline import FixConfig, run_judge  # noqa: E402
from negclean.scale.ray_judge import run_judge_ray  # noqa: E402
from negclean.scale.runtime import RayOptions  # noqa: E402
from negclean.testing.batch_server import BatchTestServer  # noqa: E402
from negclean.testing.openai_server import OpenAITestServer  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def one_thread():
    """The local engine with the thread count of a 1-CPU Ray worker."""
    import faiss
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(before)
    faiss.omp_set_num_threads(before)


def _cascade(base_url: str) -> CascadeConfig:
    return CascadeConfig.model_validate(
        {
            "stages": [
                {"name": "dup", "judge": {"backend": "duplicate"}, "escalate": "cleared"},
                {
                    "name": "screen",
                    "judge": {"backend": "similarity", "ratio": 0.9},
                    "escalate": "flagged",
                    "audit_rate": 0.1,
                },
                {
                    "name": "llm",
                    "judge": {"backend": "openai", "model": "gpt-4o-mini", "base_url": base_url, "concurrency": 4},
                },
            ],
            "prices": {"gpt-4o-mini": {"input": 0.15, "output": 0.6}},
            "chunk_size": 3,
        }
    )


def test_judge_on_ray_is_identical_to_local_and_resumes(ray_instance, one_thread, tmp_path, examples_dir):
    src = examples_dir / "msmarco_hn_scored.jsonl"
    with OpenAITestServer() as srv:
        local = run_judge(
            input_path=str(src), cascade=_cascade(srv.base_url), output_dir=tmp_path / "local", fix=FixConfig()
        )
        local_calls = srv.requests.count
        opts = RayOptions(shard_size=3, workers=2)
        on_ray = run_judge_ray(
            input_path=str(src),
            cascade=_cascade(srv.base_url),
            output_dir=tmp_path / "ray",
            fix=FixConfig(),
            ray_options=opts,
        )
        assert srv.requests.count == 2 * local_calls  # its own store: it paid once, as the local run did
        for name in ("verdicts.jsonl", "rejects.jsonl", f"fixed.{src.name}"):
            assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name
        assert on_ray["engine"]["shards"] == 4 and on_ray["reconciled"]
        assert local["cascade"]["stages"][1]["audited"] == on_ray["cascade"]["stages"][1]["audited"] > 0
        for a, b in zip(local["cascade"]["stages"], on_ray["cascade"]["stages"]):
            assert (a["relevant"], a["escalated"], a["tokens_in"], a["cost"]) == (
                b["relevant"],
                b["escalated"],
                b["tokens_in"],
                pytest.approx(b["cost"]),
            )
        # a rerun recomputes nothing; a lost shard is redone from the store, without a request
        (tmp_path / "ray" / "shards" / "00001.done.json").unlink()
        again = run_judge_ray(
            input_path=str(src),
            cascade=_cascade(srv.base_url),
            output_dir=tmp_path / "ray",
            fix=FixConfig(),
            ray_options=opts,
        )
        assert srv.requests.count == 2 * local_calls
        assert again["engine"]["shards_run"] == 1 and again["cascade"]["stages"][2]["judged"] == 0
    assert (tmp_path / "local" / "verdicts.jsonl").read_bytes() == (tmp_path / "ray" / "verdicts.jsonl").read_bytes()


def test_batch_api_stage_on_ray(ray_instance, tmp_path, examples_dir):
    src = examples_dir / "msmarco_hn_scored.jsonl"
    with BatchTestServer() as srv:
        stage = {
            "backend": "openai-batch",
            "model": "gpt-4o-mini",
            "base_url": srv.base_url,
            "poll_interval": 0.02,
            "max_poll_interval": 0.1,
            "state_dir": str(tmp_path / "batches"),
        }
        # a cascade chunk is one batch job: 2 chunks of 5 instances, in one process or in two workers
        cascade = CascadeConfig.model_validate({"stages": [{"name": "llm", "judge": stage}], "chunk_size": 5})
        local = run_judge(input_path=str(src), cascade=cascade, output_dir=tmp_path / "local")
        shutil.rmtree(tmp_path / "batches")
        on_ray = run_judge_ray(
            input_path=str(src),
            cascade=cascade,
            output_dir=tmp_path / "ray",
            ray_options=RayOptions(shard_size=5, workers=2),
        )
        assert len(srv.batch_list()) == 2 + 2 and on_ray["engine"]["shards"] == 2
    assert (tmp_path / "local" / "verdicts.jsonl").read_bytes() == (tmp_path / "ray" / "verdicts.jsonl").read_bytes()
    assert on_ray["cascade"]["cost"] == pytest.approx(local["cascade"]["cost"])


TOPICS = {
    "astro": "galaxy star orbit telescope planet nebula comet cosmic solar lunar",
    "bio": "cell protein gene enzyme membrane dna tissue neuron virus bacteria",
    "cook": "bread butter oven flour sugar recipe bake dough salt pepper",
    "sport": "football goal match team coach league player score stadium season",
}


def _beir(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root / "qrels").mkdir(parents=True)
    with (
        open(root / "corpus.jsonl", "w") as c,
        open(root / "queries.jsonl", "w") as q,
        open(root / "qrels" / "train.tsv", "w") as r,
    ):
        r.write("query-id\tcorpus-id\tscore\n")
        for name, vocab in TOPICS.items():
            words = vocab.split()
            for j in range(40):
                c.write(json.dumps({"_id": f"{name}-{j}", "title": "", "text": " ".join(rng.choice(words, 6))}) + "\n")
            for k in range(3):
                q.write(json.dumps({"_id": f"q-{name}-{k}", "text": " ".join(words[k : k + 3])}) + "\n")
                r.write(f"q-{name}-{k}\t{name}-{k}\t1\n")
    return root


def test_mine_on_ray_is_identical_to_local_and_resumes(ray_instance, one_thread, tmp_path):
    pytest.importorskip("faiss")
    pytest.importorskip("bm25s")
    from negclean.mine.mine import mine
    from negclean.scale.ray_mine import mine_ray

    folder = _beir(tmp_path / "beir")
    options = dict(beir=str(folder), retriever="hybrid", rank_range="0:30", num_negatives=5, query_chunk=2)
    local = mine(output=tmp_path / "local.jsonl", cache_dir=str(tmp_path / "cache-local"), **options)
    opts = RayOptions(shard_size=3, workers=2)
    on_ray = mine_ray(output=tmp_path / "ray.jsonl", use_cache=False, ray_options=opts, **options)
    assert (tmp_path / "local.jsonl").read_bytes() == (tmp_path / "ray.jsonl").read_bytes()
    a, b = local.as_dict(), on_ray.as_dict()
    for key in (
        "queries_written",
        "negatives_written",
        "candidates",
        "dropped",
        "shortfall",
        "scores",
        "queries_with_candidate_above_lowest_positive",
        "params_hash",
    ):
        assert a[key] == b[key], key
    assert b["retriever"]["shards"] == 3 and b["retriever"]["shards_reused"] == 0
    again = mine_ray(output=tmp_path / "ray.jsonl", use_cache=False, ray_options=opts, **options)
    assert again.retriever["shards_reused"] == 3
    assert (tmp_path / "local.jsonl").read_bytes() == (tmp_path / "ray.jsonl").read_bytes()


def test_cli_engine_ray(ray_instance, tmp_path, examples_dir):
    from typer.testing import CliRunner

    from negclean.cli.main import app

    src = str(examples_dir / "msmarco_hn_scored.jsonl")
    cascade = tmp_path / "dup.yaml"
    cascade.write_text("stages:\n  - name: dup\n    judge: {backend: duplicate}\nchunk_size: 4\n")
    runner = CliRunner()
    local = runner.invoke(app, ["judge", src, "-c", str(cascade), "-o", str(tmp_path / "local"), "--json"])
    on_ray = runner.invoke(
        app,
        [
            "scale",
            "judge",
            src,
            "-c",
            str(cascade),
            "-o",
            str(tmp_path / "ray"),
            "--engine",
            "ray",
            "--shard-size",
            "4",
            "--workers",
            "2",
            "--json",
        ],
    )
    assert local.exit_code == on_ray.exit_code == 0, on_ray.output
    assert json.loads(on_ray.output)["engine"]["shards"] == 3
    assert (tmp_path / "local" / "verdicts.jsonl").read_bytes() == (tmp_path / "ray" / "verdicts.jsonl").read_bytes()
