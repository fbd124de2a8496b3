"""Run a cascade over a stream of instances: store lookups, judge calls, routing, budget, funnel counts."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from negclean.cascade.audit import MissEstimate, estimate_misses
from negclean.cascade.budget import Budget
from negclean.cascade.guard import guarded, rules_in_reason
from negclean.cascade.outcome import CandidateVerdict, InstanceOutcome
from negclean.cascade.pricing import FREE, Price, price_for
from negclean.cascade.stages import CascadeConfig, StageConfig
from negclean.cascade.store import JudgmentStore, Key, task_keys
from negclean.data.records import Instance
from negclean.embed_counts import EmbedTally, merge_counts
from negclean.errors import BudgetExceeded, ConfigError
from negclean.judge.base import Grade, Judge, JudgeTask, Label, Verdict, check_results
from negclean.judge.config import build_judge


@dataclass
class StageStats:
    """Funnel counts and spending of one stage in one run."""

    name: str
    judge_id: str
    instances: int = 0
    candidates: int = 0
    from_store: int = 0
    judged: int = 0
    tasks_sent: int = 0
    relevant: int = 0
    better: int = 0
    worse: int = 0
    not_relevant: int = 0
    undecided: int = 0
    escalated: int = 0
    audited: int = 0
    audit_found: int = 0
    cleared_unaudited: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    est_tokens_in: int = 0
    est_tokens_out: int = 0
    est_cost: float = 0.0
    seconds: float = 0.0
    undecided_reasons: dict[str, int] = field(default_factory=dict)
    #: candidates not sent to the model for a possible prompt injection (undecided), and the rules that fired
    set_aside: int = 0
    set_aside_rules: dict[str, int] = field(default_factory=dict)
    #: the judge's own counters (requests, retries, failed calls, errors by kind) where it keeps them
    backend: dict[str, Any] | None = None

    def miss_estimate(self) -> MissEstimate | None:
        if not self.audited:
            return None
        return estimate_misses(self.name, cleared=self.cleared_unaudited, audited=self.audited, found=self.audit_found)


@dataclass
class CascadeStats:
    instances: int = 0
    candidates: int = 0
    false_negatives: int = 0
    instances_with_fn: int = 0
    ambiguous: int = 0
    undecided_final: int = 0
    stages: list[StageStats] = field(default_factory=list)
    stopped_by_budget: bool = False
    #: the --max-cost ledger (cap, spent before this run, in it, in all), see cascade.budget
    budget: dict[str, Any] | None = None
    dry_run: bool = False
    #: per embedding model, texts embedded vs served from the embedding cache by all stages (negclean.embed_cache)
    embeddings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cost(self) -> float:
        return sum(s.cost for s in self.stages)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "stages"}
        out["cost"] = round(self.cost, 6)
        out["stages"] = []
        for s in self.stages:
            d = dict(s.__dict__)
            d["cost"] = round(s.cost, 6)
            d["est_cost"] = round(s.est_cost, 6)
            d["seconds"] = round(s.seconds, 3)
            m = s.miss_estimate()
            d["miss_estimate"] = (
                None
                if m is None
                else {
                    "missed": round(m.missed, 2),
                    "low": round(m.missed_low, 2),
                    "high": round(m.missed_high, 2),
                    "rate": round(m.rate, 4),
                    "audited": m.audited,
                    "found": m.found,
                    "cleared": m.cleared,
                    "text": m.describe(),
                }
            )
            out["stages"].append(d)
        return out


def _titles_shown(stage: StageConfig) -> bool:
    return bool(getattr(stage.judge, "include_titles", False))


def _audit_draw(seed: int, stage: str, key: tuple[str, str, str]) -> float:
    """A uniform number in [0,1) fixed by (seed, stage, pair): the same sample on every resume."""
    digest = hashlib.blake2b(f"{seed}|{stage}|{'|'.join(key)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _stage_price(stage: StageConfig, overrides: Mapping[str, Mapping[str, float]]) -> Price:
    cfg = stage.judge
    model = getattr(cfg, "model", None)
    try:
        return price_for(cfg.backend, model, overrides, billed=cfg.billed, factor=cfg.price_factor)
    except KeyError as exc:
        if getattr(cfg, "base_url", None):  # self-hosted (vLLM, llama.cpp server, Ollama): no per-token price
            return FREE
        raise ConfigError(f"stage '{stage.name}': {exc.args[0]}") from None


class Cascade:
    """Judge instances through ordered stages, storing every verdict.

    Args:
        config: the cascade's stages and rules.
        store: the judgment store (verdicts already there are reused, never paid again).
        judges: prebuilt judges by stage name (tests, benchmarks); others are built from the config.
        dry_run: call no paid model; count the tokens and cost the calls would take instead (model-free
            stages still run, so routing to the first paid stage is exact; later paid stages get an
            upper bound: everything the first paid stage would see).
        on_progress: called with the number of instances finished after each chunk.
        budget_scope: the key of this run's spend in the store's ledger (``negclean judge`` uses the output
            folder): a run with the same scope continues from what it spent. None: counted from 0, in memory.
    """

    def __init__(
        self,
        config: CascadeConfig,
        *,
        store: JudgmentStore,
        judges: dict[str, Judge] | None = None,
        dry_run: bool = False,
        on_progress: Callable[[int], None] | None = None,
        budget_scope: str | None = None,
    ):
        self.config = config
        self.store = store
        self.dry_run = dry_run
        self.on_progress = on_progress
        self._prices = [_stage_price(s, config.prices) for s in config.stages]
        self._judges = dict(judges or {})
        self._built: list[Judge] = []
        self._ready: dict[str, Judge] = {}  # judge_for's answer per stage (the judge, guarded where it applies)
        self.stats = CascadeStats(
            dry_run=dry_run, stages=[StageStats(s.name, s.judge.judge_id()) for s in config.stages]
        )
        self.budget = Budget(cap=config.max_cost, store=store, scope=budget_scope)
        self.stats.budget = self.budget.as_dict()
        # store keys per stage: a judge passed in is stored under its own fingerprint; otherwise the config's,
        # which covers the content of the files the judge will read (equal to the built judge's, and cheap)
        self._fingerprints: list[str] = []
        self._by_id: list[bool] = []
        for s in config.stages:
            given = self._judges.get(s.name)
            fp = s.judge.fingerprint() if given is None else given.fingerprint
            self._fingerprints.append(fp)
            by_id = type(s.judge).keys_by_id if given is None else given.keys_by_id
            self._by_id.append(by_id)
            judge_id = getattr(given, "judge_id", None) or s.judge.judge_id()
            store.register_judge(fp, judge_id, s.judge.model_dump_json())

    def stage_fingerprint(self, name: str) -> str:
        """The fingerprint that keys the verdicts of stage ``name`` in the store."""
        return self._fingerprints[[s.name for s in self.config.stages].index(name)]

    def judge_for(self, stage: StageConfig) -> Judge:
        """The stage's judge (built on first use), behind the injection guard where it applies; the same object
        on every call."""
        if stage.name not in self._ready:
            if stage.name not in self._judges:
                self._judges[stage.name] = build_judge(stage.judge)
                self._built.append(self._judges[stage.name])
            self._ready[stage.name] = guarded(
                self._judges[stage.name], enabled=self._guard_on(stage), include_titles=_titles_shown(stage)
            )
        return self._ready[stage.name]

    def close(self) -> None:
        """Release the judges this cascade built (HTTP clients, local models); judges passed in stay open."""
        built, self._built = self._built, []
        for judge in built:
            judge.close()

    def __enter__(self) -> Cascade:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _guard_on(self, stage: StageConfig) -> bool:
        """Whether the injection guard screens this stage: LLM stages, unless the stage or the cascade turns it off."""
        on = self.config.injection_guard if stage.injection_guard is None else stage.injection_guard
        return on and stage.judge.calls_model

    def _stop_for_budget(self, stage: StageConfig) -> None:
        """End the run: the next call's worst case does not fit under the cap (everything judged is stored)."""
        b = self.budget
        self.stats.stopped_by_budget = True
        self.stats.budget = b.as_dict()
        raise BudgetExceeded(
            f"--max-cost reached at stage '{stage.name}': {b.refused}. Spent ${b.spent:.6f} of ${b.cap:.6f} "
            f"(${b.spent_this_run:.6f} in this run, ${b.spent_before:.6f} before it). Everything judged so far "
            "is stored and is not paid again: rerun the same command with a higher --max-cost to resume."
        )

    def _calls_model(self, index: int) -> bool:
        """Stages that call an LLM: skipped (estimated) in a dry run, checked against the budget."""
        return self.config.stages[index].judge.calls_model

    def run(self, instances: Iterable[Instance]) -> Iterator[InstanceOutcome]:
        """Yield one outcome per instance, in input order, chunk by chunk."""
        chunk: list[Instance] = []
        for inst in instances:
            chunk.append(inst)
            if len(chunk) >= self.config.chunk_size:
                yield from self._run_chunk(chunk)
                chunk = []
        if chunk:
            yield from self._run_chunk(chunk)

    # -- one chunk -------------------------------------------------------------------------------
    def _run_chunk(self, chunk: Sequence[Instance]) -> list[InstanceOutcome]:
        trails: list[list[list[tuple[str, Verdict]]]] = [[[] for _ in inst.negatives] for inst in chunk]
        audited: list[set[int]] = [set() for _ in chunk]
        audit_origin: dict[tuple[int, int], int] = {}  # (instance, candidate) -> stage index that audited it
        active: list[tuple[int, ...]] = [tuple(range(len(inst.negatives))) for inst in chunk]
        for si, stage in enumerate(self.config.stages):
            live = [i for i, cands in enumerate(active) if cands]
            if not live:
                break
            tasks = [JudgeTask(chunk[i], active[i]) for i in live]
            verdicts = self._judge_stage(si, stage, tasks)
            if verdicts is None:  # dry run past a paid stage: routing unknown, assume everything goes on
                continue
            for i, task, vs in zip(live, tasks, verdicts):
                for c, v in zip(task.candidates, vs):
                    trails[i][c].append((stage.name, v))
            if si + 1 < len(self.config.stages):
                for i, task, vs in zip(live, tasks, verdicts):
                    active[i] = self._route(si, stage, task, vs, audited[i], audit_origin, i)
        outcomes = [self._finish(inst, trails[i], audited[i]) for i, inst in enumerate(chunk)]
        for (i, c), si in audit_origin.items():
            if c in outcomes[i].false_negatives:
                self.stats.stages[si].audit_found += 1
        tallies = {id(t): t for j in self._judges.values() if isinstance(t := getattr(j, "stats", None), EmbedTally)}
        self.stats.embeddings = [c.as_dict() for c in merge_counts(c for t in tallies.values() for c in t.counts())]
        if self.on_progress:
            self.on_progress(len(chunk))
        return outcomes

    def _judge_stage(self, si: int, stage: StageConfig, tasks: list[JudgeTask]) -> list[list[Verdict]] | None:
        st = self.stats.stages[si]
        fp, by_id = self._fingerprints[si], self._by_id[si]
        t0 = time.perf_counter()
        keys = [task_keys(t, by_id=by_id) for t in tasks]
        stored = self.store.get(fp, [k for ks in keys for k in ks])
        st.instances += len(tasks)
        st.candidates += sum(len(t.candidates) for t in tasks)
        pending: list[JudgeTask] = []
        asked: set[Key] = set()  # each key goes to the judge once per chunk; its duplicates take that verdict
        for t, ks in zip(tasks, keys):
            missing = []
            for c, k in zip(t.candidates, ks):
                if k not in stored and k not in asked:
                    asked.add(k)
                    missing.append(c)
            st.from_store += len(t.candidates) - len(missing)
            if missing:
                pending.append(JudgeTask(t.instance, tuple(missing)))
        new: dict[tuple[str, str, str], Verdict] = {}
        extra: dict[str, Any] = {}  # the budget, for judges that take it
        meter = chunk_hold = None
        if pending:
            if self._calls_model(si):
                judge = self.judge_for(stage)
                est_in = est_out = 0
                for t in pending:
                    a, b = judge.estimate_tokens(t)
                    est_in, est_out = est_in + a, est_out + b
                est_cost = self._prices[si].cost(est_in, est_out)
                if self.dry_run:
                    st.est_tokens_in += est_in
                    st.est_tokens_out += est_out
                    st.est_cost += est_cost
                    st.seconds += time.perf_counter() - t0
                    return None
                meter = self.budget.meter(self._prices[si], stage=stage.name)
                if judge.meters_budget:  # the judge reserves each call's worst case right before sending it
                    extra["budget"] = meter
                else:  # a judge that cannot: hold the whole chunk's worst case before it starts
                    chunk_hold = meter.reserve(est_in, est_out, what=f"the next {len(pending)} instance(s)")
                    if chunk_hold is not None and chunk_hold.recorded is not None:
                        chunk_hold.recorded.result()
                        if not meter.confirmed(chunk_hold):
                            chunk_hold = None
                    if chunk_hold is None:
                        self._stop_for_budget(stage)
            judge = self.judge_for(stage)
            streamed = judge.streams
            if streamed:  # each call's verdicts are stored as it finishes: a crash loses only calls in flight
                # through the store's writer thread: a lock held by another process never stalls the calls
                results = judge.judge(
                    pending, on_call=lambda part, result: self.store.put_later(fp, part, result, by_id=by_id), **extra
                )
            else:
                results = judge.judge(pending, **extra)
            if meter is not None and chunk_hold is not None:
                meter.settle(chunk_hold, sum(r.tokens_in for r in results), sum(r.tokens_out for r in results))
            if judge.stats is not None:
                st.backend = dict(judge.stats.as_dict())
            check_results(judge.judge_id, pending, results)
            for t, r in zip(pending, results):
                if not streamed:
                    self.store.put(fp, t, r, by_id=by_id)
                st.judged += sum(not rules_in_reason(v.reason) for v in r.verdicts)  # set aside: not sent
                st.tokens_in += r.tokens_in
                st.tokens_out += r.tokens_out
                st.cost += self._prices[si].cost(r.tokens_in, r.tokens_out)
                for k, v in zip(task_keys(t, by_id=by_id), r.verdicts):
                    new[k] = v
            st.tasks_sent += len(pending)
            # report what the store holds (first wins: another process may have stored a pair before us), so a
            # rerun served from the store gives exactly these verdicts; failed calls' verdicts are not stored
            flush = getattr(self.store, "flush", None)
            if flush is not None:
                flush()
            new.update(self.store.get(fp, list(new)))
            self.stats.budget = self.budget.as_dict()
            if meter is not None and meter.refused is not None:  # calls in flight finished and are stored
                self._stop_for_budget(stage)
        out = []
        for _task, ks in zip(tasks, keys):
            vs = []
            for k in ks:
                v = new.get(k) or stored[k]
                vs.append(v)
                self._count(st, v)
            out.append(vs)
        st.seconds += time.perf_counter() - t0
        return out

    @staticmethod
    def _count(st: StageStats, v: Verdict) -> None:
        if v.label is Label.RELEVANT:
            st.relevant += 1
            if v.grade is Grade.WORSE:
                st.worse += 1
            else:
                st.better += 1
        elif v.label is Label.NOT_RELEVANT:
            st.not_relevant += 1
        else:
            st.undecided += 1
            reason = (v.reason or "unknown")[:80]
            st.undecided_reasons[reason] = st.undecided_reasons.get(reason, 0) + 1
            rules = rules_in_reason(v.reason or "")
            if rules:
                st.set_aside += 1
                for rule in rules:
                    st.set_aside_rules[rule] = st.set_aside_rules.get(rule, 0) + 1

    def _goes_on(self, stage: StageConfig, v: Verdict) -> bool:
        if v.label is Label.UNDECIDED:
            return stage.escalate_undecided
        rule = stage.escalate
        hit = (
            rule == "all"
            or (rule == "flagged" and v.label is Label.RELEVANT)
            or (rule == "better" and v.label is Label.RELEVANT and v.grade is not Grade.WORSE)
            or (rule == "worse" and v.label is Label.RELEVANT and v.grade is Grade.WORSE)
            or (rule == "cleared" and v.label is Label.NOT_RELEVANT)
        )
        if not hit and stage.uncertain is not None and v.confidence is not None:
            lo, hi = stage.uncertain
            hit = lo <= v.confidence <= hi
        return hit

    def _route(
        self,
        si: int,
        stage: StageConfig,
        task: JudgeTask,
        vs: Sequence[Verdict],
        audited: set[int],
        audit_origin: dict[tuple[int, int], int],
        inst_index: int,
    ) -> tuple[int, ...]:
        st = self.stats.stages[si]
        keys = task_keys(task, by_id=self._by_id[si])
        go = []
        for c, k, v in zip(task.candidates, keys, vs):
            if self._goes_on(stage, v):
                go.append(c)
            elif stage.audit_rate > 0 and _audit_draw(self.config.seed, stage.name, k) < stage.audit_rate:
                go.append(c)
                audited.add(c)
                audit_origin[(inst_index, c)] = si
                st.audited += 1
            elif v.label is Label.NOT_RELEVANT:
                st.cleared_unaudited += 1
        if stage.unit == "instance" and go:
            go = list(task.candidates)
        st.escalated += len(go)
        return tuple(go)

    def _finish(self, inst: Instance, trails: list[list[tuple[str, Verdict]]], audited: set[int]) -> InstanceOutcome:
        cands = []
        fns = []
        rule_relevant = self.config.false_negative == "relevant"
        for c, trail in enumerate(trails):
            if not trail:  # dry run: nothing decided
                v = Verdict(Label.UNDECIDED, None, "none", reason="not judged (dry run)")
                cands.append(CandidateVerdict("", v, (), False))
                continue
            stage, v = trail[-1]
            cands.append(CandidateVerdict(stage, v, tuple(trail), c in audited))
            if v.label is Label.RELEVANT and (rule_relevant or v.grade is not Grade.WORSE):
                fns.append(c)
            if v.label is Label.UNDECIDED:
                self.stats.undecided_final += 1
        cap = self.config.max_false_negatives
        ambiguous = cap is not None and len(fns) > cap
        s = self.stats
        s.instances += 1
        s.candidates += len(inst.negatives)
        s.false_negatives += len(fns)
        s.instances_with_fn += bool(fns)
        s.ambiguous += ambiguous
        return InstanceOutcome(inst, tuple(cands), tuple(fns), ambiguous)
