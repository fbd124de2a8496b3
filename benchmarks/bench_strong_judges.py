"""Strong offline judges on the sparse-label benchmarks (issue 15, item 2).

Per data set (TREC DL19 grade>=2, CISI grade>=1, Cranfield grade>=2; one random relevant doc kept as the
positive, seed 0; top 30 MiniLM candidates over the full corpus; truth = full qrels, via
``negclean.benchjudges.sparse.from_beir_sparse``), scores every candidate with:

- ``minilm``: raw MiniLM s(q,c) (the mining score), the baseline;
- ``mpnet``: all-mpnet-base-v2 s(q,c) (only the benchmark's query / candidate texts are embedded);
- ``cross``: a cross-encoder trained on THAT set's kept positives against random passages of the input
  (``negclean.train.cross_judge``), judging that set's candidates, which it never trained on.

Writes one JSON of scores per (set, judge) under --out; ``report`` prints the metrics table.

    nice -n 5 .venv/bin/python benchmarks/bench_strong_judges.py minilm
    nice -n 5 .venv/bin/python benchmarks/bench_strong_judges.py mpnet
    nice -n 5 .venv/bin/python benchmarks/bench_strong_judges.py cross --sets dl19 --negatives 4 --epochs 1
    .venv/bin/python benchmarks/bench_strong_judges.py report
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("NEGCLEAN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SETS = {"dl19": ("trec-dl-2019-passage", 2), "cisi": ("cisi", 1), "cranfield": ("cranfield", 2)}


def bench(name: str):
    from negclean.benchjudges.sparse import from_beir_sparse

    folder, grade = SETS[name]
    return from_beir_sparse(SHARED / folder, relevant_grade=grade, keep="random", retriever="minilm", depth=30, seed=0)


def rows(b):
    """(query, candidate) pairs in a fixed order with their truth."""
    out = []
    for inst in b.instances:
        for p in inst.negatives:
            out.append((inst, p, bool(b.truth.get((inst.query_id, p.docid), False))))
    return out


def save(out: Path, set_name: str, judge: str, scores, truth, seconds: float, extra: dict | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "set": set_name,
        "judge": judge,
        "scores": [float(s) for s in scores],
        "truth": [bool(t) for t in truth],
        "seconds": round(seconds, 2),
        **(extra or {}),
    }
    (out / f"{set_name}.{judge}.json").write_text(json.dumps(data))
    print(f"{set_name} {judge}: {metrics(scores, truth)} {seconds:.1f}s", flush=True)


def metrics(scores, truth) -> dict:
    from sklearn.metrics import roc_auc_score

    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truth, dtype=bool)
    order = np.argsort(-s, kind="stable")
    n_true = int(t.sum())
    out = {"auc": round(float(roc_auc_score(t, s)), 3), "n": len(t), "relevant": n_true}
    for k in (1, 2):
        top = order[: k * n_true]
        out[f"recall@{k}x"] = round(float(t[top].sum()) / max(n_true, 1), 3)
    return out


def run_minilm(args) -> None:
    for name in args.sets:
        started = time.perf_counter()
        b = bench(name)
        r = rows(b)
        save(
            args.out,
            name,
            "minilm",
            [p.score for _, p, _ in r],
            [t for *_, t in r],
            time.perf_counter() - started,
            {"describe": b.describe(), "positive_rank_median": float(np.median(list(b.positive_ranks.values())))},
        )


def run_mpnet(args) -> None:
    from negclean.embed import encode
    from negclean.train.groups import passage_text

    for name in args.sets:
        b = bench(name)
        r = rows(b)
        started = time.perf_counter()
        queries = sorted({inst.query_id: inst.query for inst, _, _ in r}.items())
        qv = dict(zip([q for q, _ in queries], encode([t for _, t in queries], model="all-mpnet-base-v2")))
        docs = sorted({p.key: passage_text(p) for _, p, _ in r}.items())
        dv = dict(zip([k for k, _ in docs], encode([t for _, t in docs], model="all-mpnet-base-v2", batch_size=16)))
        scores = [float(qv[inst.query_id] @ dv[p.key]) for inst, p, _ in r]
        save(
            args.out,
            name,
            "mpnet",
            scores,
            [t for *_, t in r],
            time.perf_counter() - started,
            {"texts": len(queries) + len(docs)},
        )


def run_cross(args) -> None:
    from negclean.judge.base import JudgeTask
    from negclean.judge.config import CrossEncoderJudgeConfig, build_judge
    from negclean.train.cross_judge import fit_cross_judge

    tag = args.tag or f"cross-k{args.negatives}-e{args.epochs}-L{args.max_length}"
    for name in args.sets:
        b = bench(name)
        r = rows(b)
        with tempfile.TemporaryDirectory(prefix="h2-cross-") as tmp:
            started = time.perf_counter()
            fit = fit_cross_judge(
                b.instances,
                output_dir=Path(tmp) / "judge",
                negatives=args.negatives,
                epochs=args.epochs,
                max_length=args.max_length,
                batch_size=args.batch_size,
                learning_rate=args.lr,
                seed=args.seed,
                threads=1,
                source=f"sparse {name}",
            )
            trained = time.perf_counter() - started
            judge = build_judge(CrossEncoderJudgeConfig(path=str(Path(tmp) / "judge"), threads=1))
            tasks = [JudgeTask(inst, tuple(range(len(inst.negatives)))) for inst in b.instances]
            scores = [s for per in judge.scores(tasks) for s in per]
            judged = time.perf_counter() - started - trained
        save(
            args.out,
            name,
            tag,
            scores,
            [t for *_, t in r],
            trained + judged,
            {"train_seconds": round(trained, 1), "judge_seconds": round(judged, 1), "fit": fit.as_dict()},
        )


def report(args) -> None:
    files = sorted(args.out.glob("*.json"))
    print("| set | judge | AUC | recall@1x | recall@2x | flags@0.5 (x true) | P@0.5 | R@0.5 | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for f in files:
        d = json.loads(f.read_text())
        m = metrics(d["scores"], d["truth"])
        s = np.asarray(d["scores"])
        t = np.asarray(d["truth"])
        if d["judge"].startswith("cross"):
            flag = s >= 0.5
            fx = f"{flag.sum() / max(t.sum(), 1):.2f}x"
            p = f"{(flag & t).sum() / max(flag.sum(), 1):.2f}"
            rr = f"{(flag & t).sum() / max(t.sum(), 1):.2f}"
        else:
            fx = p = rr = "-"
        secs = d["seconds"] if not d["judge"].startswith("cross") else f"{d['train_seconds']} + {d['judge_seconds']}"
        print(
            f"| {d['set']} | {d['judge']} | {m['auc']:.3f} | {m['recall@1x']:.3f} | {m['recall@2x']:.3f} | "
            f"{fx} | {p} | {rr} | {secs} |"
        )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["minilm", "mpnet", "cross", "report"])
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--out", type=Path, default=Path("/tmp/h2/scores"))
    ap.add_argument("--negatives", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    {"minilm": run_minilm, "mpnet": run_mpnet, "cross": run_cross, "report": report}[args.what](args)


if __name__ == "__main__":
    sys.exit(main())
