"""Model-free and cheap judges: duplicate, embedding similarity (real MiniLM), qrels oracle."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from negclean.data.records import Instance, Passage
from negclean.errors import ConfigError, InputError
from negclean.judge.base import Grade, Judge, JudgeTask, Label
from negclean.judge.config import DuplicateJudgeConfig, QrelsJudgeConfig, SimilarityJudgeConfig, build_judge
from negclean.judge.duplicate import jaccard, shingles
from negclean.judge.similarity import band_confidence, ratio_threshold, relative_score

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(os.environ.get("NEGCLEAN_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))

LONG = (
    "Vitamin D deficiency is associated with an increased risk of respiratory infections in children "
    "according to a large cohort study that followed participants for ten years and adjusted for age "
    "sex body mass index season of blood draw and socioeconomic status"
)


def task(query: str, positives: list[Passage], negatives: list[Passage], qid: str = "q1") -> JudgeTask:
    inst = Instance(qid, query, tuple(positives), tuple(negatives))
    return JudgeTask(inst, tuple(range(len(negatives))))


# ---------------------------------------------------------------- duplicate


def test_shingles_and_jaccard():
    assert shingles("a b c d") == frozenset({("a", "b", "c"), ("b", "c", "d")})
    assert shingles("a b") == frozenset({("a", "b")})
    assert shingles("") == frozenset()
    a, b = shingles("a b c d"), shingles("a b c e")
    assert jaccard(a, b) == pytest.approx(1 / 3)
    assert jaccard(frozenset(), frozenset()) == 0.0


def test_duplicate_judge_rules():
    judge = build_judge(DuplicateJudgeConfig())
    assert isinstance(judge, Judge) and judge.listwise is False
    pos = Passage("p1", LONG)
    negs = [
        Passage("n1", "  " + LONG.upper().replace(" ", "\n  ")),  # exact after normalisation
        Passage("n2", LONG + " overall"),  # near copy: Jaccard 38/39
        Passage("p1", "a different text that carries the positive's docid"),
        Passage("n4", "Bananas are a good source of potassium."),
        Passage("n5", " ".join(LONG.split()[:20])),  # half of the positive: Jaccard ~0.47
    ]
    [res] = judge.judge([task("vitamin d?", [pos], negs)])
    v = res.verdicts
    assert len(v) == len(negs)
    assert v[0].label is Label.RELEVANT and v[0].grade is Grade.BETTER and v[0].confidence == 1.0
    assert "exact" in v[0].reason and "p1" in v[0].reason
    assert v[1].label is Label.RELEVANT and "near" in v[1].reason
    assert v[2].label is Label.RELEVANT and "docid" in v[2].reason
    for i in (3, 4):
        assert v[i].label is Label.NOT_RELEVANT and v[i].confidence is None and not v[i].flagged
    assert judge.estimate_tokens(task("q", [pos], negs)) == (0, 0)


def test_duplicate_threshold_and_title():
    pos = Passage("p1", LONG, title="Vitamin D")
    half = Passage("n", " ".join(LONG.split()[:20]))
    loose = build_judge(DuplicateJudgeConfig(near_threshold=0.4))
    strict = build_judge(DuplicateJudgeConfig(near_threshold=0.5))
    assert loose.judge([task("q", [pos], [half])])[0].verdicts[0].flagged
    assert not strict.judge([task("q", [pos], [half])])[0].verdicts[0].flagged
    assert loose.fingerprint != strict.fingerprint
    # with titles compared, the same body under another title is no longer an exact copy
    other_title = Passage("n", LONG, title="Something else entirely here")
    titled = build_judge(DuplicateJudgeConfig(include_title=True, near_threshold=1.0))
    assert build_judge(DuplicateJudgeConfig()).judge([task("q", [pos], [other_title])])[0].verdicts[0].flagged
    assert not titled.judge([task("q", [pos], [other_title])])[0].verdicts[0].flagged


# ---------------------------------------------------------------- similarity: pure functions


def test_ratio_threshold_is_sign_safe():
    assert ratio_threshold(0.8, 0.95) == pytest.approx(0.76)
    # a negative positive score: the threshold must stay below it (close to or above the positive)
    assert ratio_threshold(-0.2, 0.95) == pytest.approx(-0.21)
    assert ratio_threshold(-0.2, 0.95) < -0.2
    assert 0.95 * -0.2 > -0.2  # the naive rule would demand more than the positive's own score
    for s_p in (-0.5, -0.01, 0.3):
        for s_c in np.linspace(-1, 1, 41):
            assert (relative_score(s_c, s_p) > 0.9) == (s_c > ratio_threshold(s_p, 0.9) + 1e-12) or abs(
                s_c - ratio_threshold(s_p, 0.9)
            ) < 1e-9


def test_relative_score_monotone_and_band():
    s_c = np.linspace(-1, 1, 101)
    for s_p in (-0.4, 0.0, 0.6):
        rel = relative_score(s_c, s_p)
        assert np.all(np.diff(rel) > 0)
    assert relative_score(0.6, 0.8) == pytest.approx(0.75)
    conf = band_confidence(np.array([0.5, 0.8, 0.925, 1.05, 2.0]), (0.8, 1.05))
    assert conf.tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])


class TableEmbedder:
    """Returns fixed vectors per text, to test the decision rule with exact (and negative) scores."""

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = {k: v / np.linalg.norm(v) for k, v in table.items()}
        self.calls = 0

    def encode(self, texts, *, prefix="", batch_size=64):
        self.calls += 1
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


def unit(angle_deg: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([np.cos(a), np.sin(a)])


def test_similarity_rule_with_negative_positive_score():
    # query at 0 deg; positive at 100 deg: s(q,p) = cos(100) ~ -0.174
    table = {"q": unit(0), "pos": unit(100), "close": unit(100.2), "above": unit(95), "far": unit(120)}
    emb = TableEmbedder(table)
    from negclean.judge.similarity import SimilarityJudge

    judge = SimilarityJudge(SimilarityJudgeConfig(ratio=0.95, margin=None), embedder=emb)
    s_p = float(np.cos(np.deg2rad(100)))
    # threshold: s_p - 0.05*|s_p| ~ -0.1823; cos(100.2) ~ -0.1771 passes, cos(120) = -0.5 does not
    negs = [Passage("c", "close"), Passage("a", "above"), Passage("f", "far")]
    [res] = judge.judge([task("q", [Passage("p", "pos")], negs)])
    labels = [v.label for v in res.verdicts]
    assert labels == [Label.RELEVANT, Label.RELEVANT, Label.NOT_RELEVANT]
    assert res.verdicts[0].grade is Grade.BETTER
    assert f"{s_p:.4f}" in res.verdicts[0].reason
    confs = [v.confidence for v in res.verdicts]
    assert confs[1] >= confs[0] > confs[2] == 0.0


def test_similarity_uses_lowest_positive_and_margin():
    from negclean.judge.similarity import SimilarityJudge

    table = {"q": unit(0), "p_hi": unit(10), "p_lo": unit(60), "mid": unit(55), "low": unit(80)}
    # ratio rule against the LOWEST positive (cos 60 = 0.5): mid (0.574) is flagged, low (0.174) is not
    j = SimilarityJudge(SimilarityJudgeConfig(ratio=0.95), embedder=TableEmbedder(table))
    [res] = j.judge(
        [task("q", [Passage("1", "p_hi"), Passage("2", "p_lo")], [Passage("m", "mid"), Passage("l", "low")])]
    )
    assert [v.flagged for v in res.verdicts] == [True, False]
    # margin only: flag when s_c > 0.5 - 0.4 = 0.1 -> both
    j = SimilarityJudge(SimilarityJudgeConfig(ratio=None, margin=0.4), embedder=TableEmbedder(table))
    [res] = j.judge(
        [task("q", [Passage("1", "p_hi"), Passage("2", "p_lo")], [Passage("m", "mid"), Passage("l", "low")])]
    )
    assert [v.flagged for v in res.verdicts] == [True, True]


def test_similarity_config_validation_and_fingerprint():
    from negclean.judge.similarity import SimilarityJudge

    with pytest.raises(ConfigError, match="ratio"):
        SimilarityJudge(SimilarityJudgeConfig(ratio=None, margin=None))
    with pytest.raises(ConfigError, match="band"):
        SimilarityJudge(SimilarityJudgeConfig(band=(1.0, 0.5)))
    a = SimilarityJudge(SimilarityJudgeConfig(batch_size=8))
    b = SimilarityJudge(SimilarityJudgeConfig(batch_size=128, device="cpu"))
    c = SimilarityJudge(SimilarityJudgeConfig(ratio=0.9))
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert a.judge_id == "similarity:all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def minilm():
    from negclean.embed import load_embedder

    return load_embedder("all-MiniLM-L6-v2")


def test_embedder_names_and_vectors(minilm):
    from negclean.embed import encode, load_embedder, model_identity

    assert load_embedder("sentence-transformers/all-MiniLM-L6-v2").model is not None
    assert load_embedder("all-MiniLM-L6-v2") is minilm  # cached per process
    v = encode(["hello world", "a cat"], prefix="query: ")
    assert v.shape == (2, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)
    assert model_identity("all-MiniLM-L6-v2") == model_identity("sentence-transformers/all-MiniLM-L6-v2")


def test_embedder_bad_name_is_actionable():
    from negclean.embed import load_embedder

    with pytest.raises(ConfigError, match="cannot load embedding model"):
        load_embedder("/nonexistent/model/dir")


def test_similarity_judge_real_model_batches(minilm):
    from negclean.judge.similarity import SimilarityJudge

    calls = []

    class Counting:
        def encode(self, texts, **kw):
            calls.append(len(texts))
            return minilm.encode(texts, **kw)

    judge = SimilarityJudge(SimilarityJudgeConfig(ratio=0.9), embedder=Counting())
    pos = Passage("p", "Paris is the capital and largest city of France.")
    t1 = task(
        "What is the capital of France?",
        [pos],
        [Passage("d", "The capital city of France is Paris."), Passage("b", "Bananas are a good source of potassium.")],
    )
    t2 = task(
        "How do plants make food?",
        [Passage("p2", "Plants make food by photosynthesis using sunlight.")],
        [
            Passage("b", "Bananas are a good source of potassium."),
            Passage("ph", "Photosynthesis lets plants turn light, water and CO2 into sugar."),
        ],
        qid="q2",
    )
    r1, r2 = judge.judge([t1, t2])
    assert len(calls) == 2  # one call for all queries, one for all distinct passages
    assert calls[1] == 5
    assert r1.verdicts[0].flagged and not r1.verdicts[1].flagged
    assert not r2.verdicts[0].flagged
    assert r1.verdicts[0].confidence > r1.verdicts[1].confidence
    assert judge.judge([JudgeTask(t1.instance, ())])[0].verdicts == ()


# ---------------------------------------------------------------- qrels


def test_qrels_trec_and_beir(tmp_path):
    trec = tmp_path / "q.trec"
    trec.write_text("1 0 d1 2\n1 0 d2 0\n1 0 d3 1\n\n2 Q0 d9 3\n")
    beir = tmp_path / "q.tsv.gz"
    with gzip.open(beir, "wt") as fh:
        fh.write("query-id\tcorpus-id\tscore\n1\td1\t2\n1\td2\t0\n1\td3\t1\n2\td9\t3\n")
    negs = [Passage(d, "t") for d in ("d1", "d2", "d3", "d4")]
    for path in (trec, beir):
        judge = build_judge(QrelsJudgeConfig(path=str(path), min_grade=2))
        [res] = judge.judge([task("q", [Passage("x", "t")], negs, qid="1")])
        v = res.verdicts
        assert [x.label for x in v] == [Label.RELEVANT, Label.NOT_RELEVANT, Label.NOT_RELEVANT, Label.NOT_RELEVANT]
        assert v[0].confidence == 1.0 and v[0].grade is Grade.BETTER
        assert v[1].confidence == 0.0 and v[3].confidence is None and "not judged" in v[3].reason
    und = build_judge(QrelsJudgeConfig(path=str(trec), unjudged="undecided"))
    [res] = und.judge([task("q", [Passage("x", "t")], negs, qid="1")])
    assert [x.label for x in res.verdicts] == [Label.RELEVANT, Label.NOT_RELEVANT, Label.RELEVANT, Label.UNDECIDED]
    [res] = und.judge([task("q", [Passage("x", "t")], negs, qid="zzz")])
    assert all(x.label is Label.UNDECIDED and "query not in qrels" in x.reason for x in res.verdicts)


def test_qrels_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("query-id\tcorpus-id\tscore\n1\td1\t1\n1\td2\n")
    with pytest.raises(InputError, match=r"bad.tsv:3: expected 3 fields"):
        build_judge(QrelsJudgeConfig(path=str(bad)))
    bad.write_text("1\td1\t1\n1\td2\thigh\n")
    with pytest.raises(InputError, match=r"bad.tsv:2: relevance grade 'high'"):
        build_judge(QrelsJudgeConfig(path=str(bad)))
    with pytest.raises(InputError, match="not found"):
        build_judge(QrelsJudgeConfig(path=str(tmp_path / "missing.tsv")))


def test_qrels_fingerprint_follows_content(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text("1\td1\t1\n")
    a = build_judge(QrelsJudgeConfig(path=str(path)))
    path.write_text("1\td1\t0\n")
    b = build_judge(QrelsJudgeConfig(path=str(path)))
    assert a.fingerprint != b.fingerprint


def test_qrels_real_trec_dl():
    path = SHARED / "trec-dl-2019-passage" / "qrels" / "test.tsv"
    if not path.is_file():
        pytest.skip(f"shared data not found at {path} (set NEGCLEAN_SHARED_DATA)")
    from negclean.judge.qrels import read_qrels

    qrels = read_qrels(path)
    assert len(qrels) == 43
    assert sum(len(d) for d in qrels.values()) == 9260
