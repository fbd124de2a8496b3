"""The effect of fixing, with its ceiling (issue 15, item 4): default vs the oracle's fixes vs each cascade's.

Simulates sparse training labels on a densely judged set. The set's queries (those with a relevant document at
``grade``) are split into K folds (seeded). For each fold a BEIR folder is written (corpus and queries are
symbolic links, nothing is copied): its ``train`` split is the other folds' queries with the qrels THINNED to one
relevant document per query (seeded random choice), its ``test`` split the fold's queries with their FULL qrels
(pairs at ``grade`` or above), and ``truth.tsv`` the full qrels of the train queries (the oracle's labels).
Then ``negclean experiment`` runs through its Python API: MiniLM mines the top 30 of the full corpus for each
train query (its one labeled positive excluded), the `default` training set keeps them all as negatives, the
`oracle` source (a qrels judge over truth.tsv, no cap) and each named cascade preset make `hn_remove` and
`relabel`, the same model is trained on each with the same seed, and each is evaluated on the fold's test
queries. Every query is tested exactly once per seed; per-query scores are pooled over folds.

    nice -n 5 .venv/bin/python benchmarks/bench_effect.py run --set cisi:1 --set cranfield:2 \\
        --folds 3 --seeds 13 14 --epochs 4 --out /tmp/effect
    .venv/bin/python benchmarks/bench_effect.py report --out /tmp/effect

Cascades are taken by preset name (``--cascades screen offline``), so a run uses the presets as they are then.
A learned stage whose model is the packaged default (fitted on every benchmark set, these included) is replaced
by the same recipe refitted without the set under test (``fit-screens``, from bench_default_screen.py's feature
cache): every judge is scored on a data set it was not fitted on.

    .venv/bin/python benchmarks/bench_effect.py fit-screens --features /tmp/h3cache --out /tmp/effect

``--cascades screen-recal`` (any ``PRESET-recal``): the preset with its held-out screen recalibrated per fold
and seed as a user would (`negclean fit-judge --recalibrate`): on the truth labels (truth.tsv) of every candidate
of 4 training queries drawn with a seeded rng, with the recalibration module's default method, its threshold
from every mined training candidate. The fold is mined first (the experiment's own step, reused by the run);
the model, with the queries drawn and its flags against the truth, is written to runs/<fold>/screen-recal.json.
Variants already trained under the same --out are reused (the experiment keeps a model whose data and
configuration are unchanged), so a recal cascade can be added to a finished run copied to a new folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEASURE = "nDCG@10"
#: ``--cascades NAME-recal``: preset NAME with its held-out screen recalibrated on the labels of this many
#: whole training queries (the user's path: label every candidate of a few random queries)
RECAL_SUFFIX = "-recal"
RECAL_QUERIES = 4


def _rng(seed: int, *parts: str) -> random.Random:
    digest = hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def make_folds(beir: Path, *, grade: int, folds: int, seed: int, out: Path) -> list[Path]:
    """Write one BEIR folder per fold (see the module docstring); returns the folders."""
    from negclean.mine.beir import BeirFolder, read_queries

    src = BeirFolder.locate(beir, split="test")
    qrels = src.read_qrels()
    texts = read_queries(src.queries)
    relevant = {q: sorted(d for d, g in judged.items() if g >= grade) for q, judged in qrels.items() if q in texts}
    qids = sorted((q for q, docs in relevant.items() if docs), key=lambda q: (len(q), q))
    if len(qids) < 2 * folds:
        raise SystemExit(
            f"{beir}: only {len(qids)} queries have a document at grade >= {grade}; too few for {folds} folds"
        )
    _rng(seed, "folds").shuffle(qids)
    kept = {q: _rng(seed, "positive", q).choice(relevant[q]) for q in qids}  # the one labeled positive
    folders = []
    for f in range(folds):
        test = set(qids[f::folds])
        train = [q for q in qids if q not in test]
        folder = out / f"fold{f}"
        (folder / "qrels").mkdir(parents=True, exist_ok=True)
        for link, target in (
            ("corpus" + "".join(src.corpus.suffixes), src.corpus),
            ("queries" + "".join(src.queries.suffixes), src.queries),
        ):
            if not (folder / link).is_symlink():
                (folder / link).symlink_to(target.resolve())
        header = "query-id\tcorpus-id\tscore\n"
        (folder / "qrels" / "train.tsv").write_text(header + "".join(f"{q}\t{kept[q]}\t1\n" for q in train))
        (folder / "qrels" / "test.tsv").write_text(
            header + "".join(f"{q}\t{d}\t{qrels[q][d]}\n" for q in qids if q in test for d in relevant[q])
        )
        (folder / "truth.tsv").write_text(
            header + "".join(f"{q}\t{d}\t{qrels[q][d]}\n" for q in train for d in relevant[q])
        )
        folders.append(folder)
    return folders


def held_out_cascade(name: str, *, data_set: str, models: Path) -> dict:
    """A cascade preset whose packaged learned screen is swapped for the one fitted without ``data_set``."""
    from negclean.presets import load_cascade_dict

    cascade = load_cascade_dict(name)
    for stage in cascade["stages"]:
        judge = stage.get("judge", {})
        if judge.get("backend") == "learned" and judge.get("path", "default") == "default":
            model = models / f"screen-without-{data_set}.json"
            if not model.is_file():
                raise SystemExit(
                    f"{model} missing: run `bench_effect.py fit-screens` first (the packaged screen "
                    f"was fitted on {data_set})"
                )
            stage["judge"] = {**judge, "path": str(model)}
        if judge.get("backend") in ("llamacpp", "openai", "vllm"):
            raise SystemExit(
                f"cascade {name!r} has an LLM stage ({judge['backend']}): too slow for this benchmark "
                "on CPU; leave it out of --cascades"
            )
    return cascade


def _truth_pairs(path: Path, *, grade: int) -> set[tuple[str, str]]:
    """(query, doc) pairs at ``grade`` or above in a fold's truth.tsv (pairs not listed there are not relevant)."""
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line.strip()]
    return {(q, d) for q, d, g in rows if int(g) >= grade}


def recalibrated_screen(
    mined: Path, truth: Path, *, grade: int, seed: int, fold: str, data_set: str, models: Path, out: Path
) -> Path:
    """The held-out screen recalibrated as a user would (`negclean fit-judge --recalibrate`): the truth labels of
    every candidate of RECAL_QUERIES training queries drawn with a seeded rng, the recalibration module's default
    method, the expected-count threshold over every mined training candidate. Written to ``out`` with its
    training facts (the queries drawn, and its flags against the truth on the fold's training candidates)."""
    from dataclasses import replace

    import numpy as np

    from negclean.data.io import read_instances
    from negclean.errors import ConfigError
    from negclean.judge.learned_features import compute_features
    from negclean.judge.learned_model import LearnedModel
    from negclean.learned.recalibration import recalibrate

    source = models / f"screen-without-{data_set}.json"
    base = LearnedModel.load(source)
    instances = list(read_instances(mined, on_error="fail"))
    table = compute_features(instances, model=base.embedder)
    relevant = _truth_pairs(truth, grade=grade)
    y = np.asarray([int(i in relevant) for i in table.ids], dtype=np.int64)
    qids = sorted({i.query_id for i in instances}, key=lambda q: (len(q), q))
    drawn = sorted(_rng(seed, "recalibrate", fold).sample(qids, RECAL_QUERIES), key=lambda q: (len(q), q))
    labeled = np.isin(table.groups, drawn)
    x = base.columns_from(table.names, table.values)
    try:
        rec = recalibrate(
            base,
            x[labeled],
            y[labeled],
            pool=x,
            groups=table.groups[labeled],
            recalibrated_from=str(source),
            label_source=f"{truth} (grade >= {grade}), every candidate of queries {', '.join(drawn)}",
        )
        model, refused, warnings = rec.model, "", list(rec.warnings)
    except ConfigError as exc:  # one class among the labels: the command refuses, the user keeps the screen
        model, refused, warnings = base, str(exc), []
    flags = model.predict_proba(x) >= model.threshold
    true_fn = int(y.sum())
    facts = {
        **model.training,
        "benchmark": {
            "command": "python benchmarks/bench_effect.py run --cascades screen-recal",
            "data_set": data_set,
            "fold": fold,
            "seed": seed,
            "labeled_queries": drawn,
            "labels": int(labeled.sum()),
            "relevant_among_labels": int(y[labeled].sum()),
            "refused": refused,
            "warnings": warnings,
            # the learned stage alone on every mined training candidate (the cascade's duplicate stage aside)
            "training_candidates": len(y),
            "true_false_negatives": true_fn,
            "flagged": int(flags.sum()),
            "flagged_truly_relevant": int((flags & (y == 1)).sum()),
            "flagged_before": int((base.predict_proba(x) >= base.threshold).sum()),
        },
    }
    return replace(model, training=facts).save(out / "screen-recal.json")


def held_out_cascade_with(name: str, *, data_set: str, models: Path, recalibrated: Path | None) -> dict:
    """``held_out_cascade``; for ``NAME-recal``, preset NAME whose held-out learned screen is ``recalibrated``."""
    if not name.endswith(RECAL_SUFFIX):
        return held_out_cascade(name, data_set=data_set, models=models)
    if recalibrated is None:
        raise SystemExit(f"cascade {name!r} needs its recalibrated screen (internal: none was made)")
    cascade = held_out_cascade(name.removesuffix(RECAL_SUFFIX), data_set=data_set, models=models)
    held_out = str(models / f"screen-without-{data_set}.json")
    swapped = 0
    for stage in cascade["stages"]:
        judge = stage.get("judge", {})
        if judge.get("backend") == "learned" and judge.get("path") == held_out:
            stage["judge"] = {**judge, "path": str(recalibrated)}
            swapped += 1
    if swapped != 1:
        raise SystemExit(f"cascade {name!r}: expected one packaged learned stage to recalibrate, found {swapped}")
    return cascade


def fit_screens(args) -> None:
    """Refit the default screen's recipe once per data set, leaving that set out (bench_default_screen.py)."""
    from dataclasses import replace

    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_default_screen as bds
    from negclean.learned.fit import fit_learned

    data = bds.load(Path(args.features))
    for held_out in data:
        rest = {n: d for n, d in data.items() if n != held_out}
        rep = fit_learned(
            bds.concat([bds.table_of(d, n) for n, d in rest.items()]),
            np.concatenate([d["y"] for d in rest.values()]),
            features=bds.OLD,
            folds=5,
        )
        facts = {
            **rep.model.training,
            "data": sorted(rest),
            "left_out": held_out,
            "command": "python benchmarks/bench_effect.py fit-screens",
        }
        path = replace(rep.model, training=facts).save(Path(args.out) / f"screen-without-{held_out}.json")
        print(path, f"threshold {rep.model.threshold:.3f}", json.dumps({k: facts[k] for k in ("rows", "cv_auc")}))


def experiment_config(
    folder: Path,
    *,
    grade: int,
    seed: int,
    cascades: list[str],
    fixes: list[str],
    train: dict,
    out: Path,
    store: Path,
    reranker: bool,
    data_set: str,
    models: Path,
    recalibrated: Path | None = None,
):
    """The experiment of one fold and seed, validated (``recalibrated``: the screen of the ``*-recal`` cascades)."""
    from negclean.experiment import validate_experiment

    sources = {"oracle": {"qrels": str(folder / "truth.tsv"), "min_grade": grade, "variants": fixes}}
    for name in cascades:
        cascade = held_out_cascade_with(name, data_set=data_set, models=models, recalibrated=recalibrated)
        sources[name] = {"cascade": cascade, "variants": fixes}
    ev = {
        "sets": [{"name": "test", "beir": str(folder), "split": "test"}],
        "measures": [MEASURE, "R@100"],
        "base_model": True,
    }
    if reranker:
        ev |= {"first_stage": "bm25", "top_k": 100}
    data = {
        "name": f"effect-{folder.parent.parent.name}-{folder.name}-seed{seed}",
        "output_dir": str(out),
        "store": str(store),
        "seed": seed,
        "threads": 1,
        "data": {
            "mine": {
                "beir": str(folder),
                "split": "train",
                "retriever": "dense",
                "model": "all-MiniLM-L6-v2",
                "rank_range": "0:30",
                "num_negatives": 30,
                "ratio": None,
                "seed": seed,
            }
        },
        # the main cascade only makes `default` (no fix): the cheapest one; the judges are the sources
        "cascade": {"stages": [{"name": "duplicate", "judge": {"backend": "duplicate"}}]},
        "variants": ["default"],
        "sources": sources,
        "train": train,
        "eval": ev,
        "compare": {"resamples": 2000},
    }
    return validate_experiment(data, source=str(folder))


def run(args) -> None:
    from negclean.experiment import run_experiment
    from negclean.experiment.runner import ExperimentRunner
    from negclean.local_models import torch_threads

    train = {
        "kind": args.kind,
        "model": "all-MiniLM-L6-v2",
        "epochs": args.epochs,
        "batch_size": 16,
        "learning_rate": 2e-5,
        "warmup_ratio": 0.1,
        "hard_negatives": 7,
        "max_seq_length": 64,
    }
    if args.max_steps:
        train["max_steps"] = args.max_steps
    data_root = Path(args.data)
    for spec in args.set:
        name, grade = spec.split(":")
        for seed in args.seeds:
            base = Path(args.out) / f"{name}-{args.kind}" / f"seed{seed}"
            folders = make_folds(data_root / name, grade=int(grade), folds=args.folds, seed=seed, out=base / "beir")
            for folder in folders[: args.only_folds or None]:
                t0 = time.perf_counter()
                options = dict(
                    grade=int(grade),
                    seed=seed,
                    fixes=args.fixes,
                    train=train,
                    out=base / "runs" / folder.name,
                    store=Path(args.out) / f"{name}-judgments.sqlite",
                    reranker=args.kind == "reranker",
                    data_set=name,
                    models=Path(args.out),
                )
                recalibrated = None
                if any(c.endswith(RECAL_SUFFIX) for c in args.cascades):
                    # the screen is recalibrated on the features of the mined training data, so mine first (the
                    # experiment's own mining step, which the run below then reuses)
                    plain = [c for c in args.cascades if not c.endswith(RECAL_SUFFIX)]
                    runner = ExperimentRunner(experiment_config(folder, cascades=plain, **options))
                    with torch_threads(1):
                        mined, _ = runner.input_file()
                        recalibrated = recalibrated_screen(
                            Path(mined),
                            folder / "truth.tsv",
                            grade=int(grade),
                            seed=seed,
                            fold=folder.name,
                            data_set=name,
                            models=Path(args.out),
                            out=base / "runs" / folder.name,
                        )
                    facts = json.loads(recalibrated.read_text())["training"]["benchmark"]
                    print(f"recalibrated screen: {recalibrated}: " + json.dumps(facts), flush=True)
                cfg = experiment_config(folder, cascades=args.cascades, recalibrated=recalibrated, **options)
                result = run_experiment(cfg, log=lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", flush=True))
                row = result.scores["test"]
                print(
                    f"== {name} seed {seed} {folder.name}: {time.perf_counter() - t0:.0f}s; "
                    + ", ".join(f"{s} {v[MEASURE]:.4f}" for s, v in row.items()),
                    flush=True,
                )


# ---------------------------------------------------------------------------------------------------- report


def _fn_sets(path: Path) -> dict[str, set[str]]:
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return {r["query_id"]: set(r.get("false_negatives") or []) for r in rows}


def collect(base: Path) -> dict:
    """Per seed: pooled per-query scores of every system, instances kept, and each source's flags vs the truth."""
    from negclean.evaluate.runner import per_query_of

    seeds: dict[str, dict] = {}
    for seed_dir in sorted(base.glob("seed*")):
        folds = sorted(p.name for p in (seed_dir / "beir").glob("fold*"))
        done = [f for f in folds if (seed_dir / "runs" / f / "results.json").is_file()]
        if done != folds:  # a seed counts only when every query was tested once
            print(f"{seed_dir}: {len(done)} of {len(folds)} folds finished; left out", file=sys.stderr)
            continue
        per_q: dict[str, dict[str, float]] = {}
        kept: dict[str, list[int]] = {}
        flags: dict[str, list[int]] = {}  # source -> [flagged, true among flagged, true]
        by_fold: dict[str, dict[str, list[int]]] = {}  # fold -> source -> the same counts
        recal: dict[str, dict] = {}  # fold -> the recalibrated screen's benchmark facts (``*-recal`` cascades)
        for run_dir in sorted((seed_dir / "runs").glob("fold*")):
            if (run_dir / "screen-recal.json").is_file():
                recal[run_dir.name] = json.loads((run_dir / "screen-recal.json").read_text())["training"]["benchmark"]
            res = json.loads((run_dir / "results.json").read_text())
            for system in res["systems"]:
                for q, v in per_query_of(run_dir / "evals" / "test" / system)[MEASURE].items():
                    per_q.setdefault(system, {})[q] = v
            for name, info in res["data"]["variants"].items():
                kept.setdefault(name, []).append(info["written"])
            truth = _fn_sets(run_dir / "judge-oracle" / "verdicts.jsonl")
            for judge_dir in [run_dir / "judge", *sorted(run_dir.glob("judge-*"))]:
                source = (
                    judge_dir.name.removeprefix("judge-")
                    if judge_dir.name != "judge"
                    else "(main cascade: duplicates only, makes default)"
                )
                got = _fn_sets(judge_dir / "verdicts.jsonl")
                acc = flags.setdefault(source, [0, 0, 0])
                acc[0] += sum(len(v) for v in got.values())
                acc[1] += sum(len(v & truth.get(q, set())) for q, v in got.items())
                acc[2] += sum(len(v) for v in truth.values())
                by_fold.setdefault(run_dir.name, {})[source] = [
                    sum(len(v) for v in got.values()),
                    sum(len(v & truth.get(q, set())) for q, v in got.items()),
                    sum(len(v) for v in truth.values()),
                ]
        seeds[seed_dir.name] = {"per_query": per_q, "kept": kept, "flags": flags, "by_fold": by_fold, "recal": recal}
    return seeds


def report(args) -> None:
    import numpy as np

    from negclean.evaluate.compare import compare

    out = Path(args.out)
    summary = {}
    for base in sorted(p for p in out.iterdir() if p.is_dir()):
        seeds = collect(base)
        if not seeds:
            continue
        systems = list(next(iter(seeds.values()))["per_query"])
        means = {s: [float(np.mean(list(d["per_query"][s].values()))) for d in seeds.values()] for s in systems}
        # the test: per query, the mean over seeds, paired by query, Holm over every system vs default
        queries = sorted(set.intersection(*(set(d["per_query"][s]) for d in seeds.values() for s in systems)))
        avg = {
            s: {MEASURE: {q: float(np.mean([d["per_query"][s][q] for d in seeds.values()])) for q in queries}}
            for s in systems
        }
        comp = compare(avg, baseline="default", measures=[MEASURE], resamples=10_000, seed=0)
        rows = {r.name: r for r in comp.tables[0].rows}
        ceiling = {fix: rows[f"oracle/{fix}"].delta for fix in ("relabel", "hn_remove") if f"oracle/{fix}" in rows}
        lines = [
            f"### {base.name}: {len(queries)} test queries, {len(seeds)} seeds",
            "",
            f"| system | instances kept (mean per fold) | {MEASURE} (mean of seeds) | per seed | Δ vs default "
            "| Δ 95% CI | p (Holm) | wins/losses/ties | share of oracle's gain |",
            "|---|---:|---:|---|---:|---|---:|---|---:|",
        ]
        for s in systems:
            r = rows[s]
            kept = [k for d in seeds.values() for k in d["kept"].get(s, [])]
            kept_s = f"{np.mean(kept):.1f}" if kept else "untrained"
            fix = s.split("/")[-1]
            share = "—"
            if "/" in s and not s.startswith("oracle/") and ceiling.get(fix):
                share = f"{r.delta / ceiling[fix]:+.2f}"
            per_seed = " / ".join(f"{m:.4f}" for m in means[s])
            if r.delta is None:
                lines.append(f"| {s} | {kept_s} | {r.mean:.4f} | {per_seed} | — | — | — | — | — |")
                continue
            mark = " †" if r.p_holm < 0.05 else ""
            lines.append(
                f"| {s} | {kept_s} | {r.mean:.4f} | {per_seed} | {r.delta:+.4f}{mark} | "
                f"[{r.delta_ci[0]:+.4f}, {r.delta_ci[1]:+.4f}] | {r.p_holm:.4f} | "
                f"{r.wins}/{r.losses}/{r.ties} | {share} |"
            )
        lines += [
            "",
            "| source | flagged | of them truly relevant (precision) | recall of the true false negatives |",
            "|---|---:|---:|---:|",
        ]
        for source in next(iter(seeds.values()))["flags"]:
            tot = np.sum([d["flags"][source] for d in seeds.values()], axis=0)
            prec = tot[1] / tot[0] if tot[0] else float("nan")
            lines.append(f"| {source} | {tot[0]} | {tot[1]} ({prec:.3f}) | {tot[1] / tot[2]:.3f} |")
        lines += [
            "",
            "Per fold, on its training candidates (the cascade's verdicts; recalibration labels: every candidate "
            "of the queries named):",
            "",
            "| seed | fold | source | flagged | precision | recall | flags ÷ true | recalibrated on |",
            "|---|---|---|---:|---:|---:|---:|---|",
        ]
        for seed_name, d in seeds.items():
            for fold, counts in d["by_fold"].items():
                for source, (n_flag, n_tp, n_true) in counts.items():
                    if source == "oracle" or source.startswith("(main"):
                        continue
                    facts = d["recal"].get(fold) if source.endswith(RECAL_SUFFIX) else None
                    on = "—"
                    if facts:
                        on = f"{facts['labels']} labels ({facts['relevant_among_labels']} relevant), queries " + (
                            ", ".join(facts["labeled_queries"]) + (" REFUSED" if facts["refused"] else "")
                        )
                    prec = f"{n_tp / n_flag:.3f}" if n_flag else "—"
                    lines.append(
                        f"| {seed_name} | {fold} | {source} | {n_flag} | {prec} | {n_tp / n_true:.3f} | "
                        f"{n_flag / n_true:.2f} | {on} |"
                    )
        text = "\n".join(lines) + "\n"
        print(text)
        summary[base.name] = {
            "comparison": comp.as_dict(),
            "seed_means": means,
            "text": text,
            "kept": {s: [k for d in seeds.values() for k in d["kept"].get(s, [])] for s in systems},
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="write the folds and run the experiments")
    p.add_argument("--set", action="append", required=True, help="NAME:GRADE, a folder under --data")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--only-folds", type=int, default=0, help="run only the first N folds (timing trials)")
    p.add_argument("--seeds", type=int, nargs="+", default=[13, 14])
    p.add_argument("--cascades", nargs="*", default=["screen", "offline"], help="cascade presets, by name")
    p.add_argument("--fixes", nargs="+", default=["hn_remove", "relabel"])
    p.add_argument("--kind", choices=["retriever", "reranker"], default="retriever")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=run)
    f = sub.add_parser("fit-screens", help="the default screen's recipe refitted once per left-out data set")
    f.add_argument("--features", required=True, help="bench_default_screen.py's cache (*.features.npz)")
    f.add_argument("--out", required=True)
    f.set_defaults(func=fit_screens)
    r = sub.add_parser("report", help="aggregate the finished runs under --out")
    r.add_argument("--out", required=True)
    r.set_defaults(func=report)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
