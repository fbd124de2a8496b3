"""Selection logic of the mining stage: window, filters (sign-safe), sampling distributions, RRF,
FAISS index kinds, the embedding cache, config validation. No model needed."""

from __future__ import annotations

import numpy as np
import pytest

from negclean.errors import ConfigError
from negclean.mine.config import MineConfig, parse_range
from negclean.mine.select import (
    KEPT,
    query_rng,
    sample_positions,
    score_filter_masks,
    select,
    select_chunk,
    simans_probabilities,
    window_columns,
)


def test_parse_range():
    assert parse_range("10:100") == (10, 100)
    assert parse_range(":50") == (0, 50)
    assert parse_range((0, 5)) == (0, 5)
    for bad in ("10", "100:10", "a:b", "5:5"):
        with pytest.raises(ValueError):
            parse_range(bad)


def test_config_errors_are_actionable(tmp_path):
    with pytest.raises(ConfigError, match="exactly one source"):
        MineConfig.from_options({})
    with pytest.raises(ConfigError, match="rank_range"):
        MineConfig.from_options({"beir": "x", "range": "100:10"})
    with pytest.raises(ConfigError, match="min_score"):
        MineConfig.from_options({"beir": "x", "min_score": 0.5, "max_score": 0.2})
    with pytest.raises(ConfigError, match="sampling"):
        MineConfig.from_options({"beir": "x", "sampling": "best"})
    cfg = MineConfig.from_options({"beir": "x", "range": "5:50", "batch_size": 8})
    same = MineConfig.from_options({"beir": "elsewhere", "range": "5:50", "batch_size": 128, "cache_dir": "/c"})
    other = MineConfig.from_options({"beir": "x", "range": "5:51"})
    assert cfg.params_hash() == same.params_hash() != other.params_hash()
    assert cfg.params()["rank_range"] == "5:50" and "beir" not in cfg.params()


def test_window_columns_skip_and_pad():
    row = np.array([7, 3, 9, 1, -1, -1])

    def window_positions(start, end):  # window columns that hold a candidate
        cols = np.arange(row.size)[window_columns(row.size, start, end)]
        return cols[row[cols] >= 0]

    assert window_positions(0, 3).tolist() == [0, 1, 2]
    assert window_positions(1, 6).tolist() == [1, 2, 3]  # ranks 2..6, empty slots dropped
    assert window_positions(5, 10).tolist() == []


def test_ratio_filter_is_sign_safe():
    scores = np.array([-0.30, -0.215, -0.205, -0.19, 0.1])
    masks = score_filter_masks(scores, -0.2, ratio=0.95, margin=None, max_score=None, min_score=None)
    # threshold -0.2 - 0.05*0.2 = -0.21: drop what scores above it, keep what is clearly below the positive
    assert masks["ratio"].tolist() == [False, False, True, True, True]
    # the naive 0.95 * s_p = -0.19 would keep -0.205, a candidate scoring ABOVE the positive
    masks = score_filter_masks(
        np.array([0.70, 0.76, 0.77, 0.9]), 0.8, ratio=0.95, margin=None, max_score=None, min_score=None
    )
    assert masks["ratio"].tolist() == [False, False, True, True]


def test_margin_and_absolute_filters_and_attribution():
    scores = np.array([0.9, 0.75, 0.6, 0.4, 0.2, 0.05])
    excl = {
        "positive": np.array([True, False, False, False, False, False]),
        "judged_relevant": np.zeros(6, bool),
        "duplicate": np.array([False, False, False, True, False, False]),
    }
    sel = select(
        scores,
        exclusions=excl,
        s_pos=0.8,
        num_negatives=10,
        sampling="top",
        rng=query_rng(0, "q"),
        ratio=None,
        margin=0.1,
        max_score=0.5,
        min_score=0.1,
    )
    assert sel.dropped["positive"].tolist() == [0]
    assert sel.dropped["margin"].tolist() == [1]  # 0.75 > 0.8 - 0.1
    assert sel.dropped["max_score"].tolist() == [2]  # 0.6 > 0.5
    assert sel.dropped["duplicate"].tolist() == [3]  # attributed once, to the first reason
    assert sel.dropped["min_score"].tolist() == [5]
    assert sel.kept.tolist() == [4]
    assert sel.survivors == 1 and sel.shortfall == 9
    assert "ratio" not in sel.dropped


def test_duplicate_checks_come_last_and_top_examines_only_what_it_needs():
    scores = np.linspace(0.9, 0.1, 12)
    dup_positions = {1, 2, 5, 9}
    seen = []

    def is_dup(positions):
        seen.append(positions.tolist())
        return np.array([p in dup_positions for p in positions])

    excl = {"positive": np.eye(12, dtype=bool)[0], "judged_relevant": np.zeros(12, bool)}
    sel = select(
        scores,
        exclusions=excl,
        s_pos=0.95,
        num_negatives=4,
        sampling="top",
        rng=None,
        ratio=None,
        max_score=0.8,
        is_duplicate=is_dup,
    )
    # 0 positive, 1 (0.83) above the ceiling: never sent to the duplicate check
    assert sel.dropped["max_score"].tolist() == [1]
    assert seen == [[2, 3, 4, 5], [6, 7]]  # batches of exactly what is still missing
    assert sel.kept.tolist() == [3, 4, 6, 7]
    assert sel.dropped["duplicate"].tolist() == [2, 5] and sel.examined == 6
    seen.clear()
    sel = select(
        scores,
        exclusions=excl,
        s_pos=0.95,
        num_negatives=4,
        sampling="random",
        rng=query_rng(0, "q"),
        ratio=None,
        max_score=0.8,
        is_duplicate=is_dup,
    )
    assert seen == [[2, 3, 4, 5, 6, 7, 8, 9, 10, 11]]  # random sampling needs all of them checked
    assert sel.dropped["duplicate"].tolist() == [2, 5, 9] and not set(sel.kept.tolist()) & dup_positions


@pytest.mark.parametrize("sampling", ["top", "random", "simans"])
def test_a_chunk_selects_each_row_as_if_alone(sampling):
    """Vectorised over a chunk, every row's outcome (kept, each reason, examined, survivors) is exactly
    what selecting its window alone gives: nothing leaks between rows (cumulative sums, duplicate batches)."""
    rng = np.random.default_rng(11)
    n, w, k = 40, 30, 6
    scores = np.sort(rng.uniform(-0.5, 1.0, size=(n, w)), axis=1)[:, ::-1].copy()
    valid = np.ones((n, w), dtype=bool)
    valid[:5, 20:] = False  # rows whose corpus ran out
    pos = rng.random((n, w)) < 0.05
    judged = rng.random((n, w)) < 0.03
    s_pos = rng.uniform(-0.3, 0.9, size=n)
    s_pos[::7] = np.nan  # no positive score: positive-aware filters keep all
    dup_of = rng.random((n, w)) < 0.2  # which (row, position) is a duplicate

    def check(rows, cols):
        return dup_of[rows, cols]

    opts = dict(
        num_negatives=k,
        sampling=sampling,
        ratio=0.9,
        margin=None,
        max_score=0.95,
        min_score=-0.4,
        simans_a=2.0,
        simans_b=0.1,
    )
    if sampling == "simans":
        s_pos[::7] = 0.5  # SimANS needs the positive's score
    sel = select_chunk(
        scores,
        valid=valid,
        exclusions={"positive": pos, "judged_relevant": judged},
        s_pos=s_pos,
        rngs=[query_rng(0, f"q{i}") for i in range(n)],
        is_duplicate=check,
        **opts,
    )
    for i in range(n):
        m = int(valid[i].sum())
        one = select(
            scores[i, :m],
            exclusions={"positive": pos[i, :m], "judged_relevant": judged[i, :m]},
            s_pos=None if np.isnan(s_pos[i]) else float(s_pos[i]),
            rng=query_rng(0, f"q{i}"),
            is_duplicate=lambda cols, i=i: dup_of[i, cols],
            **opts,
        )
        assert np.flatnonzero(sel.codes[i] == KEPT).tolist() == one.kept.tolist(), i
        assert int(sel.examined[i]) == one.examined and int(sel.survivors[i]) == one.survivors
        assert int(sel.shortfall[i]) == one.shortfall
        for reason, positions in one.dropped.items():
            from negclean.mine.select import CODE

            assert np.flatnonzero(sel.codes[i] == CODE[reason]).tolist() == positions.tolist(), (i, reason)
    assert (sel.codes[~valid] == -1).all()
    assert sel.shortfall.any() and (sel.codes == KEPT).any()


def test_no_positive_score_skips_positive_aware_filters_only():
    masks = score_filter_masks(np.array([0.9, 0.1]), None, ratio=0.95, margin=0.1, max_score=0.5, min_score=None)
    assert set(masks) == {"max_score"}


def test_top_and_random_sampling():
    scores = np.linspace(0.9, 0.1, 20)
    assert sample_positions(scores, 5, how="top", rng=query_rng(0, "a")).tolist() == [0, 1, 2, 3, 4]
    r1 = sample_positions(scores, 5, how="random", rng=query_rng(0, "a"))
    r2 = sample_positions(scores, 5, how="random", rng=query_rng(0, "a"))
    r3 = sample_positions(scores, 5, how="random", rng=query_rng(0, "b"))
    assert r1.tolist() == r2.tolist() != r3.tolist()
    assert len(set(r1.tolist())) == 5 and list(r1) == sorted(r1)
    assert sample_positions(scores[:3], 5, how="random", rng=query_rng(0, "a")).tolist() == [0, 1, 2]


def test_random_sampling_is_uniform():
    rng = np.random.default_rng(1)
    counts = np.zeros(10)
    for _ in range(20000):
        counts[sample_positions(np.zeros(10), 3, how="random", rng=rng)] += 1
    expected = 20000 * 3 / 10
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 27.9  # chi-square, 9 dof, p = 0.001


def test_simans_first_draw_follows_its_distribution():
    """k=1 draws must follow p ~ exp(-a (s - s_p - b)^2): chi-square goodness of fit, fixed seed."""
    from scipy.stats import chisquare

    scores = np.linspace(0.8, 0.2, 13)
    s_pos, a, b = 0.75, 20.0, -0.2
    p = simans_probabilities(scores, s_pos, a=a, b=b)
    assert p.argmax() == np.abs(scores - (s_pos + b)).argmin()  # the peak is at s_pos + b
    rng = np.random.default_rng(1234)
    n = 30000
    counts = np.bincount(
        [int(sample_positions(scores, 1, how="simans", rng=rng, s_pos=s_pos, a=a, b=b)[0]) for _ in range(n)],
        minlength=scores.size,
    )
    stat, pvalue = chisquare(counts, p * n)
    assert pvalue > 0.001, (counts, p * n)
    # and it is not uniform, nor top-k
    assert chisquare(counts, np.full(scores.size, n / scores.size)).pvalue < 1e-6


def test_simans_without_replacement_matches_successive_sampling():
    """k=2: the pair frequencies match sequential sampling with p renormalised after the first pick."""
    scores = np.array([0.7, 0.6, 0.5, 0.4])
    s_pos, a, b = 0.7, 30.0, -0.1
    p = simans_probabilities(scores, s_pos, a=a, b=b)
    expect = np.zeros(4)
    for i in range(4):
        for j in range(4):
            if i != j:
                pr = p[i] * p[j] / (1 - p[i])
                expect[i] += pr
                expect[j] += pr
    rng = np.random.default_rng(7)
    n = 20000
    counts = np.zeros(4)
    for _ in range(n):
        counts[sample_positions(scores, 2, how="simans", rng=rng, s_pos=s_pos, a=a, b=b)] += 1
    assert np.allclose(counts / n, expect, atol=0.015)


def test_rrf_fuse():
    from negclean.mine.hybrid import rrf_fuse

    scores, idx, (ra, rb) = rrf_fuse([np.array([5, 1, 2, -1]), np.array([1, 7, 5])], k=60, depth=4)
    assert idx.tolist() == [1, 5, 7, 2]  # 1: 1/62+1/61; 5: 1/61+1/63; 7: 1/62 (best rank 2) vs 2: 1/63
    assert scores[0] == pytest.approx(1 / 62 + 1 / 61)
    assert ra == {5: 1, 1: 2, 2: 3} and rb == {1: 1, 7: 2, 5: 3}
    scores, idx, _ = rrf_fuse([np.array([3])], k=60, depth=3)
    assert idx.tolist() == [3, -1, -1] and np.isnan(scores[1])


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_dense_index_kinds_agree_with_brute_force(kind):
    from negclean.mine.dense import DenseIndex

    rng = np.random.default_rng(0)
    xb = rng.standard_normal((3000, 32)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    xq = xb[:50] + 0.1 * rng.standard_normal((50, 32)).astype(np.float32)
    truth = np.argsort(-(xq @ xb.T), axis=1)[:, :10]
    index = DenseIndex(xb, kind=kind, nprobe=32, ef_search=64)
    scores, idx = index.search(xq, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, truth)])
    assert recall >= (1.0 if kind == "flat" else 0.9)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    exact = index.score(xq[:2], [np.array([5, 1, 2]), np.array([], dtype=np.int64)])
    assert np.allclose(exact[0], xb[[5, 1, 2]] @ xq[0], atol=1e-5) and exact[1].size == 0
    s, i = index.search(xq[:1], 5000)  # deeper than the corpus: padded
    assert i.shape == (1, 5000) and (i[0, 3000:] == -1).all() and np.isnan(s[0, 3000:]).all()


def test_embedding_cache_builds_resumes_and_memory_maps(tmp_path):
    from negclean.mine.cache import EmbeddingCache, embedding_key

    data = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    calls = []

    def encode(a, b):
        calls.append((a, b))
        return data[a:b]

    cache = EmbeddingCache(tmp_path)
    key = embedding_key(model_identity="m", corpus_hash="c", prefix="", include_title=True)
    assert key != embedding_key(model_identity="m", corpus_hash="c", prefix="passage: ", include_title=True)
    assert key != embedding_key(model_identity="m", corpus_hash="d", prefix="", include_title=True)
    arr, hit = cache.build(key, rows=10, encode=encode, chunk=4)
    assert not hit and calls == [(0, 4), (4, 8), (8, 10)]
    assert isinstance(arr, np.memmap) and np.array_equal(arr, data)
    assert np.load(cache.path(key), allow_pickle=False).shape == (10, 4)
    arr, hit = cache.build(key, rows=10, encode=encode)
    assert hit and len(calls) == 3
    # an interrupted build resumes after the last finished chunk
    key2 = embedding_key(model_identity="m", corpus_hash="e", prefix="", include_title=True)

    def failing(a, b):
        if a >= 4:
            raise KeyboardInterrupt
        return data[a:b]

    with pytest.raises(KeyboardInterrupt):
        cache.build(key2, rows=10, encode=failing, chunk=4)
    calls.clear()
    arr, hit = cache.build(key2, rows=10, encode=encode, chunk=4)
    assert calls == [(4, 8), (8, 10)] and np.array_equal(arr, data)
    # a file of the wrong shape is not served
    assert cache.load(key, rows=11) is None


def test_duplicate_finder_agrees_with_the_duplicate_judge():
    """Mining's cached, size-pruned finder flags exactly what the duplicate judge's rules flag."""
    from negclean.data.hashing import normalize_text
    from negclean.data.records import Passage
    from negclean.judge.duplicate import PositiveIndex
    from negclean.mine.beir import Corpus
    from negclean.mine.dedup import DuplicateFinder

    rng = np.random.default_rng(5)
    vocab = [f"w{i}" for i in range(30)]
    base = [" ".join(rng.choice(vocab, size=int(rng.integers(3, 40)))) for _ in range(60)]
    texts = list(base)
    for t in base[:30]:  # edited copies: a word changed, appended, case and spacing changes
        words = t.split()
        words[int(rng.integers(len(words)))] = "zz"
        texts += [" ".join(words), t + " tail", "  " + t.upper() + " "]
    corpus = Corpus([f"d{i}" for i in range(len(texts))], [""] * len(texts), texts)
    for threshold in (0.9, 0.7, None):
        finder = DuplicateFinder(corpus, near_threshold=threshold, cache_elements=50)  # tiny LRU: evictions too
        flagged = 0
        asked = []
        for q in range(30):
            positives = [Passage("p", base[q]), Passage("p2", base[(q + 7) % 60])]
            docs = rng.permutation(len(texts))[:80]
            got = finder.find(docs, positives, query=texts[(q + 3) % len(texts)])
            asked.append((docs, positives, texts[(q + 3) % len(texts)]))
            index = PositiveIndex(positives, near_threshold=threshold)
            query_norm = normalize_text(texts[(q + 3) % len(texts)])
            want = [
                index.match(Passage("c", texts[d])) is not None or normalize_text(texts[d]) == query_norm for d in docs
            ]
            assert got.tolist() == want
            flagged += int(got.sum())
        assert flagged >= 20, threshold  # the comparison saw real duplicates
        # all 30 queries as one chunk, candidates shuffled across queries: the same answers
        check = DuplicateFinder(corpus, near_threshold=threshold).for_chunk([(p, q, None) for _, p, q in asked])
        rows = np.repeat(np.arange(len(asked)), [len(d) for d, _, _ in asked])
        docs = np.concatenate([d for d, _, _ in asked])
        order = rng.permutation(rows.size)
        together = np.empty(rows.size, dtype=bool)
        together[order] = check(rows[order], docs[order])
        alone = np.concatenate([finder.find(d, p, query=q) for d, p, q in asked])
        assert together.tolist() == alone.tolist()


def test_fast_normalize_equals_normalize_text_on_every_code_point():
    """The two can only differ on characters that are, or normalise to, white space: check every code
    point for that, then compare both functions on each such character (and on ordinary text)."""
    import re
    import sys
    import unicodedata

    from negclean.data.hashing import normalize_text
    from negclean.mine.dedup import fast_normalize

    ws = re.compile(r"\s")
    special = []
    for c in range(sys.maxunicode + 1):
        ch = chr(c)
        if ch.isspace() or ws.match(ch) or ws.search(unicodedata.normalize("NFKC", ch)):
            special.append(ch)
    assert " " in special and "\u00a0" in special and "\u3000" in special
    for ch in special + ["x", "\u00c5", "\ufb01", "\u2460"]:
        text = f" A{ch}b \u00a0C{ch}{ch}d "
        assert fast_normalize(text) == normalize_text(text), hex(ord(ch))
