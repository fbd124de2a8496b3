"""Fit the cross-encoder judge: a CrossEncoder trained on the user's own labeled positives against random passages.

Each query's labeled positive is a 1; ``negatives`` passages drawn at random (seeded) from the data's passages
that are neither a candidate nor a positive of that query (or from a BEIR corpus) are 0s. The judge thus never
trains on the candidates it will judge: what it learns is "does this passage answer this query", from pairs a
user already has, which is what a sparse-label set can supply when its labeled positive is weak.

The model starts from the packaged MiniLM (a fresh one-logit head) and is trained with the project's reranker
trainer (``negclean.train.reranker``). The folder gets ``negclean_judge.json`` (``META_FILE``): settings,
counts, a digest of the training pairs, and the decision threshold (see ``ThresholdRule``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from negclean.data.records import Instance, Passage
from negclean.errors import ConfigError, InputError
from negclean.judge.crossencoder import load_scorer, score_pairs
from negclean.train.config import TrainConfig
from negclean.train.reranker import train_reranker

META_FILE = "negclean_judge.json"
KIND = "negclean-crossencoder-judge"


@dataclass(frozen=True, slots=True)
class CrossJudgeFit:
    """What fitting did; the same fields are in the model folder's ``negclean_judge.json``."""

    output_dir: str
    queries: int
    pairs: int
    pool: int
    threshold: float
    threshold_rule: str
    train_seconds: float
    calibration_seconds: float
    train_loss: float
    steps: int

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


def random_negatives(
    instances: Sequence[Instance], *, per_query: int, seed: int, corpus: Sequence[Passage] | None = None
) -> list[Instance]:
    """Copies of the instances whose negatives are ``per_query`` random passages (seeded per query).

    The pool is ``corpus`` when given, else every distinct passage (by content key) of ``instances``. A
    passage that is a candidate or positive of the query (same docid or same text) is never drawn for it.

    Raises:
        InputError: the pool has too few passages outside some query's own.
    """
    if corpus is not None:
        pool = list({p.key: p for p in corpus}.values())
    else:
        pool = list({p.key: p for inst in instances for p in (*inst.positives, *inst.negatives)}.values())
    out = []
    for inst in instances:
        if not inst.positives:
            continue
        own_ids = {p.docid for p in (*inst.positives, *inst.negatives)}
        own_keys = {p.key for p in (*inst.positives, *inst.negatives)}
        rng = random.Random(f"{seed}\x1f{inst.query_id}")
        picked: list[Passage] = []
        seen: set[str] = set()
        for _ in range(50 * per_query + 100):
            if len(picked) == per_query:
                break
            p = pool[rng.randrange(len(pool))] if pool else None
            if p is None:
                break
            if p.docid in own_ids or p.key in own_keys or p.key in seen:
                continue
            picked.append(p)
            seen.add(p.key)
        if len(picked) < per_query:
            raise InputError(
                f"query {inst.query_id!r}: only {len(picked)} passages outside its own candidates and "
                f"positives to draw {per_query} random negatives from; give a corpus (--corpus) or "
                "lower --negatives",
                line=inst.line or None,
            )
        out.append(Instance(inst.query_id, inst.query, inst.positives, tuple(picked), subset=inst.subset))
    if not out:
        raise InputError("no instance has a labeled positive to train the cross-encoder judge on")
    return out


def pairs_digest(instances: Iterable[Instance]) -> str:
    """sha256 over the training pairs (query, positive keys, drawn negative keys), in order."""
    digest = hashlib.sha256()
    for inst in instances:
        digest.update(f"{inst.query_id}\x1f{inst.query}\x1e".encode())
        for role, passages in (("+", inst.positives), ("-", inst.negatives)):
            for p in passages:
                digest.update(f"{role}{p.key}\x1e".encode())
    return digest.hexdigest()


def fit_cross_judge(
    instances: Sequence[Instance],
    *,
    output_dir: str | Path,
    negatives: int = 4,
    epochs: int = 1,
    max_length: int = 256,
    batch_size: int = 16,
    learning_rate: float = 2e-5,
    seed: int = 0,
    corpus: Sequence[Passage] | None = None,
    flag_rate: float | None = None,
    threshold: float = 0.5,
    threads: int | None = None,
    max_steps: int | None = None,
    base_model: str = "all-MiniLM-L6-v2",
    source: str = "<instances>",
    show_progress: bool = False,
) -> CrossJudgeFit:
    """Train the judge and write it (model + ``negclean_judge.json``) to ``output_dir``, complete or not at all.

    Args:
        instances: the user's data: each query's labeled positives are the 1s; its candidates are never used
            as training pairs.
        negatives: random passages per positive and epoch (each epoch draws fresh ones).
        flag_rate: when given, the threshold is the score above which this share of the input's candidates
            lies (a flag budget; the candidates are scored, never trained on). Else ``threshold`` (a sigmoid
            score) is kept as it is.
        corpus: draw random negatives from these passages instead of the input's.
        threads: torch CPU threads during training and scoring.
        max_steps: stop training after this many optimizer steps (tests).
    """
    if negatives < 1:
        raise ConfigError(f"negatives must be 1 or more, got {negatives}")
    if flag_rate is not None and not 0.0 < flag_rate < 1.0:
        raise ConfigError(f"flag_rate must lie strictly between 0 and 1, got {flag_rate}")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must lie in [0, 1] (a sigmoid score), got {threshold}")
    train = random_negatives(instances, per_query=negatives * epochs, seed=seed, corpus=corpus)
    config = TrainConfig(
        kind="reranker",
        model=base_model,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        hard_negatives=negatives,
        max_seq_length=max_length,
        include_title=True,
        reranker_loss="bce",
        seed=seed,
        max_steps=max_steps,
        threads=threads,
    )
    out = Path(output_dir)
    if out.exists() and not (out / META_FILE).is_file() and any(out.iterdir()):
        raise ConfigError(
            f"{out} exists and is not a cross-encoder judge folder (no {META_FILE}); "
            "give a new or empty folder as --output"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        model_dir = scratch / "model"
        result = train_reranker(train, output_dir=model_dir, config=config, show_progress=show_progress)
        rule = f"fixed sigmoid score {threshold:g}"
        calibration = 0.0
        if flag_rate is not None:
            started = time.perf_counter()
            threshold = _threshold_for_rate(
                model_dir,
                instances,
                flag_rate=flag_rate,
                max_length=max_length,
                batch_size=max(batch_size, 32),
                threads=threads,
            )
            calibration = time.perf_counter() - started
            rule = f"flag_rate {flag_rate:g} of the {sum(len(i.negatives) for i in instances)} input candidates"
        fit = CrossJudgeFit(
            output_dir=str(out),
            queries=len(train),
            pairs=len(train) * (1 + negatives) * epochs,
            pool=len(corpus) if corpus is not None else -1,
            threshold=float(threshold),
            threshold_rule=rule,
            train_seconds=round(result.seconds, 3),
            calibration_seconds=round(calibration, 3),
            train_loss=result.train_loss,
            steps=result.steps,
        )
        meta: dict[str, Any] = {
            "kind": KIND,
            "base_model": base_model,
            "data": source,
            "pairs_sha256": pairs_digest(train),
            "settings": {
                "negatives": negatives,
                "epochs": epochs,
                "max_length": max_length,
                "batch_size": batch_size,
                "learning_rate": learning_rate,
                "seed": seed,
                "flag_rate": flag_rate,
                "negative_pool": "corpus" if corpus is not None else "input",
            },
            **fit.as_dict(),
        }
        meta.pop("output_dir")
        (model_dir / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(model_dir, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return fit


def _threshold_for_rate(
    model_dir: Path,
    instances: Sequence[Instance],
    *,
    flag_rate: float,
    max_length: int,
    batch_size: int,
    threads: int | None,
) -> float:
    """The score at or above which ``flag_rate`` of the input's candidates lie."""
    import numpy as np

    pairs = [(inst.query, p) for inst in instances if inst.positives for p in inst.negatives]
    if not pairs:
        raise InputError("--flag-rate needs candidates (negatives) in the input to set the threshold on")
    model = load_scorer(model_dir, max_length=max_length)
    scores = np.asarray(score_pairs(model, pairs, batch_size=batch_size, threads=threads))
    return float(np.quantile(scores, 1.0 - flag_rate, method="higher"))


__all__ = ["CrossJudgeFit", "META_FILE", "fit_cross_judge", "pairs_digest", "random_negatives"]
