"""`negclean experiment`: (mine ->) judge -> fix variants -> train each -> evaluate each -> compare.

The RLHN paper's core table in one command. Every variant comes from the same verdicts file (one judge
run), every model is trained with the same configuration and seed, every model is evaluated the same way.
Work already done is reused: verdicts come from the judgment store, a trained model is kept when its data
and configuration are unchanged, an evaluation is kept when its model and options are unchanged, and
corpus embeddings come from the embedding cache.

Output folder::

    mined.jsonl, mine_summary.json     (when mining)
    judge/                              verdicts.jsonl, summary.json of the judge run
    judge-<source>/                     the same for each extra source (``sources:``: cascades, qrels oracles)
    data/<variant>.jsonl                one training file per variant (and <variant>-minus-<subset>.jsonl);
                                        a source's variants in data/<source>/<variant>.jsonl
    models/<variant>/                   trained models
    evals/<set>/<system>/               run.trec, per_query.tsv, metrics.json
    results/<set>.md|.json|.png         comparison table, machine-readable result, plot
    results.json, results.md            everything, with step timings
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from negclean.data.atomic import atomic_write
from negclean.data.io import open_writer, read_instances
from negclean.errors import ConfigError
from negclean.evaluate.compare import compare
from negclean.evaluate.measures import per_query, read_trec_run
from negclean.evaluate.plot import plot_comparison
from negclean.evaluate.retrieval import load_beir_split
from negclean.evaluate.runner import METRICS_FILE, RUN_FILE, evaluate, evaluate_first_stage, per_query_of
from negclean.experiment.config import ExperimentConfig
from negclean.experiment.report import write_markdown
from negclean.fix.operations import Operation
from negclean.holes import fill_holes, holes_report
from negclean.holes.files import write_holes
from negclean.local_models import read_summary, torch_threads
from negclean.mine.config import MineConfig
from negclean.mine.mine import mine
from negclean.pipeline import run_fix, run_judge, validate_pipeline
from negclean.train import train
from negclean.train.common import instances_hash, read_data

Log = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    """One step: wall time, and CPU time of this process (on a shared machine the wall time depends on
    the other work; with 1 torch thread the CPU time is about what the step takes on an idle core)."""

    name: str
    seconds: float
    cpu_seconds: float
    reused: bool = False
    detail: str = ""


@dataclass(frozen=True)
class ExperimentResult:
    """Paths and numbers of a finished experiment; ``comparisons`` maps eval set -> Comparison.as_dict()."""

    output_dir: str
    training_sets: tuple[str, ...]
    systems: tuple[str, ...]
    scores: Mapping[str, Mapping[str, Mapping[str, float]]]  # set -> system -> measure -> mean
    comparisons: Mapping[str, Any]
    data: Mapping[str, Any]
    steps: tuple[Step, ...]
    seconds: float
    files: Mapping[str, str] = field(default_factory=dict)

    @property
    def cpu_seconds(self) -> float:
        return round(sum(s.cpu_seconds for s in self.steps), 3)

    def as_dict(self) -> dict:
        return {
            "output_dir": self.output_dir,
            "training_sets": list(self.training_sets),
            "cpu_seconds": self.cpu_seconds,
            "systems": list(self.systems),
            "scores": {k: dict(v) for k, v in self.scores.items()},
            "comparisons": dict(self.comparisons),
            "data": dict(self.data),
            "steps": [s.__dict__ for s in self.steps],
            "seconds": self.seconds,
            "files": dict(self.files),
        }


def _key(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=2, ensure_ascii=False, default=str))


class ExperimentRunner:
    """Runs one ExperimentConfig step by step; ``run()`` returns the ExperimentResult."""

    def __init__(
        self, cfg: ExperimentConfig, *, log: Log | None = None, judges: dict | None = None, show_progress: bool = False
    ):
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.log = log or (lambda msg: None)
        self.judges = judges
        self.show_progress = show_progress
        self.steps: list[Step] = []
        self.train_cfg = cfg.train_config()
        self._cpu_mark = time.process_time()

    def _step(self, name: str, t0: float, *, reused: bool = False, detail: str = "") -> None:
        cpu = time.process_time()
        step = Step(name, round(time.perf_counter() - t0, 3), round(cpu - self._cpu_mark, 3), reused, detail)
        self._cpu_mark = cpu
        self.steps.append(step)
        self.log(
            f"{name}: {'reused' if reused else 'done'} in {step.seconds:.1f}s (CPU {step.cpu_seconds:.1f}s)"
            + (f"; {detail}" if detail else "")
        )

    def _progress(self) -> Callable[[str, int, int], None]:
        """A progress callback that logs each stage at every tenth of its total."""
        last: dict[str, int] = {}

        def report(stage: str, done: int, total: int) -> None:
            if done == total or done - last.get(stage, 0) >= max(1, total // 10):
                last[stage] = done
                self.log(f"  {stage}: {done}/{total}")

        return report

    # ------------------------------------------------------------------ steps

    def input_file(self) -> tuple[str, str | None]:
        """The instance file to judge (mined here when the config says so) and its format."""
        data = self.cfg.data
        if data.input is not None:
            return data.input, data.format

        # from the submodule: once it is imported (a second experiment in one process), the package attribute
        # negclean.mine.mine is that module, no longer the package's lazy wrapper function

        t0 = time.perf_counter()
        options = dict(data.mine or {})
        options.setdefault("cache_dir", self.cfg.cache_dir)
        mcfg = MineConfig.from_options(options, source="experiment data.mine")
        output = self.out / "mined.jsonl"
        summary_path = self.out / "mine_summary.json"
        # mine with the token limit the models are trained and evaluated with: the untrained model's corpus
        # embeddings are then computed once, here, and reused by its evaluation
        limit = (
            self.train_cfg.max_seq_length if (mcfg.retriever != "bm25" and mcfg.model == self.train_cfg.model) else None
        )
        source = [mcfg.beir, mcfg.split, mcfg.input, mcfg.corpus, limit]
        previous = _read_json(summary_path)
        if (
            output.is_file()
            and previous
            and previous.get("params_hash") == mcfg.params_hash()
            and previous.get("negclean_source") == source
        ):
            self._step("mine", t0, reused=True, detail=str(output))
            return str(output), None
        embedder = None
        if limit is not None:
            from negclean.evaluate.retrieval import load_eval_embedder

            embedder = load_eval_embedder(mcfg.model, max_seq_length=limit, device=self.train_cfg.device)
        self.out.mkdir(parents=True, exist_ok=True)
        summary = mine(mcfg, output=str(output), embedder=embedder, on_progress=self._progress())
        record = {**summary.as_dict(), "negclean_source": source}
        _write_json(summary_path, record)
        self._step(
            "mine",
            t0,
            detail=f"{record.get('queries_written')} queries, {record.get('negatives_written')} negatives -> {output}",
        )
        return str(output), None

    def judge(self, input_path: str, fmt: str | None, *, source: str | None = None) -> tuple[str, dict]:
        """Judge the input with the main cascade, or with the named source's (verdicts in judge-<source>/)."""

        t0 = time.perf_counter()
        cascade_dict = self.cfg.cascade if source is None else self.cfg.sources[source].cascade_dict()
        cascade = validate_pipeline({"cascade": cascade_dict}, source="experiment cascade").cascade
        folder = self.out / ("judge" if source is None else f"judge-{source}")
        store = self.cfg.store or str(self.out / "judgments.sqlite")
        done = [0, 0]  # instances judged, instances at the last line

        def judged(n: int) -> None:  # called per chunk with its size; the input streams (no total)
            done[0] += n
            if done[0] - done[1] >= 500:
                done[1] = done[0]
                self.log(f"  judging: {done[0]} instances")

        summary = run_judge(
            input_path=input_path,
            cascade=cascade,
            output_dir=folder,
            store_path=store,
            fmt=fmt,
            on_error=self.cfg.data.on_error,
            judges=self.judges,
            on_progress=judged,
        )
        cas = summary.get("cascade", {})
        stored = sum(s.get("from_store", 0) for s in cas.get("stages", []))
        judged = sum(s.get("judged", 0) for s in cas.get("stages", []))
        self._step(
            "judge" if source is None else f"judge {source}",
            t0,
            reused=judged == 0 and stored > 0,
            detail=f"{cas.get('false_negatives')} false negatives in {cas.get('instances_with_fn')} of "
            f"{cas.get('instances')} instances; {judged} verdicts new, {stored} from the store",
        )
        return str(folder / "verdicts.jsonl"), summary

    def variants(
        self, input_path: str, fmt: str | None, verdicts: str, *, source: str | None = None
    ) -> dict[str, dict]:
        """One training file per variant, all from the same verdicts (a source's: named <source>/<variant>)."""
        out: dict[str, dict] = {}
        fixes = self.cfg.variants if source is None else self.cfg.sources[source].variants
        for fix in fixes:
            t0 = time.perf_counter()
            name = fix if source is None else f"{source}/{fix}"
            op = Operation.NONE if fix == "default" else Operation(fix)
            path = self.out / "data" / f"{name}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            summary = run_fix(
                input_path=input_path,
                verdicts_path=verdicts,
                output_path=str(path),
                operation=op,
                fmt=fmt,
                on_error=self.cfg.data.on_error,
                drop_undecided=self.cfg.drop_undecided,
                reject_path=str(path) + ".rejects.jsonl",
                log_limit=0,
            )  # judging logged them
            if not summary.get("reconciled", False):
                raise ConfigError(f"fix '{name}' did not reconcile its counts: {summary['fix']}")
            out[name] = {"path": str(path), "verdicts": verdicts, "source": source or "cascade", **summary["fix"]}
            self._step(f"fix {name}", t0, detail=f"{summary['fix']['written']} instances")
        return out

    def leave_one_out(self, files: dict[str, dict]) -> dict[str, dict]:
        """For each variant and subset: the variant without that subset."""

        t0 = time.perf_counter()
        first = next(iter(files.values()))["path"]
        subsets = sorted({inst.subset for inst in read_instances(first, on_error="fail")})
        if len(subsets) < 2:
            raise ConfigError(
                f"leave_one_out needs instances from at least 2 subsets (Instance.subset); "
                f"{first} has {subsets or 'none'}"
            )
        out: dict[str, dict] = {}
        for variant, info in files.items():
            out[variant] = info
            reader = read_instances(info["path"], on_error="fail")
            for subset in subsets:
                name = f"{variant}-minus-{subset or 'none'}"
                path = self.out / "data" / f"{name}.jsonl"
                kept = 0
                with open_writer(str(path), like=reader) as writer:
                    for inst in reader:
                        if inst.subset != subset:
                            writer.write(inst)
                            kept += 1
                out[name] = {"path": str(path), "variant": variant, "left_out": subset, "written": kept}
        self._step("leave-one-out", t0, detail=f"{len(subsets)} subsets: {', '.join(subsets)}")
        return out

    def train_all(self, files: dict[str, dict]) -> dict[str, str]:
        models: dict[str, str] = {}
        for name, info in files.items():
            t0 = time.perf_counter()
            target = self.out / "models" / name
            instances, _ = read_data(info["path"])
            previous = read_summary(target)
            if (
                previous
                and previous.get("data_hash") == instances_hash(instances)
                and previous.get("config_hash") == self.train_cfg.params_hash()
            ):
                models[name] = str(target)
                self._step(f"train {name}", t0, reused=True, detail=str(target))
                continue
            result = train(info["path"], output_dir=target, config=self.train_cfg, show_progress=self.show_progress)
            models[name] = str(target)
            self._step(f"train {name}", t0, detail=f"{result.steps} steps, loss {result.train_loss:.4f}")
        return models

    def evaluate_all(self, models: dict[str, str]) -> dict[str, dict[str, Path]]:
        ev = self.cfg.eval
        kind = self.train_cfg.kind
        systems: dict[str, str] = ({"base": self.train_cfg.model} if ev.base_model else {}) | models
        out: dict[str, dict[str, Path]] = {}
        for es in ev.sets:
            data = None
            out[es.name] = {}
            for system, model in systems.items():
                t0 = time.perf_counter()
                folder = self.out / "evals" / es.name / system
                trained = read_summary(model) if system != "base" else None
                key = _key(
                    {
                        "model": model,
                        "trained": trained and [trained.get("data_hash"), trained.get("config_hash")],
                        "set": es.model_dump(),
                        "eval": ev.model_dump(exclude={"sets"}),
                        "kind": kind,
                        "max_seq_length": self.train_cfg.max_seq_length,
                        "prefixes": [
                            self.train_cfg.query_prefix,
                            self.train_cfg.passage_prefix,
                            self.train_cfg.include_title,
                        ],
                    }
                )
                done = _read_json(folder / "key.json")
                if done and done.get("key") == key and (folder / METRICS_FILE).is_file():
                    out[es.name][system] = folder
                    self._step(f"eval {es.name}/{system}", t0, reused=True)
                    continue
                data = data or load_beir_split(es.beir, split=es.split)
                common: dict[str, Any] = dict(
                    beir=data,
                    output_dir=folder,
                    measures=ev.measures,
                    depth=ev.depth,
                    query_prefix=self.train_cfg.query_prefix,
                    passage_prefix=self.train_cfg.passage_prefix,
                    include_title=self.train_cfg.include_title,
                    batch_size=ev.batch_size,
                    cache_dir=self.cfg.cache_dir,
                    ignore_identical_ids=ev.ignore_identical_ids,
                    device=self.train_cfg.device,
                    name=system,
                    show_progress=self.show_progress,
                )
                if kind == "reranker" and system == "base":
                    result = self._first_stage_only(data, folder, system)
                else:
                    result = evaluate(
                        model=model,
                        kind=kind,
                        first_stage=ev.first_stage,
                        top_k=ev.top_k,
                        max_seq_length=self.train_cfg.max_seq_length,
                        **common,
                    )
                _write_json(folder / "key.json", {"key": key})
                out[es.name][system] = folder
                scores = ", ".join(f"{m} {v:.4f}" for m, v in result.scores.items())
                self._step(f"eval {es.name}/{system}", t0, detail=scores)
        return out

    def _first_stage_only(self, data, folder: Path, system: str):
        """The 'base' row of a reranker experiment: the first stage's own ranking."""

        ev = self.cfg.eval
        return evaluate_first_stage(
            first_stage=ev.first_stage,
            beir=data,
            output_dir=folder,
            measures=ev.measures,
            depth=ev.depth,
            include_title=self.train_cfg.include_title,
            batch_size=ev.batch_size,
            cache_dir=self.cfg.cache_dir,
            ignore_identical_ids=ev.ignore_identical_ids,
            device=self.train_cfg.device,
            name=system,
        )

    def compare_all(self, evals: dict[str, dict[str, Path]]) -> tuple[dict, dict, dict[str, str]]:
        c = self.cfg.compare
        comparisons: dict[str, Any] = {}
        scores: dict[str, dict[str, dict[str, float]]] = {}
        files: dict[str, str] = {}
        results = self.out / "results"
        results.mkdir(parents=True, exist_ok=True)
        for set_name, folders in evals.items():
            t0 = time.perf_counter()
            per_q = {system: per_query_of(folder) for system, folder in folders.items()}
            comp = compare(
                per_q,
                baseline=c.baseline,
                measures=self.cfg.eval.measures,
                resamples=c.resamples,
                confidence=c.confidence,
                seed=self.cfg.seed,
            )
            comparisons[set_name] = comp.as_dict()
            scores[set_name] = {r.name: {} for r in comp.tables[0].rows}
            for table in comp.tables:
                for r in table.rows:
                    scores[set_name][r.name][table.measure] = r.mean
            (results / f"{set_name}.md").write_text(comp.markdown(alpha=c.alpha) + "\n", encoding="utf-8")
            _write_json(results / f"{set_name}.json", comp.as_dict())
            plot_comparison(comp, results / f"{set_name}.png", title=f"{self.cfg.name}: {set_name}", alpha=c.alpha)
            for ext in ("md", "json", "png"):
                files[f"{set_name}.{ext}"] = str(results / f"{set_name}.{ext}")
            self._step(f"compare {set_name}", t0)
        if self.cfg.eval.fill_holes:
            for set_name, folders in evals.items():
                comp = self._compare_filled(set_name, folders)
                name = f"{set_name}+filled"
                comparisons[name] = comp.as_dict()
                scores[name] = {
                    r.name: {t.measure: next(x.mean for x in t.rows if x.name == r.name) for t in comp.tables}
                    for r in comp.tables[0].rows
                }
                (results / f"{name}.md").write_text(comp.markdown(alpha=c.alpha) + "\n", encoding="utf-8")
                _write_json(results / f"{name}.json", comp.as_dict())
                plot_comparison(comp, results / f"{name}.png", title=f"{self.cfg.name}: {name}", alpha=c.alpha)
                for ext in ("md", "json", "png"):
                    files[f"{name}.{ext}"] = str(results / f"{name}.{ext}")
        return comparisons, scores, files

    def _compare_filled(self, set_name: str, folders: dict[str, Path]) -> Any:
        """Fill the holes of one eval set's qrels from every system's run (store under holes/SET, so a rerun
        judges nothing), write the holes files there, and compare the systems under the filled qrels."""
        t0 = time.perf_counter()
        ev = self.cfg.eval
        es = next(s for s in ev.sets if s.name == set_name)
        data = load_beir_split(es.beir, split=es.split)
        runs = {system: read_trec_run(folder / RUN_FILE) for system, folder in folders.items()}
        folder = self.out / "holes" / set_name
        assert ev.fill_holes is not None
        filled = fill_holes(data, runs, cascade=ev.fill_holes, depth=ev.fill_depth, qrels=data.qrels, workdir=folder)
        report = holes_report(runs, original=data.qrels, filled=filled.qrels)
        write_holes(
            folder,
            filled,
            report,
            inputs={
                "beir": es.beir,
                "split": es.split,
                "cascade": ev.fill_holes,
                "depth": ev.fill_depth,
                "systems": list(runs),
            },
        )
        per_q = {system: per_query(run, filled.qrels, ev.measures) for system, run in runs.items()}
        c = self.cfg.compare
        comp = compare(
            per_q,
            baseline=c.baseline,
            measures=ev.measures,
            resamples=c.resamples,
            confidence=c.confidence,
            seed=self.cfg.seed,
        )
        self._step(
            f"fill holes {set_name}",
            t0,
            detail=f"{filled.pooled} pooled, {filled.relevant} relevant, "
            f"{filled.not_relevant} not, {filled.undecided} undecided; {filled.judged_now} judged now",
        )
        return comp

    # ------------------------------------------------------------------ all

    def run(self) -> ExperimentResult:
        with torch_threads(self.cfg.threads):
            return self._run()

    def _run(self) -> ExperimentResult:
        t0 = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        input_path, fmt = self.input_file()
        verdicts, judge_summary = self.judge(input_path, fmt)
        files = self.variants(input_path, fmt, verdicts)
        sources: dict[str, Any] = {}
        for source in self.cfg.sources:
            src_verdicts, src_summary = self.judge(input_path, fmt, source=source)
            sources[source] = src_summary.get("cascade")
            files |= self.variants(input_path, fmt, src_verdicts, source=source)
        if self.cfg.leave_one_out:
            files = self.leave_one_out(files)
        models = self.train_all(files)
        evals = self.evaluate_all(models)
        comparisons, scores, result_files = self.compare_all(evals)
        data = {
            "input": input_path,
            "verdicts": verdicts,
            "cascade": judge_summary.get("cascade"),
            "sources": sources,
            "variants": files,
        }
        systems = tuple(next(iter(scores.values())).keys()) if scores else ()
        result = ExperimentResult(
            str(self.out),
            tuple(files),
            systems,
            scores,
            comparisons,
            data,
            tuple(self.steps),
            round(time.perf_counter() - t0, 3),
            result_files,
        )
        _write_json(
            self.out / "results.json",
            {"name": self.cfg.name, "config": self.cfg.model_dump(mode="json"), **result.as_dict()},
        )

        write_markdown(self.cfg, result, self.out / "results.md")
        return result


def run_experiment(
    cfg: ExperimentConfig, *, log: Log | None = None, judges: dict | None = None, show_progress: bool = False
) -> ExperimentResult:
    """Run the whole experiment (see the module docstring); returns its result, also in results.json/.md."""
    return ExperimentRunner(cfg, log=log, judges=judges, show_progress=show_progress).run()


__all__ = ["ExperimentResult", "ExperimentRunner", "Step", "run_experiment"]
