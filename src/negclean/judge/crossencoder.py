"""Cross-encoder judge: a CrossEncoder that negclean trained on the user's own positives (`negclean fit-judge
--cross-encoder`, ``negclean.train.cross_judge``) scores each candidate against its query.

Confidence is the model's sigmoid score; at or above the threshold a candidate is relevant (grade ``better``:
a pointwise judge cannot compare with the positive), below it not relevant. The threshold is the config's, else
the one saved with the model (a fixed score, or the score at a flag budget over the training input's
candidates). The fingerprint covers the model folder's content, so a refitted model never reuses old verdicts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from negclean.errors import ConfigError
from negclean.judge.base import JudgeBase, JudgeTask, OnCall, TaskResult, threshold_verdicts
from negclean.judge.config import CrossEncoderJudgeConfig
from negclean.local_models import passage_text, torch_threads

META_FILE = "negclean_judge.json"  # written by negclean.train.cross_judge (kept equal there)


def read_meta(path: str | Path) -> dict[str, Any]:
    """The ``negclean_judge.json`` of a judge folder.

    Raises:
        ConfigError: the folder or its meta file is missing or unreadable, naming what to run.
    """
    folder = Path(path).expanduser()
    hint = "train one with: negclean fit-judge --cross-encoder -i TRAIN.jsonl -o DIR"
    if not folder.is_dir():
        raise ConfigError(f"cross-encoder judge folder {folder} does not exist; {hint}")
    meta_path = folder / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{folder} is not a cross-encoder judge folder: {META_FILE} is missing; {hint}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{meta_path}: cannot read the judge's metadata ({exc}); {hint}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("threshold"), (int, float)):
        raise ConfigError(f"{meta_path}: no numeric 'threshold' in the judge's metadata; {hint}")
    return meta


def load_scorer(path: str | Path, *, max_length: int | None = None, device: str | None = None) -> Any:
    """The CrossEncoder in a folder, scoring with a sigmoid (a sentence_transformers CrossEncoder, loaded lazily)."""
    from negclean.embed import load_model

    return load_model(
        "CrossEncoder",
        str(Path(path).expanduser()),
        extra="embed",
        purpose="The cross-encoder judge",
        what=f"cross-encoder judge model {path}",
        hint="retrain it with negclean fit-judge --cross-encoder",
        max_length=max_length,
        device=device,
    )


def score_pairs(
    model: Any, pairs: Sequence[tuple[str, Any]], *, batch_size: int = 32, threads: int | None = None
) -> list[float]:
    """Sigmoid scores of (query, Passage) pairs; passages as the trainer saw them ("title text")."""
    import torch

    from negclean.embed import text_char_limit

    if not pairs:
        return []
    limit = text_char_limit(getattr(model, "max_seq_length", None))  # cut before tokenizing: bounded memory
    inputs = [(q[:limit], passage_text(p, include_title=True)[:limit]) for q, p in pairs]
    with torch_threads(threads):
        scores = model.predict(
            inputs,
            batch_size=batch_size,
            activation_fn=torch.nn.Sigmoid(),
            show_progress_bar=False,
            convert_to_numpy=True,
        )
    return [float(s) for s in scores]


class CrossEncoderJudge(JudgeBase):
    """Pointwise judge over a trained cross-encoder folder."""

    listwise = False

    def __init__(self, config: CrossEncoderJudgeConfig):
        self.config = config
        self.meta = read_meta(config.path)
        self.threshold = float(self.meta["threshold"]) if config.threshold is None else config.threshold
        settings = self.meta.get("settings") or {}
        self.max_length = config.max_length or settings.get("max_length")
        self.judge_id = config.judge_id()
        self.fingerprint = config.fingerprint()  # covers the folder's content (CrossEncoderJudgeConfig)
        self._model: Any = None

    def _scorer(self) -> Any:
        if self._model is None:
            self._model = load_scorer(self.config.path, max_length=self.max_length, device=self.config.device)
        return self._model

    def scores(self, tasks: Sequence[JudgeTask]) -> list[list[float]]:
        """The sigmoid score of each candidate of each task."""
        pairs = [(t.instance.query, p) for t in tasks for p in t.passages]
        flat = (
            score_pairs(self._scorer(), pairs, batch_size=self.config.batch_size, threads=self.config.threads)
            if pairs
            else []
        )
        out, at = [], 0
        for t in tasks:
            out.append(flat[at : at + len(t.candidates)])
            at += len(t.candidates)
        return out

    def judge(
        self, tasks: Sequence[JudgeTask], *, on_call: OnCall | None = None, budget: Any = None
    ) -> list[TaskResult]:
        results = []
        for scores in self.scores(tasks):
            results.append(
                TaskResult(
                    threshold_verdicts(
                        scores, threshold=self.threshold, judge_id=self.judge_id, what="cross-encoder score"
                    )
                )
            )
        return results

    def estimate_tokens(self, task: JudgeTask) -> tuple[int, int]:
        return (0, 0)


__all__ = ["CrossEncoderJudge", "load_scorer", "read_meta", "score_pairs"]
