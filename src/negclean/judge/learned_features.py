"""Cheap per-candidate signals for the learned judge (judge layer: the judge computes them at run time;
``negclean.learned`` fits models on them).

Per candidate c of an instance with query q and positives P (p = the lowest-scoring positive, as the
similarity judge uses):
- ``s_qc``: cosine similarity of q and c (MiniLM by default); ``s_pc``: the highest cosine of c with a positive;
- ``ratio``: the similarity judge's sign-safe s(q,c)/s(q,p) (``relative_score``); ``gap``: s(q,c) - s(q,p);
- ``log_rank``: log(1 + retriever rank) (position in the list when the source gives no rank);
- ``retriever_score``: the source's score (NaN when absent);
- ``bm25``: BM25 of c for q over the instance's own passages (bm25s), ``bm25_gap``: minus the positive's;
- ``dup_exact``: 1 when c repeats a positive's normalised text; ``jaccard``: the highest word-3-gram Jaccard with a positive;
- ``prior``: an earlier stage's confidence (e.g. an LLM's P(yes)) from a judgment store, NaN when absent.
Features that compare a candidate with the rest of its own list (they transfer across data sets, where raw cosines
and BM25 scores have different scales; computed over ALL negatives of the instance, whichever are being judged,
so a candidate's value does not depend on which others go with it):
- ``s_qc_z``, ``s_pc_z``, ``bm25_z``: s(q,c), s(p,c) and BM25 standardised over the instance's negatives
  (z-score, population std; 0 when the list has one value); ``bm25_z`` uses BM25 over positives + all negatives;
- ``pos_standing``: the share of the instance's negatives with s(q,c) above s(q,p), 0 for a positive above all of
  its negatives, 1 for one below all (a weak positive: the case that breaks the ratio screen); the same for every
  candidate of an instance.
NaN means "not available": the model replaces it with its training mean. Old models name their features, so
adding features keeps them working.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from negclean.data.hashing import normalize_text
from negclean.data.records import Instance
from negclean.data.scores import relative_score
from negclean.embed import load_embedder
from negclean.embed_cache import cached
from negclean.errors import ConfigError, require
from negclean.judge.base import Verdict
from negclean.judge.duplicate import jaccard, shingles

FEATURES = (
    "s_qc",
    "s_pc",
    "ratio",
    "gap",
    "log_rank",
    "retriever_score",
    "bm25",
    "bm25_gap",
    "dup_exact",
    "jaccard",
    "prior",
    "s_qc_z",
    "s_pc_z",
    "bm25_z",
    "pos_standing",
)

Key = tuple[str, str, str]

#: the lexical signals (BM25, duplicate, Jaccard) read at most this many characters of a passage: memory stays
#: bounded on a huge passage, and the embedder reads far less anyway (its max_chars)
LEXICAL_CHARS = 20_000


@dataclass(frozen=True)
class FeatureTable:
    """Rows of features, one per (instance, candidate), with the keys that tie them to labels."""

    names: tuple[str, ...]
    values: np.ndarray  # (n, len(names)) float64, NaN = missing
    keys: tuple[Key, ...]  # store keys (query_key, positives_key, passage_key)
    ids: tuple[tuple[str, str], ...]  # (query_id, docid)
    groups: np.ndarray  # query id per row (for grouped CV)

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.names.index(name)]

    def select(self, rows: np.ndarray | Sequence[int]) -> FeatureTable:
        rows = np.asarray(rows, dtype=np.int64)
        return FeatureTable(
            self.names,
            self.values[rows],
            tuple(self.keys[i] for i in rows),
            tuple(self.ids[i] for i in rows),
            self.groups[rows],
        )


def bm25_scores(query: str, passages: Sequence[str]) -> np.ndarray:
    """BM25 scores (bm25s, English stop words) of ``passages`` as their own small collection."""
    bm25s = require("bm25s", extra="mine", purpose="BM25 scores")
    tokens = bm25s.tokenize(list(passages), stopwords="en", show_progress=False)
    model = bm25s.BM25()
    model.index(tokens, show_progress=False)
    q = bm25s.tokenize([query], stopwords="en", show_progress=False)
    ids = q.ids[0] if q.ids else []
    vocab_inv = {v: k for k, v in q.vocab.items()}
    words = [vocab_inv[i] for i in ids if vocab_inv.get(i)]
    if not words:
        return np.zeros(len(passages))
    return np.asarray(model.get_scores(words), dtype=np.float64)


def _bm25_instance(inst: Instance, candidates: Sequence[int]) -> tuple[np.ndarray, float]:
    texts = [p.text[:LEXICAL_CHARS] for p in inst.positives] + [
        inst.negatives[i].text[:LEXICAL_CHARS] for i in candidates
    ]
    scores = bm25_scores(inst.query, texts)
    n_pos = len(inst.positives)
    pos = float(scores[:n_pos].min()) if n_pos else float("nan")
    return scores[n_pos:], pos


def within_z(values: np.ndarray) -> np.ndarray:
    """``values`` standardised over themselves (population std); zeros when they do not vary."""
    v = np.asarray(values, dtype=np.float64)
    sd = float(v.std()) if len(v) else 0.0
    return (v - v.mean()) / sd if sd > 1e-12 else np.zeros_like(v)


def compute_features(
    instances: Sequence[Instance],
    *,
    candidates: Sequence[Sequence[int]] | None = None,
    embedder: Any = None,
    model: str = "all-MiniLM-L6-v2",
    prior: Mapping[Key, float | None] | None = None,
) -> FeatureTable:
    """Features of the given candidates (default: every negative) of each instance.

    ``embedder``: anything with ``encode(texts, prefix=..., batch_size=...)`` returning L2-normalised rows
    (default: ``load_embedder(model)``), used behind the embedding cache (``negclean.embed_cache.cached``: a
    text embedded before by the same model is read, not embedded again). ``prior``: an earlier stage's
    confidence by store key.
    """
    if candidates is None:
        candidates = [tuple(range(len(i.negatives))) for i in instances]
    if embedder is None:
        embedder = load_embedder(model)
    embedder = cached(embedder)
    queries = list(dict.fromkeys(i.query for i in instances))
    texts = list(
        dict.fromkeys(
            p.text for inst, cands in zip(instances, candidates) if cands for p in (*inst.positives, *inst.negatives)
        )
    )
    q_vec = embedder.encode(queries, batch_size=64) if queries else np.zeros((0, 1))
    t_vec = embedder.encode(texts, batch_size=64) if texts else np.zeros((0, 1))
    q_row = {q: i for i, q in enumerate(queries)}
    t_row = {t: i for i, t in enumerate(texts)}
    rows, keys, ids, groups = [], [], [], []
    for inst, cands in zip(instances, candidates):
        if not cands:
            continue
        q = q_vec[q_row[inst.query]]
        has_pos = bool(inst.positives)
        pos_vecs = t_vec[[t_row[p.text] for p in inst.positives]] if has_pos else None
        s_qp = float((pos_vecs @ q).min()) if has_pos else float("nan")
        bm, bm_pos = _bm25_instance(inst, cands)
        every = tuple(range(len(inst.negatives)))
        bm_all = bm if tuple(cands) == every else _bm25_instance(inst, every)[0]
        n_vecs = t_vec[[t_row[p.text] for p in inst.negatives]]
        qc_all = n_vecs @ q
        qc_z, bm_z = within_z(qc_all), within_z(bm_all)
        if has_pos:
            assert pos_vecs is not None
            pc_z = within_z((n_vecs @ pos_vecs.T).max(axis=1))
            standing = float((qc_all > s_qp).mean())
        else:
            pc_z, standing = np.full(len(every), np.nan), float("nan")
        pos_norm = {normalize_text(p.text[:LEXICAL_CHARS]) for p in inst.positives}
        pos_sh = [shingles(n) for n in pos_norm]
        for j, c in enumerate(cands):
            p = inst.negatives[c]
            v = t_vec[t_row[p.text]]
            s_qc = float(v @ q)
            s_pc = float((pos_vecs @ v).max()) if has_pos else float("nan")
            norm = normalize_text(p.text[:LEXICAL_CHARS])
            sh = shingles(norm)
            key = (inst.query_key, inst.positives_key, p.key)
            pr = None if prior is None else prior.get(key)
            rows.append(
                [
                    s_qc,
                    s_pc,
                    float(relative_score(s_qc, s_qp)) if has_pos else float("nan"),
                    s_qc - s_qp,
                    float(np.log1p(p.rank if p.rank is not None else c + 1)),
                    float(p.score) if p.score is not None else float("nan"),
                    float(bm[j]),
                    float(bm[j] - bm_pos),
                    float(norm in pos_norm and bool(norm)),
                    max((jaccard(sh, s) for s in pos_sh), default=0.0),
                    float("nan") if pr is None else float(pr),
                    float(qc_z[c]),
                    float(pc_z[c]),
                    float(bm_z[c]),
                    standing,
                ]
            )
            keys.append(key)
            ids.append((inst.query_id, p.docid))
            groups.append(inst.query_id)
    values = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))
    return FeatureTable(FEATURES, values, tuple(keys), tuple(ids), np.asarray(groups, dtype=object))


class VerdictSource(Protocol):
    """What ``prior_from_store`` reads of a judgment store (``negclean.cascade.store.JudgmentStore`` has it)."""

    def judges(self) -> list[tuple[str, str, str]]: ...

    def verdicts_of(self, fingerprint: str) -> Mapping[Key, Verdict]: ...


def prior_from_store(store: VerdictSource, judge: str) -> dict[Key, float | None]:
    """Confidences of a judge's stored verdicts by key; ``judge`` is a fingerprint or a judge id."""
    known = store.judges()
    fps = [fp for fp, jid, _ in known if judge in (fp, jid)]
    if not fps:
        have = ", ".join(sorted({jid for _, jid, _ in known})) or "none"
        raise ConfigError(f"judge {judge!r} has no verdicts in the store (judges there: {have})")
    out: dict[Key, float | None] = {}
    for fp in fps:
        out.update({k: v.confidence for k, v in store.verdicts_of(fp).items()})
    return out


__all__ = [
    "FEATURES",
    "LEXICAL_CHARS",
    "FeatureTable",
    "Key",
    "VerdictSource",
    "bm25_scores",
    "compute_features",
    "prior_from_store",
    "within_z",
]
