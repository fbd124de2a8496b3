"""Pick a screen's threshold from labeled data: the similarity ratio that keeps a target recall.

The screen flags ``relative_score(s(q,c), s(q,p)) > ratio`` (sign-safe s(q,c)/s(q,p)); what it does not
flag never reaches the next stage. The highest ratio that still flags ``target_recall`` of the truly
relevant candidates saves the most: the cost saved is the share of candidates it does not send on.
The chosen setting is written into a cascade YAML (screen, then the strong stage).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from negclean.benchjudges.dataset import Benchmark
from negclean.judge.base import JudgeTask
from negclean.judge.config import SimilarityJudgeConfig
from negclean.judge.similarity import SimilarityJudge, relative_score
from negclean.metrics.binary import threshold_for_recall


@dataclass(frozen=True, slots=True)
class Calibration:
    """A screen threshold chosen on labeled data.

    Args:
        ratio: the chosen similarity ratio.
        target_recall: asked for. recall: reached on the data (>= target).
        saved: share of candidates the screen does not send to the next stage (the cost saved there).
        n, positives: labeled candidates and truly relevant ones the choice rests on.
    """

    ratio: float
    target_recall: float
    recall: float
    saved: float
    n: int
    positives: int
    model: str

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"ratio {self.ratio:.4f} keeps recall {self.recall:.3f} (target {self.target_recall:.2f}) on "
            f"{self.positives} relevant of {self.n} labeled candidates and sends {1 - self.saved:.1%} on: "
            f"{self.saved:.1%} of the next stage's cost saved"
        )


def relative_scores(
    bench: Benchmark, *, model: str = "all-MiniLM-L6-v2", embedder=None
) -> tuple[np.ndarray, np.ndarray]:
    """(relative score, truth) of every labeled candidate, under the similarity judge's own scoring."""
    judge = SimilarityJudge(SimilarityJudgeConfig(model=model), embedder=embedder)
    tasks = [JudgeTask(i, tuple(range(len(i.negatives)))) for i in bench.instances if i.positives and i.negatives]
    rel, truth = [], []
    for task, (pos, cand) in zip(tasks, judge.scores(tasks)):
        r = np.asarray(relative_score(cand, float(pos.min())))
        for p, v in zip(task.passages, r):
            key = (task.instance.query_id, p.docid)
            if key in bench.truth:
                rel.append(float(v))
                truth.append(bench.truth[key])
    return np.asarray(rel), np.asarray(truth, dtype=bool)


def calibrate_ratio(
    rel: np.ndarray, truth: np.ndarray, *, target_recall: float, model: str = "all-MiniLM-L6-v2"
) -> Calibration:
    """The highest ratio whose screen keeps ``target_recall`` on (rel, truth)."""
    t, recall, saved = threshold_for_recall(rel, truth, target=target_recall)
    return Calibration(round(t, 4), target_recall, recall, saved, len(rel), int(truth.sum()), model)


def write_cascade_yaml(
    cal: Calibration, path: str | Path, *, strong: dict | None = None, audit_rate: float = 0.0
) -> Path:
    """A cascade YAML: the calibrated screen, then ``strong`` (default: the local Qwen judge, pointwise)."""
    import yaml

    strong = strong or {"backend": "llamacpp", "mode": "pointwise"}
    screen: dict[str, Any] = {
        "name": "screen",
        "judge": {"backend": "similarity", "model": cal.model, "ratio": cal.ratio},
        "escalate": "flagged",
    }
    if audit_rate:
        screen["audit_rate"] = audit_rate
    data = {"stages": [screen, {"name": "strong", "judge": strong}]}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# written by negclean bench-judges --write-config: {cal.describe()}\n"
    path.write_text(header + yaml.safe_dump(data, sort_keys=False))
    return path
