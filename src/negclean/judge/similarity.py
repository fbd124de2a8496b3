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

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from negclean.data.scores import band_confidence, ratio_threshold, relative_score
from negclean.embed_cache import EmbedTally, cached, tally_of
from negclean.errors import ConfigError
from negclean.judge.base import Grade, JudgeBase, JudgeTask, Label, OnCall, TaskResult, Verdict
from negclean.judge.config import SimilarityJudgeConfig

__all__ = ["SimilarityJudge", "band_confidence", "ratio_threshold", "relative_score"]  # the last three: data.scores


class SimilarityJudge(JudgeBase):
    """Flags candidates whose embedding similarity to the query is close to that of the positives."""

    listwise = False

    def __init__(
        self,
        config: SimilarityJudgeConfig | None = None,
        *,
        embedder: Any = None,
        embed_cache: str | Path | None = None,
    ) -> None:
        self.config = config or SimilarityJudgeConfig()
        if self.config.score == "ratio" and self.config.ratio is None and self.config.margin is None:
            raise ConfigError("similarity judge: set 'ratio' or 'margin' (or both); with neither it can flag nothing")
        low, high = self.config.band
        if not high > low:
            raise ConfigError(f"similarity judge: band must be (low, high) with high > low, got {self.config.band}")
        self.judge_id = self.config.judge_id()
        self.fingerprint = self.config.fingerprint()  # covers a local model's weights (content_identity)
        # the embedder (injected in tests, otherwise loaded on first use) sits behind the embedding cache for the
        # judge's life: a text seen in an earlier chunk or run is not embedded again (negclean.embed_cache)
        self._embed_cache = embed_cache  # None: $NEGCLEAN_EMBED_CACHE, else the default file
        tally = EmbedTally()
        self._embedder = None if embedder is None else cached(embedder, cache=embed_cache, tally=tally)
        self._tally = tally_of(self._embedder, tally)
        self.stats = self._tally  # texts embedded vs served from the cache, per model (the stage's counters)

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from negclean.embed import load_embedder

            self._embedder = cached(
                load_embedder(self.config.model, device=self.config.device), cache=self._embed_cache, tally=self._tally
            )
        return self._embedder

    def scores(self, tasks: Sequence[JudgeTask]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per task: (cosine scores of its positives, cosine scores of its candidates).

        All distinct query and passage texts of all tasks are encoded in two batched calls.
        """
        queries = list(dict.fromkeys(t.instance.query for t in tasks))
        passages = list(dict.fromkeys(p.text for t in tasks for p in (*t.instance.positives, *t.passages)))
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

    def judge(
        self, tasks: Sequence[JudgeTask], *, on_call: OnCall | None = None, budget: Any = None
    ) -> list[TaskResult]:
        results: list[TaskResult | None] = [None] * len(tasks)
        todo = []
        for i, task in enumerate(tasks):
            if not task.candidates:
                results[i] = TaskResult(())
            elif not task.instance.positives:
                results[i] = TaskResult(
                    tuple(
                        Verdict(Label.UNDECIDED, None, self.judge_id, reason="instance has no positive to compare with")
                        for _ in task.candidates
                    )
                )
            else:
                todo.append(i)
        if todo:
            for i, (pos, cand) in zip(todo, self.scores([tasks[i] for i in todo])):
                results[i] = TaskResult(self._verdicts(float(pos.min()), cand))
        return results  # type: ignore[return-value]  # every slot is set: empty, no positive, or scored

    def _verdicts(self, s_pos: float, cand: np.ndarray) -> tuple[Verdict, ...]:
        cfg = self.config
        if cfg.score == "raw":
            return tuple(self._raw_verdict(float(s_c)) for s_c in cand)
        flagged = np.zeros(cand.shape, dtype=bool)
        if cfg.ratio is not None:
            flagged |= cand > ratio_threshold(s_pos, cfg.ratio)
        if cfg.margin is not None:
            flagged |= cand > s_pos - cfg.margin
        rel = np.asarray(relative_score(cand, s_pos))  # an array for an array ``cand`` (no copy)
        conf = np.asarray(band_confidence(rel, cfg.band))
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
        threshold = self.config.threshold
        if threshold is None:  # unreachable: the config's validator requires it with score: raw
            raise ConfigError("similarity judge with score: raw needs 'threshold'")
        reason = f"s(q,c)={s_c:.4f} threshold={threshold:.4f}"
        if s_c > threshold:
            return Verdict(Label.RELEVANT, conf, self.judge_id, grade=Grade.BETTER, reason=reason)
        return Verdict(Label.NOT_RELEVANT, conf, self.judge_id, reason=reason)

    def estimate_tokens(self, task: JudgeTask) -> tuple[int, int]:
        return (0, 0)
