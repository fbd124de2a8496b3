"""Training groups (Tevatron-style rotation of positives and negatives) and the epoch-block batch sampler."""

from __future__ import annotations

import pytest

from negclean.data.records import Instance, Passage
from negclean.train.groups import build_groups, passage_text


def inst(qid, n_pos=1, n_neg=7, subset=""):
    pos = tuple(Passage(f"{qid}-p{i}", f"positive {i} of {qid}", title=f"T{i}") for i in range(n_pos))
    neg = tuple(Passage(f"{qid}-n{i}", f"negative {i} of {qid}") for i in range(n_neg))
    return Instance(qid, f"query {qid}", pos, neg, subset=subset)


def test_positives_rotate_across_epochs():
    per_epoch, stats = build_groups([inst("a", n_pos=3), inst("b")], epochs=3, hard_negatives=2, seed=1)
    used = [per_epoch[e][0].positive_docid for e in range(3)]
    assert sorted(used) == ["a-p0", "a-p1", "a-p2"]  # each positive once in three epochs
    assert {per_epoch[e][1].positive_docid for e in range(3)} == {"b-p0"}
    assert stats.multi_positive == 1 and stats.instances == 2


def test_negative_windows_cover_all_negatives_without_repeats():
    per_epoch, stats = build_groups([inst("a", n_neg=14)], epochs=2, hard_negatives=7, seed=3)
    first, second = per_epoch[0][0].negatives, per_epoch[1][0].negatives
    assert len(first) == len(second) == 7
    assert not set(first) & set(second)
    assert len(set(first) | set(second)) == 14
    assert stats.resampled == 0


def test_too_few_negatives_are_drawn_with_replacement():
    per_epoch, stats = build_groups([inst("a", n_neg=2), inst("b")], epochs=1, hard_negatives=5, seed=0)
    negs = per_epoch[0][0].negatives
    assert len(negs) == 5 and set(negs) <= {"negative 0 of a", "negative 1 of a"}
    assert stats.resampled == 1


def test_no_negatives_borrows_other_passages_never_own_positive():
    per_epoch, stats = build_groups([inst("a", n_neg=0), inst("b", n_neg=3)], epochs=2, hard_negatives=3, seed=0)
    for e in range(2):
        negs = per_epoch[e][0].negatives
        assert len(negs) == 3 and "positive 0 of a" not in " ".join(negs)
    assert stats.filled_from_pool == 1


def test_instance_without_positive_is_skipped_and_counted():
    empty = Instance("x", "q", (), (Passage("d", "t"),))
    per_epoch, stats = build_groups([empty, inst("a"), inst("b")], epochs=1, hard_negatives=1, seed=0)
    assert [g.query_id for g in per_epoch[0]] == ["a", "b"] and stats.skipped_no_positive == 1


def test_prefixes_titles_and_determinism():
    data = [inst("a", n_pos=2, n_neg=9), inst("b", n_neg=9)]
    g1, _ = build_groups(data, epochs=2, hard_negatives=3, seed=7, query_prefix="query: ", passage_prefix="passage: ")
    g2, _ = build_groups(data, epochs=2, hard_negatives=3, seed=7, query_prefix="query: ", passage_prefix="passage: ")
    assert g1 == g2
    assert g1[0][0].query == "query: query a"
    assert g1[0][0].positive.startswith("passage: T")  # title first (BEIR convention)
    g3, _ = build_groups(data, epochs=2, hard_negatives=3, seed=8)
    assert [g.negatives for g in g3[0]] != [tuple(n[len("passage: ") :] for n in g.negatives) for g in g1[0]]
    assert passage_text(Passage("d", "body", title="Head"), include_title=False) == "body"


def test_bad_arguments():
    with pytest.raises(ValueError):
        build_groups([inst("a")], epochs=0, hard_negatives=1, seed=0)
    with pytest.raises(ValueError, match="no hard negatives"):
        build_groups([inst("a", n_neg=0)], epochs=1, hard_negatives=2, seed=0)


# ----------------------------------------------------------------------------- sampler


class _Rows:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


def test_sampler_serves_one_block_per_epoch():
    from negclean.train.sampler import EpochBlockBatchSampler

    sampler = EpochBlockBatchSampler(_Rows(30), batch_size=4, drop_last=False, seed=5, epochs=3)
    assert len(sampler) == 3  # ceil(10 / 4)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(10 * epoch, 10 * epoch + 10))
        assert len(batches) == len(sampler)
    assert sampler.served == [0, 1, 2]


def test_sampler_keeps_conflicting_rows_apart():
    from negclean.train.sampler import EpochBlockBatchSampler, RowKeys

    # rows 0-3 share a query; rows 4-7 are distinct; positive of row 8 is a passage of row 9
    query = [0, 0, 0, 0, 1, 2, 3, 4, 5, 6]
    positive = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    passages = [frozenset({p}) for p in positive]
    passages[9] = frozenset({19, 18})
    keys = RowKeys(query, positive, passages)
    for seed in range(5):
        sampler = EpochBlockBatchSampler(_Rows(10), batch_size=4, drop_last=False, seed=seed, epochs=1, keys=keys)
        batches = list(sampler)
        assert len(batches) == 3 and sorted(i for b in batches for i in b) == list(range(10))
        # four rows of one query cannot be spread over three batches: exactly one is forced in
        assert sampler.forced == 1
        assert sum(max(0, sum(query[i] == 0 for i in b) - 1) for b in batches) == 1
        assert not any({8, 9} <= set(b) for b in batches)


def test_sampler_rejects_uneven_blocks():
    from negclean.train.sampler import EpochBlockBatchSampler

    with pytest.raises(ValueError, match="equal epoch blocks"):
        EpochBlockBatchSampler(_Rows(7), batch_size=2, drop_last=False, epochs=2)
