"""Embedding-similarity judge: a positive-aware screen in the style of NV-Retriever.

With s(q,p) the cosine score of the query's lowest-scoring positive, a candidate c is flagged when
``s(q,c)`` is close to or above it: above the ratio threshold (sign-safe, see ``ratio_threshold``) or
within ``margin`` of it. Flagged candidates are relevant/better; the others not_relevant. Every
verdict carries a confidence: the relative score (``relative_score``) mapped linearly from ``band``
onto [0, 1].

With ``score: raw`` the positive is not consulted: a candidate is flagged when s(q,c) > ``threshold``
and its confidence is s(q,c) mapped from ``band``. On sparse labels (one weak positive) raw s(q,c)
ranks false negatives better than the ratio (benchmarks/RESULTS-sparse-judges.md).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from negclean.errors import ConfigError
from negclean.judge.base import Grade, JudgeTask, Label, TaskResult, Verdict
from negclean.judge.config import SimilarityJudgeConfig

_EPS = 1e-6


def ratio_threshold(pos_score: np.ndarray | float, ratio: float) -> np.ndarray | float:
    """Score a candidate must exceed to count as "close to or above" a positive scoring ``pos_score``.

    ``ratio * s`` for a positive score and ``s - (1 - ratio) * |s|`` in general; the two agree for
    s >= 0, and the general form keeps the threshold below the positive (for ratio < 1) when s < 0,
    where ``ratio * s`` would put it above.
    """
    return pos_score - (1.0 - ratio) * np.abs(pos_score)


def relative_score(cand_score: np.ndarray | float, pos_score: np.ndarray | float) -> np.ndarray | float:
    """``s(q,c) / s(q,p)`` made sign-safe: ``1 + (s_c - s_p) / |s_p|``.

    Equal to the plain ratio when s_p > 0, increasing in s_c for any s_p, and ``> ratio`` exactly when
    ``s_c > ratio_threshold(s_p, ratio)``.
    """
    return 1.0 + (cand_score - pos_score) / np.maximum(np.abs(pos_score), _EPS)


def band_confidence(rel: np.ndarray | float, band: tuple[float, float]) -> np.ndarray | float:
    """Map a relative score linearly from ``band`` = (low, high) onto [0, 1], clipped."""
    low, high = band
    return np.clip((np.asarray(rel, dtype=np.float64) - low) / (high - low), 0.0, 1.0)


class SimilarityJudge:
    """Flags candidates whose embedding similarity to the query is close to that of the positives."""

    listwise = False

    def __init__(self, config: SimilarityJudgeConfig | None = None, *, embedder=None):
        self.config = config or SimilarityJudgeConfig()
        if self.config.score == "ratio" and self.config.ratio is None and self.config.margin is None:
            raise ConfigError("similarity judge: set 'ratio' or 'margin' (or both); with neither it can flag nothing")
        low, high = self.config.band
        if not high > low:
            raise ConfigError(f"similarity judge: band must be (low, high) with high > low, got {self.config.band}")
        self.judge_id = self.config.judge_id()
        self.fingerprint = self.config.fingerprint()  # covers a local model's weights (content_identity)
        self._embedder = embedder  # injected in tests; otherwise loaded on first use

    @property
    def embedder(self):
        if self._embedder is None:
            from negclean.embed import load_embedder

            self._embedder = load_embedder(self.config.model, device=self.config.device)
        return self._embedder

    def scores(self, tasks: Sequence[JudgeTask]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per task: (cosine scores of its positives, cosine scores of its candidates).

        All distinct query and passage texts of all tasks are encoded in two batched calls.
        """
        queries = list(dict.fromkeys(t.instance.query for t in tasks))
        passages = list(dict.fromkeys(p.text for t in tasks
                                      for p in (*t.instance.positives, *t.passages)))
        cfg = self.config
        q_vecs = self.embedder.encode(queries, prefix=cfg.query_prefix, batch_size=cfg.batch_size)
        p_vecs = self.embedder.encode(passages, prefix=cfg.passage_prefix, batch_size=cfg.batch_size)
        q_row = {q: i for i, q in enumerate(queries)}
        p_row = {p: i for i, p in enumerate(passages)}
        out = []
        for task in tasks:
            q = q_vecs[q_row[task.instance.query]]
            pos = p_vecs[[p_row[p.text] for p in task.instance.positives]] @ q
            cand = p_vecs[[p_row[p.text] for p in task.passages]] @ q
            out.append((pos.astype(np.float64), cand.astype(np.float64)))
        return out

    def judge(self, tasks: Sequence[JudgeTask]) -> list[TaskResult]:
        results: list[TaskResult | None] = [None] * len(tasks)
        todo = []
        for i, task in enumerate(tasks):
            if not task.candidates:
                results[i] = TaskResult(())
            elif not task.instance.positives:
                results[i] = TaskResult(tuple(
                    Verdict(Label.UNDECIDED, None, self.judge_id, reason="instance has no positive to compare with")
                    for _ in task.candidates))
            else:
                todo.append(i)
        if todo:
            for i, (pos, cand) in zip(todo, self.scores([tasks[i] for i in todo])):
                results[i] = TaskResult(self._verdicts(float(pos.min()), cand))
        return results  # type: ignore[return-value]

    def _verdicts(self, s_pos: float, cand: np.ndarray) -> tuple[Verdict, ...]:
        cfg = self.config
        if cfg.score == "raw":
            return tuple(self._raw_verdict(float(s_c)) for s_c in cand)
        flagged = np.zeros(cand.shape, dtype=bool)
        if cfg.ratio is not None:
            flagged |= cand > ratio_threshold(s_pos, cfg.ratio)
        if cfg.margin is not None:
            flagged |= cand > s_pos - cfg.margin
        rel = relative_score(cand, s_pos)
        conf = band_confidence(rel, cfg.band)
        verdicts = []
        for s_c, r, c, f in zip(cand, rel, conf, flagged):
            reason = f"s(q,c)={s_c:.4f} s(q,p)={s_pos:.4f} relative={r:.4f}"
            if f:
                verdicts.append(Verdict(Label.RELEVANT, float(c), self.judge_id, grade=Grade.BETTER, reason=reason))
            else:
                verdicts.append(Verdict(Label.NOT_RELEVANT, float(c), self.judge_id, reason=reason))
        return tuple(verdicts)

    def _raw_verdict(self, s_c: float) -> Verdict:
        conf = float(band_confidence(s_c, self.config.band))
        reason = f"s(q,c)={s_c:.4f} threshold={self.config.threshold:.4f}"
        if s_c > self.config.threshold:
            return Verdict(Label.RELEVANT, conf, self.judge_id, grade=Grade.BETTER, reason=reason)
        return Verdict(Label.NOT_RELEVANT, conf, self.judge_id, reason=reason)

    def estimate_tokens(self, task: JudgeTask) -> tuple[int, int]:
        return (0, 0)
