"""The holes simulation where the truth is known (issue 18, item 3).

On a densely judged set the qrels are binarised at the set's grade (relevant: grade >= it) and THINNED to k
relevant documents per query (seeded choice; every non-relevant judgment dropped, as in D-MERIT: a sparse test
set annotates only what an annotator marked relevant, so a hole filler never learns which documents were
judged non-relevant). Several real systems are scored under the full qrels (the truth), the thinned ones, the
thinned ones filled by a judge cascade (`negclean.holes.fill_holes`, pool depth 10) and the condensed lists
(unjudged documents removed); then the system ranking under each is compared with the one under full qrels
(Kendall's tau), the mean absolute nDCG@10 error against full qrels is taken, and the judge is scored on the
holes against the full qrels.

    # 1. the systems (cached TREC runs): BM25, MiniLM at 256 tokens, MiniLM base/default/relabel at 64 tokens
    #    (the experiment below), two fusions (BM25 + MiniLM base, BM25 + MiniLM relabel)
    nice -n 5 .venv/bin/negclean experiment benchmarks/holes-systems.yaml -o /tmp/holes/systems
    .venv/bin/python benchmarks/bench_holes.py runs --experiment /tmp/holes/systems --out /tmp/holes
    # 2. thin, fill, score (screen and oracle on every set and k; the local LLM on the first N DL19 queries)
    nice -n 5 .venv/bin/python benchmarks/bench_holes.py run --out /tmp/holes --screens /tmp
    nice -n 5 .venv/bin/python benchmarks/bench_holes.py run --out /tmp/holes --screens /tmp \\
        --set trec-dl-2019-passage:2 --k 1 --cascades screen oracle llm --queries 8
    .venv/bin/python benchmarks/bench_holes.py report --out /tmp/holes

The `screen` cascade's learned stage is the packaged default, fitted on these very sets; it is swapped for the
same recipe refitted without the set under test (``screen-without-<set>.json`` in ``--screens``, written by
``bench_effect.py fit-screens``), so every judge is scored on a set it was not fitted on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SETS = {"trec-dl-2019-passage": 2, "cisi": 1, "cranfield": 2}
SHORT = {"trec-dl-2019-passage": "dl19", "cisi": "cisi", "cranfield": "cranfield"}
MEASURE = "nDCG@10"
RRF_K = 60

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]


def _rng(seed: int, *parts: str) -> random.Random:
    digest = hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


# ------------------------------------------------------------------------------------------ qrels and rankings


def binarise(qrels: Mapping[str, Mapping[str, int]], *, grade: int) -> Qrels:
    """Every judgment as 1 (grade >= ``grade``) or 0; queries without a relevant document are left out (their
    nDCG is undefined, and thinning cannot keep a relevant one)."""
    out: Qrels = {}
    for qid, docs in qrels.items():
        row = {d: int(g >= grade) for d, g in docs.items()}
        if any(row.values()):
            out[qid] = row
    return out


def thin(full: Mapping[str, Mapping[str, int]], *, k: int, seed: int, keep_nonrelevant: bool = False) -> Qrels:
    """``k`` relevant documents per query, chosen at random (seeded per query, so a query's choice does not
    depend on the others); the non-relevant judgments are dropped (D-MERIT), or kept with ``keep_nonrelevant``
    (a pool whose assessors missed relevant documents). A query with k or fewer relevant keeps all."""
    if k < 1:
        raise ValueError(f"k must be >= 1, not {k}")
    out: Qrels = {}
    for qid, docs in full.items():
        relevant = sorted(d for d, g in docs.items() if g > 0)
        if not relevant:
            continue
        kept = relevant if len(relevant) <= k else sorted(_rng(seed, "thin", str(k), qid).sample(relevant, k))
        out[qid] = {d: g for d, g in docs.items() if d in kept or (keep_nonrelevant and g == 0)}
    return out


def mean_abs_error(means: Mapping[str, float], truth: Mapping[str, float]) -> float:
    return sum(abs(means[s] - truth[s]) for s in truth) / len(truth)


def errors_vs_full(report) -> dict[str, dict[str, float]]:
    """From a ``HolesReport`` made with ``reference`` = the full qrels: per scoring (thinned, filled, condensed),
    Kendall's tau of the system ranking vs the one under full qrels, and the mean absolute nDCG@10 error."""
    truth = report.ndcg("reference")
    names = {"original": "thinned", "filled": "filled", "condensed": "condensed"}
    return {
        label: {"tau": report.taus[f"{scoring} vs reference"], "mae": mean_abs_error(report.ndcg(scoring), truth)}
        for scoring, label in names.items()
    }


def hole_precision_recall(
    pool: Mapping[str, Sequence], added: Sequence, full: Mapping[str, Mapping[str, int]]
) -> dict[str, float | int]:
    """The judge on the holes. ``pool``: query -> pooled documents (``pool_unjudged``); ``added``: the
    ``AddedJudgment`` records; truth: the full qrels (a document they do not judge counts as not relevant). A hole
    left undecided counts as not found (recall) and not claimed (precision)."""
    said = {(a.query_id, a.doc_id): a.grade > 0 for a in added}
    tp = fp = fn = 0
    for qid, docs in pool.items():
        for doc in docs:
            true = full.get(qid, {}).get(doc.doc_id, 0) > 0
            claim = said.get((qid, doc.doc_id), False)
            tp += claim and true
            fp += claim and not true
            fn += true and not claim
    return {
        "holes": sum(len(d) for d in pool.values()),
        "truly_relevant": tp + fn,
        "said_relevant": tp + fp,
        "tp": tp,
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
    }


# ---------------------------------------------------------------------------------------------------- systems


def rrf(*runs: Mapping[str, Mapping[str, float]], depth: int = 100) -> Run:
    """Reciprocal-rank fusion (k = 60) of runs, top ``depth`` per query."""
    from negclean.evaluate.measures import sorted_docs

    out: Run = {}
    for qid in sorted(set().union(*runs)):
        fused: dict[str, float] = {}
        for run in runs:
            for rank, (docid, _) in enumerate(sorted_docs(run.get(qid, {})), start=1):
                fused[docid] = fused.get(docid, 0.0) + 1.0 / (RRF_K + rank)
        out[qid] = dict(sorted_docs(fused)[:depth])
    return out


def build_runs(args) -> None:
    """Write ``<out>/runs/<set>/<system>.trec``: BM25, the experiment's MiniLM runs, and two fusions."""
    from negclean.evaluate.measures import read_trec_run, write_trec_run
    from negclean.evaluate.retrieval import bm25_run, dense_run, load_beir_split

    exp = Path(args.experiment)
    names = {"trec-dl-2019-passage": "dl19", "cisi": "cisi", "cranfield": "cranfield"}
    for data_set in args.sets or list(SETS):
        folder = Path(args.out) / "runs" / data_set
        folder.mkdir(parents=True, exist_ok=True)
        runs: dict[str, Run] = {}
        if not (folder / "bm25.trec").is_file():
            t0 = time.perf_counter()
            run, _ = bm25_run(load_beir_split(DATA / data_set, split="test"), depth=100)
            write_trec_run(run, folder / "bm25.trec", tag="bm25")
            print(f"{data_set}: bm25 in {time.perf_counter() - t0:.1f}s", flush=True)
        runs["bm25"] = read_trec_run(folder / "bm25.trec")
        if not (folder / "minilm-256.trec").is_file():  # the untrained MiniLM at its own limit (256 tokens)
            t0 = time.perf_counter()
            run, _ = dense_run(load_beir_split(DATA / data_set, split="test"), model="all-MiniLM-L6-v2", depth=100)
            write_trec_run(run, folder / "minilm-256.trec", tag="minilm-256")
            print(f"{data_set}: minilm-256 in {time.perf_counter() - t0:.1f}s", flush=True)
        for system in ("base", "default", "relabel"):
            src = exp / "evals" / names[data_set] / system / "run.trec"
            if not src.is_file():
                raise SystemExit(
                    f"{src} missing: run `negclean experiment benchmarks/holes-systems.yaml -o {exp}` first"
                )
            runs[f"minilm-{system}"] = read_trec_run(src)
            write_trec_run(runs[f"minilm-{system}"], folder / f"minilm-{system}.trec", tag=f"minilm-{system}")
        for dense in ("base", "relabel"):
            write_trec_run(
                rrf(runs["bm25"], runs[f"minilm-{dense}"]), folder / f"rrf-bm25-{dense}.trec", tag=f"rrf-bm25-{dense}"
            )
        print(f"{data_set}: {len(list(folder.glob('*.trec')))} runs in {folder}", flush=True)


def load_runs(out: Path, data_set: str) -> dict[str, Run]:
    from negclean.evaluate.measures import read_trec_run

    files = sorted((out / "runs" / data_set).glob("*.trec"))
    if not files:
        raise SystemExit(f"no runs in {out / 'runs' / data_set}: run `bench_holes.py runs` first")
    return {f.stem: read_trec_run(f) for f in files}


# ------------------------------------------------------------------------------------------------- simulation


def cascade_for(name: str, *, data_set: str, screens: Path, full_path: Path, llm_threads: int) -> dict:
    """``screen``: the preset with its learned stage fitted without ``data_set``; ``oracle``: the full qrels as
    judge (the ceiling); ``llm``: only the local 1.5B LLM stage of the ``offline`` preset (pointwise yes/no)."""
    if name == "screen":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_effect import held_out_cascade

        return held_out_cascade("screen", data_set=data_set, models=screens)
    if name == "oracle":
        return {
            "stages": [{"name": "oracle", "judge": {"backend": "qrels", "path": str(full_path), "min_grade": 1}}],
            "max_false_negatives": None,
        }
    if name == "llm":
        from negclean.presets import load_cascade_dict

        stage = next(s for s in load_cascade_dict("offline")["stages"] if s["judge"].get("backend") == "llamacpp")
        judge = {**stage["judge"], "n_threads": llm_threads}
        return {"stages": [{"name": "llm", "judge": judge}], "max_false_negatives": None}
    raise SystemExit(f"unknown cascade {name!r}: screen, oracle or llm")


def write_qrels(qrels: Mapping[str, Mapping[str, int]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "query-id\tcorpus-id\tscore\n"
        + "".join(f"{q}\t{d}\t{g}\n" for q, docs in qrels.items() for d, g in docs.items()),
        encoding="utf-8",
    )
    return path


def simulate(args) -> None:
    from negclean.evaluate.retrieval import load_beir_split
    from negclean.holes import fill_holes, holes_report, pool_unjudged

    out = Path(args.out)
    for spec in args.set:
        data_set, grade = spec.split(":")
        data = load_beir_split(DATA / data_set, split="test")
        full = binarise(data.qrels, grade=int(grade))
        if args.queries:
            full = dict(list(full.items())[: args.queries])  # the first N queries of the qrels file
        sub = f"-q{args.queries}" if args.queries else ""
        full_path = write_qrels(full, out / "qrels" / f"{data_set}{sub}-full.tsv")
        all_runs = load_runs(out, data_set)
        runs = {s: {q: docs for q, docs in run.items() if q in full} for s, run in all_runs.items()}
        for k in args.k:
            thinned = thin(full, k=k, seed=args.seed, keep_nonrelevant=args.keep_nonrelevant)
            nr = "-nr" if args.keep_nonrelevant else ""
            write_qrels(thinned, out / "qrels" / f"{data_set}{sub}-k{k}{nr}-seed{args.seed}.tsv")
            pool = pool_unjudged(runs, thinned, depth=args.depth)
            for name in args.cascades:
                tag = f"{data_set}-k{k}{nr}-{name}{sub}"
                target = out / "results" / f"{tag}.json"
                if target.is_file() and not args.force:
                    print(f"{tag}: done before ({target})", flush=True)
                    continue
                cascade = cascade_for(
                    name,
                    data_set=data_set,
                    screens=Path(args.screens),
                    full_path=full_path,
                    llm_threads=args.llm_threads,
                )
                t0 = time.perf_counter()
                filled = fill_holes(
                    data,
                    runs,
                    cascade=cascade,
                    depth=args.depth,
                    qrels=thinned,
                    store=out / "stores" / f"{data_set}-{name}.sqlite",
                    min_grade=1,
                    relevant_grade=1,
                    max_positives=None,
                    progress=args.progress,
                )
                wall = time.perf_counter() - t0
                report = holes_report(runs, original=thinned, filled=filled.qrels, reference=full)
                row = {
                    "set": data_set,
                    "grade": int(grade),
                    "k": k,
                    "seed": args.seed,
                    "cascade": name,
                    "keep_nonrelevant": args.keep_nonrelevant,
                    "queries": len(full),
                    "first_queries": args.queries,
                    "depth": args.depth,
                    "systems": list(runs),
                    "relevant_full": sum(sum(d.values()) for d in full.values()),
                    "relevant_thinned": sum(sum(d.values()) for d in thinned.values()),
                    "report": report.as_dict(),
                    "errors": errors_vs_full(report),
                    "judge": hole_precision_recall(pool, filled.added, full),
                    "fill": filled.summary(),
                    "wall_s": round(wall, 1),
                }
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(row, indent=1), encoding="utf-8")
                e, j = row["errors"], row["judge"]
                print(
                    f"{tag}: tau thinned {e['thinned']['tau']:+.3f} filled {e['filled']['tau']:+.3f} condensed "
                    f"{e['condensed']['tau']:+.3f}; MAE {e['thinned']['mae']:.4f}/{e['filled']['mae']:.4f}/"
                    f"{e['condensed']['mae']:.4f}; judge P {j['precision']:.3f} R {j['recall']:.3f} on "
                    f"{j['holes']} holes; {filled.model_calls} model calls, {wall:.0f}s",
                    flush=True,
                )


# ----------------------------------------------------------------------------------------------------- report


def _f(x: float | None, fmt: str = "+.3f") -> str:
    return "n/a" if x is None or math.isnan(x) else format(x, fmt)


def _llm_pairs(row: dict) -> int:
    """Candidates an LLM stage judged now (a pointwise task holds every candidate of one query)."""
    return sum(st["judged"] for st in row["fill"]["stages"] if st["judge_id"].startswith(("llamacpp", "openai")))


def report(args) -> None:
    rows = [json.loads(p.read_text()) for p in sorted((Path(args.out) / "results").glob("*.json"))]
    order = {s: i for i, s in enumerate(SETS)}
    casc = {"screen": 0, "llm": 1, "oracle": 2}
    rows.sort(
        key=lambda r: (
            r["first_queries"] or 0,
            order.get(r["set"], 9),
            bool(r.get("keep_nonrelevant")),
            r["k"],
            casc.get(r["cascade"], 9),
        )
    )
    lines = [
        (
            "| set | k | queries | cascade | tau thinned | tau filled | tau condensed | MAE thinned | MAE filled "
            "| MAE condensed | holes | truly rel. | said rel. | P | R | LLM calls (pairs) | judge s |"
        ),
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        e, j = r["errors"], r["judge"]
        q = f"{r['queries']}" + (f" (first {r['first_queries']})" if r["first_queries"] else "")
        k = f"{r['k']}" + (" +nonrel" if r.get("keep_nonrelevant") else "")
        lines.append(
            f"| {SHORT.get(r['set'], r['set'])} | {k} | {q} | {r['cascade']} | "
            f"{_f(e['thinned']['tau'])} | {_f(e['filled']['tau'])} | {_f(e['condensed']['tau'])} | "
            f"{_f(e['thinned']['mae'], '.4f')} | {_f(e['filled']['mae'], '.4f')} | "
            f"{_f(e['condensed']['mae'], '.4f')} | {j['holes']} | {j['truly_relevant']} | "
            f"{j['said_relevant']} | {_f(j['precision'], '.3f')} | {_f(j['recall'], '.3f')} | "
            f"{r['fill']['model_calls']} ({_llm_pairs(r)}) | {r['wall_s']:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    for r in rows:
        if r["k"] != 1 or r["set"] != "trec-dl-2019-passage":
            continue
        sub = f", first {r['first_queries']} queries" if r["first_queries"] else ""
        sub += ", non-relevant judgments kept" if r.get("keep_nonrelevant") else ""
        text += (
            f"\n**{SHORT[r['set']]}, k = 1{sub}, cascade {r['cascade']}** (nDCG@10 per system)\n\n"
            "| system | full | thinned | filled | condensed | Judged@10 thinned | Judged@10 filled |\n"
            "|---|---:|---:|---:|---:|---:|---:|\n"
        )
        for s in sorted(r["report"]["systems"], key=lambda s: -s["ndcg_reference"]):
            text += (
                f"| {s['name']} | {s['ndcg_reference']:.4f} | {s['ndcg_original']:.4f} | "
                f"{s['ndcg_filled']:.4f} | {s['ndcg_condensed']:.4f} | {s['judged_original']:.3f} | "
                f"{s['judged_filled']:.3f} |\n"
            )
    print(text)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("runs", help="write the systems' TREC runs (BM25, the experiment's MiniLM runs, fusions)")
    r.add_argument("--experiment", required=True, help="output folder of benchmarks/holes-systems.yaml")
    r.add_argument("--out", required=True)
    r.add_argument("--sets", nargs="*", choices=list(SETS))
    s = sub.add_parser("run", help="thin, fill with each cascade, score")
    s.add_argument("--out", required=True)
    s.add_argument("--set", nargs="+", default=[f"{n}:{g}" for n, g in SETS.items()], help="NAME:GRADE")
    s.add_argument("--k", nargs="+", type=int, default=[1, 2, 5])
    s.add_argument("--cascades", nargs="+", default=["screen", "oracle"])
    s.add_argument("--screens", required=True, help="folder of screen-without-<set>.json (bench_effect.py)")
    s.add_argument("--queries", type=int, default=0, help="only the first N queries of the qrels (0: all)")
    s.add_argument("--depth", type=int, default=10)
    s.add_argument("--seed", type=int, default=13)
    s.add_argument("--llm-threads", type=int, default=1)
    s.add_argument(
        "--keep-nonrelevant",
        action="store_true",
        help="thin only the relevant judgments (default: drop every non-relevant one, as D-MERIT)",
    )
    s.add_argument("--progress", action="store_true")
    s.add_argument("--force", action="store_true", help="recompute results already written")
    p = sub.add_parser("report", help="the markdown tables of every result")
    p.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    {"runs": build_runs, "run": simulate, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()
