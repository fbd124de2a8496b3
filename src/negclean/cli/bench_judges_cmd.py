"""`negclean bench-judges`: measure judges and cascades against known labels (issue 5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import typer

from negclean.cascade.store import JudgmentStore
from negclean.cli.console import emit_json, guarded
from negclean.cli.options import one_of
from negclean.errors import ConfigError

_ORDERS: tuple[Literal["bm25", "minilm"], ...] = ("bm25", "minilm")


def bench_judges(
    beir: list[Path] | None = typer.Option(
        None,
        "--beir",
        help="BEIR folder with dense graded qrels (e.g. TREC DL 2019); with --sparse give it once per data set",
    ),
    sparse: bool = typer.Option(
        False,
        "--sparse",
        help="sparse labels: keep ONE positive per query, mine candidates "
        "over the full corpus; per data set and pooled, learned/calibrated judges fitted "
        "on the other sets ('lodo')",
    ),
    keep: str = typer.Option(
        "random",
        "--keep",
        help="--sparse: which relevant document stays the labeled positive: best, random (seeded) or weakest",
    ),
    retriever: str = typer.Option("minilm", "--retriever", help="--sparse: mine candidates with minilm or bm25"),
    depth: int = typer.Option(30, "--depth", help="--sparse: candidates per query"),
    input: Path | None = typer.Option(None, "--input", "-i", help="instances file (with --qrels)"),
    qrels: Path | None = typer.Option(None, "--qrels", help="qrels giving the truth for --input's candidates"),
    rlhn_reference: Path | None = typer.Option(
        None, "--rlhn-reference", help="folder of RLHN reference outputs: truth = GPT-4o stage 2"
    ),
    split: str = typer.Option("test", "--split"),
    positive_grade: int = typer.Option(3, "--positive-grade", help="--beir: grade of the labeled positive"),
    relevant_grade: list[int] | None = typer.Option(
        None,
        "--relevant-grade",
        help="grade at or above which a "
        "candidate is relevant (default 2; --sparse: 1); with "
        "--sparse one value for all or one per --beir, in order",
    ),
    order: str = typer.Option("bm25", "--order", help="--beir: rank candidates by bm25 or minilm"),
    queries: int | None = typer.Option(None, "--queries", help="deterministic subsample of N queries"),
    seed: int = typer.Option(0, "--seed", help="which queries --queries keeps"),
    max_candidates: int | None = typer.Option(25, "--max-candidates", help="top-ranked candidates per query"),
    systems: str = typer.Option("cheap", "--systems", help="shipped set (cheap, llm) or a YAML file with 'systems:'"),
    output_dir: Path = typer.Option(Path("runs/bench-judges"), "--output-dir", "-o"),
    store: Path | None = typer.Option(None, "--store", help="judgment store (default OUTPUT_DIR/judgments.sqlite)"),
    price_model: str = typer.Option(
        "gpt-4o-mini", "--price-model", help="price LLM tokens as this hosted model (prices table) for the cost columns"
    ),
    target_recall: float | None = typer.Option(
        None, "--target-recall", help="calibrate the similarity screen's ratio for this recall"
    ),
    write_config: Path | None = typer.Option(
        None, "--write-config", help="with --target-recall: write a cascade YAML with that ratio"
    ),
    economy: bool = typer.Option(
        False,
        "--economy",
        help="also count prompt tokens per candidate per template (o200k and the local model's tokenizer)",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the results as JSON"),
):
    """Build a false-negative benchmark and score judges and cascades on it: P/R/F1, kappa, tokens, cost, time."""
    with guarded(as_json=as_json):
        from negclean.benchjudges import dataset  # lazy: pulls numpy, pydantic, yaml
        from negclean.benchjudges.report import audit_lines, frontier_plot, markdown_table
        from negclean.benchjudges.run import load_systems, run_benchmark

        if sparse:
            if input is not None or rlhn_reference is not None or write_config is not None or economy:
                raise ConfigError(
                    "--sparse takes --beir folders only (not --input, --rlhn-reference, --write-config or --economy)"
                )
            out, text = _sparse(
                beir or [],
                split=split,
                relevant_grade=relevant_grade,
                keep=keep,
                retriever=retriever,
                depth=depth,
                queries=queries,
                seed=seed,
                systems=systems,
                output_dir=output_dir,
                store=store,
                price_model=price_model,
                target_recall=target_recall,
                say=(lambda *a: None) if as_json else typer.echo,
            )
            if as_json:
                emit_json(out)
            else:
                typer.echo(text)
                typer.echo(f"wrote {output_dir / 'results.json'}, {output_dir / 'results.md'}")
            return
        if beir and len(beir) > 1:
            raise ConfigError("--beir more than once needs --sparse (several data sets, scored per set and pooled)")
        if relevant_grade and len(relevant_grade) > 1:
            raise ConfigError("--relevant-grade more than once needs --sparse (one value per --beir)")
        beir_dir = beir[0] if beir else None
        grade = relevant_grade[0] if relevant_grade else 2
        given = [x for x in (beir_dir, input, rlhn_reference) if x is not None]
        if len(given) != 1:
            raise ConfigError(
                "give exactly one source: --beir DIR, --input FILE --qrels QRELS, or --rlhn-reference DIR"
            )
        if input is not None and qrels is None:
            raise ConfigError("--input needs --qrels (the truth for its candidates)")
        if write_config is not None and target_recall is None:
            raise ConfigError("--write-config needs --target-recall")
        rank_by = one_of(order, _ORDERS, option="--order")
        if beir_dir is not None:
            bench = dataset.from_beir(
                beir_dir,
                split=split,
                positive_grade=positive_grade,
                relevant_grade=grade,
                order=rank_by,
                queries=queries,
                seed=seed,
                max_candidates=max_candidates,
            )
        elif input is not None:
            bench = dataset.from_instances(
                input, qrels, relevant_grade=grade, queries=queries, seed=seed, max_candidates=max_candidates
            )
        elif rlhn_reference is not None:
            bench = dataset.from_rlhn_reference(rlhn_reference)
        else:
            raise AssertionError("unreachable: exactly one source was checked above")
        system_list = load_systems(systems)
        from negclean.benchjudges.lodo import needs_lodo

        if any(needs_lodo(s) for s in system_list):
            raise ConfigError(
                f"--systems {systems}: its 'lodo' values are fitted on other data sets; run it with "
                "--sparse and two or more --beir"
            )
        output_dir.mkdir(parents=True, exist_ok=True)
        say = (lambda *a: None) if as_json else typer.echo
        say(bench.describe())

        def done(res, seconds):
            say(
                f"  {res.name}: F1 {res.scores.f1 if res.scores.f1 is None else round(res.scores.f1, 3)}, "
                f"kappa {None if res.scores.kappa is None else round(res.scores.kappa, 3)} ({seconds:.1f} s)"
            )

        embedders: dict = {}
        results = run_benchmark(
            bench,
            system_list,
            store_path=store or output_dir / "judgments.sqlite",
            price_model=price_model,
            on_system=done,
            embedders=embedders,
        )
        out = {
            "benchmark": {
                "name": bench.name,
                "queries": len(bench.instances),
                "candidates": bench.n_candidates,
                "relevant": bench.n_relevant,
                "notes": list(bench.notes),
            },
            "price_model": price_model,
            "systems": [r.as_dict() for r in results],
        }
        if target_recall is not None:
            from negclean.benchjudges.calibrate import calibrate_ratio, relative_scores, write_cascade_yaml
            from negclean.benchjudges.run import MemoEmbedder

            model = "all-MiniLM-L6-v2"
            rel, truth = relative_scores(bench, model=model, embedder=embedders.get(model) or MemoEmbedder(model))
            cal = calibrate_ratio(rel, truth, target_recall=target_recall)
            out["calibration"] = cal.as_dict() | {"text": cal.describe()}
            if write_config is not None:
                out["calibration"]["config"] = str(write_cascade_yaml(cal, write_config))
        if economy:
            out["economy"] = _economy(bench, results, store or output_dir / "judgments.sqlite", rlhn_reference)
        table = markdown_table(results)
        (output_dir / "results.md").write_text(table + "\n")
        plot = frontier_plot(results, output_dir / "frontier.png", title=bench.describe())
        out["plot"] = str(plot)
        (output_dir / "results.json").write_text(json.dumps(out, indent=1, default=str))
    if as_json:
        emit_json(out)
        return
    typer.echo(table)
    for line in audit_lines(results):
        typer.echo("audit: " + line)
    if "calibration" in out:
        typer.echo(
            "calibration: "
            + out["calibration"]["text"]
            + (f"; wrote {out['calibration']['config']}" if "config" in out["calibration"] else "")
        )
    for row in out.get("economy", {}).get("rows", []):
        typer.echo(
            f"economy: {row['template']} [{row['tokenizer']}] in/cand {row['input_per_candidate']:.1f} "
            f"out/cand {row['output_per_candidate']} ({row['output_source']})"
        )
    typer.echo(f"wrote {output_dir / 'results.json'}, {output_dir / 'results.md'}, {plot}")


def _sparse(
    beir: list[Path],
    *,
    split: str,
    relevant_grade: list[int] | None,
    keep: str,
    retriever: str,
    depth: int,
    queries: int | None,
    seed: int,
    systems: str,
    output_dir: Path,
    store: Path | None,
    price_model: str,
    target_recall: float | None,
    say,
) -> tuple[dict, str]:
    """`--sparse`: build one sparse-label benchmark per --beir, run the systems, write results.json/.md."""
    from negclean.benchjudges.run import load_systems  # lazy: pulls numpy, pydantic, yaml
    from negclean.benchjudges.sparse import KEEP_RULES, RETRIEVERS, from_beir_sparse, rank_summary
    from negclean.benchjudges.sparse_report import sparse_markdown
    from negclean.benchjudges.sparse_run import run_sparse

    if not beir:
        raise ConfigError("--sparse needs at least one --beir DIR (a BEIR folder with dense qrels)")
    keep_rule = one_of(keep, KEEP_RULES, option="--keep")
    mined_by = one_of(retriever, RETRIEVERS, option="--retriever")
    grades = relevant_grade or [1]
    if len(grades) not in (1, len(beir)):
        raise ConfigError(
            f"--relevant-grade given {len(grades)} times for {len(beir)} --beir folders: give it "
            "once (for all) or once per --beir, in the same order"
        )
    grades = grades * len(beir) if len(grades) == 1 else grades
    system_list = load_systems(systems)
    benches = {}
    for folder, grade in zip(beir, grades):
        bench = from_beir_sparse(
            folder,
            split=split,
            relevant_grade=grade,
            keep=keep_rule,
            retriever=mined_by,
            depth=depth,
            queries=queries,
            seed=seed,
        )
        if bench.name in benches:
            raise ConfigError(
                f"two --beir folders are both named {bench.name!r}: data sets are told apart by folder name; rename one"
            )
        benches[bench.name] = bench
        say(bench.describe())

    def done(row, seconds):
        say(
            f"  {row.dataset} / {row.system}: AUC {row.scores.auc if row.scores.auc is None else round(row.scores.auc, 3)}"
            f", R@2x {row.recall_at_budget['2x'] if row.recall_at_budget['2x'] is None else round(row.recall_at_budget['2x'], 3)}"
            f" ({row.fitted_on}; {seconds:.1f} s)"
        )

    result = run_sparse(
        benches,
        system_list,
        output_dir=output_dir,
        store_path=store,
        price_model=price_model,
        target_recall=target_recall,
        on_system=done,
    )
    text = sparse_markdown(benches, result)
    out = {
        "sparse": True,
        "price_model": price_model,
        "systems_source": systems,
        "options": {
            "split": split,
            "relevant_grade": grades,
            "keep": keep,
            "retriever": retriever,
            "depth": depth,
            "queries": queries,
            "seed": seed,
            "target_recall": target_recall,
        },
        "benchmarks": [
            {
                "name": n,
                "queries": len(b.instances),
                "candidates": b.n_candidates,
                "relevant": b.n_relevant,
                "notes": list(b.notes),
                "positive_rank": rank_summary(b.positive_ranks.values()),
            }
            for n, b in benches.items()
        ],
        "per_set": {n: [r.as_dict() for r in rows] for n, rows in result["per_set"].items()},
        "pooled": [r.as_dict() for r in result["pooled"]],
        "fits": result["fits"],
    }
    (output_dir / "results.md").write_text(text + "\n")
    (output_dir / "results.json").write_text(json.dumps(out, indent=1, default=str))
    return out, text


def _economy(bench, results, store_path, rlhn_reference) -> dict:
    # lazy: pulls numpy, pydantic, yaml (`negclean --help` loads this module)
    from negclean.benchjudges.economy import prompt_costs, reference_reasoning_output, stored_output_per_candidate
    from negclean.judge.config import LlamaCppJudgeConfig

    outputs = {}
    listwise = LlamaCppJudgeConfig(mode="listwise")
    with JudgmentStore(store_path) as st:
        found = stored_output_per_candidate(st, listwise.fingerprint())
    if found:
        outputs["listwise_brief"] = (found[0], f"measured: {found[1]} stored calls of {listwise.judge_id()}")
    ref = rlhn_reference or _default_reference()
    if ref is not None:
        per = reference_reasoning_output(ref)
        outputs["listwise"] = (
            per["gpt-4o-mini"],
            f"measured: RLHN reference responses of gpt-4o-mini (gpt-4o: {per['gpt-4o']:.1f}/candidate)",
        )
    encode, name = None, ""
    try:
        from negclean.judge.llamacpp import LlamaCppJudge

        judge = LlamaCppJudge(LlamaCppJudgeConfig())
        encode, name = judge.encode_messages, judge.judge_id.split("/")[0]
    except Exception as exc:  # no local model: o200k only, said in the output
        name = f"local tokenizer unavailable: {exc}"
    rows = prompt_costs(bench.instances, local_encode=encode, local_name=name, outputs=outputs)
    return {"rows": [r.as_dict() for r in rows]}


def _default_reference() -> Path | None:
    path = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "rlhn-reference-msmarco"
    return path if path.is_dir() else None


COMMANDS = {"bench-judges": bench_judges}
