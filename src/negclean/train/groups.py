"""Training groups from instances: one positive and k hard negatives per query and epoch (Tevatron style).

Pure Python (no torch): what the trainers feed the sentence-transformers trainers, and what tests check.

Per query and epoch (as Tevatron's ``TrainDataset``, which RLHN trained with):

- the positive rotates: ``positives[(h + epoch) % len(positives)]``, with ``h`` a stable hash of the
  query id and the seed, so that a query with several positives (e.g. after relabeling) uses a
  different one in each epoch;
- the hard negatives are a window of ``k`` over the query's negatives, shuffled once per query; the
  window moves by ``k`` each epoch, so that all negatives get used over the epochs;
- a query with fewer than ``k`` negatives (but at least one) draws ``k`` of them with replacement;
- a query with none (e.g. after hn_remove) takes ``k`` passages of other queries (never one with the
  same docid or text as one of its own positives); this is counted in ``GroupStats.filled_from_pool``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from negclean.data.records import Instance, Passage
from negclean.local_models import passage_text  # re-exported: it was here


@dataclass(frozen=True, slots=True)
class Group:
    """One training example: a query, the positive of this epoch and ``k`` hard negatives."""

    query_id: str
    query: str
    positive: str
    negatives: tuple[str, ...]
    positive_docid: str
    subset: str = ""


@dataclass(frozen=True, slots=True)
class GroupStats:
    """What building the groups of one run did."""

    instances: int
    epochs: int
    hard_negatives: int
    multi_positive: int
    resampled: int
    filled_from_pool: int
    skipped_no_positive: int

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


def query_hash(query_id: str, seed: int) -> int:
    """A stable (process-independent) integer per query and seed."""
    return int.from_bytes(hashlib.sha256(f"{seed}\x1f{query_id}".encode()).digest()[:8], "big")


def pick_positive(positives: Sequence[Passage], *, h: int, epoch: int) -> Passage:
    return positives[(h + epoch) % len(positives)]


def pick_negatives(negatives: Sequence[Passage], *, k: int, h: int, epoch: int) -> tuple[list[Passage], bool]:
    """``k`` negatives for this epoch; the flag says they were drawn with replacement (too few)."""
    if k == 0 or not negatives:
        return [], False
    if len(negatives) < k:
        rng = random.Random(h * 1_000_003 + epoch)
        return rng.choices(list(negatives), k=k), True
    order = list(negatives)
    random.Random(h).shuffle(order)
    offset = (epoch * k) % len(order)
    doubled = order + order
    return doubled[offset : offset + k], False


def build_groups(
    instances: Iterable[Instance],
    *,
    epochs: int,
    hard_negatives: int,
    seed: int,
    include_title: bool = True,
    query_prefix: str = "",
    passage_prefix: str = "",
) -> tuple[list[list[Group]], GroupStats]:
    """Groups for every epoch: ``result[e]`` lists one Group per usable instance, in input order.

    Instances without a positive are skipped (counted). Texts carry the prefixes already.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if hard_negatives < 0:
        raise ValueError(f"hard_negatives must be 0 or more, got {hard_negatives}")
    usable: list[Instance] = []
    skipped = 0
    for inst in instances:
        if inst.positives:
            usable.append(inst)
        else:
            skipped += 1
    pool = _pool(usable)
    per_epoch: list[list[Group]] = [[] for _ in range(epochs)]
    resampled = filled = 0
    text = lambda p: passage_text(p, include_title=include_title, prefix=passage_prefix)  # noqa: E731
    for inst in usable:
        h = query_hash(inst.query_id, seed)
        for epoch in range(epochs):
            pos = pick_positive(inst.positives, h=h, epoch=epoch)
            negs, drawn = pick_negatives(inst.negatives, k=hard_negatives, h=h, epoch=epoch)
            if hard_negatives and not inst.negatives:
                negs = _from_pool(pool, inst, k=hard_negatives, rng=random.Random(h * 7_919 + epoch))
                filled += epoch == 0
            resampled += drawn and epoch == 0
            per_epoch[epoch].append(
                Group(
                    inst.query_id,
                    query_prefix + inst.query,
                    text(pos),
                    tuple(text(n) for n in negs),
                    pos.docid,
                    inst.subset,
                )
            )
    stats = GroupStats(
        instances=len(usable),
        epochs=epochs,
        hard_negatives=hard_negatives,
        multi_positive=sum(len(i.positives) > 1 for i in usable),
        resampled=int(resampled),
        filled_from_pool=int(filled),
        skipped_no_positive=skipped,
    )
    return per_epoch, stats


def _pool(instances: Sequence[Instance]) -> list[Passage]:
    """Every distinct passage (by docid) of the data set: where queries without negatives draw from."""
    seen: dict[str, Passage] = {}
    for inst in instances:
        for p in (*inst.positives, *inst.negatives):
            seen.setdefault(p.docid, p)
    return list(seen.values())


def _from_pool(pool: Sequence[Passage], inst: Instance, *, k: int, rng: random.Random) -> list[Passage]:
    own_ids = {p.docid for p in inst.positives}
    own_texts = {p.text for p in inst.positives}
    out: list[Passage] = []
    for _ in range(50 * k):
        if len(out) == k:
            break
        cand = pool[rng.randrange(len(pool))]
        if cand.docid not in own_ids and cand.text not in own_texts:
            out.append(cand)
    if len(out) < k:
        raise ValueError(
            f"query {inst.query_id!r} has no hard negatives and the data set has no other "
            "passages to use instead: give instances with negatives, or hard_negatives=0"
        )
    return out


__all__ = ["Group", "GroupStats", "build_groups", "passage_text", "pick_negatives", "pick_positive", "query_hash"]
