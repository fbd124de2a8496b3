"""Leave-one-data-set-out (LODO): whatever a system learns or calibrates is fitted on the OTHER data sets.

A system in a sparse benchmark run (`negclean bench-judges --sparse` with two or more ``--beir``) may write
the value ``lodo`` where a fitted value goes:

- ``judge: {backend: learned, path: lodo}``: for each held-out set a learned judge is fitted
  (``learned.fit.fit_learned`` on ``learned.features.compute_features``) on the other sets' benchmarks only,
  written to ``OUTPUT/models/learned-minus-<set>.json`` (its ``training`` records the sets and query ids it
  was fitted on), and that file is the judge's path when the held-out set is scored;
- ``judge: {backend: similarity, ratio: lodo}``: the ratio s(q,c)/s(q,p) threshold that keeps
  ``target_recall`` on the other sets;
- ``judge: {backend: similarity, score: raw, threshold: lodo}``: the same for the raw cosine s(q,c).

The target recall is the system's own ``target_recall`` key, else ``--target-recall``. Each resolved
system reports where it was fitted (``fitted_on``); the pooled row pools the held-out predictions only.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from negclean.benchjudges.dataset import Benchmark
from negclean.benchjudges.run import System
from negclean.errors import ConfigError
from negclean.judge.learned_features import FeatureTable
from negclean.judge.learned_model import DEFAULT_NAME, LearnedModel, resolve_model_path
from negclean.learned.fit import fit_learned
from negclean.metrics.binary import threshold_for_recall

LODO = "lodo"


def _placeholders(system: System) -> list[tuple[int, str]]:
    """(stage index, field) of every ``lodo`` value in the system's stages."""
    found = []
    for i, stage in enumerate(system.cascade.get("stages") or []):
        judge = stage.get("judge") or {} if isinstance(stage, dict) else {}
        for key in ("path", "ratio", "threshold"):
            if judge.get(key) == LODO:
                found.append((i, key))
    return found


def needs_lodo(system: System) -> bool:
    return bool(_placeholders(system))


@dataclass(frozen=True)
class ResolvedSystem:
    """A system with its ``lodo`` values filled in for one held-out set, and where they were fitted."""

    system: System
    fitted_on: tuple[str, ...]
    values: Mapping[str, object]


class LodoFitter:
    """Fits and calibrates per held-out set, once each, over benchmarks keyed by name."""

    def __init__(
        self, benches: Mapping[str, Benchmark], *, output_dir: str | Path, embedder, target_recall: float | None = None
    ):
        self.benches = dict(benches)
        self.models_dir = Path(output_dir) / "models"
        self.embedder = embedder
        self.target_recall = target_recall
        self._tables: dict[str, tuple] = {}
        self._sims: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._models: dict[str, Path] = {}
        self.reports: dict[str, dict] = {}

    def others(self, held_out: str) -> list[str]:
        if held_out not in self.benches:
            raise ConfigError(f"held-out set {held_out!r} is not among the benchmarks ({', '.join(self.benches)})")
        rest = [n for n in self.benches if n != held_out]
        if not rest:
            raise ConfigError("a 'lodo' value needs at least two data sets: give --beir more than once")
        return rest

    def resolve(self, system: System, held_out: str) -> ResolvedSystem:
        spots = _placeholders(system)
        if not spots:
            return ResolvedSystem(system, (), {})
        cascade = copy.deepcopy(system.cascade)
        target = cascade.pop("target_recall", None) or self.target_recall
        values: dict[str, object] = {}
        for i, key in spots:
            judge = cascade["stages"][i]["judge"]
            if key == "path":
                value: object = str(self.learned_model(held_out))
            else:
                if target is None:
                    raise ConfigError(
                        f"system '{system.name}': '{key}: lodo' needs a target recall: give the "
                        "system a 'target_recall' key or pass --target-recall"
                    )
                value = self.threshold(held_out, raw=(key == "threshold"), target=float(target))
            judge[key] = value
            values[f"{cascade['stages'][i].get('name', i)}.{key}"] = value
        return ResolvedSystem(replace(system, cascade=cascade), tuple(self.others(held_out)), values)

    # -- learned judge --------------------------------------------------------------------------

    def _table(self, name: str):
        if name not in self._tables:
            from negclean.judge.learned_features import compute_features
            from negclean.learned.labels import labels_from_truth

            table = compute_features(self.benches[name].instances, embedder=self.embedder)
            labels = labels_from_truth(table, self.benches[name].truth)
            keep = np.flatnonzero(labels >= 0)
            self._tables[name] = (table.select(keep), labels[keep])
        return self._tables[name]

    def learned_model(self, held_out: str) -> Path:
        """Fit (once) the learned judge on every set but ``held_out``; returns its JSON path."""
        if held_out in self._models:
            return self._models[held_out]
        rest = self.others(held_out)
        parts = [self._table(n) for n in rest]
        names = parts[0][0].names
        table = FeatureTable(
            names,
            np.vstack([t.values for t, _ in parts]),
            tuple(k for t, _ in parts for k in t.keys),
            tuple(i for t, _ in parts for i in t.ids),
            # sets may reuse query ids: grouped CV must not merge their queries
            np.asarray([f"{n}/{g}" for n, (t, _) in zip(rest, parts) for g in t.groups], dtype=object),
        )
        labels = np.concatenate([y for _, y in parts])
        # the shipped default screen's recipe (its feature list), so that this row measures what ships; all
        # features together pair near-copies (s_qc and the retriever's score are both MiniLM) with opposite signs
        report = fit_learned(table, labels, features=_shipped_features())
        training = {
            **report.model.training,
            "fitted_on": rest,
            "query_ids": sorted({f"{n}/{q}" for n, (t, _) in zip(rest, parts) for q, _ in t.ids}),
        }
        model = replace(report.model, training=training)
        path = model.save(self.models_dir / f"learned-minus-{held_out}.json")
        self.reports[held_out] = {
            "fitted_on": rest,
            "path": str(path),
            "cv_auc": report.learned.auc,
            "cv_kappa": report.learned.kappa,
            "rows": report.n,
            "positives": report.positives,
        }
        self._models[held_out] = path
        return path

    # -- similarity screens -----------------------------------------------------------------------

    def similarity_scores(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ratio s(q,c)/s(q,p) sign-safe, raw s(q,c), truth) of every labeled candidate of set ``name``."""
        if name not in self._sims:
            from negclean.judge.base import JudgeTask
            from negclean.judge.config import SimilarityJudgeConfig
            from negclean.judge.similarity import SimilarityJudge, relative_score

            judge = SimilarityJudge(SimilarityJudgeConfig(), embedder=self.embedder)
            bench = self.benches[name]
            tasks = [
                JudgeTask(i, tuple(range(len(i.negatives)))) for i in bench.instances if i.positives and i.negatives
            ]
            ratio, raw, truth = [], [], []
            for task, (pos, cand) in zip(tasks, judge.scores(tasks)):
                rel = np.asarray(relative_score(cand, float(pos.min())))
                for p, r, s in zip(task.passages, rel, cand):
                    key = (task.instance.query_id, p.docid)
                    if key in bench.truth:
                        ratio.append(float(r))
                        raw.append(float(s))
                        truth.append(bench.truth[key])
            self._sims[name] = (np.asarray(ratio), np.asarray(raw), np.asarray(truth, dtype=bool))
        return self._sims[name]

    def threshold(self, held_out: str, *, raw: bool, target: float) -> float:
        """The highest threshold keeping ``target`` recall on the other sets pooled (ratio, or raw s(q,c))."""

        parts = [self.similarity_scores(n) for n in self.others(held_out)]
        scores = np.concatenate([p[1] if raw else p[0] for p in parts])
        truth = np.concatenate([p[2] for p in parts])
        t, _, _ = threshold_for_recall(scores, truth, target=target)
        return round(float(t), 4)


def _shipped_features() -> tuple[str, ...]:
    """The features of the packaged default screen (``learned/default-screen.json``)."""

    return tuple(LearnedModel.load(resolve_model_path(DEFAULT_NAME)).features)
