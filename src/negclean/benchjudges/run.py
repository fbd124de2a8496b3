"""Run judges and cascades ("systems") over a benchmark through the real Cascade and score them.

Every system runs through ``Cascade`` with one shared ``JudgmentStore``: a verdict is computed once per
(judge fingerprint, pair), so a rerun, or a cascade whose stages were already run alone, is free.
Wall time is therefore not read from a rerun: the seconds each stage's judge spent on newly judged
candidates are kept in ``timings.json`` next to the store, and a system's time is estimated as
candidates reaching each stage x that judge's measured seconds per candidate.
Tokens come from the store's call records (exact, also for verdicts served from the store); cost is
those tokens priced as ``price_model`` (a hosted model of the user's choice) for LLM stages.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from negclean.benchjudges.dataset import Benchmark
from negclean.cascade.pricing import price_for
from negclean.cascade.runner import Cascade
from negclean.cascade.stages import CascadeConfig
from negclean.cascade.store import JudgmentStore
from negclean.embed import Embedder, load_embedder
from negclean.errors import ConfigError
from negclean.judge.similarity import SimilarityJudge
from negclean.metrics.binary import BinaryScores, binary_scores

_LLM_BACKENDS = frozenset({"openai", "openai-batch", "llamacpp", "vllm"})


@dataclass(frozen=True)
class System:
    """A named cascade to benchmark. ``relative_to``: the system (usually the strong stage alone) whose
    recall this one's is compared with."""

    name: str
    cascade: dict
    relative_to: str | None = None


@dataclass(frozen=True)
class StageResult:
    name: str
    judge_id: str
    backend: str
    candidates: int
    escalated: int
    tokens_in: int
    tokens_out: int
    sec_per_candidate: float | None
    audited: int
    miss_estimate: dict | None


@dataclass(frozen=True)
class SystemResult:
    """One system's scores, spending and routing on one benchmark."""

    name: str
    scores: BinaryScores
    stages: tuple[StageResult, ...]
    candidates: int
    tokens_in: int
    tokens_out: int
    cost: float
    est_seconds: float | None
    share_to_last: float
    relative_to: str | None = None
    relative_recall: float | None = None
    price_model: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def tokens_per_candidate(self) -> float:
        return (self.tokens_in + self.tokens_out) / max(1, self.candidates)

    @property
    def cost_per_1k(self) -> float:
        return 1000 * self.cost / max(1, self.candidates)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["scores"] = self.scores.as_dict()
        d["tokens_per_candidate"] = round(self.tokens_per_candidate, 2)
        d["cost_per_1k"] = self.cost_per_1k
        return d


def load_systems(source: str | Path) -> list[System]:
    """Systems from a YAML file (or a shipped name: ``cheap``, ``llm``) with ``systems: [{name, stages, ...}]``."""
    import yaml

    path = Path(source)
    if not path.is_file():
        from negclean.benchjudges.systems import SHIPPED

        if str(source) not in SHIPPED:
            raise ConfigError(f"--systems {source!r}: not a file and not a shipped set ({', '.join(SHIPPED)})")
        return SHIPPED[str(source)]()
    text = path.read_text()
    data = yaml.safe_load(text) or {}
    out = []
    for i, row in enumerate(data.get("systems") or []):
        if not isinstance(row, dict) or "name" not in row or "stages" not in row:
            raise ConfigError(f"{source}: systems[{i}] needs 'name' and 'stages'")
        cascade = {k: v for k, v in row.items() if k not in ("name", "relative_to")}
        out.append(System(row["name"], cascade, row.get("relative_to")))
    if not out:
        raise ConfigError(f"{source}: no systems listed under 'systems:'")
    return out


def _cascade_config(system: System):
    data = {"false_negative": "relevant", "max_false_negatives": None, **system.cascade}
    try:
        return CascadeConfig.model_validate(data)
    except Exception as exc:  # pydantic's message names the field
        raise ConfigError(f"system '{system.name}': {exc}") from None


class Timings:
    """Seconds per newly judged candidate, per judge fingerprint, kept beside the store."""

    def __init__(self, path: Path | None):
        self.path = path
        self.data: dict[str, dict[str, float]] = {}
        if path is not None and path.is_file():
            self.data = json.loads(path.read_text())

    def add(self, fingerprint: str, seconds: float, judged: int) -> None:
        if judged <= 0:
            return
        row = self.data.setdefault(fingerprint, {"seconds": 0.0, "judged": 0})
        row["seconds"] += seconds
        row["judged"] += judged
        if self.path is not None:
            self.path.write_text(json.dumps(self.data, indent=1, sort_keys=True))

    def per_candidate(self, fingerprint: str) -> float | None:
        row = self.data.get(fingerprint)
        return row["seconds"] / row["judged"] if row and row["judged"] else None


def candidate_rows(bench: Benchmark, outcomes) -> tuple[list[bool], list[int | None], list[float | None]]:
    """(truth, prediction, confidence) of every candidate with a truth: 1 flagged as a false negative, 0 cleared,
    None undecided."""
    truth: list[bool] = []
    pred: list[int | None] = []
    conf: list[float | None] = []
    for out in outcomes:
        qid = out.instance.query_id
        fns = set(out.false_negatives)
        for c, (p, cv) in enumerate(zip(out.instance.negatives, out.candidates)):
            key = (qid, p.docid)
            if key not in bench.truth:
                continue
            truth.append(bench.truth[key])
            decided = cv.verdict.label.value != "undecided"
            pred.append((1 if c in fns else 0) if decided else None)
            conf.append(cv.verdict.confidence)
    return truth, pred, conf


def run_system(
    bench: Benchmark,
    system: System,
    *,
    store,
    timings: Timings,
    price_model: str,
    prices: dict | None = None,
    judges: dict | None = None,
) -> tuple[SystemResult, list]:
    """Run one system; returns its result and the cascade outcomes (for later analysis)."""
    cfg = _cascade_config(system)
    cascade = Cascade(cfg, store=store, judges=judges)
    outcomes = list(cascade.run(bench.instances))
    stage_calls: dict[str, set[str]] = {s.name: set() for s in cfg.stages}
    for out in outcomes:
        for cv in out.candidates:
            for stage_name, v in cv.trail:
                if v.call_id:
                    stage_calls[stage_name].add(v.call_id)
    truth, pred, conf = candidate_rows(bench, outcomes)
    scores = binary_scores(truth, pred, confidence=conf)
    price = price_for("openai", price_model, prices)
    stages, tot_in, tot_out, cost = [], 0, 0, 0.0
    est: float | None = 0.0
    for sc, st in zip(cfg.stages, cascade.stats.stages):
        fp = cascade.stage_fingerprint(sc.name)  # the key its verdicts are stored under (file content included)
        memo = getattr(cascade.judge_for(sc), "_embedder", None) if sc.judge.backend == "similarity" else None
        if isinstance(memo, MemoEmbedder):
            # screens share one encoder: time per encoded text, kept per model (a passage is one candidate)
            fp = f"embed:{sc.judge.model}"
            timings.add(fp, memo.seconds - memo.reported[0], memo.encoded - memo.reported[1])
            memo.reported = (memo.seconds, memo.encoded)
        else:
            timings.add(fp, st.seconds, st.judged)
        tok = store.call_tokens(stage_calls[sc.name])
        t_in, t_out = sum(a for a, _ in tok.values()), sum(b for _, b in tok.values())
        llm = sc.judge.backend in _LLM_BACKENDS
        tot_in, tot_out = tot_in + t_in, tot_out + t_out
        if llm:
            cost += price.cost(t_in, t_out)
        spc = timings.per_candidate(fp)
        est = None if est is None or spc is None else est + spc * st.candidates
        m = st.miss_estimate()
        stages.append(
            StageResult(
                sc.name,
                st.judge_id,
                sc.judge.backend,
                st.candidates,
                st.escalated,
                t_in,
                t_out,
                spc,
                st.audited,
                None
                if m is None
                else {
                    "found": m.found,
                    "audited": m.audited,
                    "cleared": m.cleared,
                    "missed": m.missed,
                    "low": m.missed_low,
                    "high": m.missed_high,
                    "text": m.describe(),
                },
            )
        )
    cascade.close()
    first = cascade.stats.stages[0].candidates
    share = cascade.stats.stages[-1].candidates / first if first else 0.0
    return SystemResult(
        system.name,
        scores,
        tuple(stages),
        first,
        tot_in,
        tot_out,
        cost,
        est,
        share,
        system.relative_to,
        None,
        price_model,
    ), outcomes


def run_benchmark(
    bench: Benchmark,
    systems: Sequence[System],
    *,
    store_path: str | Path,
    price_model: str = "gpt-4o-mini",
    prices: dict | None = None,
    on_system=None,
    embedders: dict | None = None,
) -> list[SystemResult]:
    """Run every system (in order) and fill in recall relative to the named reference systems."""

    store_path = Path(store_path)
    timings = Timings(store_path.with_name(store_path.stem + ".timings.json"))
    results: dict[str, SystemResult] = {}
    embedders = {} if embedders is None else embedders  # model -> MemoEmbedder, shared with the caller
    with JudgmentStore(store_path) as store:
        for system in systems:
            t0 = time.perf_counter()
            judges = _similarity_judges(_cascade_config(system), embedders)
            res, _ = run_system(
                bench, system, store=store, timings=timings, price_model=price_model, prices=prices, judges=judges
            )
            results[system.name] = res
            if on_system:
                on_system(res, time.perf_counter() - t0)
    out = []
    for res in results.values():
        ref = results.get(res.relative_to) if res.relative_to else None
        if ref is not None and ref.scores.recall:
            res = _with(res, relative_recall=(res.scores.recall or 0.0) / ref.scores.recall)
        out.append(res)
    return out


class MemoEmbedder:
    """An embedder that encodes each (prefix, text) once per benchmark: similarity screens at several
    thresholds share their vectors (each threshold is its own judge, so the store cannot share them)."""

    def __init__(self, model: str, device: str | None = None):
        self.model, self.device = model, device
        self._inner: Embedder | None = None
        self._memo: dict[tuple[str, str], Any] = {}
        self.seconds = 0.0  # spent encoding (load included), for the per-candidate time of every screen
        self.encoded = 0
        self.reported = (0.0, 0)

    def encode(self, texts, *, prefix: str = "", batch_size: int = 64, show_progress: bool = False):
        import numpy as np

        todo = list(dict.fromkeys(t for t in texts if (prefix, t) not in self._memo))
        if todo:
            if self._inner is None:
                t0 = time.perf_counter()
                self._inner = load_embedder(self.model, device=self.device)
                self.seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            for t, v in zip(todo, self._inner.encode(todo, prefix=prefix, batch_size=batch_size)):
                self._memo[(prefix, t)] = v
            self.seconds += time.perf_counter() - t0
            self.encoded += len(todo)
        return np.stack([self._memo[(prefix, t)] for t in texts]) if len(texts) else np.zeros((0, 0), np.float32)


def _similarity_judges(cfg, embedders: dict) -> dict:
    out = {}
    for stage in cfg.stages:
        j = stage.judge
        if j.backend == "similarity":
            memo = embedders.setdefault(j.model, MemoEmbedder(j.model, j.device))
            out[stage.name] = SimilarityJudge(j, embedder=memo)
    return out


def _with(res: SystemResult, **changes) -> SystemResult:
    from dataclasses import replace

    return replace(res, **changes)
