"""`negclean fit-judge`: fit the learned judge from labels, with query-grouped cross-validation (issue 9)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from negclean.cascade.store import JudgmentStore
from negclean.cli.console import emit_json, guarded
from negclean.data.io import read_instances
from negclean.data.paths import refuse_replacing_folder
from negclean.errors import ConfigError

if TYPE_CHECKING:  # numpy and the learned judge load lazily: `negclean --help` imports this module
    import numpy as np

    from negclean.judge.learned_features import FeatureTable
    from negclean.judge.learned_model import LearnedModel


def fit_judge(
    output: Path = typer.Option(
        ..., "--output", "-o", help="model JSON to write (use it as {backend: learned, path: ...})"
    ),
    beir: Path | None = typer.Option(
        None,
        "--beir",
        help="BEIR folder with graded qrels (instances built as in "
        "bench-judges; labels from the qrels unless --distill/--human-labels)",
    ),
    input: Path | None = typer.Option(None, "--input", "-i", help="instances file"),
    qrels: Path | None = typer.Option(None, "--qrels", help="labels from qrels for --input"),
    human_labels: Path | None = typer.Option(
        None, "--human-labels", help="labels from the annotation app: a judgment store"
    ),
    annotator: str | None = typer.Option(
        None, "--annotator", help="with --human-labels: one annotator (default: the majority of all)"
    ),
    distill: Path | None = typer.Option(None, "--distill", help="labels from a strong judge's verdicts in this store"),
    distill_judge: str | None = typer.Option(None, "--distill-judge", help="that judge's id or fingerprint"),
    prior_store: Path | None = typer.Option(
        None, "--prior-store", help="add an earlier judge's confidence (e.g. LLM P(yes)) as a feature"
    ),
    prior_judge: str | None = typer.Option(None, "--prior-judge", help="that judge's id or fingerprint"),
    relevant_grade: int = typer.Option(2, "--relevant-grade"),
    queries: int | None = typer.Option(None, "--queries", help="deterministic subsample of N queries"),
    seed: int = typer.Option(0, "--seed"),
    max_candidates: int | None = typer.Option(
        None, "--max-candidates", help="candidates per query (default: 25; every candidate with --recalibrate)"
    ),
    folds: int = typer.Option(5, "--folds", help="query-grouped CV folds"),
    c: float = typer.Option(1.0, "--C", help="inverse regularisation strength of the logistic regression"),
    target_recall: float = typer.Option(
        0.9, "--target-recall", help="report the cost a screen on each score saves here"
    ),
    features: str | None = typer.Option(None, "--features", help="comma-separated subset of features"),
    recalibrate: str | None = typer.Option(
        None,
        "--recalibrate",
        help="instead of fitting: keep MODEL's feature weights ('default' = the shipped screen, or a model JSON) "
        "and refit only its calibration and threshold on the labels (a few dozen of your own)",
    ),
    cross_encoder: bool = typer.Option(
        False,
        "--cross-encoder",
        help="instead: train a cross-encoder judge "
        "(a model FOLDER at --output, {backend: crossencoder, path: ...}) on the "
        "--input's labeled positives against random passages; no labels needed",
    ),
    corpus: Path | None = typer.Option(
        None,
        "--corpus",
        help="--cross-encoder: draw random negatives from this "
        "BEIR corpus.jsonl[.gz] (default: the input's own passages)",
    ),
    negatives: int = typer.Option(4, "--negatives", help="--cross-encoder: random passages per positive and epoch"),
    epochs: int = typer.Option(1, "--epochs", help="--cross-encoder: training epochs"),
    max_length: int = typer.Option(256, "--max-length", help="--cross-encoder: tokens per (query, passage) pair"),
    batch_size: int = typer.Option(16, "--batch-size", help="--cross-encoder: pairs per training batch"),
    flag_rate: float | None = typer.Option(
        None,
        "--flag-rate",
        help="--cross-encoder: set the threshold so that this share of the input's candidates is flagged (a budget)",
    ),
    threshold: float = typer.Option(
        0.5,
        "--threshold",
        help="--cross-encoder without --flag-rate: the sigmoid score at or above which a candidate is flagged",
    ),
    threads: int | None = typer.Option(None, "--threads", help="--cross-encoder: torch CPU threads"),
    max_steps: int | None = typer.Option(None, "--max-steps", help="--cross-encoder: stop after N steps (trials)"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Fit a calibrated false-negative score from cheap signals; report held-out kappa/AUC beside every signal's.
    With --cross-encoder: train a cross-encoder judge on the input's own positives instead."""
    if cross_encoder:
        with guarded(as_json=as_json):
            if (
                input is None
                or beir is not None
                or any(x is not None for x in (qrels, human_labels, distill, recalibrate))
            ):
                raise ConfigError(
                    "--cross-encoder trains on an instances file: give --input FILE (its labeled "
                    "positives are the labels) and none of --beir, --qrels, --human-labels, --distill, --recalibrate"
                )
            out = _fit_cross_encoder(
                input,
                output,
                corpus=corpus,
                negatives=negatives,
                epochs=epochs,
                max_length=max_length,
                batch_size=batch_size,
                flag_rate=flag_rate,
                threshold=threshold,
                threads=threads,
                max_steps=max_steps,
                seed=seed,
                show_progress=not as_json,
            )
        if as_json:
            emit_json(out)
            return
        typer.echo(
            f"trained on {out['queries']} queries ({out['pairs']} pairs) in {out['train_seconds']:.1f}s; "
            f"threshold {out['threshold']:.4f} ({out['threshold_rule']})"
        )
        typer.echo(f"wrote {output} (use it as {{backend: crossencoder, path: {output}}})")
        return
    with guarded(as_json=as_json):
        import numpy as np  # lazy: with the imports below, pulls numpy and pydantic (`negclean --help` loads this)

        from negclean.benchjudges import dataset
        from negclean.judge.learned_features import FEATURES, compute_features, prior_from_store
        from negclean.learned import labels as lab
        from negclean.learned.fit import fit_learned

        if (beir is None) == (input is None):
            raise ConfigError("give one instance source: --beir DIR or --input FILE")
        sources = [x for x in (qrels, human_labels, distill) if x is not None]
        if len(sources) > 1:
            raise ConfigError("give at most one label source: --qrels, --human-labels or --distill")
        if input is not None and not sources:
            raise ConfigError("--input needs a label source: --qrels, --human-labels or --distill")
        if distill is not None and not distill_judge:
            raise ConfigError("--distill needs --distill-judge (the judge id or fingerprint in that store)")
        if (prior_store is None) != (prior_judge is None):
            raise ConfigError("--prior-store and --prior-judge go together")
        if max_candidates is None and recalibrate is None:
            max_candidates = 25
        base = None
        if recalibrate is not None:
            from negclean.judge.learned_model import LearnedModel

            if features:
                raise ConfigError("--recalibrate keeps the model's features: leave out --features")
            base = LearnedModel.load(recalibrate)
        chosen = None
        if features:
            chosen = [f.strip() for f in features.split(",") if f.strip()]
            bad = [f for f in chosen if f not in FEATURES]
            if bad:
                raise ConfigError(f"--features: unknown {bad}; choose from {', '.join(FEATURES)}")
        if beir is not None:
            bench = dataset.from_beir(
                beir, relevant_grade=relevant_grade, queries=queries, seed=seed, max_candidates=max_candidates
            )
        elif input is None:
            raise AssertionError("unreachable: exactly one of --beir and --input was checked above")
        elif qrels is not None:
            bench = dataset.from_instances(
                input, qrels, relevant_grade=relevant_grade, queries=queries, seed=seed, max_candidates=max_candidates
            )
        else:
            bench = dataset.from_instances(input, None, queries=queries, seed=seed, max_candidates=max_candidates)
        prior = None
        if prior_store is not None and prior_judge is not None:  # both or neither (checked above)
            with JudgmentStore(prior_store) as st:
                prior = prior_from_store(st, prior_judge)
        if base is None:
            table = compute_features(bench.instances, prior=prior)
        else:  # the features of the model being recalibrated: its embedder
            table = compute_features(bench.instances, prior=prior, model=base.embedder)
        if distill is not None and distill_judge:  # --distill without --distill-judge was refused above
            with JudgmentStore(distill) as st:
                y = lab.labels_from_judge(table, st, distill_judge)
            label_source = f"verdicts of {distill_judge} in {distill}"
        elif human_labels is not None:
            with JudgmentStore(human_labels) as st:
                y = lab.labels_from_humans(table, st, annotator=annotator)
            label_source = f"human labels in {human_labels}" + (f" ({annotator})" if annotator else " (majority)")
        else:
            y = lab.labels_from_truth(table, bench.truth)
            label_source = f"qrels grade >= {relevant_grade}"
        keep = np.flatnonzero(y >= 0)
        if len(keep) == 0:
            raise ConfigError(f"no candidate has a label from {label_source}")
        report = None
        if base is not None and recalibrate is not None:
            out = _recalibrate(
                base, recalibrate, table, y, keep, output, label_source=label_source, data=bench.describe()
            )
            if human_labels is not None:
                out["warnings"].append(
                    "the annotation app samples by stratum (flagged / cleared / ...), not at random: the base rate "
                    "of its labels need not be your data's; recalibrate on every candidate of a few random queries "
                    "(--input with --qrels) where you can"
                )
        else:
            report = fit_learned(
                table.select(keep), y[keep], folds=folds, c=c, target_recall=target_recall, features=chosen
            )
            model = report.model
            model = type(model)(
                **{
                    **model.__dict__,
                    "training": {**model.training, "labels": label_source, "instances": bench.describe()},
                }
            )
            model.save(output)
            out = {"model": str(output), "labels": label_source, "data": bench.describe(), **report.as_dict()}
    for warning in out.get("warnings", ()):
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        emit_json(out)
        return
    if report is None:
        typer.echo(
            f"{out['data']}; labels: {label_source}; recalibrated {recalibrate} ({out['method']}) on "
            f"{out['labels']} labeled candidates, {out['relevant']} relevant, {out['queries']} queries"
        )
        typer.echo(
            f"threshold {out['previous_threshold']:.4f} -> {out['threshold']:.4f}; flags {out['flagged_before']} -> "
            f"{out['flagged']} of the input's {out['candidates']} candidates "
            f"(the labels' base rate: {out['relevant'] / out['labels']:.1%})"
        )
        typer.echo(f"wrote {output} (use it as {{backend: learned, path: {output}}})")
        return
    typer.echo(
        f"{out['data']}; labels: {label_source}; {out['n']} labeled candidates, {out['positives']} relevant, "
        f"{out['groups']} queries, {len(report.folds)} query-grouped folds"
    )
    typer.echo(f"{'score':<16} {'AUC':>6} {'kappa':>6} {'P':>6} {'R':>6}  saved@R>={target_recall:g}")
    for s in (report.learned, report.learned_at_half, *report.signals):
        f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        typer.echo(
            f"{s.name:<16} {f(s.auc):>6} {f(s.kappa):>6} {f(s.precision):>6} {f(s.recall):>6}  {f(s.saved_at_target)}"
        )
    best = report.best_signal
    verdict = "beats" if out["beats_best_auc"] and out["beats_best_kappa"] else "does not beat"
    typer.echo(f"learned {verdict} the best single signal ({best.name}: AUC {best.auc:.3f}) on both AUC and kappa")
    typer.echo(f"wrote {output}")


def _recalibrate(
    base: LearnedModel,
    name: str,
    table: FeatureTable,
    y: np.ndarray,
    keep: np.ndarray,
    output: Path,
    *,
    label_source: str,
    data: str,
) -> dict[str, Any]:
    """``negclean fit-judge --recalibrate``: refit ``base``'s calibration and threshold on the labeled rows."""
    from negclean.judge.learned_model import resolve_model_path
    from negclean.learned.recalibration import recalibrate

    path = resolve_model_path(name)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    x = base.columns_from(table.names, table.values)
    rec = recalibrate(
        base,
        x[keep],
        y[keep],
        pool=x,
        groups=table.groups[keep],
        recalibrated_from=f"{name} ({path}, sha256 {digest})",
        label_source=label_source,
    )
    rec.model.save(output)
    p_before, p_after = base.predict_proba(x), rec.model.predict_proba(x)
    return {
        "model": str(output),
        "data": data,
        "labels_from": label_source,
        "recalibrated_from": name,
        "method": rec.method,
        "threshold_rule": rec.threshold_rule,
        "labels": rec.labels,
        "relevant": rec.relevant,
        "queries": rec.queries,
        "previous_threshold": rec.previous_threshold,
        "threshold": rec.threshold,
        "calibration": [rec.model.calib_a, rec.model.calib_b],
        "candidates": len(x),
        "flagged_before": int((p_before >= base.threshold).sum()),
        "flagged": int((p_after >= rec.threshold).sum()),
        "warnings": list(rec.warnings),
    }


def _fit_cross_encoder(
    input: Path, output: Path, *, corpus: Path | None, seed: int, show_progress: bool, **options
) -> dict:
    from negclean.train.cross_judge import fit_cross_judge  # lazy: pulls numpy, pydantic, yaml

    refuse_replacing_folder(input, output, label="--output")
    instances = list(read_instances(input, on_error="fail"))
    pool = None
    if corpus is not None:
        from negclean.mine.beir import read_corpus

        docs = read_corpus(corpus)
        pool = [docs.passage(i) for i in range(len(docs))]
    fit = fit_cross_judge(
        instances, output_dir=output, corpus=pool, seed=seed, source=str(input), show_progress=show_progress, **options
    )
    return {"model": str(output), **fit.as_dict()}


COMMANDS = {"fit-judge": fit_judge}
