"""Learned judge: a calibrated logistic model (``learned_model``) over cheap signals (``learned_features``), fitted by
`negclean fit-judge` and read from JSON.

Each candidate gets P(false negative) as its confidence; at or above the threshold it is relevant/better,
below it not_relevant. The fingerprint covers the model file's bytes (and the prior judge, when the
model uses an earlier stage's confidence), so a refitted model never reuses old verdicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from negclean.embed import load_embedder
from negclean.embed_cache import EmbedTally, cached, tally_of
from negclean.errors import ConfigError
from negclean.judge.base import JudgeBase, JudgeTask, Label, OnCall, TaskResult, Verdict, threshold_verdicts
from negclean.judge.config import LearnedJudgeConfig
from negclean.judge.learned_features import compute_features, prior_from_store
from negclean.judge.learned_model import LearnedModel
from negclean.judge.stored import StoredVerdicts


class LearnedJudge(JudgeBase):
    """Scores candidates with a ``LearnedModel``; model-free at run time apart from the embedder."""

    listwise = False

    def __init__(
        self, config: LearnedJudgeConfig, *, embedder: Any = None, embed_cache: str | Path | None = None
    ) -> None:
        self.config = config
        self.model = LearnedModel.load(config.path)
        self.threshold = self.model.threshold if config.threshold is None else config.threshold
        self.judge_id = config.judge_id()
        self.fingerprint = config.fingerprint()  # covers the model file's bytes (LearnedJudgeConfig.content_identity)
        # behind the embedding cache for the judge's life, like the similarity judge's (negclean.embed_cache)
        self._embed_cache = embed_cache
        tally = EmbedTally()
        self._embedder = None if embedder is None else cached(embedder, cache=embed_cache, tally=tally)
        self._tally = tally_of(self._embedder, tally)
        self.stats = self._tally  # texts embedded vs served from the cache, per model (the stage's counters)
        self._prior = None
        if "prior" in self.model.features:
            if not (config.prior_store and config.prior_judge):
                raise ConfigError(
                    f"{config.path} uses an earlier judge's confidence ('prior' feature): set "
                    "prior_store and prior_judge in the learned judge's config"
                )
            with StoredVerdicts(config.prior_store) as store:  # read-only: a prior never changes its store
                self._prior = prior_from_store(store, config.prior_judge)

    def probabilities(self, tasks: Sequence[JudgeTask]) -> list[list[float]]:
        """Calibrated P(false negative) of each candidate of each task."""
        live_idx = [i for i, t in enumerate(tasks) if t.candidates and t.instance.positives]
        live = [tasks[i] for i in live_idx]
        if self._embedder is None:
            self._embedder = cached(
                load_embedder(self.model.embedder, device=self.config.device),
                cache=self._embed_cache,
                tally=self._tally,
            )
        table = compute_features(
            [t.instance for t in live],
            candidates=[t.candidates for t in live],
            embedder=self._embedder,
            prior=self._prior,
        )
        p: np.ndarray | list[float] = []
        if live:
            p = self.model.predict_proba(self.model.columns_from(table.names, table.values))
        out, at, keep = [], 0, set(live_idx)
        for i, t in enumerate(tasks):
            if i in keep:
                out.append([float(v) for v in p[at : at + len(t.candidates)]])
                at += len(t.candidates)
            else:
                out.append([])
        return out

    def judge(
        self, tasks: Sequence[JudgeTask], *, on_call: OnCall | None = None, budget: Any = None
    ) -> list[TaskResult]:
        results = []
        for task, probs in zip(tasks, self.probabilities(tasks)):
            if task.candidates and not task.instance.positives:
                results.append(
                    TaskResult(
                        tuple(
                            Verdict(
                                Label.UNDECIDED, None, self.judge_id, reason="instance has no positive to compare with"
                            )
                            for _ in task.candidates
                        )
                    )
                )
                continue
            results.append(
                TaskResult(
                    threshold_verdicts(
                        probs, threshold=self.threshold, judge_id=self.judge_id, what="P(false negative)"
                    )
                )
            )
        return results

    def estimate_tokens(self, task: JudgeTask) -> tuple[int, int]:
        return (0, 0)
